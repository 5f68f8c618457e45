// One thread's weight rows per second through the kernel table at one activation column (decode),
// for the grid i-quants of the routed experts: rows one at a time (vec_dot_cols, 1 column) against
// rows in groups (vec_dot_rows), rows of 512 weights (an expert's down row, 2 super-blocks) and
// 2048 (gate/up), both grid lookups of the AVX-512 kernels, rows in the L2 cache (256 KiB, read
// again and again) or streamed from RAM (64 MiB, hardware prefetch only). Reports weight bytes per
// second; the CPU time is the thread's, so the figures hold on a loaded machine too.
// Arguments: row length, rows per call (1 = the one-row kernel), lookup (0 inserts, 1 gathers),
// ram (0 L2-resident, 1 streamed).
#include <benchmark/benchmark.h>

#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/ggml_type.h"
#include "model/synth/random_blocks.h"

namespace {

using namespace moeserve;

const std::vector<uint8_t>& rows(GgmlType type, int64_t k, size_t bytes) {
  static std::map<std::tuple<GgmlType, int64_t, size_t>, std::vector<uint8_t>> cache;
  auto it = cache.find({type, k, bytes});
  if (it != cache.end()) return it->second;
  const size_t rb = row_bytes(type, k);
  std::vector<uint8_t> w(bytes / rb * rb);
  const synth::BlockFiller filler(type);
  synth::Rng rng(5);
  filler.fill(w.data(), k, int64_t(w.size() / rb), 0.02f, rng);
  return cache.emplace(std::tuple{type, k, bytes}, std::move(w)).first->second;
}

void iq_rows(benchmark::State& state, GgmlType type) {
  const int64_t k = state.range(0);
  const int nr = int(state.range(1));
  const cpu::GridLookup lookup = state.range(2) == 1 ? cpu::GridLookup::gathers : cpu::GridLookup::inserts;
  const cpu::Kernels kernels = cpu::make_kernels(cpu::detect_isa(), lookup);
  const std::vector<uint8_t>& w = rows(type, k, state.range(3) ? size_t(64) << 20 : size_t(256) << 10);
  const size_t rb = row_bytes(type, k);
  const int64_t n_rows = int64_t(w.size() / rb) / nr * nr;
  const GgmlType act = type_traits(type).vec_dot_type;
  std::vector<float> xf(static_cast<size_t>(k));
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& v : xf) v = dist(gen);
  std::vector<uint8_t> x(row_bytes(act, k));
  kernels.quantize_for(act)(xf.data(), x.data(), k);
  const void* a = x.data();
  float out[cpu::kMaxRows];
  for (auto _ : state) {
    for (int64_t r = 0; r < n_rows; r += nr) {
      if (nr == 1) {
        kernels.dot_cols(type, k, w.data() + size_t(r) * rb, &a, 1, out);
      } else {
        kernels.dot_rows(type, k, w.data() + size_t(r) * rb, rb, a, nr, out);
      }
      benchmark::DoNotOptimize(out[0]);
    }
  }
  state.counters["weight_GB/s"] =
      benchmark::Counter(double(n_rows) * double(rb) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

void args(benchmark::internal::Benchmark* b) {
  for (int64_t ram : {0, 1}) {
    for (int64_t lookup : {0, 1}) {
      for (int64_t k : {512, 2048}) {
        for (int64_t nr : {1, 4}) b->Args({k, nr, lookup, ram});
      }
    }
  }
  b->ArgNames({"k", "rows", "lookup", "ram"})->Unit(benchmark::kMicrosecond);
}

BENCHMARK_CAPTURE(iq_rows, IQ2_XS, GgmlType::IQ2_XS)->Apply(args);
BENCHMARK_CAPTURE(iq_rows, IQ2_XXS, GgmlType::IQ2_XXS)->Apply(args);
BENCHMARK_CAPTURE(iq_rows, IQ3_XXS, GgmlType::IQ3_XXS)->Apply(args);

}  // namespace

BENCHMARK_MAIN();
