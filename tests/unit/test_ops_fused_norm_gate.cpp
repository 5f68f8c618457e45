// The products with a folded input op (Backend::norm_matmuls: rms_norm then the products;
// Backend::gated_matmul: mul_sigmoid then the product) on the CPU and reference backends: their
// default compositions must give, bit for bit, what the forward got from the separate ops before
// it issued them fused (the model tests compare whole forwards with llama.cpp and transformers;
// this pins the ops themselves), including scratch aliasing x (the output head's use). Bad shapes
// are one clear error.
#include "ops_test_util.h"

#include "core/error.h"

namespace moeserve::test {
namespace {

TEST(OpsFusedNormGate, NormMatmulsEqualsNormThenMatmuls) {
  auto ref = make_ref_backend();
  auto cpu = cpu_backend(3);
  for (int64_t n : {1, 2, 5}) {
    const int64_t k = 512;
    const HostTensor x = random_f32({k, n, 1, 1}, -20, 20), norm = random_f32({k, 1, 1, 1}, 0.5f, 1.5f);
    const HostTensor w0 = random_typed(GgmlType::Q8_0, {k, 37, 1, 1}, 0.5f);
    const HostTensor w1 = random_typed(GgmlType::IQ2_XS, {k, 5, 1, 1}, 0.5f);
    for (Backend* be : {static_cast<Backend*>(ref.get()), static_cast<Backend*>(cpu.get())}) {
      HostTensor a0 = HostTensor::make(GgmlType::F32, {37, n, 1, 1}), a1 = HostTensor::make(GgmlType::F32, {5, n, 1, 1});
      HostTensor scratch = HostTensor::make(GgmlType::F32, {k, n, 1, 1});
      be->norm_matmuls(x.t, norm.t, 1e-6f, scratch.t, {{a0.t, w0.t}, {a1.t, w1.t}});
      HostTensor normed = scratch.clone(), b0 = a0.clone(), b1 = a1.clone();
      be->rms_norm(normed.t, x.t, &norm.t, 1e-6f);
      be->matmuls(normed.t, {{b0.t, w0.t}, {b1.t, w1.t}});
      EXPECT_TRUE(same_bits(a0, b0) && same_bits(a1, b1)) << be->name() << " n=" << n;
      // Scratch aliasing x: x is normed in place.
      HostTensor xa = x.clone(), c0 = a0.clone(), c1 = a1.clone();
      be->norm_matmuls(xa.t, norm.t, 1e-6f, xa.t, {{c0.t, w0.t}, {c1.t, w1.t}});
      EXPECT_TRUE(same_bits(c0, b0) && same_bits(c1, b1)) << be->name() << " aliased, n=" << n;
    }
  }
}

TEST(OpsFusedNormGate, GatedMatmulEqualsMulSigmoidThenMatmul) {
  auto ref = make_ref_backend();
  auto cpu = cpu_backend(3);
  for (int64_t n : {1, 3}) {
    const int64_t d0 = 64, d1 = 4, m = 29;
    const HostTensor x = random_f32({d0, d1, n, 1}, -2, 2), qg = random_f32({2 * d0 * d1, n, 1, 1}, -6, 6);
    const std::array<size_t, 4> gnb = {4, size_t(2 * d0) * 4, qg.t.nb[1], qg.t.nb[1] * size_t(n)};
    const HostTensor w = random_typed(GgmlType::Q4_K, {d0 * d1, m, 1, 1}, 0.5f);
    for (Backend* be : {static_cast<Backend*>(ref.get()), static_cast<Backend*>(cpu.get())}) {
      const HostTensor xa = x.clone(), qa = qg.clone(), xb = x.clone(), qb = qg.clone();
      HostTensor a = HostTensor::make(GgmlType::F32, {m, n, 1, 1}), b = a.clone();
      be->gated_matmul(a.t, w.t, xa.t, qa.t.view(x.t.ne, gnb, size_t(d0) * 4));
      be->mul_sigmoid(xb.t, xb.t, qb.t.view(x.t.ne, gnb, size_t(d0) * 4));
      be->matmul(b.t, w.t, xb.t.reshape({d0 * d1, n, 1, 1}));
      EXPECT_TRUE(same_bits(a, b)) << be->name() << " n=" << n;
    }
  }
}

TEST(OpsFusedNormGate, BadShapesFailClearly) {
  auto ref = make_ref_backend();
  const HostTensor x = random_f32({64, 2, 1, 1}), norm = random_f32({64, 1, 1, 1}), short_norm = random_f32({32, 1, 1, 1});
  const HostTensor w = random_typed(GgmlType::Q8_0, {64, 8, 1, 1});
  const HostTensor ok = HostTensor::make(GgmlType::F32, {8, 2, 1, 1}), bad = HostTensor::make(GgmlType::F32, {9, 2, 1, 1});
  HostTensor s = x.clone();
  EXPECT_THROW(ref->norm_matmuls(x.t, norm.t, 1e-6f, s.t, {{bad.t, w.t}}), Error);
  EXPECT_THROW(ref->norm_matmuls(x.t, short_norm.t, 1e-6f, s.t, {{ok.t, w.t}}), Error);
  EXPECT_THROW(ref->norm_matmuls(x.t, norm.t, 1e-6f, ok.t, {{ok.t, w.t}}), Error);  // scratch not like x
  const Tensor x3 = x.t.reshape({32, 2, 2, 1});
  EXPECT_THROW(ref->gated_matmul(ok.t, w.t, x3, x.t), Error);   // gate of another shape
  EXPECT_THROW(ref->gated_matmul(bad.t, w.t, x3, x3), Error);   // dst of the wrong height
  EXPECT_NO_THROW(ref->norm_matmuls(x.t, norm.t, 1e-6f, s.t, {{ok.t, w.t}}));
}

}  // namespace
}  // namespace moeserve::test
