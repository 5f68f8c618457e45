#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace moeserve {

int32_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return int32_t(best);
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab) {
  if (params_.temperature <= 0.0f) return argmax(logits, n_vocab);
  candidates_.resize(size_t(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) candidates_[size_t(i)] = {logits[i], int32_t(i)};
  const auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && size_t(params_.top_k) < keep) {
    keep = size_t(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + long(keep), candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(keep);
  const float max_logit = candidates_[0].first;
  double sum = 0;
  for (auto& c : candidates_) sum += (c.first = std::exp((c.first - max_logit) / params_.temperature));
  if (params_.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < candidates_.size() && cum < params_.top_p * sum) cum += candidates_[n++].first;
    candidates_.resize(std::max<size_t>(n, 1));
    sum = cum > 0 ? cum : candidates_[0].first;
  }
  double r = std::uniform_real_distribution<double>(0.0, sum)(rng_);
  for (const auto& c : candidates_) {
    if ((r -= c.first) <= 0) return c.second;
  }
  return candidates_.back().second;
}

}  // namespace moeserve
