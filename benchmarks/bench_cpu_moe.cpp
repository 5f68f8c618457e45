// CPU routed-expert FFN of one Qwen3-Coder-Next layer (n_embd 2048, n_ff 512, 512 experts,
// top-10), the op that bounds decode when experts stay in RAM (--cpu-moe, --n-cpu-moe): tokens
// 1 (decode), 4 and 64. Reports the bytes of the experts the tokens route to per second (the
// decode roofline quantity: with 1 token, 10 experts x 3 matrices) against the machine's read
// bandwidth (bench_memory_bandwidth). Weights: random valid blocks (synth::BlockFiller), IQ2_XS
// as in the synthetic model; routing: distinct random experts per token, weights 1/k.
// Arguments: tokens, threads (1, 2, all cores). Time per step is the benchmark's time column.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/ggml_type.h"
#include "model/synth/random_blocks.h"

namespace {

using namespace moeserve;

constexpr int64_t kEmbd = 2048, kFf = 512, kExperts = 512, kUsed = 10;
constexpr GgmlType kType = GgmlType::IQ2_XS;
constexpr int kLayers = 4, kRoutings = 16;

struct Experts {
  std::vector<uint8_t> gate, up, down;
};

const std::vector<Experts>& layers() {
  static const std::vector<Experts> all = [] {
    std::vector<Experts> v(kLayers);
    Experts& x = v[0];
    const synth::BlockFiller filler(kType);
    synth::Rng rng(7);
    x.gate.resize(row_bytes(kType, kEmbd) * size_t(kFf * kExperts));
    x.up.resize(x.gate.size());
    x.down.resize(row_bytes(kType, kFf) * size_t(kEmbd * kExperts));
    filler.fill(x.gate.data(), kEmbd, kFf * kExperts, 0.02f, rng);
    filler.fill(x.up.data(), kEmbd, kFf * kExperts, 0.02f, rng);
    filler.fill(x.down.data(), kFf, kEmbd * kExperts, 0.04f, rng);
    for (int l = 1; l < kLayers; ++l) v[size_t(l)] = x;
    return v;
  }();
  return all;
}

void moe(benchmark::State& state) {
  const int64_t n = state.range(0);
  cpu::CpuOptions opt;
  opt.n_threads = int(state.range(1));
  opt.grid_lookup = state.range(2) == 1 ? cpu::GridLookup::gathers : cpu::GridLookup::inserts;
  auto be = std::make_unique<cpu::CpuBackend>(opt);
  Buffer xb = be->alloc(size_t(kEmbd * n) * 4), yb = be->alloc(size_t(kEmbd * n) * 4);
  Buffer ib = be->alloc(size_t(kUsed * n * kRoutings) * 4), wb = be->alloc(size_t(kUsed * n) * 4);
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < kEmbd * n; ++i) static_cast<float*>(xb.data())[i] = dist(gen);
  std::vector<int32_t> all(kExperts);
  std::iota(all.begin(), all.end(), 0);
  auto* id = static_cast<int32_t*>(ib.data());
  for (int64_t t = 0; t < n * kRoutings; ++t) {
    std::shuffle(all.begin(), all.end(), gen);
    for (int64_t j = 0; j < kUsed; ++j) id[t * kUsed + j] = all[size_t(j)];
  }
  for (int64_t i = 0; i < kUsed * n; ++i) static_cast<float*>(wb.data())[i] = 1.0f / float(kUsed);
  auto stacked = [](const std::vector<uint8_t>& bytes, int64_t cols, int64_t rows) {
    return Tensor::contiguous(kType, {cols, rows, kExperts, 1}, const_cast<uint8_t*>(bytes.data()));
  };
  std::vector<ExpertWeights> w;
  for (const Experts& e : layers()) {
    w.push_back(ExpertWeights{stacked(e.gate, kEmbd, kFf), stacked(e.up, kEmbd, kFf), stacked(e.down, kFf, kEmbd)});
  }
  const Tensor x = Tensor::contiguous(GgmlType::F32, {kEmbd, n, 1, 1}, xb.data());
  const Tensor y = Tensor::contiguous(GgmlType::F32, {kEmbd, n, 1, 1}, yb.data());
  const Tensor wts = Tensor::contiguous(GgmlType::F32, {kUsed, n, 1, 1}, wb.data());
  auto ids = [&](int64_t step) {
    return Tensor::contiguous(GgmlType::I32, {kUsed, n, 1, 1}, id + (step % kRoutings) * kUsed * n);
  };
  be->moe_experts(y, x, w[0], ids(0), wts);
  const int64_t ram = state.range(3);
  int64_t step = 0;
  double bytes = 0;
  for (auto _ : state) {
    const int64_t s = ram ? step : 0;
    be->moe_experts(y, x, w[size_t(s % kLayers)], ids(s), wts);
    // Bytes of the distinct experts the step routes to.
    std::vector<int32_t> used(id + (s % kRoutings) * kUsed * n, id + (s % kRoutings + 1) * kUsed * n);
    std::sort(used.begin(), used.end());
    const int64_t distinct = std::unique(used.begin(), used.end()) - used.begin();
    bytes += double(distinct) * double(2 * row_bytes(kType, kEmbd) * kFf + row_bytes(kType, kFf) * kEmbd);
    ++step;
  }
  state.counters["expert_GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
}

void args(benchmark::internal::Benchmark* b) {
  const int64_t cores = std::thread::hardware_concurrency();
  for (int64_t n : {1, 4, 64}) {
    for (int64_t ram : {1, 0}) {
      for (int64_t lookup : {0, 1}) {
        b->Args({n, 1, lookup, ram})->Args({n, 2, lookup, ram});
        if (cores > 2) b->Args({n, cores / 2, lookup, ram})->Args({n, cores, lookup, ram});
      }
    }
  }
  b->ArgNames({"tokens", "threads", "lookup", "ram"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(moe)->Apply(args);

}  // namespace

BENCHMARK_MAIN();
