// Server metrics in the Prometheus text exposition format (version 0.0.4), for GET /metrics.
// Counters are cumulative since start; gauges are read when rendered.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace moeserve::server {

class Metrics {
 public:
  // Completed work of one request, added once it finishes.
  void add_request_work(int64_t prompt_tokens, double prompt_seconds, int64_t generated_tokens, double generation_seconds,
                        int64_t cached_tokens);
  void count_request(const std::string& endpoint, int status);
  void count_prompt_cache_lookup(bool hit);

  // Values sampled when /metrics is read (busy slots, queue length, KV use, ...).
  struct Gauges {
    int64_t slots_total = 0;
    int64_t slots_busy = 0;
    int64_t queue_length = 0;
    double kv_cache_usage_ratio = 0;
    int64_t prompt_cache_bytes = 0;  // recurrent-state checkpoints kept by the slots
    int64_t ram_entries = 0;         // evicted conversations kept in the RAM tier (--cache-ram)
    int64_t ram_bytes = 0;
    int64_t ram_restores = 0;        // requests resumed from the RAM tier
  };
  std::string render(const Gauges& gauges) const;

 private:
  mutable std::mutex mutex_;
  int64_t prompt_tokens_ = 0;
  double prompt_seconds_ = 0;
  int64_t generated_tokens_ = 0;
  double generation_seconds_ = 0;
  int64_t cached_tokens_ = 0;
  int64_t cache_lookups_ = 0;
  int64_t cache_hits_ = 0;
  std::map<std::pair<std::string, int>, int64_t> requests_;  // (endpoint, status) -> count
};

}  // namespace moeserve::server
