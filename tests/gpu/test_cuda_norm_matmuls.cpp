// Backend::norm_matmuls on the CUDA backend (the products of rms_norm(x) * weight, the norm folded
// into the product kernels' in-block quantization of one or two columns) against
// * the same backend's composition rms_norm + matmuls: the fused prologue takes the row's sum of
//   squares in the rms_norm kernel's order, so the values should be those of the composition; held
//   to 1e-5 of the largest output (the number of elements that differ at all is printed);
// * the scalar reference backend's composition, within the activation rounding of each weight
//   type (as test_cuda_products.cpp: Q8_0 / Q4_0 see the same int8 blocks as the reference up to
//   its F16 block scales; the K- and i-quants see Q8_K activations on the reference; more than 8
//   columns take the prefill tiles with F16 activations).
// Every weight type of the decode kernels, 1 and 2 columns (fused), 3 and 9 (the composition),
// odd row counts, several products of mixed types, strided poisoned outputs, strided x, scratch
// aliasing x (the output head's use); and tall products (the output head's shape class), which
// the row kernel runs as blocks of several passes, with and without the norm.
#include <cstdio>
#include <tuple>

#include "core/error.h"
#include "gpu_test_util.h"

namespace moeserve::test {
namespace {

const GgmlType kTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K,    GgmlType::Q5_K,   GgmlType::Q6_K,
                           GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ3_XXS, GgmlType::F32, GgmlType::F16};

constexpr float kEps = 1e-6f;

double ref_tol(GgmlType t, int64_t n) {
  if (t == GgmlType::F32) return 2e-5;
  if (t == GgmlType::F16) return 1e-2;
  if (type_traits(t).block_size != 32) return 5e-2;
  return n <= 8 ? 1e-3 : 1e-2;
}

// dst [m, n] poisoned, rows m + 3 floats apart.
HostTensor strided_out(int64_t m, int64_t n) {
  const HostTensor base = poisoned(GgmlType::F32, {m + 3, n, 1, 1});
  return host_view(base, {m, n, 1, 1}, {sizeof(float), base.t.nb[1], base.t.nb[1] * size_t(n), base.t.nb[1] * size_t(n)});
}

// x [k, n] with rows k + 8 floats apart, values of a hidden state (far from unit RMS).
HostTensor strided_x(int64_t k, int64_t n) {
  const HostTensor base = random_f32({k + 8, n, 1, 1}, -30.0f, 30.0f);
  return host_view(base, {k, n, 1, 1}, {sizeof(float), base.t.nb[1], base.t.nb[1] * size_t(n), base.t.nb[1] * size_t(n)});
}

struct Spec {
  GgmlType type;
  int64_t m;
};

void run_products(Backend& be, const Tensor& x, const Tensor* norm, const Tensor& scratch,
                  const std::vector<MatmulProduct>& p) {
  const std::span<const MatmulProduct> s(p);
  if (norm) {
    be.norm_matmuls(x, *norm, kEps, scratch, s);
  } else {
    be.matmuls(x, s);
  }
}

// tol: against the reference, where the type's default (ref_tol) does not apply.
void check(const std::vector<Spec>& specs, int64_t k, int64_t n, double tol = 0) {
  auto ref = make_ref_backend();
  const HostTensor x = strided_x(k, n), norm = random_f32({k, 1, 1, 1}, 0.5f, 1.5f);
  const DevTensor d_x = to_gpu(x), d_norm = to_gpu(norm);
  std::vector<HostTensor> ws, outs;
  std::vector<DevTensor> d_ws, d_fused, d_chain;
  for (const Spec& s : specs) {
    ws.push_back(random_typed(s.type, {k, s.m, 1, 1}, 0.5f));
    outs.push_back(strided_out(s.m, n));
    d_ws.push_back(to_gpu(ws.back()));
    d_fused.push_back(to_gpu(outs.back()));
    d_chain.push_back(to_gpu(outs.back()));
  }
  std::vector<MatmulProduct> fused, chain, host;
  std::vector<HostTensor> want;
  for (size_t i = 0; i < specs.size(); ++i) {
    fused.push_back({d_fused[i].t, d_ws[i].t});
    chain.push_back({d_chain[i].t, d_ws[i].t});
    want.push_back(strided_out(specs[i].m, n));
    host.push_back({want.back().t, ws[i].t});
  }
  const HostTensor scratch = poisoned(GgmlType::F32, {k, n, 1, 1});
  const DevTensor d_scratch = to_gpu(scratch), d_normed = to_gpu(scratch);
  gpu().norm_matmuls(d_x.t, d_norm.t, kEps, d_scratch.t, std::span<const MatmulProduct>(fused));
  gpu().rms_norm(d_normed.t, d_x.t, &d_norm.t, kEps);
  gpu().matmuls(d_normed.t, std::span<const MatmulProduct>(chain));
  HostTensor ref_scratch = scratch.clone();
  ref->norm_matmuls(x.t, norm.t, kEps, ref_scratch.t, std::span<const MatmulProduct>(host));
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string what = str_cat("norm_matmuls product ", i, " ", type_name(specs[i].type), " ", k, "x",
                                     specs[i].m, " n=", n);
    const HostTensor got = from_gpu(d_fused[i], outs[i]), comp = from_gpu(d_chain[i], outs[i]);
    expect_close(got, comp, 1e-5, what + " vs rms_norm + matmuls");
    const std::vector<float> a = to_floats(got.t), b = to_floats(comp.t);
    size_t diff = 0;
    for (size_t e = 0; e < a.size(); ++e) diff += !(a[e] == b[e]);
    if (diff > 0) std::printf("%s: %zu of %zu elements differ from rms_norm + matmuls\n", what.c_str(), diff, a.size());
    expect_close(got, want[i], tol > 0 ? tol : ref_tol(specs[i].type, n), what + " vs reference");
  }
}

