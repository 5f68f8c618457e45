#include "grammar/token_constraint.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace moeserve::grammar {

TokenConstraint::TokenConstraint(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTable> tokens, size_t shortlist)
    : state_(std::move(grammar)), tokens_(std::move(tokens)), shortlist_(shortlist) {}

bool TokenConstraint::allowed(int32_t token) const {
  if (token < 0 || size_t(token) >= tokens_->bytes.size()) return false;
  if (tokens_->end_of_generation[size_t(token)]) return state_.complete();
  const std::string& b = tokens_->bytes[size_t(token)];
  return !b.empty() && state_.allows(b);
}

void TokenConstraint::apply(std::span<float> logits) {
  const size_t n = std::min(logits.size(), tokens_->bytes.size());
  keep_.clear();
  if (order_.size() != n) order_.resize(n);
  std::iota(order_.begin(), order_.end(), 0);
  const size_t m = std::min(shortlist_, n);
  std::nth_element(order_.begin(), order_.begin() + long(m), order_.end(),
                   [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  for (size_t i = 0; i < m; ++i) {
    const int32_t t = order_[i];
    if (logits[size_t(t)] != -INFINITY && allowed(t)) keep_.emplace_back(t, logits[size_t(t)]);
  }
  if (keep_.empty()) {
    const ByteSet next = state_.next_bytes();
    for (size_t t = 0; t < n; ++t) {
      if (logits[t] == -INFINITY) continue;
      const std::string& b = tokens_->bytes[t];
      if (!tokens_->end_of_generation[t] && (b.empty() || !next.test(uint8_t(b[0])))) continue;
      if (allowed(int32_t(t))) keep_.emplace_back(int32_t(t), logits[t]);
    }
  }
  if (keep_.empty()) fail("constrained output: no token can continue the required format");
  std::fill(logits.begin(), logits.end(), -INFINITY);
  for (const auto& [t, l] : keep_) logits[size_t(t)] = l;
}

void TokenConstraint::accept(int32_t token) {
  if (!allowed(token)) fail("constrained output: token ", token, " does not fit the required format");
  if (!tokens_->end_of_generation[size_t(token)]) state_.advance(tokens_->bytes[size_t(token)]);
}

}  // namespace moeserve::grammar
