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
  in_window_.assign(size_t(n_vocab_), 0);
  seed_ = params_.seed ? *params_.seed : (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  rng_.seed(seed_);
}

void Sampler::accept(int32_t token) {
  if (token < 0 || token >= n_vocab_) fail("sampling: token ", token, " is outside the vocabulary of ", n_vocab_);
  const int32_t window = params_.penalty_last_n;
  if (window == 0) return;
  ++counts_[token];
  in_window_[size_t(token)] = 1;
  if (window < 0) return;  // the whole history counts: nothing ever leaves the window
  if (history_.size() < size_t(window)) {
    history_.push_back(token);
    return;
  }
  const int32_t old = history_[history_next_];
  if (--counts_[old] == 0) {
    counts_.erase(old);
    in_window_[size_t(old)] = 0;
  }
  history_[history_next_] = token;
  history_next_ = (history_next_ + 1) % history_.size();
}

void Sampler::reset_history() {
  history_.clear();
  history_next_ = 0;
  for (const auto& [token, count] : counts_) in_window_[size_t(token)] = 0;
  counts_.clear();
}

bool Sampler::penalties_on() const {
  return params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f;
}

float Sampler::penalized(int32_t token, float logit, int32_t count) const {
  logit = logit <= 0.0f ? logit * params_.repeat_penalty : logit / params_.repeat_penalty;
  logit -= float(count) * params_.frequency_penalty + params_.presence_penalty;
  if (std::isnan(logit) || logit == INFINITY) fail("sampling: the penalties pushed token ", token, " to ", logit);
  return logit;
}

void Sampler::apply_penalties(std::vector<Candidate>& dense) const {
  if (!penalties_on()) return;
  for (const auto& [token, count] : counts_) {
    float& logit = dense[size_t(token)].logit;
    logit = penalized(token, logit, count);
  }
}

void Sampler::check_logits(std::span<const float> logits) const {
  for (size_t i = 0; i < logits.size(); ++i)
    if (std::isnan(logits[i]) || logits[i] == INFINITY) fail("sampling: the model's logit for token ", i, " is ", logits[i]);
}

// The most likely token after bias and penalties, in one pass over the logits (no candidate list).
int32_t Sampler::greedy(std::span<const float> logits) const {
  const bool skip_penalized = penalties_on();
  bool bad = false;
  float best = -INFINITY;
  int32_t best_token = -1;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float l = logits[i];
    bad |= std::isnan(l) || l == INFINITY;
    if (skip_penalized && in_window_[i]) continue;
    const float v = bias_.empty() ? l : l + bias_[i];
    if (v > best) {  // strict: the lowest id wins ties
      best = v;
      best_token = int32_t(i);
    }
  }
  if (bad) check_logits(logits);
  if (skip_penalized) {
    for (const auto& [token, count] : counts_) {
      const float base = logits[size_t(token)] + (bias_.empty() ? 0.0f : bias_[size_t(token)]);
      if (base == -INFINITY) continue;
      const float v = penalized(token, base, count);
      if (v > best || (v == best && v != -INFINITY && token < best_token)) {
        best = v;
        best_token = token;
      }
    }
  }
  if (best_token < 0) fail("sampling: no token can be chosen (every logit is -inf after logit_bias)");
  return best_token;
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
  SampledToken out;
  std::vector<Candidate>& cur = cur_;
  if (params_.temperature <= 0.0f && params_.typical_p >= 1.0f) {
    // Greedy: top-k / top-p / min-p always keep the best token, so only the argmax matters.
    out.token = greedy(logits);
    cur.assign(1, {out.token, 0.0f, 1.0f});
  } else {
    cur.resize(logits.size());
    bool bad = false;
    bool banned = false;
    for (size_t i = 0; i < logits.size(); ++i) {
      const float l = logits[i];
      bad |= std::isnan(l) || l == INFINITY;
      banned |= l == -INFINITY;
      cur[i] = {int32_t(i), l, 0.0f};
    }
    if (bad) check_logits(logits);
    if (!bias_.empty()) {
      for (size_t i = 0; i < cur.size(); ++i) cur[i].logit += bias_[i];
      banned = true;  // a -inf bias may have banned tokens
    }
    apply_penalties(cur);
    if (banned) std::erase_if(cur, [](const Candidate& c) { return c.logit == -INFINITY; });
    if (cur.empty()) fail("sampling: no token can be chosen (every logit is -inf after logit_bias)");
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