TEST(CudaNormMatmuls, EveryTypeFusedAndComposed) {
  for (GgmlType t : kTypes) {
    for (int64_t n : {1, 2, 3, 9}) {
      check({{t, 37}}, 2048, n);
      // Several products, two weight types (runs of one type share a launch).
      check({{t, 300}, {GgmlType::Q8_0, 130}, {t, 5}}, 2048, n);
    }
  }
}

TEST(CudaNormMatmuls, OddShapes) {
  for (int64_t n : {1, 2, 5}) {
    // The rms_norm kernel's three summation orders: one warp (up to 256), 256 threads, 512 threads
    // (1280: threads with fewer values than others).
    check({{GgmlType::Q8_0, 1}, {GgmlType::Q8_0, 33}}, 256, n);
    check({{GgmlType::Q4_0, 61}}, 512, n);
    check({{GgmlType::Q8_0, 7}, {GgmlType::Q4_0, 3}}, 1280, n);
    check({{GgmlType::IQ2_XS, 11}}, 4096, n);  // the delta-net's output width
    // Rows without 16-byte alignment (3 Q8_0 blocks, 630-byte Q6_K rows): the composition. The
    // Q8_0 rows then take the decode kernel with F32 activations while the reference rounds them
    // to Q8_0 blocks, one of three blocks per row: measured 1.4e-2 of the largest output at n=1.
    check({{GgmlType::Q8_0, 5}}, 96, n, 3e-2);
    check({{GgmlType::Q6_K, 17}, {GgmlType::Q8_0, 9}}, 768, n);
  }
}

