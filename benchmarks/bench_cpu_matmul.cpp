// CPU matmul throughput per weight type: one weight matrix [2048 x 16384] (33.5M weights, larger
// than the caches) times 1 column (decode) or 64 columns (prefill). Reports weight bytes read per
// second (the decode roofline quantity) and multiply-adds per second. Weights are random blocks
// of the type (the kernels' speed does not depend on the values).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "backend/backend.h"
#include "core/ggml_type.h"

namespace {

using namespace moeserve;

void matmul(benchmark::State& state, GgmlType type) {
  const int64_t k = 2048, m = 16384, n = state.range(0);
  const int threads = int(state.range(1));
  auto be = make_cpu_backend(threads);
  const size_t w_bytes = row_bytes(type, k) * size_t(m);
  Buffer wb = be->alloc(w_bytes), xb = be->alloc(size_t(k * n) * 4), yb = be->alloc(size_t(m * n) * 4);
  std::mt19937 gen(1);
  auto* w = static_cast<uint8_t*>(wb.data());
  const TypeTraits& t = type_traits(type);
  std::vector<float> row(static_cast<size_t>(k));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t r = 0; r < m; ++r) {
    for (float& v : row) v = dist(gen);
    if (t.quantize) {
      t.quantize(row.data(), w + size_t(r) * row_bytes(type, k), k);
    } else {
      // Types without a reference quantizer: random bytes, each block's leading half scale set to 1.
      uint8_t* p = w + size_t(r) * row_bytes(type, k);
      for (size_t b = 0; b < row_bytes(type, k); ++b) p[b] = uint8_t(gen());
      for (size_t b = 0; b < row_bytes(type, k); b += t.block_bytes) p[b] = 0x00, p[b + 1] = 0x3c;
    }
  }
  for (int64_t i = 0; i < k * n; ++i) static_cast<float*>(xb.data())[i] = dist(gen);
  const Tensor W = Tensor::contiguous(type, {k, m, 1, 1}, wb.data());
  const Tensor X = Tensor::contiguous(GgmlType::F32, {k, n, 1, 1}, xb.data());
  const Tensor Y = Tensor::contiguous(GgmlType::F32, {m, n, 1, 1}, yb.data());
  be->matmul(Y, W, X);
  for (auto _ : state) be->matmul(Y, W, X);
  state.counters["weight_GB/s"] = benchmark::Counter(double(w_bytes) * double(state.iterations()) / 1e9,
                                                     benchmark::Counter::kIsRate);
  state.counters["GMAC/s"] = benchmark::Counter(double(k * m * n) * double(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
}

void args(benchmark::internal::Benchmark* b) {
  for (int64_t n : {1, 64}) b->Args({n, 1})->Args({n, 2});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK_CAPTURE(matmul, F16, GgmlType::F16)->Apply(args);
BENCHMARK_CAPTURE(matmul, Q8_0, GgmlType::Q8_0)->Apply(args);
BENCHMARK_CAPTURE(matmul, Q4_0, GgmlType::Q4_0)->Apply(args);
BENCHMARK_CAPTURE(matmul, Q4_K, GgmlType::Q4_K)->Apply(args);
BENCHMARK_CAPTURE(matmul, Q5_K, GgmlType::Q5_K)->Apply(args);
BENCHMARK_CAPTURE(matmul, Q6_K, GgmlType::Q6_K)->Apply(args);
BENCHMARK_CAPTURE(matmul, IQ2_XXS, GgmlType::IQ2_XXS)->Apply(args);
BENCHMARK_CAPTURE(matmul, IQ2_XS, GgmlType::IQ2_XS)->Apply(args);
BENCHMARK_CAPTURE(matmul, IQ3_XXS, GgmlType::IQ3_XXS)->Apply(args);

}  // namespace

BENCHMARK_MAIN();
