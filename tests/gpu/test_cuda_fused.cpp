// The CUDA backend's fused ops (one kernel each) against their default implementations, which
// compose the plain ops, run on the scalar reference backend. Inputs are the strided views the
// forward passes; outputs start poisoned (NaN) so an element a kernel forgets shows. Tolerances
// as in test_cuda_ops.cpp: float math in another order, ~1e-5 of the largest reference value.
#include "gpu_test_util.h"

#include "core/error.h"

namespace moeserve::test {
namespace {

constexpr size_t kF = sizeof(float);

TEST(CudaFused, DeltaGatesOnGroupedViews) {
  auto ref = make_ref_backend();
  const int64_t ratio = 2, nk = 16, n = 5;  // the delta-net's grouped [b | a] projection
  const HostTensor ba = random_f32({2 * ratio * nk, n, 1, 1}, -4, 4);
  const size_t group = size_t(2 * ratio) * kF;
  const std::array<size_t, 4> nb{0, group, ba.t.nb[1], ba.t.nb[1] * size_t(n)};
  const HostTensor b = host_view(ba, {ratio, nk, n, 1}, nb), a = host_view(ba, {ratio, nk, n, 1}, nb, size_t(ratio) * kF);
  const HostTensor dt = random_f32({ratio, nk, 1, 1}, -1, 1), coef = random_f32({ratio, nk, 1, 1}, -3, -0.1f);
  HostTensor want_beta = poisoned(GgmlType::F32, {ratio, nk, n, 1}), want_g = poisoned(GgmlType::F32, {ratio, nk, n, 1});
  ref->delta_gates(want_beta.t, want_g.t, b.t, a.t, dt.t, coef.t);
  const HostTensor beta = poisoned(GgmlType::F32, want_beta.t.ne), g = poisoned(GgmlType::F32, want_g.t.ne);
  DevTensor d_beta = to_gpu(beta), d_g = to_gpu(g), d_b = to_gpu(b), d_a = to_gpu(a), d_dt = to_gpu(dt),
            d_coef = to_gpu(coef);
  gpu().delta_gates(d_beta.t, d_g.t, d_b.t, d_a.t, d_dt.t, d_coef.t);
  expect_close(from_gpu(d_beta, beta), want_beta, 1e-6, "beta");
  expect_close(from_gpu(d_g, g), want_g, 1e-5, "g");
}

// Head rows take a warp each (8 a block), rows longer than 256 a block each: q's rows and k's
// share blocks where their counts are not multiples of 8.
TEST(CudaFused, QkL2NormOnConvOutputViews) {
  auto ref = make_ref_backend();
  for (const auto& [dk, n] : {std::pair<int64_t, int64_t>{128, 3}, {64, 37}, {320, 2}}) {
    const int64_t nk = 4, width = 3 * dk * nk;  // [q | k | v] of the conv output
    const HostTensor u = random_f32({width, n, 1, 1}, -2, 2);
    const std::array<size_t, 4> nb{0, size_t(dk) * kF, u.t.nb[1], u.t.nb[1] * size_t(n)};
    const HostTensor q_src = host_view(u, {dk, nk, n, 1}, nb),
                     k_src = host_view(u, {dk, nk, n, 1}, nb, size_t(dk * nk) * kF);
    HostTensor want_q = poisoned(GgmlType::F32, {dk, nk, n, 1}), want_k = poisoned(GgmlType::F32, {dk, nk, n, 1});
    const float scale = float(1.0 / std::sqrt(double(dk)));
    ref->qk_l2_norm(want_q.t, want_k.t, q_src.t, k_src.t, 1e-6f, scale);
    const HostTensor q = poisoned(GgmlType::F32, want_q.t.ne), k = poisoned(GgmlType::F32, want_k.t.ne);
    DevTensor d_q = to_gpu(q), d_k = to_gpu(k), d_qs = to_gpu(q_src), d_ks = to_gpu(k_src);
    gpu().qk_l2_norm(d_q.t, d_k.t, d_qs.t, d_ks.t, 1e-6f, scale);
    expect_close(from_gpu(d_q, q), want_q, 1e-5, str_cat("q dk ", dk));
    expect_close(from_gpu(d_k, k), want_k, 1e-5, str_cat("k dk ", dk));
  }
}

// Per cache type: how far a stored value may move when its input moves by a float ulp (a
// rounding or quantization step flips): one step of the format, relative to the largest value.
double cache_tol(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 1e-5;
    case GgmlType::F16: return 1e-3;
    case GgmlType::BF16: return 8e-3;
    case GgmlType::Q8_0: return 1.6e-2;
    default: return 0.3;
  }
}

TEST(CudaFused, QkNormRopeStoreEveryCacheType) {
  auto ref = make_ref_backend();
  const int64_t hd = 256, nh = 4, nkv = 2, n = 3, n_ctx = 40, n_seq = 2;
  TestBatch batch;
  batch.add_run(1, 37, 1);
  batch.add_run(0, 5, 2);
  const RopeParams rope{64, 10000000.0f, true};  // partial rotation, as Qwen3-Next
  const HostTensor qg = random_f32({2 * hd * nh, n, 1, 1}, -3, 3);  // interleaved [q | gate] heads
  const HostTensor q_src =
      host_view(qg, {hd, nh, n, 1}, {0, 2 * size_t(hd) * kF, qg.t.nb[1], qg.t.nb[1] * size_t(n)});
  const HostTensor k = random_f32({hd, nkv, n, 1}, -3, 3), v = random_f32({hd * nkv, n, 1, 1}, -3, 3);
  const HostTensor qw = random_f32({hd, 1, 1, 1}, 0.5f, 1.5f), kw = random_f32({hd, 1, 1, 1}, 0.5f, 1.5f);
  const GgmlType types[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0};
  for (GgmlType kt : types) {
    const GgmlType vt = kt == GgmlType::Q4_0 ? GgmlType::F16 : GgmlType::Q8_0;  // K and V types differ too
    HostTensor want_q = poisoned(GgmlType::F32, {hd, nh, n, 1}), want_k = k.clone();
    HostTensor want_kc = HostTensor::make(kt, {hd * nkv, n_ctx, n_seq, 1}), want_vc = HostTensor::make(vt, {hd * nkv, n_ctx, n_seq, 1});
    ref->qk_norm_rope_store(want_q.t, q_src.t, qw.t, want_k.t, kw.t, v.t, want_kc.t, want_vc.t, 1e-6f, batch.info(), rope);
    const HostTensor q = poisoned(GgmlType::F32, want_q.t.ne);
    const HostTensor kc = HostTensor::make(kt, want_kc.t.ne), vc = HostTensor::make(vt, want_vc.t.ne);
    DevTensor d_q = to_gpu(q), d_qs = to_gpu(q_src), d_k = to_gpu(k), d_v = to_gpu(v), d_qw = to_gpu(qw),
              d_kw = to_gpu(kw), d_kc = to_gpu(kc), d_vc = to_gpu(vc);
    gpu().qk_norm_rope_store(d_q.t, d_qs.t, d_qw.t, d_k.t, d_kw.t, d_v.t, d_kc.t, d_vc.t, 1e-6f, batch.info(), rope);
    const std::string what = str_cat("K ", type_name(kt), " V ", type_name(vt));
    expect_close(from_gpu(d_q, q), want_q, 1e-5, what + " q");
    expect_close(from_gpu(d_k, k), want_k, 1e-5, what + " k");
    expect_close(from_gpu(d_kc, kc), want_kc, cache_tol(kt), what + " k cache");
    expect_close(from_gpu(d_vc, vc), want_vc, cache_tol(vt), what + " v cache");
  }
}

TEST(CudaFused, MulSigmoidGateView) {
  auto ref = make_ref_backend();
  const int64_t hd = 64, nh = 3, n = 4;
  const HostTensor qg = random_f32({2 * hd * nh, n, 1, 1}, -4, 4);
  const HostTensor gate = host_view(qg, {hd, nh, n, 1}, {0, 2 * size_t(hd) * kF, qg.t.nb[1], qg.t.nb[1] * size_t(n)},
                                    size_t(hd) * kF);
  const HostTensor o = random_f32({hd, nh, n, 1}, -2, 2);
  HostTensor want = o.clone();
  const HostTensor ref_qg = qg.clone();  // the gate is scratch
  ref->mul_sigmoid(want.t, want.t, host_view(ref_qg, gate.t.ne, gate.t.nb, size_t(hd) * kF).t);
  DevTensor d_o = to_gpu(o), d_gate = to_gpu(gate);
  gpu().mul_sigmoid(d_o.t, d_o.t, d_gate.t);
  expect_close(from_gpu(d_o, o), want, 1e-6, "o * sigmoid(gate), in place");
}

TEST(CudaFused, MoeSharedAddIntoResidual) {
  auto ref = make_ref_backend();
  const int64_t d = 2048, n = 3;
  const HostTensor h = random_f32({d, n, 1, 1}, -5, 5), routed = random_f32({d, n, 1, 1}, -2, 2);
  const HostTensor shared = random_f32({d, n, 1, 1}, -2, 2), gate = random_f32({1, n, 1, 1}, -4, 4);
  HostTensor want = h.clone();
  const HostTensor s2 = shared.clone(), g2 = gate.clone();
  ref->moe_shared_add(want.t, want.t, routed.t, s2.t, g2.t);
  DevTensor d_h = to_gpu(h), d_r = to_gpu(routed), d_s = to_gpu(shared), d_g = to_gpu(gate);
  gpu().moe_shared_add(d_h.t, d_h.t, d_r.t, d_s.t, d_g.t);
  expect_close(from_gpu(d_h, h), want, 1e-6, "h + routed + shared * sigmoid(gate)");
}

TEST(CudaFused, AddRmsNorm) {
  auto ref = make_ref_backend();
  for (const int64_t d : {2048, 200}) {  // a block per row; a warp per row
    const int64_t n = 3;
    const HostTensor h = random_f32({d, n, 1, 1}, -5, 5), y = random_f32({d, n, 1, 1}, -2, 2);
    const HostTensor w = random_f32({d, 1, 1, 1}, 0.5f, 1.5f);
    HostTensor want_h = h.clone(), want = poisoned(GgmlType::F32, {d, n, 1, 1});
    ref->add_rms_norm(want.t, want_h.t, y.t, w.t, 1e-6f);
    const HostTensor out = poisoned(GgmlType::F32, want.t.ne);
    DevTensor d_h = to_gpu(h), d_y = to_gpu(y), d_w = to_gpu(w), d_out = to_gpu(out);
    gpu().add_rms_norm(d_out.t, d_h.t, d_y.t, d_w.t, 1e-6f);
    expect_close(from_gpu(d_h, h), want_h, 1e-6, "h + y");
    expect_close(from_gpu(d_out, out), want, 1e-5, "rms_norm(h + y) * w");
  }
}

}  // namespace
}  // namespace moeserve::test
