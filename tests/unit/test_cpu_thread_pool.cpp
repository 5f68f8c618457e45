// The CPU backend's thread pool: run() calls the job on every thread and returns only when all
// have finished, also when a thread is late by far more than the polling time (the caller then
// sleeps on the futex and must be woken); run_dynamic() jobs hand each item out exactly once.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "backend/cpu/thread_pool.h"

namespace moeserve::cpu {
namespace {

TEST(CpuThreadPool, CompletionWithALateThread) {
  for (int n_threads : {1, 2, 5}) {
    ThreadPool pool(n_threads);
    std::vector<int> slot(size_t(n_threads) * 16, 0);  // one cache line per thread
    for (int job = 0; job < 40; ++job) {
      std::atomic<int> ran{0};
      pool.run([&](int ith, int nth) {
        EXPECT_EQ(nth, n_threads);
        // A different thread is late each job, sometimes by 2 ms (far past the polling time).
        if (ith == job % nth && job % 3 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        ran.fetch_add(1);
        slot[size_t(ith) * 16] += 1;
      });
      EXPECT_EQ(ran.load(), n_threads) << "job " << job;
      // run() returned: every thread's last write is visible.
      for (int t = 0; t < n_threads; ++t) ASSERT_EQ(slot[size_t(t) * 16], job + 1) << "thread " << t;
    }
  }
}

// run_dynamic between run() jobs: every item claimed exactly once by whichever threads take part,
// the caller always among them; workers kept late (sleeping at the start of a job) either join or
// skip it, and the following every-thread job still gets every thread exactly once.
TEST(CpuThreadPool, DynamicJobsMixWithEveryThreadJobs) {
  for (int n_threads : {1, 2, 4}) {
    ThreadPool pool(n_threads);
    for (int job = 0; job < 60; ++job) {
      constexpr int kItems = 97;
      std::vector<std::atomic<int>> hits(kItems);
      std::atomic<int> next{0};
      bool caller_took_part = false;
      pool.run_dynamic([&](int ith, int nth) {
        EXPECT_EQ(nth, n_threads);
        if (ith == 0) caller_took_part = true;
        if (ith != 0 && (ith + job) % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));
        for (int i = next.fetch_add(1); i < kItems; i = next.fetch_add(1)) hits[size_t(i)].fetch_add(1);
      });
      EXPECT_TRUE(caller_took_part);
      for (int i = 0; i < kItems; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "job " << job << " item " << i;

      std::vector<int> ran(size_t(n_threads) * 16, 0);
      pool.run([&](int ith, int) { ran[size_t(ith) * 16] += 1; });
      for (int t = 0; t < n_threads; ++t) ASSERT_EQ(ran[size_t(t) * 16], 1) << "job " << job << " thread " << t;
    }
  }
}

}  // namespace
}  // namespace moeserve::cpu
