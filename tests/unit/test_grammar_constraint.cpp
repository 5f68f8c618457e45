// The sampler constraint of constrained output: on a small vocabulary of JSON-ish byte strings,
// the tokens it keeps at each step are exactly those a direct parse of each token's bytes accepts
// (with the shortlist, and through the trie walk when the shortlist holds none), and random
// generations under it are JSON that nlohmann's parser reads and that fits the schema.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "grammar/constrained_output.h"
#include "grammar/token_constraint.h"

namespace moeserve::grammar {
namespace {

std::shared_ptr<const TokenTable> vocabulary() {
  auto t = std::make_shared<TokenTable>();
  const char* pieces[] = {"{", "}", "[", "]", "\"", ",", ":", " ", "\n", "\n  ", "{\"", "\":", "\": ", "\",", "\"}",
                          "name", "id", "tags", "a", "b", "x", "0", "1", "12", "-", ".", "5", "e", "true", "false",
                          "null", "tr", "ue", "\\", "n", "\\n", "\"name\"", "\"id\"", ", \"", "é", "\xC3", "\xA9", "]}"};
  for (const char* p : pieces) t->bytes.emplace_back(p);
  // Every printable byte alone, as byte-level BPE vocabularies have: any valid text can be spelled.
  for (char c = 0x20; c < 0x7f; ++c) {
    if (std::find(t->bytes.begin(), t->bytes.end(), std::string(1, c)) == t->bytes.end()) t->bytes.emplace_back(1, c);
  }
  t->bytes.emplace_back("");  // a control token
  t->bytes.emplace_back("");  // end of generation
  t->end_of_generation.assign(t->bytes.size(), 0);
  t->end_of_generation.back() = 1;
  build_token_trie(*t);
  return t;
}

std::set<int32_t> kept(std::span<const float> logits) {
  std::set<int32_t> s;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] != -INFINITY) s.insert(int32_t(i));
  }
  return s;
}

TEST(GrammarConstraint, KeepsExactlyTheTokensThatParseAndGeneratesValidJson) {
  const nlohmann::ordered_json schema = nlohmann::ordered_json::parse(R"({
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 6}, "id": {"type": "integer"},
                   "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
    "required": ["name", "id"], "additionalProperties": false})");
  const auto grammar = json_reply_grammar(schema, {});
  const auto table = vocabulary();
  const size_t n = table->bytes.size();
  std::mt19937 rng(5);
  int completed = 0;
  for (int run = 0; run < 200; ++run) {
    // shortlist 1: mostly the trie walk; 8: both paths.
    TokenConstraint constraint(grammar, table, run % 2 ? 1 : 8);
    std::string text;
    for (int step = 0; step < 80; ++step) {
      std::vector<float> logits(n);
      std::normal_distribution<float> noise;
      for (float& l : logits) l = noise(rng);
      std::set<int32_t> direct;
      for (size_t t = 0; t < n; ++t) {
        if (table->end_of_generation[t] ? constraint.state().complete()
                                        : !table->bytes[t].empty() && [&] {
                                            GrammarState s = constraint.state();
                                            return s.advance(table->bytes[t]);
                                          }()) {
          direct.insert(int32_t(t));
        }
      }
      // Best first, stopping at one fitting token: the best-scored token a direct parse accepts.
      std::vector<float> best = logits;
      ASSERT_NO_THROW(constraint.apply(best, 1)) << "after " << text;
      int32_t best_direct = -1;
      for (int32_t t : direct) {
        if (best_direct < 0 || logits[size_t(t)] > logits[size_t(best_direct)]) best_direct = t;
      }
      EXPECT_EQ(kept(best), std::set<int32_t>{best_direct}) << "after " << text;
      ASSERT_NO_THROW(constraint.apply(logits)) << "after " << text;
      const std::set<int32_t> masked = kept(logits);
      // The shortlist keeps a subset (those among the best scores), the walk all of them.
      ASSERT_FALSE(masked.empty());
      for (int32_t t : masked) EXPECT_TRUE(direct.count(t)) << "token " << t << " after " << text;
      std::vector<int32_t> choices(masked.begin(), masked.end());
      const int32_t token = choices[rng() % choices.size()];
      constraint.accept(token);
      if (table->end_of_generation[size_t(token)]) {
        const nlohmann::json v = nlohmann::json::parse(text);  // throws on invalid JSON
        ASSERT_TRUE(v.is_object());
        EXPECT_TRUE(v.contains("name") && v["name"].is_string());
        EXPECT_TRUE(v.contains("id") && v["id"].is_number_integer());
        EXPECT_LE(v["name"].get<std::string>().size(), 12u);  // 6 characters, é is 2 bytes
        if (v.contains("tags")) {
          EXPECT_LE(v["tags"].size(), 3u);
        }
        ++completed;
        break;
      }
      text += table->bytes[size_t(token)];
    }
  }
  EXPECT_GT(completed, 20);
}

TEST(GrammarConstraint, TheTrieWalkFindsEveryToken) {
  const auto grammar = json_reply_grammar(nullptr, {});
  const auto table = vocabulary();
  const size_t n = table->bytes.size();
  // Shortlist 0: nothing is tried before the walk. A fixed prefix, then the kept set is compared
  // with a direct parse of every token.
  TokenConstraint constraint(grammar, table, 0);
  for (const char* piece : {"{\"", "name", "\": ", "[", "1"}) {
    for (size_t t = 0; t < n; ++t) {
      if (table->bytes[t] == piece) {
        std::vector<float> logits(n, 0.0f);
        constraint.apply(logits);
        std::set<int32_t> direct;
        for (size_t u = 0; u < n; ++u) {
          GrammarState s = constraint.state();
          if (table->end_of_generation[u] ? s.complete() : !table->bytes[u].empty() && s.advance(table->bytes[u])) {
            direct.insert(int32_t(u));
          }
        }
        EXPECT_EQ(kept(logits), direct) << "before " << piece;
        constraint.accept(int32_t(t));
        break;
      }
    }
  }
  EXPECT_THROW(constraint.accept(1), Error);  // "}" cannot follow "[1"... inside an array
}

}  // namespace
}  // namespace moeserve::grammar
