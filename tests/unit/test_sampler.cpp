// The sampler against distributions computed here, in double precision, straight from the
// definitions of each step (llama.cpp semantics: truncation at temperature 1, temperature last).
// Draws are checked with a chi-square test at a fixed seed; the bound is loose (p ~ 1e-6 for a
// correct sampler) yet a sampler that applies a step wrongly, or in another order, fails it, which
// the negative control below demonstrates.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "runtime/sampler.h"
#include "runtime/sampler_steps.h"

namespace moeserve {
namespace {

const std::vector<float> kLogits = {1.0f, 2.5f, -0.5f, 0.3f, 2.0f, -2.0f, 1.7f, 0.0f, 3.0f, -1.0f, 0.9f, 1.2f};

SamplingParams plain(uint64_t seed = 42) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

// ---- the expected distribution, from the definitions -------------------------------------------

struct Expect {
  std::vector<double> logit;   // -inf: excluded
  std::vector<double> probs() const {
    double mx = -INFINITY;
    for (double l : logit) mx = std::max(mx, l);
    std::vector<double> p(logit.size());
    double sum = 0;
    for (size_t i = 0; i < p.size(); ++i) sum += (p[i] = std::isinf(logit[i]) ? 0.0 : std::exp(logit[i] - mx));
    for (double& x : p) x /= sum;
    return p;
  }
  std::vector<size_t> by_prob() const {  // most likely first
    std::vector<size_t> idx(logit.size());
    std::iota(idx.begin(), idx.end(), size_t(0));
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return logit[a] > logit[b]; });
    return idx;
  }
  void keep_only(const std::vector<size_t>& kept) {
    std::vector<double> out(logit.size(), -INFINITY);
    for (size_t i : kept) out[i] = logit[i];
    logit = out;
  }
  size_t alive() const { return size_t(std::count_if(logit.begin(), logit.end(), [](double l) { return !std::isinf(l); })); }
  void top_k(size_t k) {
    const auto order = by_prob();
    keep_only(std::vector<size_t>(order.begin(), order.begin() + std::min(k, alive())));
  }
  void top_p(double p) {
    const auto pr = probs();
    std::vector<size_t> kept;
    double cum = 0;
    for (size_t i : by_prob()) {
      if (std::isinf(logit[i])) break;
      kept.push_back(i);
      cum += pr[i];
      if (cum >= p) break;
    }
    keep_only(kept);
  }
  void min_p(double p) {
    const auto pr = probs();
    const double mx = *std::max_element(pr.begin(), pr.end());
    std::vector<size_t> kept;
    for (size_t i = 0; i < pr.size(); ++i)
      if (pr[i] > 0 && pr[i] >= p * mx) kept.push_back(i);
    keep_only(kept);
  }
  void typical(double p) {
    const auto pr = probs();
    double h = 0;
    for (double x : pr)
      if (x > 0) h -= x * std::log(x);
    std::vector<size_t> idx;
    for (size_t i : by_prob())
      if (pr[i] > 0) idx.push_back(i);
    std::stable_sort(idx.begin(), idx.end(),
                     [&](size_t a, size_t b) { return std::fabs(-std::log(pr[a]) - h) < std::fabs(-std::log(pr[b]) - h); });
    std::vector<size_t> kept;
    double cum = 0;
    for (size_t i : idx) {
      kept.push_back(i);
      cum += pr[i];
      if (cum > p) break;
    }
    keep_only(kept);
  }
  void temperature(double t) {
    for (double& l : logit) l /= t;
  }
};

Expect from(const std::vector<float>& logits) {
  Expect e;
  for (float l : logits) e.logit.push_back(l);
  return e;
}

// ---- chi-square --------------------------------------------------------------------------------

std::vector<int> draw(Sampler& s, const std::vector<float>& logits, int n) {
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++counts[size_t(s.sample(logits).token)];
  return counts;
}

// Chi-square statistic of the counts against `p`; a token with p == 0 that was drawn fails outright.
double chi_square(const std::vector<int>& counts, const std::vector<double>& p, int n, size_t& df) {
  double chi = 0;
  df = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) {
      if (counts[i] != 0) return INFINITY;
      continue;
    }
    const double e = p[i] * n;
    chi += (counts[i] - e) * (counts[i] - e) / e;
    ++df;
  }
  df = df > 0 ? df - 1 : 0;
  return chi;
}

