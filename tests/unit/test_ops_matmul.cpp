// matmul and the routed experts, CPU vs the scalar reference, for every weight type the registry
// can multiply, on odd shapes (one row, one column, sizes that do not fill a tile). Both backends
// quantize the activations to the same vec_dot_type with the same reference quantizer and sum
// each block exactly, so they differ only where the CPU's SIMD kernels sum floats in another
// order: 1e-5 of the output's scale.
#include "ops_test_util.h"

namespace moeserve::test {
namespace {

std::vector<GgmlType> matmul_types() {
  std::vector<GgmlType> types;
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    if (t->vec_dot && t->dequantize && type_traits(t->vec_dot_type).quantize) types.push_back(t->type);
  }
  return types;
}

TEST(OpsMatmul, EveryWeightTypeMatchesReference) {
  const std::vector<GgmlType> types = matmul_types();
  ASSERT_FALSE(types.empty());
  auto ref = make_ref_backend();
  for (int threads : {1, 3}) {
    auto cpu = cpu_backend(threads);
    for (GgmlType type : types) {
      const int64_t block = type_traits(type).block_size;
      for (auto [k_blocks, m, n] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {2, 17, 3}, {3, 33, 9}, {1, 5, 17}}) {
        const int64_t k = std::max<int64_t>(block, 32) * k_blocks;
        HostTensor w = random_typed(type, {k, m, 1, 1});
        HostTensor x = random_f32({k, n, 1, 1}, -2, 2);
        HostTensor a = HostTensor::make(GgmlType::F32, {m, n, 1, 1}), b = a.clone();
        ref->matmul(a.t, w.t, x.t);
        cpu->matmul(b.t, w.t, x.t);
        EXPECT_LT(rel_error(to_floats(b.t), to_floats(a.t)), 1e-5) << type_name(type) << " k=" << k << " m=" << m
                                                                   << " n=" << n << " threads=" << threads;
      }
    }
  }
}

TEST(OpsMatmul, MatchesDequantizedProductWithinActivationRounding) {
  // Against plain float math on the dequantized weights: the only difference is the activation's
  // rounding to the vec_dot_type (Q8_0/Q8_K: 1/254 of a block's largest value per element).
  auto cpu = cpu_backend(2);
  for (GgmlType type : matmul_types()) {
    const int64_t k = 256, m = 7, n = 2;
    HostTensor w = random_typed(type, {k, m, 1, 1});
    HostTensor x = random_f32({k, n, 1, 1});
    HostTensor y = HostTensor::make(GgmlType::F32, {m, n, 1, 1});
    cpu->matmul(y.t, w.t, x.t);
    const std::vector<float> wf = to_floats(w.t);
    std::vector<float> expect(static_cast<size_t>(m * n));
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < m; ++i) {
        double s = 0;
        for (int64_t e = 0; e < k; ++e) s += double(wf[size_t(i * k + e)]) * x.f()[j * k + e];
        expect[size_t(j * m + i)] = float(s);
      }
    const GgmlType act = type_traits(type).vec_dot_type;
    const double tol = act == GgmlType::F32 ? 1e-6 : act == GgmlType::F16 || act == GgmlType::BF16 ? 1e-2 : 3e-2;
    EXPECT_LT(rel_error(to_floats(y.t), expect), tol) << type_name(type);
  }
}

TEST(OpsMoe, ExpertsMatchReference) {
  auto ref = make_ref_backend();
  std::vector<std::unique_ptr<cpu::CpuBackend>> cpus;
  cpus.push_back(cpu_backend(1));
  cpus.push_back(cpu_backend(3));
  for (GgmlType type : matmul_types()) {
    const int64_t block = std::max<int64_t>(type_traits(type).block_size, 32);
    const int64_t n_embd = block * 2, n_ff = block, n_expert = 5, k = 3;
    HostTensor gate = random_typed(type, {n_embd, n_ff, n_expert, 1});
    HostTensor up = random_typed(type, {n_embd, n_ff, n_expert, 1});
    HostTensor down = random_typed(type, {n_ff, n_embd, n_expert, 1});
    for (int64_t n : {1, 9}) {
      HostTensor x = random_f32({n_embd, n, 1, 1});
      HostTensor logits = random_f32({n_expert, n, 1, 1}, -3, 3);
      HostTensor ids = HostTensor::make(GgmlType::I32, {k, n, 1, 1});
      HostTensor weights = HostTensor::make(GgmlType::F32, {k, n, 1, 1});
      ref->moe_route(ids.t, weights.t, logits.t, true);
      HostTensor a = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
      ref->moe_experts(a.t, x.t, ExpertWeights{gate.t, up.t, down.t}, ids.t, weights.t);
      for (const auto& cpu : cpus) {
        HostTensor b = a.clone();
        cpu->moe_experts(b.t, x.t, ExpertWeights{gate.t, up.t, down.t}, ids.t, weights.t);
        // The kernels sum in another order than the reference, and silu(gate) * up is quantized
        // again (to the down weights' activation type) before the down product: a last-bit
        // difference there can move one element of a 32-block by one step (1/127 of the block's
        // largest), about 1e-3 of an output of n_ff ~ 32 such terms. A wrong expert, weight or
        // token gives errors of order 1.
        EXPECT_LT(rel_error(to_floats(b.t), to_floats(a.t)), 2e-3) << type_name(type) << " n=" << n;
      }
    }
  }
}

