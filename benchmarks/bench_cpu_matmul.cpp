// CPU matmul throughput per weight type: one weight matrix [2048 x 16384] (33.5M weights, larger
// than the caches) times 1 column (decode), 4 columns (an expert hit by a few tokens) or 64
// columns (prefill). Reports weight bytes read per second (the decode roofline quantity) and
// multiply-adds per second. Weights are random blocks of the type (the kernels' speed does not
// depend on the values), made once per type. Arguments: columns, threads (1, 2, all cores),
// kernels (2: the best the CPU has, 1: at most AVX2, the "before" of the AVX-512 kernels, 0: the
// scalar references, the "before" of types that had no SIMD kernel).
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/ggml_type.h"

namespace {

using namespace moeserve;

constexpr int64_t kK = 2048, kM = 16384;

const std::vector<uint8_t>& weights(GgmlType type) {
  static std::map<GgmlType, std::vector<uint8_t>> cache;
  auto it = cache.find(type);
  if (it != cache.end()) return it->second;
  const size_t rb = row_bytes(type, kK);
  std::vector<uint8_t> w(rb * size_t(kM));
  std::mt19937 gen(1);
  const TypeTraits& t = type_traits(type);
  std::vector<float> row(static_cast<size_t>(kK));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t r = 0; r < kM; ++r) {
    for (float& v : row) v = dist(gen);
    uint8_t* p = w.data() + size_t(r) * rb;
    if (t.quantize) {
      t.quantize(row.data(), p, kK);
    } else {
      // Types without a reference quantizer: random bytes, each block's leading half scale set to 1.
      for (size_t b = 0; b < rb; ++b) p[b] = uint8_t(gen());
      for (size_t b = 0; b < rb; b += t.block_bytes) p[b] = 0x00, p[b + 1] = 0x3c;
    }
  }
  return cache.emplace(type, std::move(w)).first->second;
}

void matmul(benchmark::State& state, GgmlType type) {
  const int64_t k = kK, m = kM, n = state.range(0);
  cpu::CpuOptions opt;
  opt.n_threads = int(state.range(1));
  opt.isa = state.range(2) == 0 ? cpu::Isa::scalar : state.range(2) == 1 ? cpu::Isa::avx2 : cpu::Isa::avx512;
  auto be = std::make_unique<cpu::CpuBackend>(opt);
  const std::vector<uint8_t>& wv = weights(type);
  const size_t w_bytes = wv.size();
  Buffer xb = be->alloc(size_t(k * n) * 4), yb = be->alloc(size_t(m * n) * 4);
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < k * n; ++i) static_cast<float*>(xb.data())[i] = dist(gen);
  const Tensor W = Tensor::contiguous(type, {k, m, 1, 1}, const_cast<uint8_t*>(wv.data()));
  const Tensor X = Tensor::contiguous(GgmlType::F32, {k, n, 1, 1}, xb.data());
  const Tensor Y = Tensor::contiguous(GgmlType::F32, {m, n, 1, 1}, yb.data());
  be->matmul(Y, W, X);
  for (auto _ : state) be->matmul(Y, W, X);
  state.counters["weight_GB/s"] = benchmark::Counter(double(w_bytes) * double(state.iterations()) / 1e9,
                                                     benchmark::Counter::kIsRate);
  state.counters["GMAC/s"] = benchmark::Counter(double(k * m * n) * double(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
}

// Threads: 1, 2 and every core (when there are more than 2).
void args(benchmark::internal::Benchmark* b) {
  const int64_t cores = std::thread::hardware_concurrency();
  for (int64_t n : {1, 4, 64}) {
    b->Args({n, 1, 2})->Args({n, 2, 2});
    if (cores > 2) b->Args({n, cores, 2});
  }
  b->ArgNames({"cols", "threads", "isa"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Types with an AVX-512 kernel: the AVX2 one too, to compare.
void args_with_avx2(benchmark::internal::Benchmark* b) {
  args(b);
  const int64_t cores = std::thread::hardware_concurrency();
  for (int64_t n : {1, 4, 64}) {
    b->Args({n, 1, 1});
    if (cores > 2) b->Args({n, cores, 1});
  }
}

void args_with_scalar(benchmark::internal::Benchmark* b) {
  args(b);
  for (int64_t n : {1, 64}) b->Args({n, 1, 0});
}

BENCHMARK_CAPTURE(matmul, F16, GgmlType::F16)->Apply(args);
BENCHMARK_CAPTURE(matmul, Q8_0, GgmlType::Q8_0)->Apply(args_with_avx2);
BENCHMARK_CAPTURE(matmul, Q4_0, GgmlType::Q4_0)->Apply(args_with_avx2);
BENCHMARK_CAPTURE(matmul, Q4_K, GgmlType::Q4_K)->Apply(args);
BENCHMARK_CAPTURE(matmul, Q5_K, GgmlType::Q5_K)->Apply(args);
BENCHMARK_CAPTURE(matmul, Q6_K, GgmlType::Q6_K)->Apply(args);
BENCHMARK_CAPTURE(matmul, IQ2_XXS, GgmlType::IQ2_XXS)->Apply(args_with_avx2);
BENCHMARK_CAPTURE(matmul, IQ2_XS, GgmlType::IQ2_XS)->Apply(args_with_avx2);
BENCHMARK_CAPTURE(matmul, IQ3_XXS, GgmlType::IQ3_XXS)->Apply(args_with_avx2);
BENCHMARK_CAPTURE(matmul, Q2_K, GgmlType::Q2_K)->Apply(args_with_scalar);
BENCHMARK_CAPTURE(matmul, Q3_K, GgmlType::Q3_K)->Apply(args_with_scalar);
BENCHMARK_CAPTURE(matmul, IQ2_S, GgmlType::IQ2_S)->Apply(args_with_scalar);
BENCHMARK_CAPTURE(matmul, IQ3_S, GgmlType::IQ3_S)->Apply(args_with_scalar);
BENCHMARK_CAPTURE(matmul, IQ4_XS, GgmlType::IQ4_XS)->Apply(args_with_scalar);
BENCHMARK_CAPTURE(matmul, IQ4_NL, GgmlType::IQ4_NL)->Apply(args_with_scalar);
BENCHMARK_CAPTURE(matmul, Q4_1, GgmlType::Q4_1)->Apply(args_with_scalar);
BENCHMARK_CAPTURE(matmul, Q5_0, GgmlType::Q5_0)->Apply(args_with_scalar);
BENCHMARK_CAPTURE(matmul, Q5_1, GgmlType::Q5_1)->Apply(args_with_scalar);

}  // namespace

BENCHMARK_MAIN();