// Loose bound: mean df, plus 7 standard deviations (sqrt(2 df)), plus slack for tiny df.
double bound(size_t df) { return double(df) + 7.0 * std::sqrt(2.0 * double(df)) + 12.0; }

void expect_distribution(const SamplingParams& params, const std::vector<float>& logits, const Expect& expect,
                         const std::vector<int32_t>& history = {}) {
  Sampler s(params, int32_t(logits.size()));
  for (int32_t t : history) s.accept(t);
  constexpr int n = 40000;
  // Penalties would change as the sampler records its own draws: restore the history each time.
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) {
    if (!history.empty()) {
      s.reset_history();
      for (int32_t t : history) s.accept(t);
    }
    ++counts[size_t(s.sample(logits).token)];
  }
  size_t df = 0;
  const double chi = chi_square(counts, expect.probs(), n, df);
  EXPECT_LT(chi, bound(df)) << "df " << df;
}

TEST(Sampler, PlainSoftmax) { expect_distribution(plain(), kLogits, from(kLogits)); }

TEST(Sampler, Temperature) {
  SamplingParams p = plain();
  p.temperature = 0.6f;
  Expect e = from(kLogits);
  e.temperature(0.6);
  expect_distribution(p, kLogits, e);
}

TEST(Sampler, TopK) {
  SamplingParams p = plain();
  p.top_k = 5;
  p.temperature = 1.3f;
  Expect e = from(kLogits);
  e.top_k(5);
  e.temperature(1.3);
  expect_distribution(p, kLogits, e);
}

TEST(Sampler, TopP) {
  SamplingParams p = plain();
  p.top_p = 0.8f;
  p.temperature = 0.9f;
  Expect e = from(kLogits);
  e.top_p(0.8);
  e.temperature(0.9);
  expect_distribution(p, kLogits, e);
}

TEST(Sampler, MinP) {
  SamplingParams p = plain();
  p.min_p = 0.1f;
  p.temperature = 1.5f;
  Expect e = from(kLogits);
  e.min_p(0.1);
  e.temperature(1.5);
  expect_distribution(p, kLogits, e);
}

TEST(Sampler, TypicalP) {
  SamplingParams p = plain();
  p.typical_p = 0.7f;
  Expect e = from(kLogits);
  e.typical(0.7);
  expect_distribution(p, kLogits, e);
}

TEST(Sampler, FullChainInLlamaCppOrder) {
  SamplingParams p = plain();
  p.top_k = 9;
  p.typical_p = 0.95f;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.temperature = 0.7f;
  Expect e = from(kLogits);
  e.top_k(9);
  e.typical(0.95);
  e.top_p(0.9);
  e.min_p(0.05);
  e.temperature(0.7);
  expect_distribution(p, kLogits, e);
}

TEST(Sampler, PenaltiesAndBias) {
  SamplingParams p = plain();
  p.repeat_penalty = 1.3f;
  p.frequency_penalty = 0.2f;
  p.presence_penalty = 0.5f;
  p.penalty_last_n = 4;
  p.logit_bias = {{3, 1.5f}, {5, -INFINITY}, {7, -0.75f}};
  // Window of 4: the first token (8) has left it; 2 (negative logit) twice, 1 and 4 once.
  const std::vector<int32_t> history = {8, 2, 1, 2, 4};
  std::vector<double> l(kLogits.begin(), kLogits.end());
  l[3] += 1.5;
  l[5] = -INFINITY;
  l[7] -= 0.75;
  const std::map<int, int> counts = {{2, 2}, {1, 1}, {4, 1}};
  for (const auto& [t, c] : counts) {
    l[size_t(t)] = l[size_t(t)] <= 0 ? l[size_t(t)] * 1.3 : l[size_t(t)] / 1.3;
    l[size_t(t)] -= c * 0.2 + 0.5;
  }
  expect_distribution(p, kLogits, Expect{l}, history);
}

