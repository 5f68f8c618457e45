// A tokenizer vocabulary as GGUF stores it (shared/spec/gguf.md §5): the tokens in id order with
// their types, SentencePiece scores or BPE merges, and the special ids. Built from GGUF metadata
// (vocab_gguf.h) or from a Hugging Face tokenizer.json (vocab_hf.h); Tokenizer (tokenizer.h) runs it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve::tokenizer {

using TokenId = int32_t;
constexpr TokenId kNoToken = -1;

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,      // special tokens: matched in text only with parse_special, printed only on request
  UserDefined = 4,  // added non-special tokens: always matched in text, printed as their text
  Unused = 5,
  Byte = 6,         // SentencePiece byte fallback pieces <0xNN>
};

const char* token_type_name(TokenType type);

struct Vocab {
  // tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece-style BPE with scores
  // and byte fallback).
  std::string model;
  // tokenizer.ggml.pre for gpt2: "qwen2", "llama-bpe" (or "llama3"), "gpt-4o", "deepseek-llm",
  // "deepseek-v3". Unused by llama.
  std::string pre;

  std::vector<std::string> tokens;  // index = id; gpt2 tokens are in GPT-2's byte-to-unicode form
  std::vector<TokenType> types;     // one per token
  std::vector<float> scores;        // llama: one per token (higher merges first); gpt2: empty
  std::vector<std::string> merges;  // gpt2: "left right", rank = index

  TokenId bos = kNoToken;
  TokenId eos = kNoToken;
  TokenId eot = kNoToken;
  TokenId eom = kNoToken;
  TokenId unk = kNoToken;
  TokenId pad = kNoToken;
  TokenId sep = kNoToken;
  TokenId mask = kNoToken;
  TokenId fim_pre = kNoToken;
  TokenId fim_suf = kNoToken;
  TokenId fim_mid = kNoToken;
  TokenId fim_pad = kNoToken;
  TokenId fim_rep = kNoToken;
  TokenId fim_sep = kNoToken;

  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = true;  // llama: prefix a space to text at the start and after specials

  size_t size() const { return tokens.size(); }
  TokenId find(std::string_view text) const;  // linear search; kNoToken when absent

  // Throws moeserve::Error, prefixed with `source`, for an unknown model or pre-tokenizer,
  // mismatched array lengths, special ids out of range, or malformed merges.
  void validate(std::string_view source) const;
};

}  // namespace moeserve::tokenizer
