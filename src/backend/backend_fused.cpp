// The fused ops of the op table: shape checks, and the default implementations that compose the
// plain ops in the order the forward issued them before fusing (results identical bit for bit).
#include <array>

#include "backend/backend.h"
#include "core/error.h"

namespace moeserve {
namespace {

void check(bool ok, const char* op, const char* what) {
  if (!ok) fail("internal: op ", op, ": ", what);
}

bool all_f32(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (t->type != GgmlType::F32) return false;
  }
  return true;
}

bool broadcasts_to(const Tensor& b, const Tensor& a) {
  for (int d = 0; d < 4; ++d) {
    if (b.ne[d] != a.ne[d] && b.ne[d] != 1) return false;
  }
  return true;
}

}  // namespace

void Backend::delta_gates(const Tensor& beta, const Tensor& g, const Tensor& b, const Tensor& a, const Tensor& dt_bias,
                          const Tensor& a_coef) {
  const char* op = "delta_gates";
  const OpScope scope(*this, op);
  check(all_f32({&beta, &g, &b, &a, &dt_bias, &a_coef}), op, "every tensor must be F32");
  check(beta.ne == b.ne && g.ne == a.ne && a.ne == b.ne, op, "beta, g, b and a must have one shape");
  check(broadcasts_to(dt_bias, a) && broadcasts_to(a_coef, a), op, "dt_bias and a_coef must broadcast to a");
  do_delta_gates(beta, g, b, a, dt_bias, a_coef);
}

void Backend::qk_l2_norm(const Tensor& q, const Tensor& k, const Tensor& q_src, const Tensor& k_src, float eps,
                         float q_scale) {
  const char* op = "qk_l2_norm";
  const OpScope scope(*this, op);
  check(all_f32({&q, &k, &q_src, &k_src}), op, "every tensor must be F32");
  check(q.ne == q_src.ne && k.ne == k_src.ne && q.ne[0] == k.ne[0], op, "q/k and their sources must agree in shape");
  do_qk_l2_norm(q, k, q_src, k_src, eps, q_scale);
}

void Backend::qk_norm_rope_store(const Tensor& q, const Tensor& q_src, const Tensor& q_norm, const Tensor& k,
                                 const Tensor& k_norm, const Tensor& v, const Tensor& k_cache, const Tensor& v_cache,
                                 float eps, const BatchInfo& batch, const RopeParams& rope) {
  const char* op = "qk_norm_rope_store";
  const OpScope scope(*this, op);
  check(all_f32({&q, &q_src, &q_norm, &k, &k_norm, &v}), op, "q, k, v and the norm weights must be F32");
  check(q.ne == q_src.ne && k.ne[0] == q.ne[0] && k.ne[2] == q.ne[2] && k.ne[3] == 1, op,
        "q [hd, n_head, n], q_src like q, k [hd, n_head_kv, n]");
  check(q_norm.ne[0] == q.ne[0] && q_norm.n_rows() == 1 && k_norm.ne[0] == q.ne[0] && k_norm.n_rows() == 1, op,
        "norm weights must be [hd]");
  check(k.is_contiguous() && v.ne[1] == k.ne[2] && v.ne[2] == 1 && v.ne[3] == 1, op, "k contiguous, v [width, n]");
  check(k_cache.ne[0] == k.ne[0] * k.ne[1] && v_cache.ne[0] == v.ne[0], op, "cache widths must match k and v");
  do_qk_norm_rope_store(q, q_src, q_norm, k, k_norm, v, k_cache, v_cache, eps, batch, rope);
}

void Backend::mul_sigmoid(const Tensor& dst, const Tensor& x, const Tensor& gate) {
  const char* op = "mul_sigmoid";
  const OpScope scope(*this, op);
  check(all_f32({&dst, &x, &gate}), op, "every tensor must be F32");
  check(dst.ne == x.ne && broadcasts_to(gate, x), op, "dst like x, gate broadcast to x");
  do_mul_sigmoid(dst, x, gate);
}

