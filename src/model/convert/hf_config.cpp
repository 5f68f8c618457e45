#include "model/convert/hf_config.h"

#include <cmath>
#include <fstream>

#include "core/error.h"

namespace moeserve::convert {
namespace {

using nlohmann::json;

class ConfigReader {
 public:
  ConfigReader(const json& j, std::string source) : j_(j), source_(std::move(source)) {}

  const json* find(const char* key) const {
    const auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t integer(const char* key) const {
    const json* v = find(key);
    if (!v) fail(source_, ": missing '", key, "'");
    return as_int(*v, key);
  }
  int64_t integer_or(const char* key, int64_t fallback) const {
    const json* v = find(key);
    return v ? as_int(*v, key) : fallback;
  }
  double number_or(const char* key, double fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(source_, ": '", key, "' must be a number, got ", v->dump());
    return v->get<double>();
  }
  bool boolean_or(const char* key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(source_, ": '", key, "' must be true or false, got ", v->dump());
    return v->get<bool>();
  }
  const std::string& source() const { return source_; }

 private:
  int64_t as_int(const json& v, const char* key) const {
    if (!v.is_number_integer()) fail(source_, ": '", key, "' must be an integer, got ", v.dump());
    return v.get<int64_t>();
  }
  const json& j_;
  std::string source_;
};

Arch arch_of(const json& config, const std::string& source) {
  std::string name;
  const auto archs = config.find("architectures");
  if (archs != config.end() && archs->is_array() && !archs->empty() && (*archs)[0].is_string())
    name = (*archs)[0].get<std::string>();
  if (name == "LlamaForCausalLM") return Arch::Llama;
  if (name == "Qwen3ForCausalLM") return Arch::Qwen3;
  if (name == "Qwen3MoeForCausalLM") return Arch::Qwen3Moe;
  if (name == "Qwen3NextForCausalLM") return Arch::Qwen3Next;
  fail(source, ": architecture '", name.empty() ? "(none)" : name,
       "' is not supported (LlamaForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM, Qwen3NextForCausalLM)");
}

// rope_theta / partial_rotary_factor live at top level (transformers 4) or in rope_parameters (5).
double rope_value(const ConfigReader& c, const json& config, const char* key, double fallback) {
  const auto params = config.find("rope_parameters");
  if (params != config.end() && params->is_object()) {
    const auto v = params->find(key);
    if (v != params->end() && v->is_number()) return v->get<double>();
  }
  return c.number_or(key, fallback);
}

void refuse_rope_scaling(const json& config, const std::string& source) {
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    const auto it = config.find(key);
    if (it == config.end() || it->is_null()) continue;
    if (!it->is_object()) fail(source, ": '", key, "' must be an object");
    std::string type = "default";
    for (const char* tkey : {"rope_type", "type"}) {
      const auto t = it->find(tkey);
      if (t != it->end() && t->is_string()) type = t->get<std::string>();
    }
    if (type != "default")
      fail(source, ": rope scaling '", type, "' (", key, ") is not supported; convert handles plain RoPE only");
  }
}

int64_t attention_interval(const ConfigReader& c, const json& config, int64_t n_layer) {
  const auto types = config.find("layer_types");
  if (types == config.end() || types->is_null()) return c.integer_or("full_attention_interval", 4);
  if (!types->is_array() || int64_t(types->size()) != n_layer)
    fail(c.source(), ": 'layer_types' must list all ", n_layer, " layers");
  int64_t interval = 0;
  for (int64_t i = 0; i < n_layer; ++i) {
    const json& t = (*types)[size_t(i)];
    if (!t.is_string()) fail(c.source(), ": layer_types[", i, "] is not a string");
    if (t.get<std::string>() == "full_attention") {
      interval = i + 1;
      break;
    }
  }
  if (interval == 0) fail(c.source(), ": 'layer_types' has no full_attention layer");
  if (const json* explicit_interval = c.find("full_attention_interval"))
    if (explicit_interval->is_number_integer() && explicit_interval->get<int64_t>() != interval)
      fail(c.source(), ": full_attention_interval ", explicit_interval->get<int64_t>(),
           " disagrees with layer_types (first full-attention layer is ", interval - 1, ")");
  for (int64_t i = 0; i < n_layer; ++i) {
    const std::string want = (i + 1) % interval == 0 ? "full_attention" : "linear_attention";
    if ((*types)[size_t(i)].get<std::string>() != want)
      fail(c.source(), ": layer_types[", i, "] is '", (*types)[size_t(i)].get<std::string>(), "', but GGUF ",
           "qwen3next describes the layer pattern by one interval (", interval, "), which makes it '", want, "'");
  }
  return interval;
}

}  // namespace

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
}

