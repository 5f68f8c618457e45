#include "backend/cpu/thread_pool.h"

namespace moeserve::cpu {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// About 50-100 microseconds of polling before a worker goes to sleep between jobs.
constexpr int kSpinsBeforeSleep = 20000;

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
    for (int spin = 0; gen == seen && spin < kSpinsBeforeSleep; ++spin) {
      cpu_relax();
      gen = generation_.load(std::memory_order_acquire);
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
