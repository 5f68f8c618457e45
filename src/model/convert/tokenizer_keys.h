// GGUF tokenizer metadata (shared/spec/gguf.md §5) from a Hugging Face tokenizer: tokenizer.json
// plus, when present beside it, tokenizer_config.json (special tokens, add_bos/eos, chat
// template), chat_template.jinja / chat_template.json and config.json (fallback special ids), read
// the way llama.cpp's converter reads them. Byte-level BPE (the Qwen and Llama-3 families) only.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf_value.h"

namespace moeserve::convert {

struct HfTokenizerFiles {
  std::string source;                 // tokenizer.json path, for messages
  nlohmann::json tokenizer;           // tokenizer.json
  nlohmann::json tokenizer_config;    // tokenizer_config.json, or null
  nlohmann::json model_config;        // config.json, or null
  std::optional<std::string> chat_template_alt;  // chat_template.jinja (or .json) contents
};

// Loads `tokenizer_json` and the optional files in its directory.
HfTokenizerFiles load_hf_tokenizer(const std::string& tokenizer_json);

// GGUF token types (gguf.md §5).
enum class TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

// The pre-tokenizer id llama.cpp would give this tokenizer ("qwen2", "llama-bpe", "gpt-2"), or
// nullopt when its regex is not one we know.
std::optional<std::string> detect_pre_tokenizer(const nlohmann::json& tokenizer);

// All tokenizer.* keys. `vocab_size` is the model's (config.json vocab_size, often padded past
// the tokenizer's own count: the extra ids become "[PAD<id>]", type UNUSED). `pre_override`
// replaces the detected pre-tokenizer id when non-empty.
std::vector<std::pair<std::string, gguf::Value>> tokenizer_metadata(const HfTokenizerFiles& files, int64_t vocab_size,
                                                                    const std::string& pre_override = "");

}  // namespace moeserve::convert
