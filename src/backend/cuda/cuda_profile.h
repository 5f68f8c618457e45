// GPU time per op kind (MOESERVE_PROFILE=1): events recorded around every outermost op on the
// compute stream, summed per op name (OpTimes), printed as a table to stderr when the backend closes.
// While profiling, decode steps run without CUDA graphs (events cannot be timed inside a
// replayed graph), so launch gaps are larger than in normal runs; the table says where the GPU
// time goes, not how fast a step is.
#pragma once

#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "backend/op_times.h"

namespace moeserve::cuda {

class OpProfiler {
 public:
  explicit OpProfiler(cudaStream_t stream) : stream_(stream) {}
  ~OpProfiler();
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  void begin(const char* op);
  // Renames the op begun last when it is `op` (not an enclosing fused op): e.g. a product named
  // by its weight type and shape, so the table splits one op kind by what it computed.
  void label(const char* op, std::string name);
  void end();
  // Waits for the recorded ops and prints the table (once, at the end).
  void print();

 private:
  struct Pending {
    std::string op;
    cudaEvent_t start, stop;
  };
  cudaEvent_t take_event();
  void collect();  // synchronizes on the recorded events and adds them up

  cudaStream_t stream_;
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> free_;
  OpTimes times_;
  bool printed_ = false;
};

}  // namespace moeserve::cuda
