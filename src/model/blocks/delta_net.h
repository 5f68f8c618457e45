// Gated DeltaNet linear attention (qwen3next.md §4): projections, causal conv with its rolling
// state, L2-normalised q/k, decay and beta gates, the gated delta rule with its recurrent state,
// gated RMSNorm and the output projection. Both GGUF layouts of the input projection are read:
// attn_qkv + attn_gate (current converter) and the legacy fused ssm_in (HF grouped order).
#pragma once

#include <optional>

#include "model/blocks/norm.h"
#include "model/model.h"

namespace moeserve::blocks {

struct DeltaNetConfig {
  int64_t n_k_heads = 0, n_v_heads = 0, head_dim_k = 0, head_dim_v = 0, conv_kernel = 0;
  float norm_eps = 1e-6f;

  int64_t key_dim() const { return n_k_heads * head_dim_k; }
  int64_t value_dim() const { return n_v_heads * head_dim_v; }
  int64_t conv_channels() const { return 2 * key_dim() + value_dim(); }
  int64_t ratio() const { return n_v_heads / n_k_heads; }
};

struct DeltaNetWeights {
  std::optional<Tensor> qkv;   // [n_embd, conv_channels]: rows [q | k | v], head-major
  std::optional<Tensor> gate;  // [n_embd, value_dim]: z
  std::optional<Tensor> in;    // legacy [n_embd, conv_channels + value_dim], grouped per k-head
  Tensor ba;                   // [n_embd, 2*n_v_heads], grouped per k-head: [b.. (ratio) | a.. (ratio)]
  Tensor conv;                 // [conv_kernel, conv_channels] F32
  Tensor dt_bias;              // [n_v_heads] F32
  Tensor a;                    // [n_v_heads] F32, A = -exp(A_log)
  Tensor norm;                 // [head_dim_v] F32
  Tensor out;                  // [value_dim, n_embd]
};

// x [n_embd, n] -> [n_embd, n]; reads and updates the layer's conv and recurrent states.
Tensor delta_net(ForwardContext& ctx, const StepInputs& in, const NormedInput& x, const DeltaNetWeights& w,
                 const DeltaNetConfig& cfg, const Tensor& conv_state, const Tensor& ssm_state);

DeltaNetWeights load_delta_net(WeightLoader& loader, int64_t il, int64_t n_embd, const DeltaNetConfig& cfg);

}  // namespace moeserve::blocks
