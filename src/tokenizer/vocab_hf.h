// A Vocab from a Hugging Face tokenizer.json (and tokenizer_config.json / config.json when
// given), mapped the way an HF -> GGUF converter maps it: tokens in id order including added
// tokens (ids with no token become "[PAD<id>]", UNUSED), added tokens CONTROL when `special` or
// when they look like control tokens ("<|...|>"), USER_DEFINED otherwise, merges as "left right", special ids from the configs, and the
// pre-tokenizer name recognised from the Split patterns.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "tokenizer/vocab.h"

namespace moeserve::tokenizer {

struct HfVocabOptions {
  // Pad the vocabulary with "[PAD<id>]" tokens up to this size (config.json's vocab_size, which
  // for Qwen is larger than the tokenizer's); 0 = no padding.
  size_t vocab_size = 0;
};

// `tokenizer_config` and `config` may be null (JSON null) when absent. `source` names the input in
// error messages.
Vocab vocab_from_hf_json(const nlohmann::json& tokenizer, const nlohmann::json& tokenizer_config,
                         const nlohmann::json& config, std::string_view source, const HfVocabOptions& options = {});

// Reads `tokenizer_json_path` and, when they sit next to it, tokenizer_config.json and config.json
// (whose vocab_size then pads the vocabulary unless options.vocab_size is set).
Vocab load_hf_vocab(const std::string& tokenizer_json_path, HfVocabOptions options = {});

}  // namespace moeserve::tokenizer
