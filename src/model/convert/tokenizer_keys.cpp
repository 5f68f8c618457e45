#include "model/convert/tokenizer_keys.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "core/error.h"
#include "model/convert/hf_config.h"

namespace moeserve::convert {
namespace {

using nlohmann::json;
using KeyValues = std::vector<std::pair<std::string, gguf::Value>>;

// Split regexes as the tokenizer.json files of these families spell them (gguf.md §5.1 gives the
// qwen2 one in llama.cpp's rewritten form).
constexpr const char* kQwen2Regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr const char* kLlama3Regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// Flattens a (possibly nested Sequence) pre-tokenizer / post-processor into its steps.
void flatten(const json& node, const char* list_key, std::vector<const json*>& out) {
  if (!node.is_object()) return;
  if (node.value("type", "") == "Sequence") {
    const auto list = node.find(list_key);
    if (list != node.end() && list->is_array())
      for (const json& step : *list) flatten(step, list_key, out);
    return;
  }
  out.push_back(&node);
}

bool uses_byte_level(const json& tok) {
  std::vector<const json*> steps;
  if (tok.contains("pre_tokenizer")) flatten(tok["pre_tokenizer"], "pretokenizers", steps);
  if (tok.contains("decoder")) flatten(tok["decoder"], "decoders", steps);
  for (const json* s : steps)
    if (s->value("type", "") == "ByteLevel") return true;
  return false;
}

std::optional<std::string> token_content(const json& entry) {
  if (entry.is_string()) return entry.get<std::string>();
  if (entry.is_object() && entry.contains("content") && entry["content"].is_string())
    return entry["content"].get<std::string>();
  return std::nullopt;
}

// llama.cpp marks added tokens that look like control tokens as CONTROL even when the tokenizer
// says special = false.
bool looks_special(const std::string& t) {
  return (t.size() >= 4 && t.rfind("<|", 0) == 0 && t.compare(t.size() - 2, 2, "|>") == 0) || t == "<pad>" ||
         t == "<mask>";
}

struct Template {
  bool known = false;
  bool add_bos = false;
  bool add_eos = false;
};

// A TemplateProcessing post-processor that starts (ends) with a special token adds BOS (EOS).
Template template_processing(const json& tok) {
  std::vector<const json*> steps;
  if (tok.contains("post_processor")) flatten(tok["post_processor"], "processors", steps);
  for (const json* s : steps) {
    if (s->value("type", "") != "TemplateProcessing") continue;
    const auto single = s->find("single");
    if (single == s->end() || !single->is_array() || single->empty()) continue;
    Template t;
    t.known = true;
    t.add_bos = single->front().is_object() && single->front().contains("SpecialToken");
    t.add_eos = single->back().is_object() && single->back().contains("SpecialToken");
    return t;
  }
  return {};
}

void add_chat_templates(const json& value, const std::string& source, KeyValues& kv) {
  if (value.is_string()) {
    kv.emplace_back("tokenizer.chat_template", gguf::Value::string(value.get<std::string>()));
    return;
  }
  if (!value.is_array()) fail(source, ": chat_template must be a string or a list of {name, template}");
  // Named templates: "default" becomes tokenizer.chat_template, the others
  // tokenizer.chat_template.<name> (non-alphanumerics replaced by '_'), listed in
  // tokenizer.chat_templates.
  std::optional<std::string> default_template;
  std::map<std::string, std::string> named;
  for (const json& choice : value) {
    if (!choice.is_object() || !choice.contains("name") || !choice.contains("template") ||
        !choice["name"].is_string() || !choice["template"].is_string())
      fail(source, ": each chat_template entry must be {\"name\": ..., \"template\": ...}");
    std::string name = choice["name"].get<std::string>();
    for (char& ch : name)
      if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    if (name.empty()) continue;
    if (name == "default") {
      default_template = choice["template"].get<std::string>();
    } else {
      named[name] = choice["template"].get<std::string>();
    }
  }
  std::vector<std::string> names;
  for (const auto& [name, text] : named) {
    kv.emplace_back("tokenizer.chat_template." + name, gguf::Value::string(text));
    names.push_back(name);
  }
  if (!names.empty()) kv.emplace_back("tokenizer.chat_templates", gguf::Value::string_array(names));
  if (default_template) kv.emplace_back("tokenizer.chat_template", gguf::Value::string(*default_template));
}

}  // namespace

HfTokenizerFiles load_hf_tokenizer(const std::string& tokenizer_json) {
  namespace fs = std::filesystem;
  HfTokenizerFiles f;
  f.source = tokenizer_json;
  f.tokenizer = read_json_file(tokenizer_json);
  const fs::path dir = fs::path(tokenizer_json).parent_path();
  if (fs::is_regular_file(dir / "tokenizer_config.json"))
    f.tokenizer_config = read_json_file((dir / "tokenizer_config.json").string());
  if (fs::is_regular_file(dir / "config.json")) f.model_config = read_json_file((dir / "config.json").string());
  if (fs::is_regular_file(dir / "chat_template.jinja")) {
    std::ifstream in(dir / "chat_template.jinja", std::ios::binary);
    f.chat_template_alt = std::string(std::istreambuf_iterator<char>(in), {});
  } else if (fs::is_regular_file(dir / "chat_template.json")) {
    const json j = read_json_file((dir / "chat_template.json").string());
    if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string())
      f.chat_template_alt = j["chat_template"].get<std::string>();
  }
  return f;
}

