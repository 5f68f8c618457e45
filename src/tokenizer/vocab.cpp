#include "tokenizer/vocab.h"

#include "core/error.h"
#include "tokenizer/pre_tokenizer.h"

namespace moeserve::tokenizer {

const char* token_type_name(TokenType type) {
  switch (type) {
    case TokenType::Undefined: return "undefined";
    case TokenType::Normal: return "normal";
    case TokenType::Unknown: return "unknown";
    case TokenType::Control: return "control";
    case TokenType::UserDefined: return "user-defined";
    case TokenType::Unused: return "unused";
    case TokenType::Byte: return "byte";
  }
  return "?";
}

TokenId Vocab::find(std::string_view text) const {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] == text) return TokenId(i);
  return kNoToken;
}

void Vocab::validate(std::string_view source) const {
  if (model != "gpt2" && model != "llama")
    fail(source, ": tokenizer model '", model, "' is not supported (supported: gpt2, llama)");
  if (model == "gpt2") pre_tokenizer_from_name(pre, source);  // throws for unknown names
  if (tokens.empty()) fail(source, ": the vocabulary has no tokens");
  if (tokens.size() > size_t(INT32_MAX)) fail(source, ": the vocabulary has too many tokens");
  if (types.size() != tokens.size())
    fail(source, ": ", types.size(), " token types for ", tokens.size(), " tokens");
  for (size_t i = 0; i < types.size(); ++i) {
    if (int32_t(types[i]) < 0 || int32_t(types[i]) > 6)
      fail(source, ": token ", i, " has unknown type ", int32_t(types[i]));
  }
  if (model == "llama" && scores.size() != tokens.size())
    fail(source, ": ", scores.size(), " scores for ", tokens.size(), " tokens");
  if (!scores.empty() && scores.size() != tokens.size())
    fail(source, ": ", scores.size(), " scores for ", tokens.size(), " tokens");
  const std::pair<const char*, TokenId> ids[] = {
      {"bos", bos},         {"eos", eos},         {"eot", eot},         {"eom", eom},
      {"unknown", unk},     {"padding", pad},     {"separator", sep},   {"mask", mask},
      {"fim_pre", fim_pre}, {"fim_suf", fim_suf}, {"fim_mid", fim_mid}, {"fim_pad", fim_pad},
      {"fim_rep", fim_rep}, {"fim_sep", fim_sep},
  };
  for (const auto& [name, id] : ids) {
    if (id != kNoToken && (id < 0 || size_t(id) >= tokens.size()))
      fail(source, ": ", name, " token id ", id, " is out of range (", tokens.size(), " tokens)");
  }
  if (add_bos && bos == kNoToken) fail(source, ": add_bos_token is set but there is no bos token");
  if (add_eos && eos == kNoToken) fail(source, ": add_eos_token is set but there is no eos token");
  for (size_t i = 0; i < merges.size(); ++i) {
    const size_t space = merges[i].find(' ', 1);
    if (space == std::string::npos || space + 1 >= merges[i].size())
      fail(source, ": merge ", i, " '", merges[i], "' is not two tokens separated by a space");
  }
}

}  // namespace moeserve::tokenizer