void Backend::moe_shared_add(const Tensor& dst, const Tensor& residual, const Tensor& routed, const Tensor& shared,
                             const Tensor& gate) {
  const char* op = "moe_shared_add";
  const OpScope scope(*this, op);
  check(all_f32({&dst, &residual, &routed, &shared, &gate}), op, "every tensor must be F32");
  check(dst.ne == residual.ne && dst.ne == routed.ne && dst.ne == shared.ne, op, "dst, residual, routed, shared: one shape");
  check(gate.ne[0] == 1 && broadcasts_to(gate, dst), op, "gate must be [1, n]");
  do_moe_shared_add(dst, residual, routed, shared, gate);
}

void Backend::add_rms_norm(const Tensor& dst, const Tensor& h, const Tensor& y, const Tensor& weight, float eps) {
  const char* op = "add_rms_norm";
  const OpScope scope(*this, op);
  check(all_f32({&dst, &h, &y, &weight}), op, "every tensor must be F32");
  check(dst.ne == h.ne && y.ne == h.ne && weight.ne[0] == h.ne[0] && weight.n_rows() == 1, op,
        "dst, h, y: one shape; weight [d]");
  do_add_rms_norm(dst, h, y, weight, eps);
}

void Backend::matmuls(const Tensor& x, std::initializer_list<MatmulProduct> products) {
  matmuls(x, std::span<const MatmulProduct>(products.begin(), products.size()));
}

namespace {

// The products of matmuls and norm_matmuls: dst [m, n] = w [k, m] x [k, n].
void check_products(const char* op, const Tensor& x, std::span<const MatmulProduct> products) {
  check(products.size() >= 1 && products.size() <= size_t(Backend::kMaxMatmuls), op, "takes 1 to 4 products");
  check(x.type == GgmlType::F32 && x.ne[2] == 1 && x.ne[3] == 1, op, "x must be F32 [k, n]");
  for (const MatmulProduct& p : products) {
    check(p.dst.type == GgmlType::F32 && p.dst.ne[2] == 1 && p.dst.ne[3] == 1, op, "each dst must be F32 [m, n]");
    check(p.w.ne[0] == x.ne[0] && p.w.ne[2] == 1 && p.w.ne[3] == 1 && p.dst.ne[0] == p.w.ne[1] && p.dst.ne[1] == x.ne[1],
          op, "each product: dst [m, n] = w [k, m] x [k, n]");
    check(p.w.nb[1] >= row_bytes(p.w.type, p.w.ne[0]), op, "weight rows must be contiguous");
  }
}

}  // namespace

void Backend::matmuls(const Tensor& x, std::span<const MatmulProduct> products) {
  const char* op = "matmuls";
  const OpScope scope(*this, op);
  check_products(op, x, products);
  do_matmuls(x, products);
}

void Backend::matmul_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                            const Tensor& scratch) {
  const char* op = "matmul_swiglu";
  const OpScope scope(*this, op);
  check(all_f32({&dst, &x, &scratch}), op, "dst, x and scratch must be F32");
  check(gate.type == up.type && gate.ne == up.ne, op, "gate and up must have one type and shape");
  check(x.ne[2] == 1 && x.ne[3] == 1 && gate.ne[2] == 1 && gate.ne[3] == 1 && gate.ne[0] == x.ne[0], op,
        "gate, up [k, m] and x [k, n]");
  check(dst.ne[0] == gate.ne[1] && dst.ne[1] == x.ne[1] && dst.ne[2] == 1 && dst.ne[3] == 1 && scratch.ne == dst.ne, op,
        "dst and scratch must be [m, n]");
  check(gate.nb[1] >= row_bytes(gate.type, gate.ne[0]) && up.nb[1] >= row_bytes(up.type, up.ne[0]), op,
        "weight rows must be contiguous");
  do_matmul_swiglu(dst, gate, up, x, scratch);
}

