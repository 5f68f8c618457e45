#include "runtime/sampler_stop.h"

#include <algorithm>

#include "core/error.h"

namespace moeserve {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (size_t i = 0; i < stops_.size(); ++i)
    if (stops_[i].empty()) fail("stop[", i, "]: a stop string must not be empty");
}

StopStringMatcher::Result StopStringMatcher::feed(std::string_view text) {
  Result r;
  if (stopped_) return r;
  held_.append(text);
  // The match that completes first wins (as it would when the text comes one byte at a time);
  // among those ending at the same byte, the one that starts first.
  size_t best_end = std::string::npos;
  size_t best_pos = 0;
  for (size_t i = 0; i < stops_.size(); ++i) {
    const size_t pos = held_.find(stops_[i]);
    if (pos == std::string::npos) continue;
    const size_t end = pos + stops_[i].size();
    if (end < best_end || (end == best_end && pos < best_pos)) {
      best_end = end;
      best_pos = pos;
      r.matched = int(i);
    }
  }
  if (r.matched >= 0) {
    r.text = held_.substr(0, best_pos);
    held_.clear();
    stopped_ = true;
    return r;
  }
  // Hold back the longest tail that could still grow into a stop string.
  size_t hold = 0;
  for (const std::string& stop : stops_) {
    for (size_t len = std::min(stop.size() - 1, held_.size()); len > hold; --len) {
      if (held_.compare(held_.size() - len, len, stop, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  r.text = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return r;
}

std::string StopStringMatcher::finish() {
  std::string rest;
  rest.swap(held_);
  return rest;
}

}  // namespace moeserve
