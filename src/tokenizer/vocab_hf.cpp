#include "tokenizer/vocab_hf.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"

namespace moeserve::tokenizer {
namespace {

using nlohmann::json;

json read_json(const std::string& path, bool required) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (required) fail(path, ": cannot open");
    return json();
  }
  std::stringstream buf;
  buf << in.rdbuf();
  try {
    return json::parse(buf.str());
  } catch (const json::exception& e) {
    fail(path, ": invalid JSON: ", e.what());
  }
}

// The Split patterns of the known pre-tokenizers, as their tokenizer.json files write them.
const std::string kContractionsI = R"((?i:'s|'t|'re|'ve|'m|'ll|'d))";
const std::string kContractionsX = R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))";
const std::string kQwen2Tail = R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kLlama3Tail =
    R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kGpt4o =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kDeepseekV3[] = {
    R"(\p{N}{1,3})",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",  // [一-龥぀-ゟ゠-ヿ]+
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
};
// deepseek-llm's six patterns start with these two; the letter class that follows is long.
const std::string kDeepseekLlmFirst = "[\r\n]";
const std::string kDeepseekLlmSecondStart = R"(\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-Ֆ)";

void collect_split_patterns(const json& pre, std::vector<std::string>& out, bool& has_byte_level) {
  if (!pre.is_object()) return;
  const std::string type = pre.value("type", "");
  if (type == "Sequence") {
    for (const json& p : pre.value("pretokenizers", json::array())) collect_split_patterns(p, out, has_byte_level);
  } else if (type == "Split") {
    const json& pattern = pre.value("pattern", json::object());
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) out.push_back(pattern["Regex"].get<std::string>());
    else if (pattern.contains("String") && pattern["String"].is_string()) out.push_back(pattern["String"].get<std::string>());
  } else if (type == "ByteLevel") {
    has_byte_level = true;
    // ByteLevel with use_regex splits with GPT-2's own pattern, which no supported name uses.
    if (pre.value("use_regex", true)) out.push_back("<ByteLevel use_regex>");
  }
}

std::string guess_pre(const std::vector<std::string>& patterns, std::string_view source) {
  if (patterns.size() == 1) {
    const std::string& p = patterns[0];
    if (p == kContractionsI + kQwen2Tail || p == kContractionsX + kQwen2Tail) return "qwen2";
    if (p == kContractionsI + kLlama3Tail || p == kContractionsX + kLlama3Tail) return "llama-bpe";
    if (p == kGpt4o) return "gpt-4o";
  }
  if (patterns.size() == 3 && patterns[0] == kDeepseekV3[0] && patterns[1] == kDeepseekV3[1] &&
      patterns[2] == kDeepseekV3[2])
    return "deepseek-v3";
  if (patterns.size() == 6 && patterns[0] == kDeepseekLlmFirst &&
      patterns[1].compare(0, kDeepseekLlmSecondStart.size(), kDeepseekLlmSecondStart) == 0)
    return "deepseek-llm";
  std::string list;
  for (const std::string& p : patterns) list += (list.empty() ? "" : ", ") + ("'" + p + "'");
  fail(source, ": pre_tokenizer patterns [", list,
       "] match no supported pre-tokenizer (qwen2, llama-bpe, gpt-4o, deepseek-llm, deepseek-v3)");
}

// True for a normalizer / pre-tokenizer that marks spaces with "▁" the SentencePiece way; sets
// `prefix` when it also prepends one.
void find_metaspace(const json& node, bool& metaspace, bool& prefix) {
  if (!node.is_object()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    for (const char* key : {"normalizers", "pretokenizers"})
      for (const json& n : node.value(key, json::array())) find_metaspace(n, metaspace, prefix);
  } else if (type == "Prepend" && node.value("prepend", "") == "\xe2\x96\x81") {
    metaspace = prefix = true;
  } else if (type == "Replace" && node.value("content", "") == "\xe2\x96\x81") {
    metaspace = true;
  } else if (type == "Metaspace") {
    metaspace = true;
    const std::string scheme = node.value("prepend_scheme", node.value("add_prefix_space", true) ? "always" : "never");
    if (scheme != "never") prefix = true;
  }
}

