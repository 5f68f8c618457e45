#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace moeserve {
namespace {

void require_finite(float v, const char* name) {
  if (!std::isfinite(v)) fail("sampling: ", name, " must be a finite number");
}

// A uniform double in [0, 1) from 53 random bits: the same on every platform, unlike
// std::uniform_real_distribution, so a seed reproduces the same tokens everywhere.
double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

}  // namespace

Sampler::Sampler(SamplingParams params, int32_t n_vocab) : params_(std::move(params)), n_vocab_(n_vocab) {
  if (n_vocab_ <= 0) fail("sampling: the vocabulary is empty");
  if (std::isnan(params_.temperature)) fail("sampling: temperature must be a number");
  require_finite(params_.top_p, "top_p");
  require_finite(params_.min_p, "min_p");
  require_finite(params_.typical_p, "typical_p");
  require_finite(params_.frequency_penalty, "frequency_penalty");
  require_finite(params_.presence_penalty, "presence_penalty");
  require_finite(params_.repeat_penalty, "repeat_penalty");
  if (params_.repeat_penalty <= 0.0f) fail("sampling: repeat_penalty must be > 0, got ", params_.repeat_penalty);
  if (params_.penalty_last_n < -1) fail("sampling: penalty_last_n must be >= -1, got ", params_.penalty_last_n);
  if (params_.n_probs < 0) fail("sampling: n_probs must be >= 0, got ", params_.n_probs);
  params_.n_probs = std::min(params_.n_probs, n_vocab_);
  if (!params_.logit_bias.empty()) {
    bias_.assign(size_t(n_vocab_), 0.0f);
    for (const auto& [token, bias] : params_.logit_bias) {
      if (token < 0 || token >= n_vocab_)
        fail("sampling: logit_bias names token ", token, ", outside the vocabulary of ", n_vocab_);
      if (std::isnan(bias) || bias == INFINITY) fail("sampling: logit_bias of token ", token, " must be finite or -inf");
      bias_[size_t(token)] += bias;
    }
  }
  seed_ = params_.seed ? *params_.seed : (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  rng_.seed(seed_);
}

void Sampler::accept(int32_t token) {
  if (token < 0 || token >= n_vocab_) fail("sampling: token ", token, " is outside the vocabulary of ", n_vocab_);
  const int32_t window = params_.penalty_last_n;
  if (window == 0) return;
  ++counts_[token];
  if (window < 0) return;  // the whole history counts: nothing ever leaves the window
  if (history_.size() < size_t(window)) {
    history_.push_back(token);
    return;
  }
  const int32_t old = history_[history_next_];
  if (--counts_[old] == 0) counts_.erase(old);
  history_[history_next_] = token;
  history_next_ = (history_next_ + 1) % history_.size();
}

void Sampler::reset_history() {
  history_.clear();
  history_next_ = 0;
  counts_.clear();
}

void Sampler::apply_penalties(std::vector<Candidate>& dense) const {
  if (params_.repeat_penalty == 1.0f && params_.frequency_penalty == 0.0f && params_.presence_penalty == 0.0f) return;
  for (const auto& [token, count] : counts_) {
    float& logit = dense[size_t(token)].logit;
    logit = logit <= 0.0f ? logit * params_.repeat_penalty : logit / params_.repeat_penalty;
    logit -= float(count) * params_.frequency_penalty + params_.presence_penalty;
  }
}

int32_t Sampler::draw(std::vector<Candidate>& cur) {
  softmax(cur);
  double sum = 0.0;
  for (const Candidate& c : cur) sum += c.p;
  const double target = uniform01(rng_) * sum;
  double cum = 0.0;
  for (const Candidate& c : cur) {
    cum += c.p;
    if (cum > target) return c.token;
  }
  for (size_t i = cur.size(); i-- > 0;)  // rounding put the target at the very end
    if (cur[i].p > 0) return cur[i].token;
  return cur.back().token;
}

void Sampler::fill_logprobs(std::span<const float> logits, SampledToken& out) const {
  float max_logit = -INFINITY;
  for (float l : logits) max_logit = std::max(max_logit, l);
  double sum = 0.0;
  for (float l : logits) sum += std::exp(l - max_logit);
  const double log_norm = double(max_logit) + std::log(sum);
  out.logprob = float(double(logits[size_t(out.token)]) - log_norm);
  if (params_.n_probs == 0) return;
  // The n_probs best, kept sorted best first (n_probs is small: OpenAI allows up to 20).
  const auto better = [](const TokenLogprob& a, const TokenLogprob& b) {
    return a.logprob > b.logprob || (a.logprob == b.logprob && a.token < b.token);
  };
  std::vector<TokenLogprob>& top = out.top;
  const size_t n = size_t(params_.n_probs);
  for (size_t i = 0; i < logits.size(); ++i) {
    const TokenLogprob t{int32_t(i), logits[i]};
    if (top.size() == n && !better(t, top.back())) continue;
    if (top.size() == n) top.pop_back();
    top.insert(std::upper_bound(top.begin(), top.end(), t, better), t);
  }
  for (TokenLogprob& t : top) t.logprob = float(double(t.logprob) - log_norm);
}

SampledToken Sampler::sample(std::span<const float> logits) {
  if (logits.size() != size_t(n_vocab_))
    fail("sampling: got ", logits.size(), " logits for a vocabulary of ", n_vocab_);
  std::vector<Candidate>& cur = cur_;
  cur.resize(logits.size());
  bool bad = false;
  bool banned = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float l = logits[i];
    bad |= std::isnan(l) || l == INFINITY;
    banned |= l == -INFINITY;
    cur[i] = {int32_t(i), l, 0.0f};
  }
  if (bad) {
    for (size_t i = 0; i < logits.size(); ++i)
      if (std::isnan(logits[i]) || logits[i] == INFINITY) fail("sampling: the model's logit for token ", i, " is ", logits[i]);
  }
  if (!bias_.empty()) {
    for (size_t i = 0; i < cur.size(); ++i) cur[i].logit += bias_[i];
    banned = true;  // a -inf bias may have banned tokens
  }
  apply_penalties(cur);
  for (const auto& [token, count] : counts_) {
    const float l = cur[size_t(token)].logit;
    if (std::isnan(l) || l == INFINITY) fail("sampling: the penalties pushed token ", token, " to ", l);
  }
  if (banned) std::erase_if(cur, [](const Candidate& c) { return c.logit == -INFINITY; });
  if (cur.empty()) fail("sampling: no token can be chosen (every logit is -inf after logit_bias)");

  SampledToken out;
  if (params_.temperature <= 0.0f && params_.typical_p >= 1.0f) {
    // Greedy: top-k / top-p / min-p always keep the best token, so only the argmax matters.
    const Candidate best = cur[argmax(cur)];
    cur.assign(1, {best.token, best.logit, 1.0f});
    out.token = best.token;
  } else {
    top_k(cur, params_.top_k);
    typical_p(cur, params_.typical_p, params_.min_keep);
    top_p(cur, params_.top_p, params_.min_keep);
    min_p(cur, params_.min_p, params_.min_keep);
    temperature(cur, params_.temperature);
    out.token = draw(cur);
  }
  if (params_.logprobs || params_.n_probs > 0) {
    fill_logprobs(logits, out);
    if (params_.n_probs > 0) {
      std::vector<Candidate> final_dist = cur;
      std::stable_sort(final_dist.begin(), final_dist.end(), [](const Candidate& a, const Candidate& b) { return a.p > b.p; });
      for (size_t i = 0; i < final_dist.size() && i < size_t(params_.n_probs); ++i)
        out.top_sampled.push_back({final_dist[i].token, std::log(final_dist[i].p)});
    }
  }
  accept(out.token);
  return out;
}

}  // namespace moeserve
