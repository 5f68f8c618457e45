#include "grammar/grammar.h"

#include <algorithm>

#include "core/error.h"

namespace moeserve::grammar {
namespace {

// Bounds that keep a bad grammar (an epsilon cycle, a left recursion through $ref) from hanging.
constexpr int kMaxExpandDepth = 256;
constexpr size_t kMaxStackSize = 4096;
constexpr size_t kMaxStacks = 4096;

}  // namespace

uint32_t GrammarBuilder::new_rule() {
  rules_.emplace_back();
  return uint32_t(rules_.size() - 1);
}

void GrammarBuilder::add(uint32_t rule, Sequence seq) {
  seq.push_back(Element{});  // end
  rules_[rule].push_back(std::move(seq));
}

uint32_t GrammarBuilder::rule_of(std::vector<Sequence> alternatives) {
  const uint32_t r = new_rule();
  for (Sequence& s : alternatives) add(r, std::move(s));
  return r;
}

Element GrammarBuilder::ref(uint32_t rule) { return Element{Element::rule, rule, {}}; }
Element GrammarBuilder::set(const ByteSet& s) { return Element{Element::bytes, 0, s}; }
Element GrammarBuilder::byte(uint8_t b) { return range(b, b); }
Element GrammarBuilder::range(uint8_t lo, uint8_t hi) {
  ByteSet s;
  for (int b = lo; b <= hi; ++b) s.set(size_t(b));
  return set(s);
}

Sequence GrammarBuilder::lit(std::string_view text) {
  Sequence s;
  for (char c : text) s.push_back(byte(uint8_t(c)));
  return s;
}

Element GrammarBuilder::repeat(const Sequence& item, int min, int max) {
  // rest ::= item rest | ε (unbounded), or a chain rest_k ::= item rest_{k-1} | ε of max - min links.
  uint32_t rest;
  if (max < 0) {
    rest = new_rule();
    Sequence s = item;
    s.push_back(ref(rest));
    add(rest, std::move(s));
    add(rest, {});
  } else {
    if (max < min) fail("grammar: repetition of at most ", max, " but at least ", min);
    rest = rule_of({{}});
    for (int k = 0; k < max - min; ++k) {
      Sequence s = item;
      s.push_back(ref(rest));
      rest = rule_of({std::move(s), {}});
    }
  }
  Sequence all;
  for (int k = 0; k < min; ++k) append(all, item);
  all.push_back(ref(rest));
  return ref(rule_of({std::move(all)}));
}

Element GrammarBuilder::text_without(std::string_view stop) {
  // r[k]: the last k bytes match stop's first k bytes (stop's first byte does not recur in it).
  const size_t n = stop.size();
  std::vector<uint32_t> r(n);
  for (size_t k = 0; k < n; ++k) r[k] = new_rule();
  const uint8_t first = uint8_t(stop[0]);
  for (size_t k = 0; k < n; ++k) {
    const uint8_t want = uint8_t(stop[k]);
    add(r[k], {});
    if (k + 1 < n) add(r[k], {byte(want), ref(r[k + 1])});
    if (k > 0) add(r[k], {byte(first), ref(r[1])});
    ByteSet other;
    other.set();
    other.reset(want);
    other.reset(first);
    add(r[k], {set(other), ref(r[0])});
  }
  return ref(r[0]);
}

std::shared_ptr<const Grammar> GrammarBuilder::build(uint32_t root) {
  auto g = std::make_shared<Grammar>();
  g->rules = std::move(rules_);
  g->root = root;
  rules_.clear();
  return g;
}

GrammarState::GrammarState(std::shared_ptr<const Grammar> grammar) : grammar_(std::move(grammar)) {
  std::vector<Stack> next;
  const Element root = GrammarBuilder::ref(grammar_->root);
  // The root reference lives in the grammar's storage only through its alternatives: expand them.
  for (const Sequence& alt : grammar_->rules[root.rule_id]) {
    Stack s;
    if (alt[0].kind != Element::end) s.push_back(&alt[0]);
    expand(std::move(s), next, 0);
  }
  settle(next);
}

void GrammarState::expand(Stack stack, std::vector<Stack>& out, int depth) const {
  if (depth > kMaxExpandDepth || stack.size() > kMaxStackSize || out.size() > kMaxStacks) return;
  if (stack.empty()) {
    out.emplace_back();
    return;
  }
  const Element* top = stack.back();
  if (top->kind == Element::bytes) {
    out.push_back(std::move(stack));
    return;
  }
  stack.pop_back();
  if ((top + 1)->kind != Element::end) stack.push_back(top + 1);
  const std::vector<Sequence>& alts = grammar_->rules[top->rule_id];
  for (size_t i = 0; i < alts.size(); ++i) {
    Stack s = i + 1 == alts.size() ? std::move(stack) : stack;
    if (alts[i][0].kind != Element::end) s.push_back(&alts[i][0]);
    expand(std::move(s), out, depth + 1);
  }
}

void GrammarState::settle(std::vector<Stack>& next) {
  complete_ = false;
  std::erase_if(next, [&](const Stack& s) {
    if (!s.empty()) return false;
    complete_ = true;
    return true;
  });
  std::sort(next.begin(), next.end());
  next.erase(std::unique(next.begin(), next.end()), next.end());
  stacks_ = std::move(next);
}

void GrammarState::step(uint8_t b, std::vector<Stack>& next) const {
  for (const Stack& s : stacks_) {
    const Element* top = s.back();
    if (!top->set.test(b)) continue;
    Stack t;
    t.reserve(s.size() + 4);
    t.assign(s.begin(), s.end() - 1);
    if ((top + 1)->kind != Element::end) t.push_back(top + 1);
    expand(std::move(t), next, 0);
  }
}

bool GrammarState::advance(uint8_t b) {
  std::vector<Stack> next;
  step(b, next);
  settle(next);
  return !stacks_.empty() || complete_;
}

GrammarState GrammarState::after(uint8_t b) const {
  GrammarState out;
  out.grammar_ = grammar_;
  std::vector<Stack> next;
  step(b, next);
  out.settle(next);
  return out;
}

bool GrammarState::advance(std::string_view bytes) {
  for (char c : bytes) {
    if (!advance(uint8_t(c))) return false;
  }
  return true;
}

bool GrammarState::allows(std::string_view bytes) const {
  if (bytes.empty()) return true;
  GrammarState next = after(uint8_t(bytes[0]));
  return !next.dead() && next.advance(bytes.substr(1));
}

ByteSet GrammarState::next_bytes() const {
  ByteSet s;
  for (const Stack& st : stacks_) s |= st.back()->set;
  return s;
}

}  // namespace moeserve::grammar
