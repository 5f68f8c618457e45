// The CUDA backend's products of one input (Backend::matmuls: one quantization of x, one launch per
// run of one weight type) and the fused SwiGLU product (Backend::matmul_swiglu) against
// * the same backend's plain matmul / swiglu, product by product: the kernels share the per-row
//   arithmetic, so the values must be identical;
// * the scalar reference backend (its own dot products and activation quantization), within the
//   activation rounding: for Q8_0 weights both quantize the activations to the same int8 blocks of
//   32, but the reference stores each block's scale as F16 (the Q8_0 format) where the device keeps
//   it in F32: up to 2^-11 of each block's term (measured: 3.2e-4 of the largest output); IQ2_XS
//   sees Q8_K activations on the reference and blocks of 32 here; more than 8 columns take the
//   prefill tiles, which see activations in F16 (measured: 5.3e-3).
// Odd row counts, strided outputs poisoned with NaN, 1 to 8 columns (the decode kernels) and 11
// (the per-product fallback); IQ2_XS rows of 148 bytes take the F32-activation decode kernel.
#include "gpu_test_util.h"

#include "core/error.h"

namespace moeserve::test {
namespace {

double ref_tol(GgmlType t, int64_t n) {
  if (t == GgmlType::IQ2_XS) return 5e-2;
  if (t == GgmlType::F32) return 2e-5;
  return n <= 8 ? 1e-3 : 1e-2;
}

// dst [m, n] poisoned, rows m + 3 floats apart.
HostTensor strided_out(int64_t m, int64_t n) {
  const HostTensor base = poisoned(GgmlType::F32, {m + 3, n, 1, 1});
  return host_view(base, {m, n, 1, 1}, {sizeof(float), base.t.nb[1], base.t.nb[1] * size_t(n), base.t.nb[1] * size_t(n)});
}

void expect_same(const HostTensor& got, const HostTensor& want, const std::string& what) {
  const std::vector<float> a = to_floats(got.t), b = to_floats(want.t);
  ASSERT_EQ(a.size(), b.size());
  size_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff += !(a[i] == b[i]);
  EXPECT_EQ(diff, 0u) << what << ": elements differing from the plain op";
}

struct Spec {
  GgmlType type;
  int64_t m;
};

void check_products(const std::vector<Spec>& specs, int64_t k, int64_t n) {
  auto ref = make_ref_backend();
  const HostTensor x = random_f32({k, n, 1, 1}, -1.5f, 1.5f);
  const DevTensor d_x = to_gpu(x);
  std::vector<HostTensor> ws, outs;
  std::vector<DevTensor> d_ws, d_outs;
  for (const Spec& s : specs) {
    ws.push_back(random_typed(s.type, {k, s.m, 1, 1}, 0.5f));
    outs.push_back(strided_out(s.m, n));
    d_ws.push_back(to_gpu(ws.back()));
    d_outs.push_back(to_gpu(outs.back()));
  }
  std::vector<MatmulProduct> products;
  for (size_t i = 0; i < specs.size(); ++i) products.push_back({d_outs[i].t, d_ws[i].t});
  switch (products.size()) {
    case 2: gpu().matmuls(d_x.t, {products[0], products[1]}); break;
    case 3: gpu().matmuls(d_x.t, {products[0], products[1], products[2]}); break;
    default: gpu().matmuls(d_x.t, {products[0], products[1], products[2], products[3]}); break;
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string what = str_cat("product ", i, " ", type_name(specs[i].type), " ", k, "x", specs[i].m, " n=", n);
    const HostTensor got = from_gpu(d_outs[i], outs[i]);
    DevTensor d_one = to_gpu(outs[i]);
    gpu().matmul(d_one.t, d_ws[i].t, d_x.t);
    expect_same(got, from_gpu(d_one, outs[i]), what);
    HostTensor want = strided_out(specs[i].m, n);
    ref->matmul(want.t, ws[i].t, x.t);
    expect_close(got, want, ref_tol(specs[i].type, n), what + " vs reference");
  }
}

TEST(CudaProducts, MatmulsEqualSeparateMatmuls) {
  for (int64_t n : {1, 2, 3, 8, 11}) {
    // The delta-net's projections (two Q8_0 products, a third type between runs), router + shared gate.
    check_products({{GgmlType::Q8_0, 300}, {GgmlType::Q8_0, 37}, {GgmlType::IQ2_XS, 45}, {GgmlType::F32, 61}}, 2048, n);
    check_products({{GgmlType::IQ2_XS, 19}, {GgmlType::IQ2_XS, 40}}, 512, n);  // rows of 148 bytes: F32 activations
    check_products({{GgmlType::F32, 77}, {GgmlType::F32, 1}}, 512, n);
    check_products({{GgmlType::Q8_0, 5}, {GgmlType::F32, 3}, {GgmlType::Q8_0, 130}}, 256, n);
  }
}

TEST(CudaProducts, MatmulSwigluEqualsChain) {
  auto ref = make_ref_backend();
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::IQ2_XS, GgmlType::F32}) {
    for (int64_t n : {1, 3, 8, 11}) {
      const int64_t k = 2048, m = 45;
      const HostTensor x = random_f32({k, n, 1, 1}, -1.5f, 1.5f);
      const HostTensor gate = random_typed(type, {k, m, 1, 1}, 0.5f), up = random_typed(type, {k, m, 1, 1}, 0.5f);
      const DevTensor d_x = to_gpu(x), d_gate = to_gpu(gate), d_up = to_gpu(up);
      const HostTensor out = strided_out(m, n), scratch = poisoned(GgmlType::F32, {m, n, 1, 1});
      DevTensor d_out = to_gpu(out), d_scratch = to_gpu(scratch);
      gpu().matmul_swiglu(d_out.t, d_gate.t, d_up.t, d_x.t, d_scratch.t);
      const HostTensor got = from_gpu(d_out, out);
      const std::string what = str_cat("matmul_swiglu ", type_name(type), " n=", n);

      DevTensor d_g = to_gpu(out), d_u = to_gpu(scratch);
      gpu().matmul(d_g.t, d_gate.t, d_x.t);
      gpu().matmul(d_u.t, d_up.t, d_x.t);
      gpu().swiglu(d_g.t, d_g.t, d_u.t);
      expect_same(got, from_gpu(d_g, out), what);

      HostTensor want = strided_out(m, n), ref_scratch = poisoned(GgmlType::F32, {m, n, 1, 1});
      ref->matmul_swiglu(want.t, gate.t, up.t, x.t, ref_scratch.t);
      expect_close(got, want, ref_tol(type, n), what + " vs reference");
    }
  }
}

TEST(CudaProducts, ShapeErrorsAreReported) {
  const HostTensor x = random_f32({64, 2, 1, 1});
  const HostTensor w = random_typed(GgmlType::Q8_0, {64, 8, 1, 1});
  const HostTensor bad = poisoned(GgmlType::F32, {9, 2, 1, 1});
  const DevTensor d_x = to_gpu(x), d_w = to_gpu(w), d_bad = to_gpu(bad);
  EXPECT_THROW(gpu().matmuls(d_x.t, {{d_bad.t, d_w.t}}), Error);
  EXPECT_THROW(gpu().matmul_swiglu(d_bad.t, d_w.t, d_w.t, d_x.t, d_bad.t), Error);
}

}  // namespace
}  // namespace moeserve::test