// A column's result does not depend on the thread count nor on which other columns share the
// product (the kernels decode a weight row once for several columns, each column bit for bit as
// alone): prefill, chunked prefill and decode give the same numbers for the same token.
TEST(OpsMatmul, ColumnsIndependentOfThreadsAndBatch) {
  auto cpu1 = cpu_backend(1), cpu3 = cpu_backend(3);
  for (GgmlType type : matmul_types()) {
    const int64_t k = std::max<int64_t>(type_traits(type).block_size, 32) * 3, m = 37, n = 13;
    HostTensor w = random_typed(type, {k, m, 1, 1});
    HostTensor x = random_f32({k, n, 1, 1}, -2, 2);
    HostTensor a = HostTensor::make(GgmlType::F32, {m, n, 1, 1}), b = a.clone();
    cpu1->matmul(a.t, w.t, x.t);
    cpu3->matmul(b.t, w.t, x.t);
    EXPECT_EQ(*a.bytes, *b.bytes) << type_name(type);
    for (int64_t c : {int64_t(0), int64_t(5), n - 1}) {
      HostTensor one = HostTensor::make(GgmlType::F32, {m, 1, 1, 1});
      cpu3->matmul(one.t, w.t, x.t.rows(c, 1));
      EXPECT_EQ(0, std::memcmp(one.f(), a.f() + c * m, size_t(m) * sizeof(float)))
          << type_name(type) << " column " << c;
    }
  }
}

TEST(OpsMoe, TokensIndependentOfThreadsAndBatch) {
  auto cpu1 = cpu_backend(1), cpu3 = cpu_backend(3);
  // Types whose kernels take 4 and 8 columns at a time; 17 tokens over 2 experts puts more than 8
  // on one of them.
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::IQ2_XXS, GgmlType::IQ4_XS}) {
    const int64_t n_embd = 256, n_ff = 256, n_expert = 2, k = 1, n = 17;
    HostTensor gate = random_typed(type, {n_embd, n_ff, n_expert, 1});
    HostTensor up = random_typed(type, {n_embd, n_ff, n_expert, 1});
    HostTensor down = random_typed(type, {n_ff, n_embd, n_expert, 1});
    HostTensor x = random_f32({n_embd, n, 1, 1});
    HostTensor logits = random_f32({n_expert, n, 1, 1}, -3, 3);
    HostTensor ids = HostTensor::make(GgmlType::I32, {k, n, 1, 1}), wts = HostTensor::make(GgmlType::F32, {k, n, 1, 1});
    cpu1->moe_route(ids.t, wts.t, logits.t, true);
    const ExpertWeights ex{gate.t, up.t, down.t};
    HostTensor a = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1}), b = a.clone();
    cpu1->moe_experts(a.t, x.t, ex, ids.t, wts.t);
    cpu3->moe_experts(b.t, x.t, ex, ids.t, wts.t);
    EXPECT_EQ(*a.bytes, *b.bytes) << type_name(type);
    for (int64_t t : {int64_t(0), n - 1}) {
      HostTensor one = HostTensor::make(GgmlType::F32, {n_embd, 1, 1, 1});
      cpu3->moe_experts(one.t, x.t.rows(t, 1), ex, ids.t.rows(t, 1), wts.t.rows(t, 1));
      EXPECT_EQ(0, std::memcmp(one.f(), a.f() + t * n_embd, size_t(n_embd) * sizeof(float)))
          << type_name(type) << " token " << t;
    }
  }
}