// Added tokens the HF -> GGUF converter makes CONTROL although tokenizer.json does not mark them
// special: "<|...|>" and "<｜...｜>" forms, "<unused...>", and a few known texts. llama.cpp agrees
// (it treats such tokens as control when loading), so Qwen's <|fim_prefix|>, <|repo_name|> and
// <|file_sep|> are CONTROL while <think> and <tool_call> stay USER_DEFINED.
bool looks_special(std::string_view t) {
  auto wrapped = [&](std::string_view open, std::string_view close) {
    return t.size() >= open.size() + close.size() && t.substr(0, open.size()) == open &&
           t.substr(t.size() - close.size()) == close;
  };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
         wrapped("<\xef\xbd\x9c", "\xef\xbd\x9c>") || wrapped("<unused", ">");
}

// A special-token entry of tokenizer_config.json: a string or {"content": ...}.
std::string token_content(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

Vocab vocab_from_hf_json(const json& tok, const json& tok_config, const json& config, std::string_view source,
                         const HfVocabOptions& options) {
  try {
    if (!tok.is_object()) fail(source, ": not a tokenizer.json object");
    const json& model = tok.value("model", json::object());
    const std::string type = model.value("type", "");
    if (type != "BPE") fail(source, ": model type '", type, "' is not supported (only BPE)");
    Vocab v;

    std::vector<std::string> patterns;
    bool byte_level = false;
    collect_split_patterns(tok.value("pre_tokenizer", json()), patterns, byte_level);
    bool metaspace = false, prefix = false;
    find_metaspace(tok.value("normalizer", json()), metaspace, prefix);
    find_metaspace(tok.value("pre_tokenizer", json()), metaspace, prefix);
    if (byte_level) {
      v.model = "gpt2";
      v.pre = guess_pre(patterns, source);
    } else if (metaspace || model.value("byte_fallback", false)) {
      v.model = "llama";
      v.add_space_prefix = prefix;
    } else {
      fail(source, ": a BPE model with neither a ByteLevel pre-tokenizer nor \"▁\" spaces is not supported");
    }

    // Tokens by id: the model's vocabulary, then the added tokens.
    std::map<int64_t, std::string> by_id;
    const json& vocab = model.value("vocab", json::object());
    if (!vocab.is_object()) fail(source, ": model.vocab is not an object");
    for (const auto& [text, id] : vocab.items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= INT32_MAX)
        fail(source, ": model.vocab entry '", text, "' has an invalid id");
      if (!by_id.emplace(id.get<int64_t>(), text).second)
        fail(source, ": model.vocab has two tokens with id ", id.get<int64_t>());
    }
    std::map<int64_t, bool> added_special;  // id -> special
    for (const json& a : tok.value("added_tokens", json::array())) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
          !a["content"].is_string())
        fail(source, ": an added_tokens entry lacks an integer id or a string content");
      const int64_t id = a["id"].get<int64_t>();
      if (id < 0 || id >= INT32_MAX) fail(source, ": added token id ", id, " is out of range");
      std::string content = a["content"].get<std::string>();
      auto [it, inserted] = by_id.emplace(id, content);
      if (!inserted && it->second != content)
        fail(source, ": added token ", id, " '", content, "' clashes with vocabulary token '", it->second, "'");
      added_special[id] = a.value("special", false);
    }
    int64_t n = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
    if (options.vocab_size > size_t(n)) n = int64_t(options.vocab_size);
    constexpr int64_t kMaxTokens = int64_t(1) << 24;  // far above any real vocabulary
    if (n > kMaxTokens) fail(source, ": ", n, " tokens (highest id or vocab_size) is more than ", kMaxTokens);
    v.tokens.resize(size_t(n));
    v.types.assign(size_t(n), TokenType::Unused);
    for (int64_t id = 0; id < n; ++id) {
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        v.tokens[id] = "[PAD" + std::to_string(id) + "]";
        continue;
      }
      v.tokens[id] = it->second;
      auto added = added_special.find(id);
      if (added == added_special.end()) {
        v.types[id] = TokenType::Normal;
      } else if (added->second || looks_special(it->second)) {
        v.types[id] = TokenType::Control;
      } else {
        v.types[id] = TokenType::UserDefined;
        if (v.model == "llama") {  // user-defined spaces are stored as text, not "▁"
          std::string& t = v.tokens[id];
          for (size_t p; (p = t.find("\xe2\x96\x81")) != std::string::npos;) t.replace(p, 3, " ");
        }
      }
    }

    const json& merges = model.value("merges", json::array());
    for (const json& m : merges) {
      if (m.is_string()) {
        v.merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        v.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      } else {
        fail(source, ": model.merges entry ", v.merges.size(), " is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }

    if (v.model == "llama") {
      // SentencePiece merges by token score. Score each token by the rank of the first merge that
      // makes it (earlier merges score higher); tokens no merge makes rank after all of them.
      std::unordered_map<std::string, TokenId> ids;
      for (size_t i = 0; i < v.tokens.size(); ++i) ids.emplace(v.tokens[i], TokenId(i));
      v.scores.assign(v.tokens.size(), 0.0f);
      std::vector<bool> scored(v.tokens.size());
      for (size_t r = 0; r < v.merges.size(); ++r) {
        const std::string& m = v.merges[r];
        const size_t space = m.find(' ', 1);
        if (space == std::string::npos) continue;  // Vocab::validate reports it
        auto it = ids.find(m.substr(0, space) + m.substr(space + 1));
        if (it != ids.end() && !scored[it->second]) {
          v.scores[it->second] = -float(r);
          scored[it->second] = true;
        }
      }
      for (size_t i = 0; i < v.tokens.size(); ++i)
        if (!scored[i] && v.types[i] == TokenType::Normal) v.scores[i] = -float(v.merges.size() + i);
      // The converter keeps SentencePiece's merges as scores, not as a merge list.
      v.merges.clear();
      for (size_t i = 0; i < v.tokens.size(); ++i) {
        const std::string& t = v.tokens[i];
        if (v.types[i] == TokenType::Normal && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>')
          v.types[i] = TokenType::Byte;
      }
      const std::string unk = model.value("unk_token", json()).is_string() ? model["unk_token"].get<std::string>() : "";
      if (!unk.empty()) {
        auto it = ids.find(unk);
        if (it != ids.end()) {
          v.unk = it->second;
          v.types[it->second] = TokenType::Unknown;
        }
      }
    }

    // Special ids: tokenizer_config.json names them by text, config.json by id.
    struct Special {
      const char* name;
      TokenId* id;
      const char* config_key;
    };
    const Special specials[] = {
        {"bos_token", &v.bos, "bos_token_id"},
        {"eos_token", &v.eos, "eos_token_id"},
        {"unk_token", &v.unk, nullptr},
        {"pad_token", &v.pad, "pad_token_id"},
        {"sep_token", &v.sep, nullptr},
        {"mask_token", &v.mask, nullptr},
    };
    for (const Special& s : specials) {
      if (tok_config.is_object() && tok_config.contains(s.name)) {
        const std::string text = token_content(tok_config[s.name]);
        const TokenId id = text.empty() ? kNoToken : v.find(text);
        if (id != kNoToken) *s.id = id;
      }
      if (*s.id == kNoToken && s.config_key && config.is_object() && config.contains(s.config_key)) {
        const json& c = config[s.config_key];
        // eos_token_id may be a list; the first entry is the primary one.
        const json& first = c.is_array() && !c.empty() ? c[0] : c;
        if (first.is_number_integer() && first.get<int64_t>() >= 0 && first.get<int64_t>() < n)
          *s.id = TokenId(first.get<int64_t>());
      }
    }
    if (v.model == "llama") v.add_bos = true;  // LlamaTokenizer's default
    if (tok_config.is_object()) {
      if (tok_config.contains("add_bos_token") && tok_config["add_bos_token"].is_boolean())
        v.add_bos = tok_config["add_bos_token"].get<bool>();
      if (tok_config.contains("add_eos_token") && tok_config["add_eos_token"].is_boolean())
        v.add_eos = tok_config["add_eos_token"].get<bool>();
    }
    if (v.add_bos && v.bos == kNoToken) v.add_bos = false;
    if (v.add_eos && v.eos == kNoToken) v.add_eos = false;

    v.validate(source);
    return v;
  } catch (const json::exception& e) {
    fail(source, ": unexpected structure: ", e.what());
  }
}

Vocab load_hf_vocab(const std::string& tokenizer_json_path, HfVocabOptions options) {
  const std::filesystem::path dir = std::filesystem::path(tokenizer_json_path).parent_path();
  const json tok = read_json(tokenizer_json_path, true);
  const json tok_config = read_json((dir / "tokenizer_config.json").string(), false);
  const json config = read_json((dir / "config.json").string(), false);
  if (options.vocab_size == 0 && config.is_object() && config.contains("vocab_size") &&
      config["vocab_size"].is_number_unsigned())
    options.vocab_size = config["vocab_size"].get<size_t>();
  return vocab_from_hf_json(tok, tok_config, config, tokenizer_json_path, options);
}

}  // namespace moeserve::tokenizer
