#include "model/blocks/attention.h"

#include <cmath>

namespace moeserve::blocks {

Tensor attention(ForwardContext& ctx, const StepInputs& in, const NormedInput& x, const AttentionWeights& w,
                 const AttentionConfig& cfg, const Tensor& k_cache, const Tensor& v_cache) {
  Backend& be = ctx.be;
  const int64_t n = x.h.ne[1], hk = cfg.head_dim_k, hv = cfg.head_dim_v;
  const int64_t q_width = cfg.n_head * hk * (cfg.output_gate ? 2 : 1);

  Tensor qg = ctx.arena.f32(q_width, n);
  Tensor k = ctx.arena.f32(cfg.n_head_kv * hk, n);
  Tensor v = ctx.arena.f32(cfg.n_head_kv * hv, n);
  norm_matmuls(ctx, x, {{qg, w.q}, {k, w.k}, {v, w.v}});

  // Query heads: with the gate, head h is qg[h*2hk .. h*2hk + hk) and its gate the next hk.
  const size_t head_stride = size_t(cfg.output_gate ? 2 : 1) * size_t(hk) * sizeof(float);
  const Tensor q_view = qg.view({hk, cfg.n_head, n, 1}, {0, head_stride, qg.nb[1], qg.nb[1] * size_t(n)});
  Tensor q = ctx.arena.f32(hk, cfg.n_head, n);
  Tensor k3 = k.reshape({hk, cfg.n_head_kv, n, 1});
  if (w.q_norm && w.k_norm) {
    be.qk_norm_rope_store(q, q_view, *w.q_norm, k3, *w.k_norm, v, k_cache, v_cache, cfg.norm_eps, in.batch, cfg.rope);
  } else {
    if (w.q_norm) {
      be.rms_norm(q, q_view, &*w.q_norm, cfg.norm_eps);
    } else {
      be.copy(q, q_view);
    }
    if (w.k_norm) be.rms_norm(k3, k3, &*w.k_norm, cfg.norm_eps);
    be.rope(q, q, in.batch, cfg.rope);
    be.rope(k3, k3, in.batch, cfg.rope);
    be.kv_store(k_cache, k, in.batch);
    be.kv_store(v_cache, v, in.batch);
  }

  Tensor o = ctx.arena.f32(hv, cfg.n_head, n);
  be.attention(o, q, k_cache, v_cache, in.batch, AttentionParams{float(1.0 / std::sqrt(double(hk))), ctx.flash_attention});

  Tensor out = ctx.arena.f32(w.o.ne[1], n);
  if (cfg.output_gate) {
    const Tensor gate_view =
        qg.view({hk, cfg.n_head, n, 1}, {0, head_stride, qg.nb[1], qg.nb[1] * size_t(n)}, size_t(hk) * sizeof(float));
    be.gated_matmul(out, w.o, o, gate_view);  // o * sigmoid(gate) into the product; qg is scratch from here on
  } else {
    be.matmul(out, w.o, o.reshape({hv * cfg.n_head, n, 1, 1}));
  }
  return out;
}

AttentionWeights load_attention(WeightLoader& loader, int64_t il, int64_t n_embd, const AttentionConfig& cfg,
                                bool qk_norm) {
  const std::string p = "blk." + std::to_string(il) + ".";
  AttentionWeights w;
  w.q = loader.matrix(p + "attn_q.weight", {n_embd, cfg.n_head * cfg.head_dim_k * (cfg.output_gate ? 2 : 1), 1, 1});
  w.k = loader.matrix(p + "attn_k.weight", {n_embd, cfg.n_head_kv * cfg.head_dim_k, 1, 1});
  w.v = loader.matrix(p + "attn_v.weight", {n_embd, cfg.n_head_kv * cfg.head_dim_v, 1, 1});
  w.o = loader.matrix(p + "attn_output.weight", {cfg.n_head * cfg.head_dim_v, n_embd, 1, 1});
  if (qk_norm) {
    w.q_norm = loader.vector_f32(p + "attn_q_norm.weight", {cfg.head_dim_k, 1, 1, 1});
    w.k_norm = loader.vector_f32(p + "attn_k_norm.weight", {cfg.head_dim_k, 1, 1, 1});
  }
  return w;
}

}  // namespace moeserve::blocks
