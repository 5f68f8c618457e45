// Quantization recipes: llama.cpp's file types (llama_ftype: Q4_K_M, IQ2_XS, ...) and the rules
// llama-quantize applies to choose each tensor's type under one (its llama_tensor_get_type):
// which tensors are quantized at all, which get more bits (attention V, some ffn_down layers, the
// output), per-tensor overrides, and the fallback when a row does not fit the block size.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/ggml_type.h"

namespace moeserve::quant {

struct FileType {
  const char* name;   // as llama-quantize accepts it ("Q4_K_M"); aliases are separate rows
  int32_t id;         // llama_ftype, written as general.file_type
  GgmlType base;      // the type most tensors get
  const char* description;
};

std::span<const FileType> file_types();
// By name (case-insensitive, aliases such as Q4_K for Q4_K_M included) or by numeric id;
// nullptr if unknown.
const FileType* find_file_type(std::string_view name_or_id);

// What the rules read from the model (its GGUF metadata).
struct ModelInfo {
  std::string arch;    // general.architecture
  int n_layer = 0;     // <arch>.block_count
  int n_expert = 0;    // <arch>.expert_count
  int n_head = 0;      // <arch>.attention.head_count (layer 0)
  int n_head_kv = 0;   // <arch>.attention.head_count_kv (layer 0)
  int n_gqa() const { return n_head_kv ? n_head / n_head_kv : 0; }
};

struct TypeOverride {
  std::string pattern;  // searched in the tensor name (ECMAScript regex, lower-cased as llama does)
  GgmlType type;
};

struct RecipeOptions {
  const FileType* ftype = nullptr;
  bool pure = false;          // every quantized tensor gets the base type (output/embedding too)
  bool has_imatrix = false;   // some rules differ when an importance matrix is given
  bool quantize_output = true;
  std::optional<GgmlType> output_type;           // --output-tensor-type
  std::optional<GgmlType> token_embedding_type;  // --token-embedding-type
  std::vector<TypeOverride> overrides;           // --tensor-type, first match wins
};

struct TensorDesc {
  std::string name;
  GgmlType type = GgmlType::F32;
  int n_dims = 1;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
};

// The order llama-quantize visits (and writes) tensors in: by block number (tensors outside
// blocks first), then by name. Counting rules ("the first 4 attn_v tensors") depend on it.
std::vector<size_t> llama_tensor_order(const std::vector<TensorDesc>& tensors);

struct TensorPlan {
  GgmlType type;          // the type the tensor is written with
  bool quantize;          // false: copied unchanged (type == the input's type)
  std::string note;       // why a fallback or override happened, for the log; empty otherwise
};

// Chooses every tensor's type. `tensors` must be in llama_tensor_order. Throws moeserve::Error for
// an unusable override pattern.
std::vector<TensorPlan> plan_types(const ModelInfo& model, const RecipeOptions& options,
                                   const std::vector<TensorDesc>& tensors);

// Whether a tensor would be quantized at all (2-D or 3-D weights other than norms, gates of the
// router, conv1d, position embeddings and other small or special tensors).
bool tensor_allows_quantization(const TensorDesc& tensor, const RecipeOptions& options);

}  // namespace moeserve::quant
