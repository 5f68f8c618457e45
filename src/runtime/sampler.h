// Token sampling from a row of logits, with llama.cpp's semantics and default order:
//
//   logit bias -> penalties (repeat / frequency / presence over the last penalty_last_n tokens)
//   -> top-k -> typical -> top-p -> min-p -> temperature -> draw
//
// The truncating steps see probabilities at temperature 1; temperature only reshapes what is
// left. Temperature <= 0 is greedy: the most likely token after bias and penalties (ties go to the
// lowest id). Each Sampler owns its random generator (seeded per request), so the same seed and
// logits give the same tokens, independently of other requests.
//
// Log-probabilities for OpenAI `logprobs` are the log-softmax of the model's raw logits (before
// bias, penalties and truncation); the post-sampling alternatives (llama-server's
// `post_sampling_probs`) come from the final distribution the token was drawn from.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/sampler_steps.h"

namespace moeserve {

struct SamplingParams {
  float temperature = 0.8f;     // <= 0: greedy
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off
  float typical_p = 1.0f;       // >= 1: off
  size_t min_keep = 0;          // truncating steps keep at least this many tokens
  int32_t penalty_last_n = 64;  // window of the penalties; 0: off, -1: everything accepted so far
  float repeat_penalty = 1.0f;  // 1: off; divides positive logits, multiplies negative ones
  float frequency_penalty = 0.0f;  // minus count * this
  float presence_penalty = 0.0f;   // minus this once a token occurred
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logit; -inf bans a token
  std::optional<uint64_t> seed;  // unset: a fresh random seed
  bool logprobs = false;         // report the chosen token's log-probability
  int32_t n_probs = 0;           // and this many most likely alternatives (implies logprobs)
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;                    // raw log-softmax; filled when logprobs / n_probs
  std::vector<TokenLogprob> top;           // n_probs most likely by raw logits, most likely first
  std::vector<TokenLogprob> top_sampled;   // n_probs most likely in the final distribution
};

class Sampler {
 public:
  // Fails (moeserve::Error) on parameters that cannot be honoured: NaN or out-of-range values,
  // bias entries for tokens outside the vocabulary.
  Sampler(SamplingParams params, int32_t n_vocab);

  // Draws the next token from `logits` (n_vocab values) and records it for the penalties. NaN or
  // +inf logits, or no token left with a finite logit, are errors.
  SampledToken sample(std::span<const float> logits);

  // Records a token the sampler did not choose (prompt tokens, forced tokens) for the penalties.
  void accept(int32_t token);
  // Forgets the penalty history (the random generator keeps its state).
  void reset_history();

  const SamplingParams& params() const { return params_; }
  uint64_t seed() const { return seed_; }

 private:
  bool penalties_on() const;
  void apply_penalties(std::vector<Candidate>& cur) const;
  float penalized(int32_t token, float logit, int32_t count) const;
  void check_logits(std::span<const float> logits) const;
  int32_t greedy(std::span<const float> logits) const;
  int32_t draw(std::vector<Candidate>& cur);
  void fill_logprobs(std::span<const float> logits, SampledToken& out) const;

  SamplingParams params_;
  int32_t n_vocab_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::vector<float> bias_;                     // dense bias, empty when there is none
  std::vector<int32_t> history_;                // ring of the last penalty_last_n tokens
  size_t history_next_ = 0;
  std::unordered_map<int32_t, int32_t> counts_;  // occurrences within the window
  std::vector<uint8_t> in_window_;              // counts_ as a dense flag per token
  std::vector<Candidate> cur_;                  // scratch, reused between calls
};

}  // namespace moeserve
