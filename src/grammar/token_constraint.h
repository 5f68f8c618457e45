// Constrained sampling: before each draw, the logits of tokens whose bytes cannot continue the
// grammar are set to -inf. Tokens are byte strings (the tokenizer's pieces); end-of-generation
// tokens are allowed exactly when the output so far is complete.
//
// Speed: only the `shortlist` highest logits are tried first (the sampler's top-k keeps no more
// than that anyway by default); when none of them fits, the whole vocabulary is walked as a trie
// of token bytes, advancing the grammar once per shared prefix and skipping every subtree whose
// next byte the grammar refuses.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "grammar/grammar.h"

namespace moeserve::grammar {

// The vocabulary's byte strings as a trie (node 0 is the root, the empty prefix).
struct TokenTrie {
  struct Node {
    uint32_t first_child = 0;   // 0: none
    uint32_t next_sibling = 0;  // 0: none
    uint8_t byte = 0;
    std::vector<int32_t> tokens;  // tokens whose bytes end here
  };
  std::vector<Node> nodes;
};

struct TokenTable {
  std::vector<std::string> bytes;  // per token; empty for control tokens
  std::vector<uint8_t> end_of_generation;
  TokenTrie trie;  // of the non-empty byte strings
};

// Fills the table (bytes, end-of-generation flags) into its trie.
void build_token_trie(TokenTable& table);

class TokenConstraint {
 public:
  TokenConstraint(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTable> tokens, size_t shortlist = 256);

  // Masks `logits` (one per token). Fails (moeserve::Error) when no token can continue.
  // `enough` > 0: the shortlist is tried best first and stops after that many fitting tokens (a
  // sampler that keeps only the best k, or greedy with k = 1, draws the same token either way).
  void apply(std::span<float> logits, size_t enough = 0);
  // Advances over the chosen token. Fails when the token does not fit.
  void accept(int32_t token);
  bool allowed(int32_t token) const;
  const GrammarState& state() const { return state_; }

 private:
  void walk(uint32_t node, const GrammarState& state, std::span<const float> logits);
  bool fits(int32_t token, const ByteSet& next) const;

  GrammarState state_;
  std::shared_ptr<const TokenTable> tokens_;
  size_t shortlist_;
  std::vector<int32_t> order_;
  std::vector<std::pair<int32_t, float>> keep_;
};

}  // namespace moeserve::grammar
