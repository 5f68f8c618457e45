// Quantizing a GGUF model file as llama-quantize does: every tensor gets the type its recipe
// chooses (quant/recipe.h), quantized from F32/F16/BF16 with the importance matrix if one is
// given; metadata is copied, general.file_type and general.quantization_version set. The input is
// memory-mapped and the output streamed tensor by tensor, so memory stays around one tensor's
// quantized size whatever the model's.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "quant/recipe.h"

namespace moeserve::quant {

struct QuantizeModelOptions {
  RecipeOptions recipe;           // ftype required; has_imatrix is set from imatrix_path
  std::string imatrix_path;       // empty: none
  int n_threads = 1;
  bool allow_requantize = false;  // accept already quantized input tensors (dequantized first)
  std::function<void(const std::string&)> log;     // one line per tensor and a summary
  std::function<void(const std::string&)> warn;    // warnings (missing importance matrix, ...)
};

struct QuantizeModelReport {
  size_t n_tensors = 0;
  size_t n_quantized = 0;
  size_t n_fallback = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
};

QuantizeModelReport quantize_model(const std::string& input, const std::string& output,
                                   QuantizeModelOptions options);

// Types llama-quantize refuses to produce without an importance matrix (tensor_requires_imatrix):
// the 1- and 2-bit i-quants and IQ3_XXS, and Q2_K in a Q2_K_S file; the token embedding and the
// output are exempt.
bool wants_imatrix(const std::string& tensor_name, GgmlType type, const FileType& ftype);

}  // namespace moeserve::quant