ModelShape shape_from_hf_config(const json& config, const std::string& source, bool has_lm_head) {
  if (!config.is_object()) fail(source, ": not a JSON object");
  const ConfigReader c(config, source);
  ModelShape s;
  s.arch = arch_of(config, source);
  s.n_vocab = c.integer("vocab_size");
  s.n_embd = c.integer("hidden_size");
  s.n_layer = c.integer("num_hidden_layers");
  s.n_head = c.integer("num_attention_heads");
  s.n_head_kv = c.integer_or("num_key_value_heads", s.n_head);
  if (s.n_head <= 0) fail(source, ": num_attention_heads must be positive");
  s.head_dim = c.integer_or("head_dim", s.n_embd / s.n_head);
  s.n_ff = c.integer_or("intermediate_size", 0);
  s.rms_eps = c.number_or("rms_norm_eps", 1e-6);
  s.context_length = c.integer("max_position_embeddings");
  s.rope_theta = rope_value(c, config, "rope_theta", 10000.0);
  refuse_rope_scaling(config, source);
  s.tied_embeddings = c.boolean_or("tie_word_embeddings", false) || !has_lm_head;

  const std::string act = config.value("hidden_act", std::string("silu"));
  if (act != "silu") fail(source, ": hidden_act '", act, "' is not supported (silu only)");
  if (c.boolean_or("attention_bias", false)) fail(source, ": attention_bias = true is not supported");
  if (c.boolean_or("mlp_bias", false)) fail(source, ": mlp_bias = true is not supported");

  const double partial = rope_value(c, config, "partial_rotary_factor", s.arch == Arch::Qwen3Next ? 0.25 : 1.0);
  s.n_rot = int64_t(std::floor(double(s.head_dim) * partial));

  if (s.is_moe()) {
    s.n_expert = c.find("num_experts") ? c.integer("num_experts") : c.integer("num_local_experts");
    s.n_expert_used = c.integer("num_experts_per_tok");
    s.n_ff_exp = c.integer("moe_intermediate_size");
    if (!c.boolean_or("norm_topk_prob", s.arch == Arch::Qwen3Next))
      fail(source, ": norm_topk_prob = false is not supported (GGUF ", arch_name(s.arch),
           " renormalizes the top-k weights)");
    if (c.integer_or("decoder_sparse_step", 1) != 1) fail(source, ": decoder_sparse_step other than 1 is not supported");
    if (const json* dense = c.find("mlp_only_layers"); dense && !(dense->is_array() && dense->empty()))
      fail(source, ": mlp_only_layers (dense layers in a MoE model) is not supported");
  }
  if (s.arch == Arch::Qwen3Next) {
    s.n_ff_shexp = c.integer("shared_expert_intermediate_size");
    s.ssm_conv_kernel = c.integer("linear_conv_kernel_dim");
    s.ssm_k_heads = c.integer("linear_num_key_heads");
    s.ssm_v_heads = c.integer("linear_num_value_heads");
    s.ssm_k_dim = c.integer("linear_key_head_dim");
    s.ssm_v_dim = c.integer("linear_value_head_dim");
    s.full_attention_interval = attention_interval(c, config, s.n_layer);
  }
  try {
    validate_shape(s);
  } catch (const Error& e) {
    fail(source, ": ", e.what());
  }
  return s;
}

}  // namespace moeserve::convert
