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

void ThreadPool::run_job(JobFn fn, void* ctx) {
  if (n_threads_ == 1) {
    fn(ctx, 0, 1);
    return;
  }
  job_ = fn;
  job_ctx_ = ctx;
  pending_.store(n_threads_ - 1);
  generation_.fetch_add(1);  // publishes job_ (seq_cst)
  if (sleeping_.load() > 0) generation_.notify_all();
  fn(ctx, 0, n_threads_);
  for (int spin = 1; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    cpu_relax();
    if (spin % 4096 == 0) std::this_thread::yield();  // oversubscribed machine: let workers run
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
    seen = gen;
    if (stop_.load()) return;
    job_(job_ctx_, ith, n_threads_);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

void ThreadPool::barrier() {
  if (n_threads_ == 1) return;
  const uint32_t phase = barrier_phase_.load(std::memory_order_acquire);
  if (barrier_arrived_.fetch_add(1, std::memory_order_acq_rel) == n_threads_ - 1) {
    barrier_arrived_.store(0, std::memory_order_relaxed);
    barrier_phase_.fetch_add(1, std::memory_order_acq_rel);
    return;
  }
  for (int spin = 1; barrier_phase_.load(std::memory_order_acquire) == phase; ++spin) {
    cpu_relax();
    if (spin % 4096 == 0) std::this_thread::yield();
  }
}

}  // namespace moeserve::cpu
