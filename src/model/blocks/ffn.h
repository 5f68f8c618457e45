// Feed-forward blocks: the dense SwiGLU FFN and the sparse MoE (softmax router, top-k, optional
// renormalisation, routed experts, optional shared expert with a sigmoid gate; qwen3next.md §5).
#pragma once

#include <optional>

#include "model/model.h"

namespace moeserve::blocks {

struct DenseFfnWeights {
  Tensor gate, up;  // [n_embd, n_ff]
  Tensor down;      // [n_ff, n_embd]
};

struct MoeWeights {
  Tensor router;          // [n_embd, n_expert]
  ExpertWeights experts;  // gate/up [n_embd, n_ff_exp, n_expert], down [n_ff_exp, n_embd, n_expert]
  std::optional<DenseFfnWeights> shared;
  std::optional<Tensor> shared_gate;  // [n_embd, 1]: sigmoid(w . x) scales the shared expert
};

struct MoeConfig {
  int64_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0, n_ff_shexp = 0;
  bool norm_topk = true;
};

Tensor dense_ffn(ForwardContext& ctx, const Tensor& x, const DenseFfnWeights& w);
// The MoE half of a layer (Backend::moe_ffn): h += y; h += moe(rms_norm(h) * norm).
void moe_ffn(ForwardContext& ctx, const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeWeights& w,
             const MoeConfig& cfg);

DenseFfnWeights load_dense_ffn(WeightLoader& loader, const std::string& prefix, const std::string& suffix,
                               int64_t n_embd, int64_t n_ff);
// blk.<il>.ffn_gate_inp, ffn_{gate,up,down}_exps (or fused ffn_gate_up_exps) and, when
// cfg.n_ff_shexp > 0, ffn_{gate,up,down}_shexp + ffn_gate_inp_shexp.
MoeWeights load_moe(WeightLoader& loader, int64_t il, int64_t n_embd, const MoeConfig& cfg);

}  // namespace moeserve::blocks
