#include "server/metrics.h"

#include <cstdio>

namespace moeserve::server {
namespace {

void metric(std::string& out, const char* name, const char* type, const char* help, double value) {
  char line[512];
  std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, value);
  out += line;
}

std::string label_value(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

void Metrics::add_request_work(int64_t prompt_tokens, double prompt_seconds, int64_t generated_tokens,
                               double generation_seconds, int64_t cached_tokens) {
  std::lock_guard lock(mutex_);
  prompt_tokens_ += prompt_tokens;
  prompt_seconds_ += prompt_seconds;
  generated_tokens_ += generated_tokens;
  generation_seconds_ += generation_seconds;
  cached_tokens_ += cached_tokens;
}

void Metrics::count_request(const std::string& endpoint, int status) {
  std::lock_guard lock(mutex_);
  ++requests_[{endpoint, status}];
}

void Metrics::count_prompt_cache_lookup(bool hit) {
  std::lock_guard lock(mutex_);
  ++cache_lookups_;
  if (hit) ++cache_hits_;
}

std::string Metrics::render(const Gauges& g) const {
  std::lock_guard lock(mutex_);
  std::string out;
  metric(out, "moeserve_prompt_tokens_total", "counter", "Prompt tokens processed (excluding prompt-cache reuse).", double(prompt_tokens_));
  metric(out, "moeserve_prompt_seconds_total", "counter", "Time spent processing prompts.", prompt_seconds_);
  metric(out, "moeserve_tokens_predicted_total", "counter", "Tokens generated.", double(generated_tokens_));
  metric(out, "moeserve_tokens_predicted_seconds_total", "counter", "Time spent generating tokens.", generation_seconds_);
  metric(out, "moeserve_prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.",
         prompt_seconds_ > 0 ? double(prompt_tokens_) / prompt_seconds_ : 0.0);
  metric(out, "moeserve_predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.",
         generation_seconds_ > 0 ? double(generated_tokens_) / generation_seconds_ : 0.0);
  metric(out, "moeserve_prompt_cache_lookups_total", "counter", "Requests that looked for a cached prompt prefix.", double(cache_lookups_));
  metric(out, "moeserve_prompt_cache_hits_total", "counter", "Requests that re-used a cached prompt prefix.", double(cache_hits_));
  metric(out, "moeserve_prompt_cache_reused_tokens_total", "counter", "Prompt tokens re-used from the prompt cache.", double(cached_tokens_));
  metric(out, "moeserve_slots_total", "gauge", "Sequence slots (-np).", double(g.slots_total));
  metric(out, "moeserve_requests_processing", "gauge", "Busy slots.", double(g.slots_busy));
  metric(out, "moeserve_requests_deferred", "gauge", "Requests waiting for a slot.", double(g.queue_length));
  metric(out, "moeserve_kv_cache_usage_ratio", "gauge", "Fraction of KV cache cells in use.", g.kv_cache_usage_ratio);
  metric(out, "moeserve_prompt_cache_checkpoint_bytes", "gauge", "Bytes of recurrent-state checkpoints kept by the slots.",
         double(g.prompt_cache_bytes));
  metric(out, "moeserve_prompt_cache_ram_entries", "gauge", "Evicted conversations kept in the RAM tier (--cache-ram).",
         double(g.ram_entries));
  metric(out, "moeserve_prompt_cache_ram_bytes", "gauge", "Bytes of saved sequence states in the RAM tier.", double(g.ram_bytes));
  metric(out, "moeserve_prompt_cache_ram_restores_total", "counter", "Requests that resumed from a state in the RAM tier.",
         double(g.ram_restores));
  out += "# HELP moeserve_requests_total HTTP requests by endpoint and status.\n# TYPE moeserve_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    out += "moeserve_requests_total{endpoint=\"" + label_value(key.first) + "\",status=\"" + std::to_string(key.second) +
           "\"} " + std::to_string(count) + "\n";
  }
  return out;
}

}  // namespace moeserve::server
