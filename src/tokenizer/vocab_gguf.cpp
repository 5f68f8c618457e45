#include "tokenizer/vocab_gguf.h"

#include "core/error.h"

namespace moeserve::tokenizer {
namespace {

struct IdKey {
  const char* key;
  TokenId Vocab::*id;
};
constexpr IdKey kIdKeys[] = {
    {"tokenizer.ggml.bos_token_id", &Vocab::bos},         {"tokenizer.ggml.eos_token_id", &Vocab::eos},
    {"tokenizer.ggml.eot_token_id", &Vocab::eot},         {"tokenizer.ggml.eom_token_id", &Vocab::eom},
    {"tokenizer.ggml.unknown_token_id", &Vocab::unk},     {"tokenizer.ggml.padding_token_id", &Vocab::pad},
    {"tokenizer.ggml.seperator_token_id", &Vocab::sep},   {"tokenizer.ggml.mask_token_id", &Vocab::mask},
    {"tokenizer.ggml.fim_pre_token_id", &Vocab::fim_pre}, {"tokenizer.ggml.fim_suf_token_id", &Vocab::fim_suf},
    {"tokenizer.ggml.fim_mid_token_id", &Vocab::fim_mid}, {"tokenizer.ggml.fim_pad_token_id", &Vocab::fim_pad},
    {"tokenizer.ggml.fim_rep_token_id", &Vocab::fim_rep}, {"tokenizer.ggml.fim_sep_token_id", &Vocab::fim_sep},
};

}  // namespace

std::vector<std::pair<std::string, gguf::Value>> vocab_to_gguf_metadata(const Vocab& v) {
  using gguf::Value;
  std::vector<std::pair<std::string, Value>> md;
  md.emplace_back("tokenizer.ggml.model", Value::string(v.model));
  if (!v.pre.empty()) md.emplace_back("tokenizer.ggml.pre", Value::string(v.pre));
  md.emplace_back("tokenizer.ggml.tokens", Value::string_array(v.tokens));
  if (!v.scores.empty()) {
    std::vector<Value> scores;
    scores.reserve(v.scores.size());
    for (float s : v.scores) scores.push_back(Value::f32(s));
    md.emplace_back("tokenizer.ggml.scores", Value::array(gguf::ValueType::FLOAT32, std::move(scores)));
  }
  std::vector<Value> types;
  types.reserve(v.types.size());
  for (TokenType t : v.types) types.push_back(Value::i32(int32_t(t)));
  md.emplace_back("tokenizer.ggml.token_type", Value::array(gguf::ValueType::INT32, std::move(types)));
  if (!v.merges.empty()) md.emplace_back("tokenizer.ggml.merges", Value::string_array(v.merges));
  for (const IdKey& k : kIdKeys)
    if (v.*k.id != kNoToken) md.emplace_back(k.key, Value::u32(uint32_t(v.*k.id)));
  md.emplace_back("tokenizer.ggml.add_bos_token", Value::boolean(v.add_bos));
  md.emplace_back("tokenizer.ggml.add_eos_token", Value::boolean(v.add_eos));
  if (v.model == "llama") md.emplace_back("tokenizer.ggml.add_space_prefix", Value::boolean(v.add_space_prefix));
  return md;
}

Vocab vocab_from_gguf(const gguf::GgufFile& file) {
  const std::string& source = file.path();
  Vocab v;
  const auto model = file.get_string("tokenizer.ggml.model");
  if (!model) fail(source, ": no tokenizer.ggml.model key (the file carries no tokenizer)");
  v.model = *model;
  v.pre = file.get_string("tokenizer.ggml.pre").value_or(v.model == "gpt2" ? "default" : "");
  v.tokens = file.get_string_array("tokenizer.ggml.tokens");
  if (v.tokens.empty()) fail(source, ": tokenizer.ggml.tokens is missing or empty");

  const std::vector<int64_t> types = file.get_int_array("tokenizer.ggml.token_type");
  if (types.empty()) {
    v.types.assign(v.tokens.size(), TokenType::Normal);
  } else {
    v.types.reserve(types.size());
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] < 0 || types[i] > 6)
        fail(source, ": tokenizer.ggml.token_type[", i, "] = ", types[i], " is not a token type");
      v.types.push_back(TokenType(types[i]));
    }
  }
  v.scores = file.get_f32_array("tokenizer.ggml.scores");
  v.merges = file.get_string_array("tokenizer.ggml.merges");

  for (const IdKey& k : kIdKeys) {
    if (const auto value = file.get_uint(k.key)) {
      if (*value >= v.tokens.size())
        fail(source, ": ", k.key, " = ", *value, " is out of range (", v.tokens.size(), " tokens)");
      v.*k.id = TokenId(*value);
    }
  }

  // Defaults as llama.cpp applies them: SentencePiece vocabularies add BOS and a space prefix.
  v.add_bos = v.model == "llama";
  v.add_space_prefix = v.model == "llama";
  if (v.model == "gpt2" && (v.pre == "llama-bpe" || v.pre == "llama3" || v.pre == "llama-v3")) v.add_bos = true;
  v.add_bos = file.get_bool("tokenizer.ggml.add_bos_token").value_or(v.add_bos);
  v.add_eos = file.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  v.add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix").value_or(v.add_space_prefix);
  if (v.add_bos && v.bos == kNoToken) v.add_bos = false;
  if (v.add_eos && v.eos == kNoToken) v.add_eos = false;

  v.validate(source);
  return v;
}

}  // namespace moeserve::tokenizer
