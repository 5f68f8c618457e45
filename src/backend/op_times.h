// Time per op kind (MOESERVE_PROFILE=1): summed per op name and printed as a table to stderr when
// the backend that collects it closes. The CUDA backend adds GPU event times, the CPU backend the
// wall time of each op (its ops run to completion before they return).
#pragma once

#include <map>
#include <string>

#include "backend/backend.h"

namespace moeserve {

class OpTimes {
 public:
  // Whether MOESERVE_PROFILE asks for it.
  static bool requested();

  void add(const std::string& op, double ms);
  // The table, most expensive op first, under `title`.
  void print(const char* title) const;

 private:
  struct Total {
    long long calls = 0;
    double ms = 0;
    double max_ms = 0;  // the slowest call (first calls load kernels, fault pages in)
  };
  std::map<std::string, Total> totals_;
};

// Row names that split a product op by what it computed: weight type, shape and column count.
std::string matmul_label(const Tensor& w, const Tensor& x);
std::string moe_experts_label(const ExpertWeights& experts, const Tensor& x);

}  // namespace moeserve
