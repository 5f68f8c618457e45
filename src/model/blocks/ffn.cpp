#include "model/blocks/ffn.h"

namespace moeserve::blocks {

Tensor dense_ffn(ForwardContext& ctx, const Tensor& x, const DenseFfnWeights& w) {
  const int64_t n = x.ne[1], n_ff = w.gate.ne[1];
  Tensor g = ctx.arena.f32(n_ff, n);
  Tensor u = ctx.arena.f32(n_ff, n);
  ctx.be.matmul_swiglu(g, w.gate, w.up, x, u);
  Tensor out = ctx.arena.f32(w.down.ne[1], n);
  ctx.be.matmul(out, w.down, g);
  return out;
}

void moe_ffn(ForwardContext& ctx, const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeWeights& w,
             const MoeConfig& cfg) {
  const int64_t n = h.ne[1], n_embd = h.ne[0];
  MoeFfnWeights mw;
  mw.router = w.router;
  mw.experts = w.experts;
  mw.n_expert_used = cfg.n_expert_used;
  mw.normalize = cfg.norm_topk;
  MoeFfnScratch s;
  s.m = ctx.arena.f32(n_embd, n);
  s.logits = ctx.arena.f32(cfg.n_expert, n);
  s.ids = ctx.arena.i32(cfg.n_expert_used, n);
  s.weights = ctx.arena.f32(cfg.n_expert_used, n);
  s.routed = ctx.arena.f32(n_embd, n);
  if (w.shared) {
    mw.shared_gate = w.shared->gate;
    mw.shared_up = w.shared->up;
    mw.shared_down = w.shared->down;
    const int64_t n_ff = w.shared->gate.ne[1];
    s.shared_h = ctx.arena.f32(n_ff, n);
    s.shared_up = ctx.arena.f32(n_ff, n);
    s.shared = ctx.arena.f32(n_embd, n);
    if (w.shared_gate) {
      mw.shared_inp = *w.shared_gate;
      s.gate = ctx.arena.f32(1, n);
    }
  }
  ctx.be.moe_ffn(h, y, norm, eps, mw, s);
}

DenseFfnWeights load_dense_ffn(WeightLoader& loader, const std::string& prefix, const std::string& suffix,
                               int64_t n_embd, int64_t n_ff) {
  DenseFfnWeights w;
  w.gate = loader.matrix(prefix + "ffn_gate" + suffix + ".weight", {n_embd, n_ff, 1, 1});
  w.up = loader.matrix(prefix + "ffn_up" + suffix + ".weight", {n_embd, n_ff, 1, 1});
  w.down = loader.matrix(prefix + "ffn_down" + suffix + ".weight", {n_ff, n_embd, 1, 1});
  return w;
}

MoeWeights load_moe(WeightLoader& loader, int64_t il, int64_t n_embd, const MoeConfig& cfg) {
  const std::string p = "blk." + std::to_string(il) + ".";
  const int64_t ne = cfg.n_expert, ff = cfg.n_ff_exp;
  MoeWeights w;
  w.router = loader.matrix(p + "ffn_gate_inp.weight", {n_embd, ne, 1, 1});
  if (loader.has(p + "ffn_gate_up_exps.weight")) {
    // Per expert, rows [0, ff) are the gate and [ff, 2ff) the up projection.
    const Tensor fused = loader.matrix(p + "ffn_gate_up_exps.weight", {n_embd, 2 * ff, ne, 1});
    w.experts.gate = fused.view({n_embd, ff, ne, 1}, fused.nb);
    w.experts.up = fused.view({n_embd, ff, ne, 1}, fused.nb, size_t(ff) * fused.nb[1]);
  } else {
    w.experts.gate = loader.matrix(p + "ffn_gate_exps.weight", {n_embd, ff, ne, 1});
    w.experts.up = loader.matrix(p + "ffn_up_exps.weight", {n_embd, ff, ne, 1});
  }
  w.experts.down = loader.matrix(p + "ffn_down_exps.weight", {ff, n_embd, ne, 1});
  if (cfg.n_ff_shexp > 0) {
    w.shared = load_dense_ffn(loader, p, "_shexp", n_embd, cfg.n_ff_shexp);
    w.shared_gate = loader.matrix_opt(p + "ffn_gate_inp_shexp.weight", {n_embd, 1, 1, 1});
  }
  return w;
}

}  // namespace moeserve::blocks
