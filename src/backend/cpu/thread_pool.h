// A fixed pool of worker threads for the CPU backend. The caller is thread 0; run() hands one job
// to every thread and returns when all are done. Workers spin a while between jobs (a decode step
// issues hundreds of small ops back to back) and then sleep on a futex, so an idle engine costs
// no CPU. The caller waiting for the workers of a job spins briefly, then sleeps too, so a
// descheduled worker gets a core back instead of competing with a poller.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace moeserve::cpu {

class ThreadPool {
 public:
  // n_threads >= 1 (the caller counts as one).
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls f(ith, nth) on every thread, ith in [0, nth); blocks until all have returned.
  template <typename F>
  void run(F&& f) {
    run_job(trampoline<F>, const_cast<void*>(static_cast<const void*>(&f)), true);
  }

  // For jobs whose work items every caller of f claims from a shared counter until none is left:
  // f(ith, nth) runs on the caller and on the workers that start before the caller's own call
  // returns (then nothing is left to claim); workers that start later skip the job, so a thread
  // the OS has descheduled does not hold the job up.
  template <typename F>
  void run_dynamic(F&& f) {
    run_job(trampoline<F>, const_cast<void*>(static_cast<const void*>(&f)), false);
  }

 private:
  using JobFn = void (*)(void* ctx, int ith, int nth);
  template <typename F>
  static void trampoline(void* ctx, int ith, int nth) {
    (*static_cast<std::remove_reference_t<F>*>(ctx))(ith, nth);
  }
  // every_thread: run(); otherwise run_dynamic().
  void run_job(JobFn fn, void* ctx, bool every_thread);
  void worker(int ith);

  int n_threads_;
  std::vector<std::thread> threads_;
  // What the spinning workers poll (read-mostly) on its own cache line; the counters that workers
  // write when they finish or fall asleep on others, so those writes do not take the polled line
  // away from every spinning core.
  alignas(64) std::atomic<uint32_t> generation_{0};  // bumped once per job (and once to stop)
  JobFn job_ = nullptr;
  void* job_ctx_ = nullptr;
  std::atomic<bool> stop_{false};
  // Admission to the current job: its generation (high 32 bits), kClosed once the caller admits
  // no more workers (run_dynamic), and the number of workers admitted (low bits). A worker enters
  // by adding one to the word and is admitted to the job the old word names unless it was closed,
  // so it cannot enter a job the caller has closed or moved past, and reads job_ only once admitted.
  static constexpr uint64_t kClosed = uint64_t(1) << 31;
  alignas(64) std::atomic<uint64_t> admit_{0};
  alignas(64) std::atomic<int> finished_{0};  // admitted workers done with the current job
  alignas(64) std::atomic<int> sleeping_{0};  // workers asleep between jobs
  std::atomic<int> caller_sleeping_{0};       // the caller asleep until the admitted workers finish
};

}  // namespace moeserve::cpu
