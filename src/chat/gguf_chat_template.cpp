#include "chat/gguf_chat_template.h"

#include "core/error.h"

namespace moeserve::chat {

namespace {

std::optional<std::string> token_text(const gguf::GgufFile& file, const char* id_key) {
  const std::optional<uint64_t> id = file.get_uint(id_key);
  if (!id) return std::nullopt;
  const gguf::Value* tokens = file.find("tokenizer.ggml.tokens");
  if (!tokens) fail(file.path(), ": ", id_key, " is set but tokenizer.ggml.tokens is missing");
  const gguf::Array& list = tokens->as_array();
  if (*id >= list.items.size())
    fail(file.path(), ": ", id_key, " = ", *id, " is past the end of tokenizer.ggml.tokens (", list.items.size(), " tokens)");
  return list.items[*id].as_string();
}

}  // namespace

GgufChatTemplate chat_template_from_gguf(const gguf::GgufFile& file, const std::string& name) {
  const std::string key = name.empty() ? "tokenizer.chat_template" : "tokenizer.chat_template." + name;
  std::optional<std::string> source = file.get_string(key);
  if (!source) fail(file.path(), ": no ", key, " in its metadata");
  GgufChatTemplate out;
  out.source = std::move(*source);
  out.bos_token = token_text(file, "tokenizer.ggml.bos_token_id");
  out.eos_token = token_text(file, "tokenizer.ggml.eos_token_id");
  return out;
}

}  // namespace moeserve::chat