void Backend::norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                           std::initializer_list<MatmulProduct> products) {
  norm_matmuls(x, weight, eps, scratch, std::span<const MatmulProduct>(products.begin(), products.size()));
}

void Backend::norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                           std::span<const MatmulProduct> products) {
  const char* op = "norm_matmuls";
  const OpScope scope(*this, op);
  check(all_f32({&x, &weight, &scratch}), op, "x, weight and scratch must be F32");
  check(scratch.ne == x.ne && weight.ne[0] == x.ne[0] && weight.n_rows() == 1, op, "scratch like x, weight [k]");
  check_products(op, x, products);
  do_norm_matmuls(x, weight, eps, scratch, products);
}

void Backend::gated_matmul(const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate) {
  const char* op = "gated_matmul";
  const OpScope scope(*this, op);
  check(all_f32({&dst, &x, &gate}), op, "dst, x and gate must be F32");
  check(x.is_contiguous() && x.ne[3] == 1 && gate.ne == x.ne, op, "x [d0, d1, n] contiguous, gate like x");
  check(w.ne[0] == x.ne[0] * x.ne[1] && w.ne[2] == 1 && w.ne[3] == 1 && dst.ne[0] == w.ne[1] && dst.ne[1] == x.ne[2] &&
            dst.ne[2] == 1 && dst.ne[3] == 1,
        op, "dst [m, n] = w [d0 * d1, m] x [d0, d1, n]");
  do_gated_matmul(dst, w, x, gate);
}

void Backend::delta_net_step(const DeltaNetStep& s, const BatchInfo& batch) {
  const char* op = "delta_net_step";
  const OpScope scope(*this, op);
  check(all_f32({&s.y, &s.qkv, &s.z, &s.b, &s.a, &s.dt_bias, &s.a_coef, &s.conv_w, &s.conv_state, &s.ssm_state,
                 &s.norm, &s.u, &s.q, &s.k, &s.beta, &s.g, &s.o}),
        op, "every tensor must be F32");
  const int64_t dk = s.q.ne[0], nk = s.q.ne[1], n = s.qkv.ne[1], dv = s.y.ne[0], nv = s.y.ne[1], ratio = s.b.ne[0];
  const int64_t channels = 2 * dk * nk + dv * nv, taps = s.conv_w.ne[0];
  const std::array<int64_t, 4> heads_v{dv, nv, n, 1}, heads_k{dk, nk, n, 1}, gates{ratio, nk, n, 1};
  check(s.y.ne == heads_v && s.z.ne == heads_v && s.o.ne == heads_v, op, "y, z and o must be [d_v, n_v_heads, n]");
  check(s.q.ne == heads_k && s.k.ne == heads_k, op, "q and k must be [d_k, n_k_heads, n]");
  check(nv == ratio * nk && s.b.ne == gates && s.a.ne == gates && s.beta.ne == gates && s.g.ne == gates, op,
        "b, a, beta and g must be [n_v_heads / n_k_heads, n_k_heads, n]");
  check(s.dt_bias.ne == std::array<int64_t, 4>{ratio, nk, 1, 1} && s.a_coef.ne == s.dt_bias.ne, op,
        "dt_bias and a_coef must be [ratio, n_k_heads]");
  const std::array<int64_t, 4> conv_in{channels, n, 1, 1};
  check(s.qkv.ne == conv_in && s.u.ne == conv_in && s.conv_w.ne[1] == channels && taps >= 2 &&
            s.conv_state.ne[0] == (taps - 1) * channels,
        op, "qkv and u [C, n], conv_w [K, C], conv_state [(K-1)*C, n_seq] with C = 2*d_k*n_k_heads + d_v*n_v_heads");
  check(s.ssm_state.ne[0] == dk * dv * nv && s.norm.ne[0] == dv && s.norm.n_rows() == 1, op,
        "ssm_state must be [d_k*d_v*n_v_heads, n_seq] and norm [d_v]");
  check(s.u.is_contiguous() && s.q.is_contiguous() && s.k.is_contiguous() && s.beta.is_contiguous() &&
            s.g.is_contiguous() && s.o.is_contiguous(),
        op, "the scratch tensors must be contiguous");
  do_delta_net_step(s, batch);
}

