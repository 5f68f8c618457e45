// `moeserve convert`: a Hugging Face checkpoint directory (config.json, *.safetensors,
// tokenizer.json, tokenizer_config.json) -> one GGUF file, with the tensor names, layouts and
// transformations of llama.cpp's converter (shared/spec/qwen3next.md §6): llama q/k rope
// permutation, qwen3next norm +1, A_log -> -exp(A_log), in_proj_qkvz regrouping, expert stacking,
// conv1d squeeze. Everything is checked before the output file is created; tensors are then
// converted and written one at a time, so memory stays at about one tensor.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "model/convert/model_shape.h"

namespace moeserve::convert {

struct ConvertOptions {
  std::string hf_dir;
  std::string out_path;
  // Type of the 2-D+ weight matrices: F32, F16, BF16 or Q8_0. 1-D tensors, norms, the router and
  // ssm_conv1d stay F32. A matrix whose rows do not split into blocks of the type falls back to
  // F16, as llama.cpp does.
  GgmlType type = GgmlType::F16;
  bool legacy_ssm_in = false;   // qwen3next: write ssm_in instead of attn_qkv + attn_gate
  std::string tokenizer_pre;    // overrides the detected tokenizer.ggml.pre
  std::function<void(const std::string&)> log;  // one line per tensor; may be empty
};

struct ConvertResult {
  ModelShape shape;
  size_t n_tensors = 0;
  uint64_t data_bytes = 0;
  std::vector<std::string> notes;  // fallbacks and other remarks, also sent to log
};

ConvertResult convert_hf_to_gguf(const ConvertOptions& options);

// llama.cpp's llama_ftype value for general.file_type (gguf.md §4) of a GGUF whose main weight
// type is `type`.
uint32_t file_type_for(GgmlType type);

// The types `--type` accepts.
bool is_convert_type(GgmlType type);

}  // namespace moeserve::convert
