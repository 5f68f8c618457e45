#include "backend/cpu/thread_pool.h"

#include <chrono>

namespace moeserve::cpu {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// How long a worker polls for the next job before it sleeps. Between the MoE layers of a hybrid
// decode step the pool idles while the GPU runs a layer's other ops (0.1-0.5 ms); waking sleeping
// workers would add tens of microseconds to every layer.
constexpr auto kSpinBeforeSleep = std::chrono::milliseconds(2);
constexpr int kSpinsPerClockRead = 256;

// Inside a job (the caller waiting for the workers) threads poll this long, then sleep
// until woken. Balanced waits are a few microseconds; a longer one means a thread was descheduled
// (all cores busy, or a virtual machine's host taking a core), and pollers that keep their cores
// then only delay it further: every op of a decode step waits for its slowest thread.
constexpr auto kSpinInJob = std::chrono::microseconds(50);

// Waits until `value` differs from `old`: polls for kSpinInJob, then sleeps on the futex, counted
// in `sleepers` so that the side that changes the value only makes the wake-up call when needed.
template <typename T>
void spin_then_wait(const std::atomic<T>& value, T old, std::atomic<int>& sleepers) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinInJob;
  for (int spin = 1; value.load(std::memory_order_acquire) == old; ++spin) {
    cpu_relax();
    if (spin % 64 == 0 && std::chrono::steady_clock::now() > deadline) {
      sleepers.fetch_add(1);  // seq_cst: ordered against the waker's change and its sleepers check
      for (T v = value.load(); v == old; v = value.load()) value.wait(v);
      sleepers.fetch_sub(1);
      return;
    }
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  threads_.reserve(size_t(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::run_job(JobFn fn, void* ctx, bool every_thread) {
  if (n_threads_ == 1) {
    fn(ctx, 0, 1);
    return;
  }
  // No worker touches job_, job_ctx_ or finished_ now: the last job's admitted workers are done.
  job_ = fn;
  job_ctx_ = ctx;
  finished_.store(0, std::memory_order_relaxed);
  const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
  admit_.store(uint64_t(gen) << 32, std::memory_order_release);  // an admitted worker sees job_
  generation_.store(gen);  // publishes the above (seq_cst)
  if (sleeping_.load() > 0) generation_.notify_all();
  fn(ctx, 0, n_threads_);
  const int admitted = every_thread ? n_threads_ - 1 : int(admit_.fetch_or(kClosed) & (kClosed - 1));
  // finished_ only counts up, so waiting for "differs from the last value seen" reaches it.
  for (int done = finished_.load(std::memory_order_acquire); done != admitted;
       done = finished_.load(std::memory_order_acquire)) {
    spin_then_wait(finished_, done, caller_sleeping_);
  }
}

void ThreadPool::worker(int ith) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = generation_.load(std::memory_order_acquire);
    const auto spin_until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
    for (int spin = 1; gen == seen; ++spin) {
      cpu_relax();
      gen = generation_.load(std::memory_order_acquire);
      if (spin % kSpinsPerClockRead == 0 && std::chrono::steady_clock::now() > spin_until) break;
      if (spin % 4096 == 0) std::this_thread::yield();  // oversubscribed machine: let others run
    }
    while (gen == seen) {
      sleeping_.fetch_add(1);
      generation_.wait(seen);
      sleeping_.fetch_sub(1);
      gen = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load()) return;
    // One atomic add per worker (no retry loop among 15 workers starting at once). A count added
    // to a closed word is never read: the caller took its count when it closed the job.
    const uint64_t word = admit_.fetch_add(1, std::memory_order_acq_rel);
    if (!(word & kClosed)) {
      job_(job_ctx_, ith, n_threads_);
      finished_.fetch_add(1);  // seq_cst, before the sleeping check
      if (caller_sleeping_.load() > 0) finished_.notify_all();
    }
    // The job the admission word belonged to, done or closed (the generation may have moved on
    // since `gen` was read; a newer job was then entered or found closed).
    seen = uint32_t(word >> 32);
  }
}

}  // namespace moeserve::cpu