// The gate/up and down tiles of all experts run as one job, a down tile waiting for its expert's
// activations: any thread count (more threads than tiles included, and more than the cores) gives
// the single thread's bits, with row counts that leave partial tiles (96 = 3 x 32 gate/up rows,
// 160 = 128 + 32 down rows) and experts hit by one token or by many.
TEST(OpsMoe, OneJobForBothProductsAnyThreadCount) {
  std::vector<std::unique_ptr<cpu::CpuBackend>> cpus;
  for (int threads : {1, 2, 5, 8}) cpus.push_back(cpu_backend(threads));
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::IQ2_XS}) {
    const int64_t block = type_traits(type).block_size;
    const int64_t n_embd = block == 32 ? 160 : 512, n_ff = block == 32 ? 96 : 256, n_expert = 7, k = 3;
    HostTensor gate = random_typed(type, {n_embd, n_ff, n_expert, 1});
    HostTensor up = random_typed(type, {n_embd, n_ff, n_expert, 1});
    HostTensor down = random_typed(type, {n_ff, n_embd, n_expert, 1});
    const ExpertWeights ex{gate.t, up.t, down.t};
    for (int64_t n : {1, 2, 40}) {
      HostTensor x = random_f32({n_embd, n, 1, 1});
      HostTensor logits = random_f32({n_expert, n, 1, 1}, -3, 3);
      HostTensor ids = HostTensor::make(GgmlType::I32, {k, n, 1, 1}), wts = HostTensor::make(GgmlType::F32, {k, n, 1, 1});
      cpus[0]->moe_route(ids.t, wts.t, logits.t, true);
      HostTensor a = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
      cpus[0]->moe_experts(a.t, x.t, ex, ids.t, wts.t);
      for (size_t i = 1; i < cpus.size(); ++i) {
        for (int rep = 0; rep < 3; ++rep) {
          HostTensor b = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
          cpus[i]->moe_experts(b.t, x.t, ex, ids.t, wts.t);
          EXPECT_EQ(*a.bytes, *b.bytes) << type_name(type) << " n=" << n << " " << cpus[i]->name();
        }
      }
    }
  }
}

TEST(OpsMoe, ExpertsEqualDenseFfnPerExpert) {
  // The fused op equals running each chosen expert as a dense SwiGLU FFN and summing by weight.
  auto cpu = cpu_backend(2);
  const int64_t n_embd = 64, n_ff = 32, n_expert = 4, n = 3, k = 2;
  HostTensor gate = random_f32({n_embd, n_ff, n_expert, 1}), up = random_f32({n_embd, n_ff, n_expert, 1});
  HostTensor down = random_f32({n_ff, n_embd, n_expert, 1}), x = random_f32({n_embd, n, 1, 1});
  HostTensor ids = HostTensor::make(GgmlType::I32, {k, n, 1, 1}), w = HostTensor::make(GgmlType::F32, {k, n, 1, 1});
  const int32_t chosen[6] = {2, 0, 1, 3, 3, 2};
  const float weight[6] = {0.7f, 0.3f, 0.5f, 0.5f, 0.9f, 0.1f};
  std::memcpy(ids.i(), chosen, sizeof chosen);
  std::memcpy(w.f(), weight, sizeof weight);
  HostTensor y = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
  cpu->moe_experts(y.t, x.t, ExpertWeights{gate.t, up.t, down.t}, ids.t, w.t);
  std::vector<float> expect(static_cast<size_t>(n_embd * n), 0.0f);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = chosen[t * k + j];
      auto slice = [&](const HostTensor& h, int64_t rows, int64_t cols) {
        HostTensor s = h;
        s.t = h.t.view({cols, rows, 1, 1}, h.t.nb, size_t(e) * h.t.nb[2]);
        return s;
      };
      HostTensor g = HostTensor::make(GgmlType::F32, {n_ff, 1, 1, 1}), u = g.clone(), o = HostTensor::make(GgmlType::F32, {n_embd, 1, 1, 1});
      const Tensor xt = x.t.rows(t, 1);
      cpu->matmul(g.t, slice(gate, n_ff, n_embd).t, xt);
      cpu->matmul(u.t, slice(up, n_ff, n_embd).t, xt);
      cpu->swiglu(g.t, g.t, u.t);
      cpu->matmul(o.t, slice(down, n_embd, n_ff).t, g.t);
      for (int64_t i = 0; i < n_embd; ++i) expect[size_t(t * n_embd + i)] += weight[t * k + j] * o.f()[i];
    }
  }
  EXPECT_LT(rel_error(to_floats(y.t), expect), 1e-6);
}

}  // namespace
}  // namespace moeserve::test
