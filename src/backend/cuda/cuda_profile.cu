#include "backend/cuda/cuda_profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "backend/cuda/cuda_check.h"

namespace moeserve::cuda {
namespace {

// Events in flight before they are collected: bounds the pool, and collecting waits for the GPU.
constexpr size_t kMaxPending = 8192;

}  // namespace

bool OpProfiler::requested() {
  const char* v = std::getenv("MOESERVE_PROFILE");
  return v && std::string(v) != "0";
}

OpProfiler::~OpProfiler() {
  print();
  for (const Pending& p : pending_) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
}

cudaEvent_t OpProfiler::take_event() {
  if (free_.empty()) {
    cudaEvent_t e = nullptr;
    MOESERVE_CUDA_CHECK(cudaEventCreate(&e));
    return e;
  }
  cudaEvent_t e = free_.back();
  free_.pop_back();
  return e;
}

void OpProfiler::begin(const char* op) {
  if (pending_.size() >= kMaxPending) collect();
  Pending p{op, take_event(), take_event()};
  MOESERVE_CUDA_CHECK(cudaEventRecord(p.start, stream_));
  pending_.push_back(p);
}

void OpProfiler::label(const char* op, std::string name) {
  if (!pending_.empty() && pending_.back().op == op) pending_.back().op = std::move(name);
}

void OpProfiler::end() {
  if (pending_.empty()) return;
  MOESERVE_CUDA_CHECK(cudaEventRecord(pending_.back().stop, stream_));
}

void OpProfiler::collect() {
  for (const Pending& p : pending_) {
    MOESERVE_CUDA_CHECK(cudaEventSynchronize(p.stop));
    float ms = 0;
    MOESERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, p.start, p.stop));
    Total& t = totals_[p.op];
    t.calls += 1;
    t.ms += ms;
    t.max_ms = std::max(t.max_ms, double(ms));
    free_.push_back(p.start);
    free_.push_back(p.stop);
  }
  pending_.clear();
}

void OpProfiler::print() {
  if (printed_) return;
  printed_ = true;
  try {
    collect();
  } catch (...) {
    return;  // a failed device has nothing to report
  }
  double sum = 0;
  for (const auto& [op, t] : totals_) sum += t.ms;
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  std::fprintf(stderr, "GPU time per op (MOESERVE_PROFILE, no graphs):\n%-44s %10s %12s %10s %10s %7s\n", "op",
               "calls", "total ms", "us/call", "max us", "share");
  for (const auto& [op, t] : rows) {
    std::fprintf(stderr, "%-44s %10lld %12.3f %10.2f %10.1f %6.1f%%\n", op.c_str(), t.calls, t.ms,
                 1000.0 * t.ms / double(std::max(t.calls, 1LL)), 1000.0 * t.max_ms, sum > 0 ? 100.0 * t.ms / sum : 0.0);
  }
}

}  // namespace moeserve::cuda
