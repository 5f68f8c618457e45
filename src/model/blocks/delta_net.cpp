#include "model/blocks/delta_net.h"

#include <cmath>

#include "core/error.h"

namespace moeserve::blocks {
namespace {

constexpr size_t kF = sizeof(float);

// Legacy ssm_in output, per k-head group of width 2*dk + 2*ratio*dv: [q | k | v (ratio heads) |
// z (ratio heads)] (qwen3next.md §4.2). Regroups into the conv input [q all | k all | v all] and z.
void regroup_legacy(ForwardContext& ctx, const Tensor& qkvz, const DeltaNetConfig& cfg, const Tensor& qkv,
                    const Tensor& z) {
  const int64_t n = qkvz.ne[1], nk = cfg.n_k_heads, dk = cfg.head_dim_k;
  const int64_t vw = cfg.ratio() * cfg.head_dim_v;  // v (or z) width of one group
  const size_t group = size_t(2 * dk + 2 * vw) * kF;
  auto src = [&](int64_t width, int64_t offset) {
    return qkvz.view({width, nk, n, 1}, {0, group, qkvz.nb[1], qkvz.nb[1] * size_t(n)}, size_t(offset) * kF);
  };
  auto dst = [&](const Tensor& t, int64_t width, int64_t offset) {
    return t.view({width, nk, n, 1}, {0, size_t(width) * kF, t.nb[1], t.nb[1] * size_t(n)}, size_t(offset) * kF);
  };
  ctx.be.copy(dst(qkv, dk, 0), src(dk, 0));
  ctx.be.copy(dst(qkv, dk, cfg.key_dim()), src(dk, dk));
  ctx.be.copy(dst(qkv, vw, 2 * cfg.key_dim()), src(vw, 2 * dk));
  ctx.be.copy(dst(z, vw, 0), src(vw, 2 * dk + vw));
}

}  // namespace

Tensor delta_net(ForwardContext& ctx, const StepInputs& in, const NormedInput& x, const DeltaNetWeights& w,
                 const DeltaNetConfig& cfg, const Tensor& conv_state, const Tensor& ssm_state) {
  Backend& be = ctx.be;
  const int64_t n = x.h.ne[1], nk = cfg.n_k_heads, nv = cfg.n_v_heads, dk = cfg.head_dim_k, dv = cfg.head_dim_v;
  const int64_t ratio = cfg.ratio(), channels = cfg.conv_channels();

  // The input projections, one pass over x.
  Tensor qkv = ctx.arena.f32(channels, n);
  Tensor z = ctx.arena.f32(cfg.value_dim(), n);
  Tensor ba = ctx.arena.f32(2 * nv, n);
  if (w.in) {
    Tensor qkvz = ctx.arena.f32(channels + cfg.value_dim(), n);
    norm_matmuls(ctx, x, {{qkvz, *w.in}, {ba, w.ba}});
    regroup_legacy(ctx, qkvz, cfg, qkv, z);
  } else {
    norm_matmuls(ctx, x, {{qkv, *w.qkv}, {z, *w.gate}, {ba, w.ba}});
  }

  // Gates per value head j = kh*ratio + r, read from the grouped ba layout; then the causal conv +
  // SiLU over [q | k | v], the heads, the delta rule and the gated norm, as one op.
  const size_t ba_group = size_t(2 * ratio) * kF;
  DeltaNetStep s;
  s.b = ba.view({ratio, nk, n, 1}, {0, ba_group, ba.nb[1], ba.nb[1] * size_t(n)});
  s.a = ba.view({ratio, nk, n, 1}, {0, ba_group, ba.nb[1], ba.nb[1] * size_t(n)}, size_t(ratio) * kF);
  s.dt_bias = w.dt_bias.reshape({ratio, nk, 1, 1});
  s.a_coef = w.a.reshape({ratio, nk, 1, 1});
  s.qkv = qkv;
  s.z = z.reshape({dv, nv, n, 1});
  s.conv_w = w.conv;
  s.conv_state = conv_state;
  s.ssm_state = ssm_state;
  s.norm = w.norm;
  s.eps = cfg.norm_eps;
  s.q_scale = float(1.0 / std::sqrt(double(dk)));
  s.beta = ctx.arena.f32(ratio, nk, n);
  s.g = ctx.arena.f32(ratio, nk, n);  // A * softplus(a + dt_bias) <= 0
  s.u = ctx.arena.f32(channels, n);
  s.q = ctx.arena.f32(dk, nk, n);
  s.k = ctx.arena.f32(dk, nk, n);
  s.o = ctx.arena.f32(dv, nv, n);
  Tensor y = ctx.arena.f32(dv, nv, n);
  s.y = y;
  be.delta_net_step(s, in.batch);

  Tensor out = ctx.arena.f32(w.out.ne[1], n);
  be.matmul(out, w.out, y.reshape({cfg.value_dim(), n, 1, 1}));
  return out;
}

DeltaNetWeights load_delta_net(WeightLoader& loader, int64_t il, int64_t n_embd, const DeltaNetConfig& cfg) {
  const std::string p = "blk." + std::to_string(il) + ".";
  DeltaNetWeights w;
  if (loader.has(p + "ssm_in.weight")) {
    w.in = loader.matrix(p + "ssm_in.weight", {n_embd, cfg.conv_channels() + cfg.value_dim(), 1, 1});
  } else if (loader.has(p + "attn_qkv.weight")) {
    w.qkv = loader.matrix(p + "attn_qkv.weight", {n_embd, cfg.conv_channels(), 1, 1});
    w.gate = loader.matrix(p + "attn_gate.weight", {n_embd, cfg.value_dim(), 1, 1});
  } else {
    fail(loader.path(), ": missing tensor ", p, "attn_qkv.weight (or the legacy ", p, "ssm_in.weight)");
  }
  w.ba = loader.matrix(p + "ssm_ba.weight", {n_embd, 2 * cfg.n_v_heads, 1, 1});
  w.conv = loader.vector_f32(p + "ssm_conv1d.weight", {cfg.conv_kernel, cfg.conv_channels(), 1, 1});
  w.dt_bias = loader.vector_f32(p + "ssm_dt.bias", {cfg.n_v_heads, 1, 1, 1});
  w.a = loader.vector_f32(p + "ssm_a", {cfg.n_v_heads, 1, 1, 1});
  w.norm = loader.vector_f32(p + "ssm_norm.weight", {cfg.head_dim_v, 1, 1, 1});
  w.out = loader.matrix(p + "ssm_out.weight", {cfg.value_dim(), n_embd, 1, 1});
  return w;
}

}  // namespace moeserve::blocks
