// The fused weight products of the op table (Backend::matmuls, Backend::matmul_swiglu) on the CPU
// and reference backends: their default compositions must give, bit for bit, what the forward got
// from the separate ops before it issued them fused (the model tests compare whole forwards with
// llama.cpp and transformers; this pins the op itself), and the CPU results stay within the
// matmul tolerance of the scalar reference (test_ops_matmul.cpp). Bad shapes are one clear error.
#include "ops_test_util.h"

#include "core/error.h"

namespace moeserve::test {
namespace {

TEST(OpsFusedProducts, MatmulsEqualSeparateMatmuls) {
  auto ref = make_ref_backend();
  auto cpu = cpu_backend(3);
  for (int64_t n : {1, 3, 17}) {
    const int64_t k = 512;
    const HostTensor x = random_f32({k, n, 1, 1}, -2, 2);
    const GgmlType types[] = {GgmlType::Q8_0, GgmlType::IQ2_XS, GgmlType::F32, GgmlType::Q4_K};
    const int64_t rows[] = {37, 5, 1, 64};
    std::vector<HostTensor> ws;
    for (int i = 0; i < 4; ++i) ws.push_back(random_typed(types[i], {k, rows[i], 1, 1}, 0.5f));
    for (Backend* be : {static_cast<Backend*>(ref.get()), static_cast<Backend*>(cpu.get())}) {
      std::vector<HostTensor> fused, plain;
      for (int i = 0; i < 4; ++i) {
        fused.push_back(HostTensor::make(GgmlType::F32, {rows[i], n, 1, 1}));
        plain.push_back(HostTensor::make(GgmlType::F32, {rows[i], n, 1, 1}));
        be->matmul(plain.back().t, ws[size_t(i)].t, x.t);
      }
      be->matmuls(x.t, {{fused[0].t, ws[0].t}, {fused[1].t, ws[1].t}, {fused[2].t, ws[2].t}, {fused[3].t, ws[3].t}});
      for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(same_bits(fused[size_t(i)], plain[size_t(i)])) << be->name() << " product " << i << " n=" << n;
      }
      if (be == cpu.get()) {
        for (int i = 0; i < 4; ++i) {
          HostTensor want = HostTensor::make(GgmlType::F32, {rows[i], n, 1, 1});
          ref->matmul(want.t, ws[size_t(i)].t, x.t);
          EXPECT_LT(rel_error(to_floats(fused[size_t(i)].t), to_floats(want.t)), 1e-5) << "product " << i;
        }
      }
    }
  }
}

TEST(OpsFusedProducts, MatmulSwigluEqualsTheChain) {
  auto ref = make_ref_backend();
  auto cpu = cpu_backend(3);
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::IQ2_XS, GgmlType::F32}) {
    for (int64_t n : {1, 4, 9}) {
      const int64_t k = 256, m = 45;
      const HostTensor x = random_f32({k, n, 1, 1}, -2, 2);
      const HostTensor gate = random_typed(type, {k, m, 1, 1}, 0.5f), up = random_typed(type, {k, m, 1, 1}, 0.5f);
      for (Backend* be : {static_cast<Backend*>(ref.get()), static_cast<Backend*>(cpu.get())}) {
        HostTensor out = HostTensor::make(GgmlType::F32, {m, n, 1, 1}), scratch = out.clone();
        be->matmul_swiglu(out.t, gate.t, up.t, x.t, scratch.t);
        HostTensor g = out.clone(), u = out.clone();
        be->matmul(g.t, gate.t, x.t);
        be->matmul(u.t, up.t, x.t);
        be->swiglu(g.t, g.t, u.t);
        EXPECT_TRUE(same_bits(out, g)) << be->name() << " " << type_name(type) << " n=" << n;
        if (be == cpu.get()) {
          HostTensor want = out.clone();
          ref->matmul_swiglu(want.t, gate.t, up.t, x.t, scratch.t);
          EXPECT_LT(rel_error(to_floats(out.t), to_floats(want.t)), 1e-5) << type_name(type) << " n=" << n;
        }
      }
    }
  }
}

TEST(OpsFusedProducts, BadShapesFailClearly) {
  auto ref = make_ref_backend();
  const HostTensor x = random_f32({64, 2, 1, 1});
  const HostTensor w = random_typed(GgmlType::Q8_0, {64, 8, 1, 1}), w2 = random_typed(GgmlType::Q4_0, {64, 8, 1, 1});
  const HostTensor ok = HostTensor::make(GgmlType::F32, {8, 2, 1, 1}), bad = HostTensor::make(GgmlType::F32, {9, 2, 1, 1});
  EXPECT_THROW(ref->matmuls(x.t, {{bad.t, w.t}}), Error);
  EXPECT_THROW(ref->matmuls(x.t, {{ok.t, w.t}, {ok.t, w.t}, {ok.t, w.t}, {ok.t, w.t}, {ok.t, w.t}}), Error);
  EXPECT_THROW(ref->matmul_swiglu(bad.t, w.t, w.t, x.t, bad.t), Error);
  EXPECT_THROW(ref->matmul_swiglu(ok.t, w.t, w2.t, x.t, ok.t), Error);  // gate and up of two types
  EXPECT_NO_THROW(ref->matmuls(x.t, {{ok.t, w.t}}));
}

}  // namespace
}  // namespace moeserve::test
