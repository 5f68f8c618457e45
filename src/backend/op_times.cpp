#include "backend/op_times.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "core/ggml_type.h"

namespace moeserve {

bool OpTimes::requested() {
  const char* v = std::getenv("MOESERVE_PROFILE");
  return v && std::string(v) != "0";
}

void OpTimes::add(const std::string& op, double ms) {
  Total& t = totals_[op];
  t.calls += 1;
  t.ms += ms;
  t.max_ms = std::max(t.max_ms, ms);
}

void OpTimes::print(const char* title) const {
  double sum = 0;
  for (const auto& [op, t] : totals_) sum += t.ms;
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  std::fprintf(stderr, "%s\n%-44s %10s %12s %10s %10s %7s\n", title, "op", "calls", "total ms", "us/call", "max us",
               "share");
  for (const auto& [op, t] : rows) {
    std::fprintf(stderr, "%-44s %10lld %12.3f %10.2f %10.1f %6.1f%%\n", op.c_str(), t.calls, t.ms,
                 1000.0 * t.ms / double(std::max(t.calls, 1LL)), 1000.0 * t.max_ms, sum > 0 ? 100.0 * t.ms / sum : 0.0);
  }
}

std::string matmul_label(const Tensor& w, const Tensor& x) {
  return str_cat("matmul ", type_traits(w.type).name, " ", w.ne[0], "x", w.ne[1], " n=", x.ne[1]);
}

std::string moe_experts_label(const ExpertWeights& experts, const Tensor& x) {
  return str_cat("moe_experts ", type_traits(experts.gate.type).name, " n=", x.ne[1]);
}

}  // namespace moeserve
