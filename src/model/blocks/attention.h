// Multi-head causal self-attention with GQA over the KV cache, in the variants our architectures
// use: optional per-head q/k RMSNorm (qwen3*), NeoX or normal RoPE over all or the first n_rot
// dims, optional sigmoid output gate interleaved with the query (qwen3next.md §3).
#pragma once

#include <optional>

#include "model/blocks/norm.h"
#include "model/model.h"

namespace moeserve::blocks {

struct AttentionWeights {
  Tensor q;  // [n_embd, n_head*head_dim_k] (x2 with the gate: per head [query | gate])
  Tensor k;  // [n_embd, n_head_kv*head_dim_k]
  Tensor v;  // [n_embd, n_head_kv*head_dim_v]
  Tensor o;  // [n_head*head_dim_v, n_embd]
  std::optional<Tensor> q_norm, k_norm;  // [head_dim_k]
};

struct AttentionConfig {
  int64_t n_head = 0, n_head_kv = 0, head_dim_k = 0, head_dim_v = 0;
  RopeParams rope;
  float norm_eps = 1e-6f;
  bool output_gate = false;
};

// x [n_embd, n] -> [n_embd, n]; writes this step's K/V into the layer's caches.
Tensor attention(ForwardContext& ctx, const StepInputs& in, const NormedInput& x, const AttentionWeights& w,
                 const AttentionConfig& cfg, const Tensor& k_cache, const Tensor& v_cache);

// Loads blk.<il>.attn_{q,k,v,output}[,_q_norm,_k_norm] with the shapes cfg implies.
AttentionWeights load_attention(WeightLoader& loader, int64_t il, int64_t n_embd, const AttentionConfig& cfg,
                                bool qk_norm);

}  // namespace moeserve::blocks
