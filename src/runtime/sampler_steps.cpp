#include "runtime/sampler_steps.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moeserve {
namespace {

// Best first: higher logit, then lower token id (a functor, so that the sorts inline it).
struct Better {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
  }
};
constexpr Better better;

void sort_best_first(std::vector<Candidate>& cur) { std::sort(cur.begin(), cur.end(), better); }

}  // namespace

void softmax(std::vector<Candidate>& cur) {
  if (cur.empty()) return;
  float max_logit = -INFINITY;
  for (const Candidate& c : cur) max_logit = std::max(max_logit, c.logit);
  double sum = 0.0;
  for (Candidate& c : cur) {
    const double w = std::exp(double(c.logit) - double(max_logit));
    c.p = float(w);
    sum += w;
  }
  for (Candidate& c : cur) c.p = float(double(c.p) / sum);
}

size_t argmax(const std::vector<Candidate>& cur) {
  size_t best = 0;
  for (size_t i = 1; i < cur.size(); ++i)
    if (better(cur[i], cur[best])) best = i;
  return best;
}

void top_k(std::vector<Candidate>& cur, int32_t k) {
  if (k <= 0 || size_t(k) >= cur.size()) return;
  std::partial_sort(cur.begin(), cur.begin() + k, cur.end(), better);
  cur.resize(size_t(k));
}

void typical_p(std::vector<Candidate>& cur, float p, size_t min_keep) {
  if (p >= 1.0f || cur.size() <= 1) return;
  sort_best_first(cur);
  softmax(cur);
  double entropy = 0.0;
  for (const Candidate& c : cur)
    if (c.p > 0) entropy -= double(c.p) * std::log(double(c.p));
  std::vector<double> shifted(cur.size());
  for (size_t i = 0; i < cur.size(); ++i)
    shifted[i] = cur[i].p > 0 ? std::fabs(-std::log(double(cur[i].p)) - entropy) : INFINITY;
  std::vector<size_t> order(cur.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return shifted[a] < shifted[b]; });
  double cum = 0.0;
  size_t keep = order.size();
  for (size_t i = 0; i < order.size(); ++i) {
    cum += cur[order[i]].p;
    if (cum > double(p) && i + 1 >= std::max<size_t>(min_keep, 1)) {
      keep = i + 1;
      break;
    }
  }
  std::vector<Candidate> kept;
  kept.reserve(keep);
  for (size_t i = 0; i < keep; ++i) kept.push_back(cur[order[i]]);
  cur = std::move(kept);
}

void top_p(std::vector<Candidate>& cur, float p, size_t min_keep) {
  if (p >= 1.0f || cur.size() <= 1) return;
  softmax(cur);
  const auto nucleus_of_sorted = [&](size_t from, double cum) {
    for (size_t i = from; i < cur.size(); ++i) {
      cum += cur[i].p;
      if (cum >= double(p) && i + 1 >= min_keep) return i + 1;
    }
    return cur.size();
  };
  if (cur.size() <= 1024 || min_keep > 1) {
    sort_best_first(cur);
    cur.resize(nucleus_of_sorted(0, 0.0));
    return;
  }
  // Large lists: bucket the tokens by logit (8 buckets per nat below the best), find the bucket
  // where the mass reaches p, and sort only that bucket. Buckets are ordered by logit, so the
  // result is the same set a full sort would give.
  constexpr int kBuckets = 256;
  constexpr float kPerNat = 8.0f;
  float max_logit = -INFINITY;
  for (const Candidate& c : cur) max_logit = std::max(max_logit, c.logit);
  const auto bucket = [&](const Candidate& c) {
    return std::min(kBuckets - 1, int((max_logit - c.logit) * kPerNat));
  };
  double mass[kBuckets] = {};
  for (const Candidate& c : cur) mass[bucket(c)] += c.p;
  int last = kBuckets - 1;
  double before = 0.0;  // mass of the buckets above `last`
  for (int b = 0; b < kBuckets; ++b) {
    if (before + mass[b] >= double(p)) {
      last = b;
      break;
    }
    before += mass[b];
  }
  // Tokens of the buckets above `last` first (in any order), then `last` sorted best first.
  const auto split = std::partition(cur.begin(), cur.end(), [&](const Candidate& c) { return bucket(c) < last; });
  const auto rest = std::partition(split, cur.end(), [&](const Candidate& c) { return bucket(c) == last; });
  std::sort(split, rest, better);
  cur.erase(rest, cur.end());
  const size_t from = size_t(split - cur.begin());
  cur.resize(nucleus_of_sorted(from, before));
}

void min_p(std::vector<Candidate>& cur, float p, size_t min_keep) {
  if (p <= 0.0f || cur.size() <= 1) return;
  float max_logit = -INFINITY;
  for (const Candidate& c : cur) max_logit = std::max(max_logit, c.logit);
  const float threshold = max_logit + std::log(p);  // p_i >= p * p_max
  const auto kept = std::count_if(cur.begin(), cur.end(), [&](const Candidate& c) { return c.logit >= threshold; });
  if (size_t(kept) >= min_keep) {  // order is kept; no sort needed
    std::erase_if(cur, [&](const Candidate& c) { return c.logit < threshold; });
    return;
  }
  sort_best_first(cur);
  cur.resize(std::min(cur.size(), min_keep));
}

void temperature(std::vector<Candidate>& cur, float t) {
  if (cur.empty()) return;
  if (t <= 0.0f) {
    const Candidate best = cur[argmax(cur)];
    cur.assign(1, best);
    return;
  }
  for (Candidate& c : cur) c.logit /= t;
}

}  // namespace moeserve
