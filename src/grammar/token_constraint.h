// Constrained sampling: before each draw, the logits of tokens whose bytes cannot continue the
// grammar are set to -inf. Tokens are byte strings (the tokenizer's pieces); end-of-generation
// tokens are allowed exactly when the output so far is complete.
//
// Speed: only the `shortlist` highest logits are tried first (the sampler's top-k keeps no more
// than that anyway by default); when none of them fits, every token is tried, with a test of the
// first byte against what the grammar can take next before any parse.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "grammar/grammar.h"

namespace moeserve::grammar {

struct TokenTable {
  std::vector<std::string> bytes;  // per token; empty for control tokens
  std::vector<uint8_t> end_of_generation;
};

class TokenConstraint {
 public:
  TokenConstraint(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTable> tokens, size_t shortlist = 256);

  // Masks `logits` (one per token). Fails (moeserve::Error) when no token can continue.
  void apply(std::span<float> logits);
  // Advances over the chosen token. Fails when the token does not fit.
  void accept(int32_t token);
  bool allowed(int32_t token) const;
  const GrammarState& state() const { return state_; }

 private:
  GrammarState state_;
  std::shared_ptr<const TokenTable> tokens_;
  size_t shortlist_;
  std::vector<int32_t> order_;
  std::vector<std::pair<int32_t, float>> keep_;
};

}  // namespace moeserve::grammar