TEST(Sampler, TopPOnLargeVocabulariesKeepsTheSortedNucleus) {
  // Large lists take a bucketed path; the kept set must be what sorting everything gives.
  std::mt19937 rng(5);
  for (int iter = 0; iter < 40; ++iter) {
    const size_t n = 2000 + rng() % 30000;
    std::normal_distribution<float> tail(0.0f, 0.5f + float(iter % 5));
    std::vector<Candidate> cur(n);
    for (size_t i = 0; i < n; ++i) cur[i] = {int32_t(i), iter % 3 == 0 ? std::round(tail(rng)) : tail(rng), 0.0f};
    if (iter % 4 == 1) cur[rng() % n].logit = 60.0f;  // a favourite far above a tail beyond the buckets
    const float p = std::uniform_real_distribution<float>(0.05f, 0.99f)(rng);
    std::vector<Candidate> sorted = cur;
    std::sort(sorted.begin(), sorted.end(),
              [](const Candidate& a, const Candidate& b) { return a.logit > b.logit || (a.logit == b.logit && a.token < b.token); });
    double mx = sorted[0].logit, sum = 0, cum = 0;
    for (const Candidate& c : sorted) sum += std::exp(double(c.logit) - mx);
    std::vector<int32_t> want;
    for (const Candidate& c : sorted) {
      want.push_back(c.token);
      cum += std::exp(double(c.logit) - mx) / sum;
      if (cum >= p) break;
    }
    top_p(cur, p, 0);
    std::vector<int32_t> got;
    for (const Candidate& c : cur) got.push_back(c.token);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    ASSERT_EQ(got, want) << "iteration " << iter << " n " << n << " p " << p;
  }
}

TEST(Sampler, NegativeControlWrongOrderIsDetected) {
  // Draws from the real chain, compared with temperature applied *before* top-p: must fail.
  SamplingParams p = plain();
  p.top_p = 0.8f;
  p.temperature = 0.5f;
  Expect wrong = from(kLogits);
  wrong.temperature(0.5);
  wrong.top_p(0.8);
  Sampler s(p, int32_t(kLogits.size()));
  constexpr int n = 40000;
  const std::vector<int> counts = draw(s, kLogits, n);
  size_t df = 0;
  EXPECT_GT(chi_square(counts, wrong.probs(), n, df), bound(df));
}

TEST(Sampler, EdgeCasesThatAreGreedy) {
  const size_t best = size_t(std::max_element(kLogits.begin(), kLogits.end()) - kLogits.begin());
  for (int variant = 0; variant < 4; ++variant) {
    SamplingParams p = plain(7);
    if (variant == 0) p.top_k = 1;
    if (variant == 1) p.top_p = 0.0f;
    if (variant == 2) p.temperature = 0.0f;
    if (variant == 3) p.min_p = 1.0f;
    Sampler s(p, int32_t(kLogits.size()));
    for (int i = 0; i < 200; ++i) ASSERT_EQ(size_t(s.sample(kLogits).token), best) << variant;
  }
}

TEST(Sampler, GreedyTiesGoToTheLowestId) {
  SamplingParams p = plain();
  p.temperature = 0.0f;
  Sampler s(p, 4);
  EXPECT_EQ(s.sample(std::vector<float>{1.0f, 3.0f, 3.0f, 2.0f}).token, 1);
}

TEST(Sampler, OnlyOneFiniteLogit) {
  std::vector<float> logits(10, -INFINITY);
  logits[6] = -50.0f;
  Sampler s(plain(), 10);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(s.sample(logits).token, 6);
  SamplingParams banned = plain();
  for (int32_t t = 0; t < 12; ++t)
    if (t != 9) banned.logit_bias.push_back({t, -INFINITY});
  Sampler b(banned, 12);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(b.sample(kLogits).token, 9);
}

TEST(Sampler, RejectsBadLogitsAndParams) {
  for (const float temp : {1.0f, 0.0f}) {  // the sampling chain and the greedy pass
    SamplingParams params = plain();
    params.temperature = temp;
    params.presence_penalty = 0.5f;
    Sampler s(params, 3);
    s.accept(2);
    EXPECT_THROW(s.sample(std::vector<float>{0.0f, NAN, 1.0f}), Error);
    EXPECT_THROW(s.sample(std::vector<float>{0.0f, INFINITY, 1.0f}), Error);
    EXPECT_THROW(s.sample(std::vector<float>{-INFINITY, -INFINITY, -INFINITY}), Error);
    EXPECT_THROW(s.sample(std::vector<float>{0.0f, 1.0f}), Error);
    EXPECT_EQ(s.sample(std::vector<float>{-INFINITY, -INFINITY, 0.0f}).token, 2);  // penalized, but the only one
  }
  Sampler s(plain(), 3);
  SamplingParams p = plain();
  p.temperature = NAN;
  EXPECT_THROW(Sampler(p, 3), Error);
  p = plain();
  p.logit_bias = {{3, 1.0f}};
  EXPECT_THROW(Sampler(p, 3), Error);
  p = plain();
  p.repeat_penalty = 0.0f;
  EXPECT_THROW(Sampler(p, 3), Error);
  p = plain();
  p.penalty_last_n = -2;
  EXPECT_THROW(Sampler(p, 3), Error);
  EXPECT_THROW(s.accept(3), Error);
}

