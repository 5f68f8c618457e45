#include "tokenizer/vocab_gguf.h"

#include "core/error.h"

namespace moeserve::tokenizer {

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

  struct Id {
    const char* key;
    TokenId* id;
  };
  const Id ids[] = {
      {"tokenizer.ggml.bos_token_id", &v.bos},       {"tokenizer.ggml.eos_token_id", &v.eos},
      {"tokenizer.ggml.eot_token_id", &v.eot},       {"tokenizer.ggml.eom_token_id", &v.eom},
      {"tokenizer.ggml.unknown_token_id", &v.unk},   {"tokenizer.ggml.padding_token_id", &v.pad},
      {"tokenizer.ggml.seperator_token_id", &v.sep}, {"tokenizer.ggml.mask_token_id", &v.mask},
      {"tokenizer.ggml.fim_pre_token_id", &v.fim_pre}, {"tokenizer.ggml.fim_suf_token_id", &v.fim_suf},
      {"tokenizer.ggml.fim_mid_token_id", &v.fim_mid}, {"tokenizer.ggml.fim_pad_token_id", &v.fim_pad},
      {"tokenizer.ggml.fim_rep_token_id", &v.fim_rep}, {"tokenizer.ggml.fim_sep_token_id", &v.fim_sep},
  };
  for (const Id& k : ids) {
    if (const auto value = file.get_uint(k.key)) {
      if (*value >= v.tokens.size())
        fail(source, ": ", k.key, " = ", *value, " is out of range (", v.tokens.size(), " tokens)");
      *k.id = TokenId(*value);
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
