// Quantization throughput: quantize_rows on a 64 x 4096 matrix of heavy-tailed values (the shape
// of weight rows) with an importance matrix, per type, on 1 thread and on several. Reports bytes/s
// of F32 input (divide by the thread count for the rate per thread).
//
//   build/benchmarks/bench_quantize [--benchmark_filter=IQ2_XS]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/ggml_type.h"
#include "quant/quantize.h"

namespace {

using moeserve::GgmlType;

constexpr int64_t kCols = 4096, kRows = 64;

const std::vector<float>& matrix() {
  static const std::vector<float> m = [] {
    std::mt19937 rng(1);
    std::student_t_distribution<float> t(4.0f);
    std::vector<float> v(static_cast<size_t>(kCols * kRows));
    for (float& x : v) x = 0.02f * t(rng);
    return v;
  }();
  return m;
}

const std::vector<float>& imatrix() {
  static const std::vector<float> w = [] {
    std::mt19937 rng(2);
    std::lognormal_distribution<float> spread(-1.0f, 1.5f);
    std::vector<float> v(static_cast<size_t>(kCols));
    for (float& x : v) x = spread(rng);
    return v;
  }();
  return w;
}

void quantize(benchmark::State& state, GgmlType type) {
  const int threads = int(state.range(0));
  std::vector<uint8_t> out(moeserve::row_bytes(type, kCols) * size_t(kRows));
  // The first call builds the grid tables; keep it out of the timing.
  moeserve::quantize_rows(type, matrix().data(), out.data(), 1, kCols, imatrix().data());
  for (auto _ : state) {
    moeserve::quantize_rows(type, matrix().data(), out.data(), kRows, kCols, imatrix().data(), threads);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRows * kCols * int64_t(sizeof(float)));
}

const int kRegistered = [] {
  const GgmlType types[] = {GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S, GgmlType::IQ3_XXS,
                            GgmlType::IQ3_S,   GgmlType::IQ1_S,  GgmlType::IQ1_M, GgmlType::IQ4_NL,
                            GgmlType::IQ4_XS,  GgmlType::Q2_K,   GgmlType::Q3_K,  GgmlType::Q4_K,
                            GgmlType::Q5_K,    GgmlType::Q6_K,   GgmlType::Q8_0};
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  for (GgmlType type : types) {
    auto* b = benchmark::RegisterBenchmark(moeserve::type_name(type), quantize, type);
    b->Arg(1);
    if (cores > 1) b->Arg(cores);
    b->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
