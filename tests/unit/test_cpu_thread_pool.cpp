// The CPU backend's thread pool: every thread runs every job, run() returns only when all have
// finished, and barrier() holds every thread until all have arrived, also when a thread is late
// by far more than the polling time (the others then sleep on the futex and must be woken).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "backend/cpu/thread_pool.h"

namespace moeserve::cpu {
namespace {

TEST(CpuThreadPool, BarriersAndCompletionWithALateThread) {
  for (int n_threads : {1, 2, 5}) {
    ThreadPool pool(n_threads);
    std::vector<int> slot(size_t(n_threads) * 16, 0);  // one cache line per thread
    for (int job = 0; job < 40; ++job) {
      std::atomic<int> phase1{0}, phase2{0};
      std::atomic<bool> all_ok{true};
      pool.run([&](int ith, int nth) {
        EXPECT_EQ(nth, n_threads);
        // A different thread is late each job, sometimes by 2 ms (far past the polling time).
        if (ith == job % nth && job % 3 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        phase1.fetch_add(1);
        pool.barrier();
        if (phase1.load() != nth) all_ok = false;
        if (ith == (job + 1) % nth && job % 3 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        phase2.fetch_add(1);
        pool.barrier();
        if (phase2.load() != nth) all_ok = false;
        slot[size_t(ith) * 16] += 1;
      });
      EXPECT_TRUE(all_ok.load()) << "threads " << n_threads << " job " << job;
      // run() returned: every thread's last write is visible.
      for (int t = 0; t < n_threads; ++t) ASSERT_EQ(slot[size_t(t) * 16], job + 1) << "thread " << t;
    }
    // A late thread at the very end of the job: the caller must wait for it (and sleep meanwhile).
    std::atomic<int> done{0};
    pool.run([&](int ith, int) {
      if (ith == n_threads - 1) std::this_thread::sleep_for(std::chrono::milliseconds(3));
      done.fetch_add(1);
    });
    EXPECT_EQ(done.load(), n_threads);
  }
}

}  // namespace
}  // namespace moeserve::cpu
