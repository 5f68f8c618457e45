// Hyper-parameters of a loaded model, read from GGUF keys by its architecture file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moeserve {

enum class LayerKind : uint8_t { attention, delta_net };

struct HParams {
  std::string arch;             // general.architecture
  int64_t n_vocab = 0;          // rows of token_embd
  int64_t n_ctx_train = 0;      // <arch>.context_length
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  std::vector<LayerKind> layers;  // [n_layer]

  // Attention.
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim_k = 0;
  int64_t head_dim_v = 0;
  int n_rot = 0;
  float rope_base = 10000.0f;
  bool rope_neox = false;
  float norm_eps = 1e-6f;

  // Feed-forward: dense, or routed experts (+ shared expert).
  int64_t n_ff = 0;
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_ff_exp = 0;
  int64_t n_ff_shexp = 0;
  bool norm_topk = true;

  // Gated DeltaNet (qwen3next.md §1).
  int64_t ssm_conv_kernel = 0;
  int64_t ssm_head_dim_k = 0;   // ssm.state_size
  int64_t ssm_n_k_heads = 0;    // ssm.group_count
  int64_t ssm_n_v_heads = 0;    // ssm.time_step_rank
  int64_t ssm_head_dim_v = 0;   // ssm.inner_size / ssm.time_step_rank

  int64_t n_attention_layers() const;
  int64_t n_delta_net_layers() const;
  int64_t ssm_conv_channels() const { return 2 * ssm_n_k_heads * ssm_head_dim_k + ssm_n_v_heads * ssm_head_dim_v; }
};

}  // namespace moeserve
