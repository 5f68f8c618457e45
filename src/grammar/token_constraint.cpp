#include "grammar/token_constraint.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace moeserve::grammar {

void build_token_trie(TokenTable& table) {
  TokenTrie& trie = table.trie;
  trie.nodes.assign(1, TokenTrie::Node{});
  for (size_t t = 0; t < table.bytes.size(); ++t) {
    uint32_t at = 0;
    for (char c : table.bytes[t]) {
      const uint8_t b = uint8_t(c);
      uint32_t child = trie.nodes[at].first_child;
      while (child && trie.nodes[child].byte != b) child = trie.nodes[child].next_sibling;
      if (!child) {
        child = uint32_t(trie.nodes.size());
        TokenTrie::Node n;
        n.byte = b;
        n.next_sibling = trie.nodes[at].first_child;
        trie.nodes.push_back(std::move(n));
        trie.nodes[at].first_child = child;
      }
      at = child;
    }
    if (at != 0) trie.nodes[at].tokens.push_back(int32_t(t));
  }
}

TokenConstraint::TokenConstraint(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTable> tokens, size_t shortlist)
    : state_(std::move(grammar)), tokens_(std::move(tokens)), shortlist_(shortlist) {}

bool TokenConstraint::allowed(int32_t token) const {
  if (token < 0 || size_t(token) >= tokens_->bytes.size()) return false;
  if (tokens_->end_of_generation[size_t(token)]) return state_.complete();
  const std::string& b = tokens_->bytes[size_t(token)];
  return !b.empty() && state_.allows(b);
}

// allowed(), with the grammar's possible next bytes worked out once by the caller.
bool TokenConstraint::fits(int32_t token, const ByteSet& next) const {
  if (tokens_->end_of_generation[size_t(token)]) return state_.complete();
  const std::string& b = tokens_->bytes[size_t(token)];
  return !b.empty() && next.test(uint8_t(b[0])) && state_.allows(b);
}

void TokenConstraint::apply(std::span<float> logits, size_t enough) {
  const size_t n = std::min(logits.size(), tokens_->bytes.size());
  keep_.clear();
  if (order_.size() != n) order_.resize(n);
  std::iota(order_.begin(), order_.end(), 0);
  const size_t m = std::min(shortlist_, n);
  const auto better = [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; };
  std::nth_element(order_.begin(), order_.begin() + long(m), order_.end(), better);
  if (enough > 0) std::sort(order_.begin(), order_.begin() + long(m), better);
  const ByteSet next = state_.next_bytes();
  for (size_t i = 0; i < m && (enough == 0 || keep_.size() < enough); ++i) {
    const int32_t t = order_[i];
    if (logits[size_t(t)] != -INFINITY && fits(t, next)) keep_.emplace_back(t, logits[size_t(t)]);
  }
  if (keep_.empty()) {
    walk(0, state_, logits);
    if (state_.complete()) {
      for (size_t t = 0; t < n; ++t) {
        if (tokens_->end_of_generation[t] && logits[t] != -INFINITY) keep_.emplace_back(int32_t(t), logits[t]);
      }
    }
  }
  if (enough > 0 && keep_.size() > enough) {
    std::partial_sort(keep_.begin(), keep_.begin() + long(enough), keep_.end(),
                      [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); });
    keep_.resize(enough);
  }
  if (keep_.empty()) fail("constrained output: no token can continue the required format");
  std::fill(logits.begin(), logits.end(), -INFINITY);
  for (const auto& [t, l] : keep_) logits[size_t(t)] = l;
}

// Every token below `node` whose bytes the grammar (in `state`, after the node's prefix) accepts.
void TokenConstraint::walk(uint32_t node, const GrammarState& state, std::span<const float> logits) {
  const ByteSet next = state.next_bytes();
  const std::vector<TokenTrie::Node>& nodes = tokens_->trie.nodes;
  for (uint32_t child = nodes[node].first_child; child; child = nodes[child].next_sibling) {
    if (!next.test(nodes[child].byte)) continue;
    const GrammarState after = state.after(nodes[child].byte);
    if (after.dead()) continue;
    for (int32_t t : nodes[child].tokens) {
      if (size_t(t) < logits.size() && logits[size_t(t)] != -INFINITY && !tokens_->end_of_generation[size_t(t)]) {
        keep_.emplace_back(t, logits[size_t(t)]);
      }
    }
    if (nodes[child].first_child && after.can_continue()) walk(child, after, logits);
  }
}

void TokenConstraint::accept(int32_t token) {
  if (!allowed(token)) fail("constrained output: token ", token, " does not fit the required format");
  if (!tokens_->end_of_generation[size_t(token)]) state_.advance(tokens_->bytes[size_t(token)]);
}

}  // namespace moeserve::grammar
