// Memory read bandwidth with the CPU backend's thread pool: the denominator of "fraction of the
// bandwidth bound" for CPU decode (active weight bytes per token / bytes per second). Each thread
// sums 64-bit words of its contiguous share of a 1 GiB buffer (larger than any cache), as a
// matvec streams its rows; reports bytes read per second of wall time. Argument: threads (1, the
// powers of two below the core count, and the core count).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/thread_pool.h"

namespace {

using namespace moeserve;

constexpr size_t kBytes = size_t(1) << 30;

// Eight independent sums so the loads are not serialized behind one add chain.
uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t s[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) s[j] += p[i + size_t(j)];
  }
  for (; i < n; ++i) s[0] += p[i];
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

void read_bandwidth(benchmark::State& state) {
  const int n_threads = int(state.range(0));
  cpu::ThreadPool pool(n_threads);
  const size_t words = kBytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[words]);
  // First touch by the thread that reads each share later (pages land on its node).
  pool.run([&](int ith, int nth) {
    const auto [b, e] = cpu::share(int64_t(words), ith, nth);
    for (int64_t i = b; i < e; ++i) buf[size_t(i)] = uint64_t(i);
  });
  std::vector<uint64_t> sums(size_t(n_threads) * 8);  // one cache line per thread
  for (auto _ : state) {
    pool.run([&](int ith, int nth) {
      const auto [b, e] = cpu::share(int64_t(words), ith, nth);
      sums[size_t(ith) * 8] = sum_words(buf.get() + b, size_t(e - b));
    });
    benchmark::DoNotOptimize(sums.data());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(double(kBytes) * double(state.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
}

void thread_counts(benchmark::internal::Benchmark* b) {
  const int cores = int(std::thread::hardware_concurrency());
  for (int t = 1; t < cores; t *= 2) b->Arg(t);
  b->Arg(cores > 0 ? cores : 1);
  b->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(read_bandwidth)->Apply(thread_counts);

}  // namespace

BENCHMARK_MAIN();
