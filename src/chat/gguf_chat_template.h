// The chat template a GGUF file carries (tokenizer.chat_template, as llama.cpp's converter stores
// it) and the texts of its BOS/EOS tokens, which transformers passes to templates as bos_token /
// eos_token.
#pragma once

#include <optional>
#include <string>

#include "gguf/gguf_file.h"

namespace moeserve::chat {

struct GgufChatTemplate {
  std::string source;
  std::optional<std::string> bos_token;  // unset when the file names no such token
  std::optional<std::string> eos_token;
};

// `name` selects tokenizer.chat_template.<name> (e.g. "tool_use"); empty is the default template.
// Throws moeserve::Error naming the file and key when the template is missing or a token id is bad.
GgufChatTemplate chat_template_from_gguf(const gguf::GgufFile& file, const std::string& name = "");

}  // namespace moeserve::chat