void Backend::moe_ffn(const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeFfnWeights& w,
                      const MoeFfnScratch& s) {
  const char* op = "moe_ffn";
  const OpScope scope(*this, op);
  const int64_t n_embd = h.ne[0], n = h.ne[1], k = w.n_expert_used, n_expert = w.router.ne[1];
  const bool shared = w.shared_gate.data != nullptr, gated = shared && w.shared_inp.data != nullptr;
  check(h.type == GgmlType::F32 && h.ne[2] == 1 && h.ne[3] == 1 && y.ne == h.ne, op, "h and y must be F32 [n_embd, n]");
  check(w.router.ne[0] == n_embd && w.experts.gate.ne[0] == n_embd && k >= 1 && k <= n_expert, op,
        "router [n_embd, n_expert], experts over n_embd, 1 <= n_expert_used <= n_expert");
  check(s.m.ne == h.ne && s.routed.ne == h.ne && s.logits.ne[0] == n_expert && s.logits.ne[1] == n &&
            s.ids.ne[0] == k && s.ids.ne[1] == n && s.weights.ne == s.ids.ne,
        op, "scratch m, routed [n_embd, n], logits [n_expert, n], ids and weights [n_expert_used, n]");
  if (shared) {
    check(w.shared_up.data && w.shared_down.data && s.shared.ne == h.ne && s.shared_h.ne[0] == w.shared_gate.ne[1] &&
              s.shared_h.ne[1] == n && s.shared_up.ne == s.shared_h.ne,
          op, "shared expert: gate, up, down; scratch shared [n_embd, n], shared_h and shared_up [n_ff_sh, n]");
    check(!gated || (s.gate.ne[0] == 1 && s.gate.ne[1] == n), op, "scratch gate must be [1, n]");
  }
  do_moe_ffn(h, y, norm, eps, w, s);
}

// ---- defaults ------------------------------------------------------------------------------

void Backend::do_delta_gates(const Tensor& beta, const Tensor& g, const Tensor& b, const Tensor& a,
                             const Tensor& dt_bias, const Tensor& a_coef) {
  unary(beta, b, UnaryOp::sigmoid);
  binary(g, a, dt_bias, BinaryOp::add);
  unary(g, g, UnaryOp::softplus);
  binary(g, g, a_coef, BinaryOp::mul);
}

void Backend::do_qk_l2_norm(const Tensor& q, const Tensor& k, const Tensor& q_src, const Tensor& k_src, float eps,
                            float q_scale) {
  l2_norm(q, q_src, eps);
  l2_norm(k, k_src, eps);
  scale(q, q, q_scale);
}

void Backend::do_qk_norm_rope_store(const Tensor& q, const Tensor& q_src, const Tensor& q_norm, const Tensor& k,
                                    const Tensor& k_norm, const Tensor& v, const Tensor& k_cache,
                                    const Tensor& v_cache, float eps, const BatchInfo& batch, const RopeParams& rope) {
  rms_norm(q, q_src, &q_norm, eps);
  rms_norm(k, k, &k_norm, eps);
  this->rope(q, q, batch, rope);
  this->rope(k, k, batch, rope);
  kv_store(k_cache, k.reshape({k.ne[0] * k.ne[1], k.ne[2], 1, 1}), batch);
  kv_store(v_cache, v, batch);
}

void Backend::do_mul_sigmoid(const Tensor& dst, const Tensor& x, const Tensor& gate) {
  unary(gate, gate, UnaryOp::sigmoid);
  binary(dst, x, gate, BinaryOp::mul);
}

