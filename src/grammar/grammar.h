// A context-free grammar over bytes and its incremental recognizer, for constrained decoding.
//
// Rules are alternatives of sequences; a sequence holds byte sets and references to rules. The
// recognizer keeps every parse that is still possible as a stack of "what comes next" positions
// (the top is always a byte set), so ambiguous grammars are fine; rules must not be left-recursive
// (the builders here only produce right recursion, which a tail position keeps at constant depth).
#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace moeserve::grammar {

using ByteSet = std::bitset<256>;

struct Element {
  enum Kind : uint8_t { bytes, rule, end };
  Kind kind = end;
  uint32_t rule_id = 0;
  ByteSet set;
};

using Sequence = std::vector<Element>;

class Grammar {
 public:
  // alternatives[r] = the sequences of rule r, each terminated by an `end` element.
  std::vector<std::vector<Sequence>> rules;
  uint32_t root = 0;
};

// Builds a grammar; helpers return elements or new rules to compose.
class GrammarBuilder {
 public:
  uint32_t new_rule();
  void add(uint32_t rule, Sequence seq);
  // A new rule with the given alternatives.
  uint32_t rule_of(std::vector<Sequence> alternatives);

  static Element ref(uint32_t rule);
  static Element set(const ByteSet& s);
  static Element byte(uint8_t b);
  static Element range(uint8_t lo, uint8_t hi);
  static Sequence lit(std::string_view text);
  static void append(Sequence& to, const Sequence& more) { to.insert(to.end(), more.begin(), more.end()); }

  // `item` repeated min..max times (max < 0: unbounded), as a reference to a new rule.
  Element repeat(const Sequence& item, int min, int max);
  // Any bytes that do not contain `stop` (which must not repeat its first byte).
  Element text_without(std::string_view stop);

  std::shared_ptr<const Grammar> build(uint32_t root);

 private:
  std::vector<std::vector<Sequence>> rules_;
};

// The set of parses still possible after the bytes fed so far. Copyable: a token is tried on a
// copy.
class GrammarState {
 public:
  explicit GrammarState(std::shared_ptr<const Grammar> grammar);

  // Consumes one byte; false (and the state is dead) when no parse allows it.
  bool advance(uint8_t b);
  bool advance(std::string_view bytes);
  // The state after one more byte (dead when refused), without copying this one first.
  GrammarState after(uint8_t b) const;
  // True when `bytes` could follow without changing this state.
  bool allows(std::string_view bytes) const;
  // The input so far is a complete sentence.
  bool complete() const { return complete_; }
  // Some parse can take more bytes.
  bool can_continue() const { return !stacks_.empty(); }
  bool dead() const { return stacks_.empty() && !complete_; }
  // Bytes that may come next.
  ByteSet next_bytes() const;

 private:
  using Stack = std::vector<const Element*>;
  void expand(Stack stack, std::vector<Stack>& out, int depth) const;
  void settle(std::vector<Stack>& next);
  void step(uint8_t b, std::vector<Stack>& next) const;
  GrammarState() = default;

  std::shared_ptr<const Grammar> grammar_;
  std::vector<Stack> stacks_;  // each non-empty, top (back) a byte set
  bool complete_ = false;
};

}  // namespace moeserve::grammar
