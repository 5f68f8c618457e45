// The GGUF side of a model, shared by `convert` (from a Hugging Face checkpoint) and `synth`
// (random weights): hyper-parameters -> the arch-prefixed metadata keys and the exact tensor
// manifest (names, ggml shapes) that llama.cpp-compatible GGUF files of that architecture have.
// Sources: shared/spec/qwen3next.md §1, §3-§7 and gguf.md §2.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gguf/gguf_value.h"

namespace moeserve::convert {

enum class Arch { Llama, Qwen3, Qwen3Moe, Qwen3Next };

const char* arch_name(Arch arch);  // the GGUF general.architecture string
std::optional<Arch> arch_from_name(std::string_view name);

struct ModelShape {
  Arch arch = Arch::Llama;
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_ff = 0;            // dense FFN width (metadata only for the MoE architectures)
  int64_t n_rot = 0;           // rotary dims per head (qwen3next: head_dim * partial_rotary_factor)
  double rope_theta = 10000.0;
  double rms_eps = 1e-6;
  int64_t context_length = 0;
  bool tied_embeddings = false;  // no output.weight: lm_head reuses token_embd
  // Mixture of experts (qwen3moe, qwen3next).
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_exp = 0;
  int64_t n_ff_shexp = 0;      // qwen3next shared expert
  // Gated DeltaNet (qwen3next).
  int64_t full_attention_interval = 0;
  int64_t ssm_conv_kernel = 0;
  int64_t ssm_k_heads = 0;     // ssm.group_count
  int64_t ssm_v_heads = 0;     // ssm.time_step_rank
  int64_t ssm_k_dim = 0;       // ssm.state_size
  int64_t ssm_v_dim = 0;       // inner_size / time_step_rank
  // Write the pre-2026 single `ssm_in` tensor instead of `attn_qkv` + `attn_gate` (§4.1).
  bool legacy_ssm_in = false;

  bool is_moe() const { return arch == Arch::Qwen3Moe || arch == Arch::Qwen3Next; }
  // qwen3next: layer il is full attention iff (il + 1) % interval == 0; other archs: always.
  bool is_full_attention(int64_t il) const;
};

// Throws naming the offending field when the numbers cannot describe a model (zero sizes, heads
// not dividing, v-heads not a multiple of k-heads, ...).
void validate_shape(const ModelShape& shape);

// `<arch>.*` keys with llama.cpp's names and types (u32 counts, f32 rope base / epsilon).
std::vector<std::pair<std::string, gguf::Value>> hparams_metadata(const ModelShape& shape);

enum class TensorRole {
  Embedding,  // token_embd
  Output,     // output (lm_head)
  Matrix,     // any other 2-D weight
  Experts,    // *_exps, 3-D
  Router,     // ffn_gate_inp: llama.cpp keeps it F32
  Conv,       // ssm_conv1d: kept F32
  Vector,     // 1-D: norms, biases, ssm_a, shared-expert gate
};

struct TensorSpec {
  std::string name;
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // ggml order: ne[0] innermost
  TensorRole role = TensorRole::Matrix;
  int layer = -1;  // -1 for global tensors

  int n_dims() const;
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  // True for the tensors llama.cpp's converter never quantizes (1-D, norms, router, conv).
  bool keep_f32() const;
};

// Every tensor of the model, globals first, then layer by layer.
std::vector<TensorSpec> tensor_manifest(const ModelShape& shape);

}  // namespace moeserve::convert