// The output head's use: scratch is x itself (normed in place when the norm is not folded).
TEST(CudaNormMatmuls, ScratchAliasingX) {
  auto ref = make_ref_backend();
  for (int64_t n : {1, 2, 4}) {
    const int64_t k = 1024, m = 77;
    const HostTensor x = random_f32({k, n, 1, 1}, -8.0f, 8.0f), norm = random_f32({k, 1, 1, 1}, 0.5f, 1.5f);
    const HostTensor w = random_typed(GgmlType::Q8_0, {k, m, 1, 1}, 0.5f);
    const DevTensor d_x = to_gpu(x), d_norm = to_gpu(norm), d_w = to_gpu(w);
    const HostTensor out = strided_out(m, n);
    DevTensor d_out = to_gpu(out);
    gpu().norm_matmuls(d_x.t, d_norm.t, kEps, d_x.t, {{d_out.t, d_w.t}});
    HostTensor want = strided_out(m, n);
    const HostTensor hx = x.clone();
    ref->norm_matmuls(hx.t, norm.t, kEps, hx.t, {{want.t, w.t}});
    expect_close(from_gpu(d_out, out), want, ref_tol(GgmlType::Q8_0, n), str_cat("aliased scratch n=", n));
  }
}

// Tall products (more than two waves of one-pass blocks): blocks of several passes.
TEST(CudaNormMatmuls, TallProducts) {
  auto ref = make_ref_backend();
  // Q8_0 rows of one staged tile, Q4_0 rows of two.
  for (const auto& [t, k, m] : {std::tuple{GgmlType::Q8_0, int64_t(2048), int64_t(40001)},
                                std::tuple{GgmlType::Q4_0, int64_t(4096), int64_t(50001)}}) {
    const HostTensor w = random_typed(t, {k, m, 1, 1}, 0.5f);
    const DevTensor d_w = to_gpu(w);
    for (int64_t n : {1, 2}) {
      const HostTensor x = strided_x(k, n), norm = random_f32({k, 1, 1, 1}, 0.5f, 1.5f);
      const DevTensor d_x = to_gpu(x), d_norm = to_gpu(norm);
      const HostTensor scratch = poisoned(GgmlType::F32, {k, n, 1, 1});
      for (bool with_norm : {false, true}) {
        const std::string what = str_cat(with_norm ? "norm_matmuls " : "matmuls ", type_name(t), " ", k, "x", m,
                                         " n=", n);
        const HostTensor out = strided_out(m, n);
        DevTensor d_out = to_gpu(out), d_scratch = to_gpu(scratch);
        run_products(gpu(), d_x.t, with_norm ? &d_norm.t : nullptr, d_scratch.t, {{d_out.t, d_w.t}});
        HostTensor want = strided_out(m, n), ref_scratch = scratch.clone();
        run_products(*ref, x.t, with_norm ? &norm.t : nullptr, ref_scratch.t, {{want.t, w.t}});
        expect_close(from_gpu(d_out, out), want, ref_tol(t, n), what + " vs reference");
      }
    }
  }
}

