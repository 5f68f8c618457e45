// Text <-> token ids for a Vocab: byte-level BPE (model "gpt2", with the pre-tokenizer named by the
// vocabulary) and SentencePiece-style BPE (model "llama": score-ordered merges, "▁" for spaces,
// byte fallback). Added tokens (CONTROL, USER_DEFINED) are found in the text first, longest match
// at the leftmost position, as Hugging Face tokenizers do. Thread-safe for concurrent use.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace moeserve::tokenizer {

struct EncodeOptions {
  // Add bos / eos as the vocabulary asks (add_bos / add_eos).
  bool add_special = false;
  // Recognise CONTROL (and UNKNOWN) token texts such as "<|im_start|>" in the text. USER_DEFINED
  // tokens ("<think>", "<tool_call>") are recognised either way, as in HF and llama.cpp.
  bool parse_special = true;
};

class Tokenizer {
 public:
  // Validates the vocabulary (moeserve::Error naming `source` when it is unusable).
  explicit Tokenizer(Vocab vocab, std::string_view source = "vocabulary");
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  const Vocab& vocab() const;
  size_t n_tokens() const { return vocab().tokens.size(); }

  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const;
  void encode(std::string_view text, const EncodeOptions& options, std::vector<TokenId>& out) const;

  // The bytes one token stands for. CONTROL and UNKNOWN tokens give their text only when
  // `special` is set; UNUSED tokens and ids out of range give nothing.
  const std::string& piece(TokenId id, bool special = false) const;
  // The text of a sequence: pieces joined; for SentencePiece vocabularies with add_space_prefix
  // the space the encoder prefixed is removed from the very start.
  std::string decode(std::span<const TokenId> ids, bool special = false) const;

  // Exact lookup of a token's text as stored in the vocabulary; kNoToken when absent.
  TokenId find(std::string_view token_text) const;
  // End of generation: eos, eot, eom, and control tokens that end turns ("<|im_end|>",
  // "<|endoftext|>", "<|eot_id|>", ...).
  bool is_end_of_generation(TokenId id) const;
  const std::vector<TokenId>& end_of_generation_ids() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of generated ids into text that is always valid UTF-8: bytes of a character
// split across tokens are held back until it is complete; bytes that cannot become valid UTF-8
// come out as U+FFFD. The text continues a prompt, so pieces are kept whole (a SentencePiece
// token's leading space included, as llama-server streams it).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool special = false);
  // Text that became complete with this token (possibly empty).
  std::string push(TokenId id);
  // At the end of the stream: whatever is still held back (an incomplete character becomes U+FFFD).
  std::string finish();

 private:
  std::string take_complete(bool at_end);

  const Tokenizer* tokenizer_;
  bool special_;
  std::string pending_;
};

}  // namespace moeserve::tokenizer