std::optional<std::string> detect_pre_tokenizer(const json& tok) {
  std::vector<const json*> steps;
  if (tok.contains("pre_tokenizer")) flatten(tok["pre_tokenizer"], "pretokenizers", steps);
  std::vector<std::string> regexes;
  bool byte_level_regex = false;
  for (const json* s : steps) {
    const std::string type = s->value("type", "");
    if (type == "Split" && s->contains("pattern") && (*s)["pattern"].is_object()) {
      const json& p = (*s)["pattern"];
      if (p.contains("Regex") && p["Regex"].is_string()) regexes.push_back(p["Regex"].get<std::string>());
      if (p.contains("String") && p["String"].is_string()) regexes.push_back(p["String"].get<std::string>());
    } else if (type == "ByteLevel") {
      byte_level_regex = byte_level_regex || s->value("use_regex", true);
    }
  }
  if (regexes.size() == 1 && regexes[0] == kQwen2Regex) return "qwen2";
  if (regexes.size() == 1 && regexes[0] == kLlama3Regex) return "llama-bpe";
  if (regexes.empty() && byte_level_regex) return "gpt-2";
  return std::nullopt;
}

KeyValues tokenizer_metadata(const HfTokenizerFiles& files, int64_t vocab_size, const std::string& pre_override) {
  using gguf::Value;
  const json& tok = files.tokenizer;
  const std::string& src = files.source;
  if (!tok.is_object() || !tok.contains("model") || !tok["model"].is_object()) fail(src, ": no 'model' object");
  const json& model = tok["model"];
  if (model.value("type", "") != "BPE" || !uses_byte_level(tok))
    fail(src, ": only byte-level BPE tokenizers (GGUF model 'gpt2') are supported; this one is '",
         model.value("type", "?"), "'", uses_byte_level(tok) ? "" : " without a ByteLevel step");
  std::string pre = pre_override;
  if (pre.empty()) {
    const std::optional<std::string> detected = detect_pre_tokenizer(tok);
    if (!detected) fail(src, ": pre-tokenizer regex not recognized (known: qwen2, llama-bpe, gpt-2); name it with --tokenizer-pre");
    pre = *detected;
  }
  if (vocab_size <= 0 || vocab_size > (int64_t(1) << 24)) fail(src, ": implausible vocabulary size ", vocab_size);

  std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
  std::vector<int32_t> types(static_cast<size_t>(vocab_size), 0);
  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) fail(src, ": model.vocab is missing");
  for (const auto& [text, id_json] : vocab->items()) {
    if (!id_json.is_number_integer()) fail(src, ": vocab entry '", text, "' has no integer id");
    const int64_t id = id_json.get<int64_t>();
    if (id < 0 || id >= vocab_size)
      fail(src, ": token '", text, "' has id ", id, ", outside the model's vocabulary of ", vocab_size);
    if (types[size_t(id)] != 0) fail(src, ": id ", id, " is used by two vocab entries");
    tokens[size_t(id)] = text;
    types[size_t(id)] = int32_t(TokenType::Normal);
  }
  std::map<std::string, int64_t> added_ids;
  if (tok.contains("added_tokens")) {
    if (!tok["added_tokens"].is_array()) fail(src, ": added_tokens must be a list");
    for (const json& a : tok["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
          !a["content"].is_string())
        fail(src, ": added_tokens entries need an integer 'id' and a string 'content'");
      const int64_t id = a["id"].get<int64_t>();
      const std::string content = a["content"].get<std::string>();
      if (id < 0 || id >= vocab_size)
        fail(src, ": added token '", content, "' has id ", id, ", outside the model's vocabulary of ", vocab_size);
      const bool special = a.value("special", false) || looks_special(content);
      tokens[size_t(id)] = content;
      types[size_t(id)] = int32_t(special ? TokenType::Control : TokenType::UserDefined);
      added_ids[content] = id;
    }
  }
  for (int64_t id = 0; id < vocab_size; ++id) {
    if (types[size_t(id)] != 0) continue;
    tokens[size_t(id)] = str_cat("[PAD", id, "]");
    types[size_t(id)] = int32_t(TokenType::Unused);
  }

  std::vector<std::string> merges;
  if (const auto m = model.find("merges"); m != model.end() && !m->is_null()) {
    if (!m->is_array()) fail(src, ": model.merges must be a list");
    merges.reserve(m->size());
    for (const json& merge : *m) {
      if (merge.is_string()) {
        merges.push_back(merge.get<std::string>());
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
        merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
      } else {
        fail(src, ": merge ", merges.size(), " is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
  }

  KeyValues kv;
  kv.emplace_back("tokenizer.ggml.model", Value::string("gpt2"));
  kv.emplace_back("tokenizer.ggml.pre", Value::string(pre));
  kv.emplace_back("tokenizer.ggml.tokens", Value::string_array(tokens));
  std::vector<Value> type_values;
  type_values.reserve(types.size());
  for (int32_t t : types) type_values.push_back(Value::i32(t));
  kv.emplace_back("tokenizer.ggml.token_type", Value::array(gguf::ValueType::INT32, std::move(type_values)));
  kv.emplace_back("tokenizer.ggml.merges", Value::string_array(merges));

  // Special ids: tokenizer_config.json's <typ>_token names an added token; config.json's
  // <typ>_token_id fills the ones still unknown (llama.cpp's order).
  const json& tc = files.tokenizer_config;
  const json& mc = files.model_config;
  struct Special {
    const char* typ;
    const char* key;
  };
  constexpr Special kSpecials[] = {{"bos", "tokenizer.ggml.bos_token_id"},
                                   {"eos", "tokenizer.ggml.eos_token_id"},
                                   {"unk", "tokenizer.ggml.unknown_token_id"},
                                   {"sep", "tokenizer.ggml.seperator_token_id"},
                                   {"pad", "tokenizer.ggml.padding_token_id"}};
  for (const Special& sp : kSpecials) {
    std::optional<int64_t> id;
    if (tc.is_object()) {
      const auto entry = tc.find(std::string(sp.typ) + "_token");
      if (entry != tc.end()) {
        if (const std::optional<std::string> content = token_content(*entry)) {
          const auto it = added_ids.find(*content);
          if (it != added_ids.end()) id = it->second;
        }
      }
    }
    if (!id && mc.is_object()) {
      const auto entry = mc.find(std::string(sp.typ) + "_token_id");
      if (entry != mc.end() && entry->is_number_integer() && entry->get<int64_t>() >= 0 &&
          entry->get<int64_t>() < vocab_size)
        id = entry->get<int64_t>();
    }
    if (id) kv.emplace_back(sp.key, Value::u32(uint32_t(*id)));
  }

  const Template tp = template_processing(tok);
  for (const char* typ : {"bos", "eos"}) {
    bool add = std::string(typ) == "bos" ? tp.add_bos : tp.add_eos;
    if (tc.is_object()) {
      const auto flag = tc.find(std::string("add_") + typ + "_token");
      if (flag != tc.end() && flag->is_boolean()) add = flag->get<bool>();
    }
    kv.emplace_back(std::string("tokenizer.ggml.add_") + typ + "_token", Value::boolean(add));
  }

  if (tc.is_object() && tc.contains("chat_template") && !tc["chat_template"].is_null()) {
    add_chat_templates(tc["chat_template"], src, kv);
  } else if (files.chat_template_alt) {
    kv.emplace_back("tokenizer.chat_template", Value::string(*files.chat_template_alt));
  }
  return kv;
}

}  // namespace moeserve::convert
