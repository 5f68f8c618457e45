#include "backend/cuda/cuda_profile.h"

#include <string>

#include "backend/cuda/cuda_check.h"

namespace moeserve::cuda {
namespace {

// Events in flight before they are collected: bounds the pool, and collecting waits for the GPU.
constexpr size_t kMaxPending = 8192;

}  // namespace

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
    times_.add(p.op, ms);
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
  times_.print("GPU time per op (MOESERVE_PROFILE, no graphs):");
}

}  // namespace moeserve::cuda
