#include "model/synth/synth_vocab.h"

#include <unordered_set>

#include "core/error.h"
#include "model/convert/tokenizer_keys.h"
#include "model/synth/random_blocks.h"

namespace moeserve::synth {
namespace {

using convert::TokenType;

// GPT-2 byte-level alphabet: printable bytes stand for themselves, the others map to U+0100 on.
std::vector<std::string> byte_tokens() {
  std::vector<std::string> out(256);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + extra++);
    std::string s;
    if (cp < 0x80) {
      s.push_back(char(cp));
    } else {
      s.push_back(char(0xC0 | (cp >> 6)));
      s.push_back(char(0x80 | (cp & 0x3F)));
    }
    out[size_t(b)] = s;
  }
  return out;
}

struct Special {
  std::string text;
  TokenType type;
};

std::vector<Special> specials(VocabStyle style) {
  std::vector<Special> s;
  if (style == VocabStyle::Qwen) {
    // ids 151643.. in the real vocabulary (gguf.md §5.1); <|...|> ones are CONTROL, the tool and
    // think tags USER_DEFINED.
    for (const char* t : {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                          "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                          "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
                          "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
                          "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>"}) {
      const std::string text = t;
      s.push_back({text, text.rfind("<|", 0) == 0 ? TokenType::Control : TokenType::UserDefined});
    }
  } else {
    // Llama 3: 256 control tokens from 128000.
    int reserved = 0;
    for (int i = 0; i < 256; ++i) {
      std::string text;
      switch (i) {
        case 0: text = "<|begin_of_text|>"; break;
        case 1: text = "<|end_of_text|>"; break;
        case 6: text = "<|start_header_id|>"; break;
        case 7: text = "<|end_header_id|>"; break;
        case 9: text = "<|eot_id|>"; break;
        default: text = str_cat("<|reserved_special_token_", reserved++, "|>");
      }
      s.push_back({text, TokenType::Control});
    }
  }
  return s;
}

}  // namespace

std::vector<std::pair<std::string, gguf::Value>> synthetic_vocab(VocabStyle style, int64_t n_normal, int64_t n_vocab,
                                                                 uint64_t seed) {
  using gguf::Value;
  const std::vector<Special> sp = specials(style);
  if (n_normal < 256 || n_normal + int64_t(sp.size()) > n_vocab)
    fail("vocabulary of ", n_vocab, " cannot hold 256 byte tokens, ", n_normal - 256, " merges and ", sp.size(),
         " special tokens");
  std::vector<std::string> tokens = byte_tokens();
  std::vector<std::string> merges;
  std::unordered_set<std::string> seen(tokens.begin(), tokens.end());
  tokens.reserve(size_t(n_vocab));
  merges.reserve(size_t(n_normal - 256));
  Rng rng(seed ^ 0x766f636162ull);
  // Each merge appends a byte token to a random existing token (at most 24 bytes long).
  while (int64_t(tokens.size()) < n_normal) {
    const size_t left = size_t(rng.next() % tokens.size());
    const size_t right = size_t(rng.next() % 256);
    std::string joined = tokens[left] + tokens[right];
    if (joined.size() > 24 || !seen.insert(joined).second) continue;
    merges.push_back(tokens[left] + " " + tokens[right]);
    tokens.push_back(std::move(joined));
  }
  std::vector<int32_t> types(tokens.size(), int32_t(TokenType::Normal));
  for (const Special& s : sp) {
    tokens.push_back(s.text);
    types.push_back(int32_t(s.type));
  }
  while (int64_t(tokens.size()) < n_vocab) {
    tokens.push_back(str_cat("[PAD", tokens.size(), "]"));
    types.push_back(int32_t(TokenType::Unused));
  }

  std::vector<std::pair<std::string, Value>> kv;
  kv.emplace_back("tokenizer.ggml.model", Value::string("gpt2"));
  kv.emplace_back("tokenizer.ggml.pre", Value::string(style == VocabStyle::Qwen ? "qwen2" : "llama-bpe"));
  kv.emplace_back("tokenizer.ggml.tokens", Value::string_array(tokens));
  std::vector<Value> type_values;
  type_values.reserve(types.size());
  for (int32_t t : types) type_values.push_back(Value::i32(t));
  kv.emplace_back("tokenizer.ggml.token_type", Value::array(gguf::ValueType::INT32, std::move(type_values)));
  kv.emplace_back("tokenizer.ggml.merges", Value::string_array(merges));
  const uint32_t first_special = uint32_t(n_normal);
  if (style == VocabStyle::Qwen) {
    kv.emplace_back("tokenizer.ggml.bos_token_id", Value::u32(first_special));      // <|endoftext|>
    kv.emplace_back("tokenizer.ggml.eos_token_id", Value::u32(first_special + 2));  // <|im_end|>
    kv.emplace_back("tokenizer.ggml.padding_token_id", Value::u32(first_special));
    kv.emplace_back("tokenizer.ggml.add_bos_token", Value::boolean(false));
  } else {
    kv.emplace_back("tokenizer.ggml.bos_token_id", Value::u32(first_special));      // <|begin_of_text|>
    kv.emplace_back("tokenizer.ggml.eos_token_id", Value::u32(first_special + 9));  // <|eot_id|>
    kv.emplace_back("tokenizer.ggml.add_bos_token", Value::boolean(true));
  }
  kv.emplace_back("tokenizer.ggml.add_eos_token", Value::boolean(false));
  return kv;
}

}  // namespace moeserve::synth