void Backend::do_moe_shared_add(const Tensor& dst, const Tensor& residual, const Tensor& routed, const Tensor& shared,
                                const Tensor& gate) {
  unary(gate, gate, UnaryOp::sigmoid);
  binary(shared, shared, gate, BinaryOp::mul);
  binary(shared, routed, shared, BinaryOp::add);
  binary(dst, residual, shared, BinaryOp::add);
}

void Backend::do_matmuls(const Tensor& x, std::span<const MatmulProduct> products) {
  for (const MatmulProduct& p : products) matmul(p.dst, p.w, x);
}

void Backend::do_matmul_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                               const Tensor& scratch) {
  matmul(dst, gate, x);
  matmul(scratch, up, x);
  swiglu(dst, dst, scratch);
}

void Backend::do_norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                              std::span<const MatmulProduct> products) {
  rms_norm(scratch, x, &weight, eps);
  matmuls(scratch, products);
}

void Backend::do_gated_matmul(const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate) {
  mul_sigmoid(x, x, gate);
  matmul(dst, w, x.reshape({x.ne[0] * x.ne[1], x.ne[2], 1, 1}));
}

void Backend::do_delta_net_step(const DeltaNetStep& s, const BatchInfo& batch) {
  constexpr size_t kF = sizeof(float);
  const int64_t dk = s.q.ne[0], nk = s.q.ne[1], n = s.qkv.ne[1], dv = s.y.ne[0], nv = s.y.ne[1];
  delta_gates(s.beta, s.g, s.b, s.a, s.dt_bias, s.a_coef);
  ssm_conv(s.u, s.qkv, s.conv_state, s.conv_w, batch);
  const Tensor& u = s.u;
  const std::array<size_t, 4> k_nb{0, size_t(dk) * kF, u.nb[1], u.nb[1] * size_t(n)};
  const Tensor q_src = u.view({dk, nk, n, 1}, k_nb), k_src = u.view({dk, nk, n, 1}, k_nb, size_t(nk * dk) * kF);
  const Tensor v = u.view({dv, nv, n, 1}, {0, size_t(dv) * kF, u.nb[1], u.nb[1] * size_t(n)}, size_t(2 * nk * dk) * kF);
  qk_l2_norm(s.q, s.k, q_src, k_src, s.eps, s.q_scale);
  gated_delta_net(s.o, s.q, s.k, v, s.g.reshape({nv, n, 1, 1}), s.beta.reshape({nv, n, 1, 1}), s.ssm_state, batch);
  rms_norm_gated(s.y, s.o, s.norm, s.z, s.eps);
}

void Backend::do_add_rms_norm(const Tensor& dst, const Tensor& h, const Tensor& y, const Tensor& weight, float eps) {
  binary(h, h, y, BinaryOp::add);
  rms_norm(dst, h, &weight, eps);
}

void Backend::do_moe_ffn(const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeFfnWeights& w,
                         const MoeFfnScratch& s) {
  const bool shared = w.shared_gate.data != nullptr, gated = shared && w.shared_inp.data != nullptr;
  add_rms_norm(s.m, h, y, norm, eps);
  if (gated) {
    matmuls(s.m, {{s.logits, w.router}, {s.gate, w.shared_inp}});
  } else {
    matmul(s.logits, w.router, s.m);
  }
  moe_route(s.ids, s.weights, s.logits, w.normalize);
  moe_experts(s.routed, s.m, w.experts, s.ids, s.weights);
  if (shared) {
    matmul_swiglu(s.shared_h, w.shared_gate, w.shared_up, s.m, s.shared_up);
    matmul(s.shared, w.shared_down, s.shared_h);
    if (gated) return moe_shared_add(h, h, s.routed, s.shared, s.gate);
    binary(s.routed, s.routed, s.shared, BinaryOp::add);
  }
  binary(h, h, s.routed, BinaryOp::add);
}

}  // namespace moeserve
