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

Tensor moe(ForwardContext& ctx, const Tensor& x, const MoeWeights& w, const MoeConfig& cfg, const Tensor* residual) {
  const int64_t n = x.ne[1];
  Tensor logits = ctx.arena.f32(cfg.n_expert, n);
  // The shared expert's gate is a product of x too: one pass with the router.
  const bool shared_gate = w.shared && w.shared_gate;
  Tensor gate = shared_gate ? ctx.arena.f32(1, n) : Tensor{};
  if (shared_gate) {
    ctx.be.matmuls(x, {{logits, w.router}, {gate, *w.shared_gate}});
  } else {
    ctx.be.matmul(logits, w.router, x);
  }
  Tensor ids = ctx.arena.i32(cfg.n_expert_used, n);
  Tensor weights = ctx.arena.f32(cfg.n_expert_used, n);
  ctx.be.moe_route(ids, weights, logits, cfg.norm_topk);
  Tensor out = ctx.arena.f32(x.ne[0], n);
  ctx.be.moe_experts(out, x, w.experts, ids, weights);
  if (w.shared) {
    Tensor s = dense_ffn(ctx, x, *w.shared);
    if (shared_gate) {
      if (residual) {
        ctx.be.moe_shared_add(*residual, *residual, out, s, gate);
        return *residual;
      }
      ctx.be.unary(gate, gate, UnaryOp::sigmoid);
      ctx.be.binary(s, s, gate, BinaryOp::mul);
    }
    ctx.be.binary(out, out, s, BinaryOp::add);
  }
  if (residual) {
    ctx.be.binary(*residual, *residual, out, BinaryOp::add);
    return *residual;
  }
  return out;
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