TEST(Sampler, RepeatPenaltyDividesPositiveMultipliesNegative) {
  SamplingParams p = plain();
  p.temperature = 0.0f;
  p.repeat_penalty = 1.5f;
  {
    Sampler s(p, 2);
    s.accept(0);
    EXPECT_EQ(s.sample(std::vector<float>{2.0f, 1.5f}).token, 1);  // 2.0 / 1.5 < 1.5
  }
  {
    Sampler s(p, 2);
    s.accept(0);
    EXPECT_EQ(s.sample(std::vector<float>{-1.0f, -1.2f}).token, 1);  // -1.0 * 1.5 < -1.2
  }
}

TEST(Sampler, PenaltyWindowSlides) {
  SamplingParams p = plain();
  p.temperature = 0.0f;
  p.presence_penalty = 10.0f;
  p.penalty_last_n = 2;
  Sampler s(p, 3);
  const std::vector<float> logits = {3.0f, 2.0f, 1.0f};
  EXPECT_EQ(s.sample(logits).token, 0);  // history {0}
  EXPECT_EQ(s.sample(logits).token, 1);  // 0 penalized; history {0, 1}
  EXPECT_EQ(s.sample(logits).token, 2);  // 0 and 1 penalized; history {1, 2}
  EXPECT_EQ(s.sample(logits).token, 0);  // 0 left the window
}

TEST(Sampler, SameSeedSameTokensNoSharedState) {
  SamplingParams p = plain(123);
  p.top_k = 8;
  Sampler a(p, int32_t(kLogits.size()));
  Sampler b(p, int32_t(kLogits.size()));
  Sampler c(plain(124), int32_t(kLogits.size()));
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 500; ++i) {  // interleaved: one sampler's draws do not disturb another's
    ta.push_back(a.sample(kLogits).token);
    tc.push_back(c.sample(kLogits).token);
    tb.push_back(b.sample(kLogits).token);
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
  EXPECT_EQ(a.seed(), 123u);
}

TEST(Sampler, LogprobsAreLogSoftmaxOfRawLogits) {
  SamplingParams p = plain();
  p.n_probs = 3;
  p.temperature = 0.5f;
  p.top_k = 2;
  p.logit_bias = {{0, 5.0f}};
  Sampler s(p, int32_t(kLogits.size()));
  double mx = *std::max_element(kLogits.begin(), kLogits.end());
  double sum = 0;
  for (float l : kLogits) sum += std::exp(l - mx);
  const double lse = mx + std::log(sum);
  for (int i = 0; i < 50; ++i) {
    const SampledToken t = s.sample(kLogits);
    EXPECT_NEAR(t.logprob, kLogits[size_t(t.token)] - lse, 1e-5);
    ASSERT_EQ(t.top.size(), 3u);
    EXPECT_EQ(t.top[0].token, 8);  // raw ranking: bias, temperature and top-k do not apply
    EXPECT_EQ(t.top[1].token, 1);
    EXPECT_EQ(t.top[2].token, 4);
    EXPECT_NEAR(t.top[0].logprob, 3.0 - lse, 1e-5);
    // Post-sampling: top-2 of the biased logits {0: 6.0, 8: 3.0} at temperature 0.5.
    ASSERT_EQ(t.top_sampled.size(), 2u);
    EXPECT_EQ(t.top_sampled[0].token, 0);
    EXPECT_NEAR(std::exp(t.top_sampled[0].logprob), 1.0 / (1.0 + std::exp((3.0 - 6.0) / 0.5)), 1e-5);
  }
}

}  // namespace
}  // namespace moeserve