// Backend::gated_matmul: the attention output times sigmoid of its gate (every head's gate next to
// its query in one strided buffer, as attention.cpp lays it out) into the output product, against
// mul_sigmoid + matmul on the same backend (the same arithmetic: held to 1e-5, differing elements
// printed) and on the reference (activation rounding as above; tol > 0 replaces ref_tol).
void check_gated(GgmlType type, int64_t d0, int64_t d1, int64_t n, int64_t m, double tol = 0) {
  auto ref = make_ref_backend();
  const int64_t k = d0 * d1;
  const HostTensor x = random_f32({d0, d1, n, 1}, -2.0f, 2.0f), qg = random_f32({2 * k, n, 1, 1}, -6.0f, 6.0f);
  const HostTensor gate =
      host_view(qg, {d0, d1, n, 1}, {sizeof(float), size_t(2 * d0) * 4, qg.t.nb[1], qg.t.nb[1] * size_t(n)}, size_t(d0) * 4);
  const HostTensor w = random_typed(type, {k, m, 1, 1}, 0.5f);
  const DevTensor d_w = to_gpu(w);
  const HostTensor out = strided_out(m, n);
  DevTensor d_x = to_gpu(x), d_gate = to_gpu(gate), d_out = to_gpu(out);
  gpu().gated_matmul(d_out.t, d_w.t, d_x.t, d_gate.t);
  DevTensor c_x = to_gpu(x), c_gate = to_gpu(gate), c_out = to_gpu(out);
  gpu().mul_sigmoid(c_x.t, c_x.t, c_gate.t);
  gpu().matmul(c_out.t, d_w.t, c_x.t.reshape({k, n, 1, 1}));
  HostTensor want = strided_out(m, n);
  const HostTensor hx = x.clone(), hqg = qg.clone();
  const HostTensor hgate = host_view(hqg, gate.t.ne, gate.t.nb, size_t(d0) * 4);
  ref->gated_matmul(want.t, w.t, hx.t, hgate.t);

  const std::string what = str_cat("gated_matmul ", type_name(type), " [", d0, ", ", d1, "] x", m, " n=", n);
  const HostTensor got = from_gpu(d_out, out), comp = from_gpu(c_out, out);
  expect_close(got, comp, 1e-5, what + " vs mul_sigmoid + matmul");
  const std::vector<float> a = to_floats(got.t), b = to_floats(comp.t);
  size_t diff = 0;
  for (size_t e = 0; e < a.size(); ++e) diff += !(a[e] == b[e]);
  if (diff > 0) std::printf("%s: %zu of %zu elements differ from mul_sigmoid + matmul\n", what.c_str(), diff, a.size());
  expect_close(got, want, tol > 0 ? tol : ref_tol(type, n), what + " vs reference");
}

TEST(CudaGatedMatmul, EveryTypeFusedAndComposed) {
  for (GgmlType t : kTypes) {
    for (int64_t n : {1, 2, 3, 9}) check_gated(t, 256, 8, n, 45);  // heads of 256 (Qwen3-Next)
  }
  for (int64_t n : {1, 2}) {
    // 3 heads of 128: 408-byte Q8_0 rows, not 16-byte aligned, take F32 activations while the
    // reference rounds them to Q8_0 (as in OddShapes; measured 6.4e-3 of the largest output).
    check_gated(GgmlType::Q8_0, 128, 3, n, 301, 3e-2);
    check_gated(GgmlType::Q4_K, 64, 16, n, 7);
  }
}

TEST(CudaNormMatmuls, ShapeErrorsAreReported) {
  const HostTensor x = random_f32({64, 2, 1, 1}), norm = random_f32({64, 1, 1, 1}), short_norm = random_f32({32, 1, 1, 1});
  const HostTensor w = random_typed(GgmlType::Q8_0, {64, 8, 1, 1});
  const HostTensor out = poisoned(GgmlType::F32, {8, 2, 1, 1}), bad = poisoned(GgmlType::F32, {9, 2, 1, 1});
  const DevTensor d_x = to_gpu(x), d_norm = to_gpu(norm), d_short = to_gpu(short_norm), d_w = to_gpu(w);
  const DevTensor d_out = to_gpu(out), d_bad = to_gpu(bad), d_s = to_gpu(x);
  EXPECT_THROW(gpu().norm_matmuls(d_x.t, d_norm.t, kEps, d_s.t, {{d_bad.t, d_w.t}}), Error);
  EXPECT_THROW(gpu().norm_matmuls(d_x.t, d_short.t, kEps, d_s.t, {{d_out.t, d_w.t}}), Error);
  EXPECT_THROW(gpu().norm_matmuls(d_x.t, d_norm.t, kEps, d_out.t, {{d_out.t, d_w.t}}), Error);
  // gated_matmul: x [32, 2, 2] takes w [64, m]; a gate of another shape, a dst of the wrong height.
  const Tensor x3 = d_x.t.reshape({32, 2, 2, 1});
  EXPECT_THROW(gpu().gated_matmul(d_out.t, d_w.t, x3, d_x.t), Error);
  EXPECT_THROW(gpu().gated_matmul(d_bad.t, d_w.t, x3, x3), Error);
}

}  // namespace
}  // namespace moeserve::test
