// moeserve convert on the transformers-made fixtures (tests/fixtures/hf): the GGUF's keys equal
// config.json / tokenizer.json, its tensor manifest is the one shared/spec/qwen3next.md §3-§7
// lists, and every transformation of llama.cpp's converter is applied exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <set>

#include "convert_test_util.h"
#include "model/convert/safetensors.h"

namespace moeserve::convert_test {
namespace {

using gguf::GgufFile;
using Shapes = std::map<std::string, std::vector<int64_t>>;

const char* const kModels[] = {"qwen3next", "qwen3moe", "qwen3", "llama"};

struct Cfg {
  nlohmann::json j;
  explicit Cfg(const std::string& model) : j(load_json(hf_fixture(model) + "/config.json")) {}
  int64_t i(const char* k) const { return j.at(k).get<int64_t>(); }
  int64_t head_dim() const { return j.contains("head_dim") ? i("head_dim") : i("hidden_size") / i("num_attention_heads"); }
  int64_t experts() const { return j.contains("num_experts") ? i("num_experts") : i("num_local_experts"); }
  double rope(const char* k, double fallback) const {
    if (j.contains("rope_parameters") && j["rope_parameters"].contains(k)) return j["rope_parameters"][k].get<double>();
    return j.contains(k) ? j[k].get<double>() : fallback;
  }
};

// The tensors of each architecture, written out from the spec's tables (§3, §4.1, §5, §6, §7).
Shapes spec_manifest(const std::string& model) {
  const Cfg c(model);
  const int64_t E = c.i("hidden_size"), V = c.i("vocab_size"), L = c.i("num_hidden_layers");
  const int64_t nh = c.i("num_attention_heads"), nkv = c.i("num_key_value_heads"), hd = c.head_dim();
  Shapes s;
  s["token_embd.weight"] = {E, V};
  s["output_norm.weight"] = {E};
  if (!c.j.value("tie_word_embeddings", false)) s["output.weight"] = {E, V};
  for (int64_t il = 0; il < L; ++il) {
    const auto put = [&](const std::string& n, std::vector<int64_t> ne) { s[str_cat("blk.", il, ".", n)] = ne; };
    put("attn_norm.weight", {E});
    const bool full = model != "qwen3next" || (il + 1) % 4 == 0;
    if (full) {
      put("attn_q.weight", {E, nh * hd * (model == "qwen3next" ? 2 : 1)});
      put("attn_k.weight", {E, nkv * hd});
      put("attn_v.weight", {E, nkv * hd});
      put("attn_output.weight", {nh * hd, E});
      if (model != "llama") {
        put("attn_q_norm.weight", {hd});
        put("attn_k_norm.weight", {hd});
      }
    } else {
      const int64_t kh = c.i("linear_num_key_heads"), vh = c.i("linear_num_value_heads");
      const int64_t dk = c.i("linear_key_head_dim"), dv = c.i("linear_value_head_dim");
      put("attn_qkv.weight", {E, 2 * kh * dk + vh * dv});
      put("attn_gate.weight", {E, vh * dv});
      put("ssm_ba.weight", {E, 2 * vh});
      put("ssm_conv1d.weight", {c.i("linear_conv_kernel_dim"), 2 * kh * dk + vh * dv});
      put("ssm_dt.bias", {vh});
      put("ssm_a", {vh});
      put("ssm_norm.weight", {dv});
      put("ssm_out.weight", {vh * dv, E});
    }
    if (model == "qwen3next" || model == "qwen3moe") {
      const int64_t X = c.experts(), I = c.i("moe_intermediate_size");
      put(model == "qwen3next" ? "post_attention_norm.weight" : "ffn_norm.weight", {E});
      put("ffn_gate_inp.weight", {E, X});
      put("ffn_gate_exps.weight", {E, I, X});
      put("ffn_up_exps.weight", {E, I, X});
      put("ffn_down_exps.weight", {I, E, X});
      if (model == "qwen3next") {
        const int64_t S = c.i("shared_expert_intermediate_size");
        put("ffn_gate_inp_shexp.weight", {E});
        put("ffn_gate_shexp.weight", {E, S});
        put("ffn_up_shexp.weight", {E, S});
        put("ffn_down_shexp.weight", {S, E});
      }
    } else {
      const int64_t F = c.i("intermediate_size");
      put("ffn_norm.weight", {E});
      put("ffn_gate.weight", {E, F});
      put("ffn_up.weight", {E, F});
      put("ffn_down.weight", {F, E});
    }
  }
  return s;
}

class ConvertFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(ConvertFixture, TensorManifestIsTheSpecs) {
  const std::string model = GetParam();
  const GgufFile f = GgufFile::open(converted(model));
  Shapes got;
  for (const gguf::TensorInfo& t : f.tensors()) got[t.name] = dims(t);
  EXPECT_EQ(got, spec_manifest(model));
}

TEST_P(ConvertFixture, HparamsEqualConfigJson) {
  const std::string model = GetParam();
  const Cfg c(model);
  const GgufFile f = GgufFile::open(converted(model));
  const std::string a = model + ".";
  EXPECT_EQ(f.architecture(), model);
  const auto u = [&](const std::string& k) { return f.get_uint(a + k).value_or(~0ull); };
  EXPECT_EQ(u("context_length"), uint64_t(c.i("max_position_embeddings")));
  EXPECT_EQ(u("embedding_length"), uint64_t(c.i("hidden_size")));
  EXPECT_EQ(u("block_count"), uint64_t(c.i("num_hidden_layers")));
  EXPECT_EQ(u("feed_forward_length"), uint64_t(c.i("intermediate_size")));
  EXPECT_EQ(u("attention.head_count"), uint64_t(c.i("num_attention_heads")));
  EXPECT_EQ(u("attention.head_count_kv"), uint64_t(c.i("num_key_value_heads")));
  EXPECT_EQ(u("attention.key_length"), uint64_t(c.head_dim()));
  EXPECT_EQ(u("attention.value_length"), uint64_t(c.head_dim()));
  EXPECT_EQ(float(*f.get_float(a + "attention.layer_norm_rms_epsilon")), c.j["rms_norm_eps"].get<float>());
  EXPECT_EQ(float(*f.get_float(a + "rope.freq_base")), float(c.rope("rope_theta", 0)));
  const double partial = c.rope("partial_rotary_factor", 1.0);
  EXPECT_EQ(u("rope.dimension_count"), uint64_t(double(c.head_dim()) * partial));
  if (model == "qwen3next") {
    EXPECT_EQ(u("rope.dimension_count"), uint64_t(c.head_dim() / 4));
  }
  if (model == "llama") {
    EXPECT_EQ(u("vocab_size"), uint64_t(c.i("vocab_size")));
  }
  if (model == "qwen3next" || model == "qwen3moe") {
    EXPECT_EQ(u("expert_count"), uint64_t(c.experts()));
    EXPECT_EQ(u("expert_used_count"), uint64_t(c.i("num_experts_per_tok")));
    EXPECT_EQ(u("expert_feed_forward_length"), uint64_t(c.i("moe_intermediate_size")));
  }
  if (model == "qwen3next") {
    EXPECT_EQ(u("expert_shared_feed_forward_length"), uint64_t(c.i("shared_expert_intermediate_size")));
    EXPECT_EQ(u("ssm.conv_kernel"), uint64_t(c.i("linear_conv_kernel_dim")));
    EXPECT_EQ(u("ssm.state_size"), uint64_t(c.i("linear_key_head_dim")));
    EXPECT_EQ(u("ssm.group_count"), uint64_t(c.i("linear_num_key_heads")));
    EXPECT_EQ(u("ssm.time_step_rank"), uint64_t(c.i("linear_num_value_heads")));
    EXPECT_EQ(u("ssm.inner_size"), uint64_t(c.i("linear_value_head_dim") * c.i("linear_num_value_heads")));
    // layer_types lists full_attention at every 4th layer (3, 7).
    const auto types = c.j["layer_types"].get<std::vector<std::string>>();
    for (size_t i = 0; i < types.size(); ++i)
      EXPECT_EQ(types[i] == "full_attention", (i + 1) % u("full_attention_interval") == 0) << i;
  }
  EXPECT_EQ(f.get_uint("general.file_type").value_or(99), 0u);  // ALL_F32
  EXPECT_EQ(f.get_uint("general.quantization_version").value_or(0), 2u);
}

TEST_P(ConvertFixture, TokenizerKeysEqualTokenizerJson) {
  const std::string model = GetParam();
  const std::string dir = hf_fixture(model);
  const nlohmann::json tok = load_json(dir + "/tokenizer.json");
  const nlohmann::json tc = load_json(dir + "/tokenizer_config.json");
  const Cfg c(model);
  const GgufFile f = GgufFile::open(converted(model));
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "qwen2");
  const std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
  const std::vector<int64_t> types = f.get_int_array("tokenizer.ggml.token_type");
  ASSERT_EQ(int64_t(tokens.size()), c.i("vocab_size"));
  ASSERT_EQ(types.size(), tokens.size());
  std::set<int64_t> seen;
  for (const auto& [text, id] : tok["model"]["vocab"].items()) {
    EXPECT_EQ(tokens[size_t(id.get<int64_t>())], text);
    EXPECT_EQ(types[size_t(id.get<int64_t>())], 1) << text;  // NORMAL
    seen.insert(id.get<int64_t>());
  }
  for (const nlohmann::json& a : tok["added_tokens"]) {
    const int64_t id = a["id"].get<int64_t>();
    EXPECT_EQ(tokens[size_t(id)], a["content"].get<std::string>());
    EXPECT_EQ(types[size_t(id)], a["special"].get<bool>() ? 3 : 4) << a["content"];  // CONTROL : USER_DEFINED
    seen.insert(id);
  }
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (seen.count(int64_t(id))) continue;
    EXPECT_EQ(tokens[id], str_cat("[PAD", id, "]"));
    EXPECT_EQ(types[id], 5);  // UNUSED
  }
  const std::vector<std::string> merges = f.get_string_array("tokenizer.ggml.merges");
  ASSERT_EQ(merges.size(), tok["model"]["merges"].size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const nlohmann::json& m = tok["model"]["merges"][i];
    EXPECT_EQ(merges[i], m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  const auto id_of = [&](const std::string& content) {
    for (const nlohmann::json& a : tok["added_tokens"])
      if (a["content"] == content) return std::optional<uint64_t>(a["id"].get<int64_t>());
    return std::optional<uint64_t>();
  };
  // eos / pad name added tokens in tokenizer_config.json; bos is null there, so config.json's id.
  EXPECT_EQ(f.get_uint("tokenizer.ggml.eos_token_id"), id_of(tc["eos_token"].get<std::string>()));
  EXPECT_EQ(f.get_uint("tokenizer.ggml.padding_token_id"), id_of(tc["pad_token"].get<std::string>()));
  EXPECT_TRUE(tc["bos_token"].is_null());
  EXPECT_EQ(f.get_uint("tokenizer.ggml.bos_token_id"), uint64_t(c.i("bos_token_id")));
  EXPECT_EQ(f.get_bool("tokenizer.ggml.add_bos_token"), tc["add_bos_token"].get<bool>());
  EXPECT_EQ(f.get_bool("tokenizer.ggml.add_eos_token"), tc["add_eos_token"].get<bool>());
  const std::string jinja = dir + "/chat_template.jinja";
  if (std::filesystem::exists(jinja)) {
    std::ifstream in(jinja, std::ios::binary);
    EXPECT_EQ(f.get_string("tokenizer.chat_template"), std::string(std::istreambuf_iterator<char>(in), {}));
  } else {
    EXPECT_FALSE(f.get_string("tokenizer.chat_template").has_value());
  }
}

// Each GGUF tensor against its checkpoint source, with the transformation the spec names.
TEST_P(ConvertFixture, TransformsAreExact) {
  const std::string model = GetParam();
  const Cfg c(model);
  const GgufFile f = GgufFile::open(converted(model));
  const convert::SafetensorsSet st = convert::SafetensorsSet::open_dir(hf_fixture(model));
  const bool next = model == "qwen3next";
  int checked = 0;
  const auto expect_same = [&](const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << what << " [" << i << "]";
    ++checked;
  };
  std::vector<float> final_norm = st.read_f32("model.norm.weight");
  if (next)
    for (float& x : final_norm) x += 1.0f;
  expect_same(tensor_f32(f, "output_norm.weight"), final_norm, "output_norm");
  expect_same(tensor_f32(f, "token_embd.weight"), st.read_f32("model.embed_tokens.weight"), "token_embd");
  if (st.find("lm_head.weight")) expect_same(tensor_f32(f, "output.weight"), st.read_f32("lm_head.weight"), "output");
  for (int64_t il = 0; il < c.i("num_hidden_layers"); ++il) {
    const std::string hf = str_cat("model.layers.", il, ".");
    const auto g = [&](const char* n) { return tensor_f32(f, str_cat("blk.", il, ".", n)); };
    const auto h = [&](const std::string& n) { return st.read_f32(hf + n); };
    const auto plus_one = [&](std::vector<float> v) {
      if (next)
        for (float& x : v) x += 1.0f;  // zero-centred RMSNorm weights get +1 (qwen3next only)
      return v;
    };
    expect_same(g("attn_norm.weight"), plus_one(h("input_layernorm.weight")), "attn_norm");
    expect_same(g(next ? "post_attention_norm.weight" : "ffn_norm.weight"), plus_one(h("post_attention_layernorm.weight")),
                "post norm");
    if (f.find_tensor(str_cat("blk.", il, ".attn_q.weight"))) {
      std::vector<float> q = g("attn_q.weight"), k = g("attn_k.weight");
      if (model == "llama") {
        // Undo llama.cpp's permute: row h*D + 2i + j came from h*D + j*D/2 + i.
        const auto unpermute = [&](const std::vector<float>& w, int64_t heads) {
          const int64_t cols = c.i("hidden_size"), D = c.head_dim();
          std::vector<float> out(w.size());
          for (int64_t hh = 0; hh < heads; ++hh)
            for (int64_t i = 0; i < D / 2; ++i)
              for (int64_t j = 0; j < 2; ++j)
                for (int64_t col = 0; col < cols; ++col)
                  out[size_t((hh * D + j * D / 2 + i) * cols + col)] = w[size_t((hh * D + 2 * i + j) * cols + col)];
          return out;
        };
        q = unpermute(q, c.i("num_attention_heads"));
        k = unpermute(k, c.i("num_key_value_heads"));
      }
      expect_same(q, h("self_attn.q_proj.weight"), "attn_q");
      expect_same(k, h("self_attn.k_proj.weight"), "attn_k");
      expect_same(g("attn_v.weight"), h("self_attn.v_proj.weight"), "attn_v");
      expect_same(g("attn_output.weight"), h("self_attn.o_proj.weight"), "attn_output");
      if (model != "llama") {
        expect_same(g("attn_q_norm.weight"), plus_one(h("self_attn.q_norm.weight")), "q_norm");
        expect_same(g("attn_k_norm.weight"), plus_one(h("self_attn.k_norm.weight")), "k_norm");
      }
    } else {
      // HF fix_query_key_value_ordering: view [Kh, 2dk + 2(Vh/Kh)dv] and split q|k|v|z per group.
      const int64_t E = c.i("hidden_size"), Kh = c.i("linear_num_key_heads"), dk = c.i("linear_key_head_dim");
      const int64_t vr = c.i("linear_num_value_heads") / Kh * c.i("linear_value_head_dim");
      const std::vector<float> qkvz = h("linear_attn.in_proj_qkvz.weight");
      std::vector<float> q, k, v, z;
      for (int64_t kh = 0; kh < Kh; ++kh) {
        const float* grp = &qkvz[size_t(kh * (2 * dk + 2 * vr) * E)];
        q.insert(q.end(), grp, grp + dk * E);
        k.insert(k.end(), grp + dk * E, grp + 2 * dk * E);
        v.insert(v.end(), grp + 2 * dk * E, grp + (2 * dk + vr) * E);
        z.insert(z.end(), grp + (2 * dk + vr) * E, grp + (2 * dk + 2 * vr) * E);
      }
      std::vector<float> qkv = q;
      qkv.insert(qkv.end(), k.begin(), k.end());
      qkv.insert(qkv.end(), v.begin(), v.end());
      expect_same(g("attn_qkv.weight"), qkv, "attn_qkv");
      expect_same(g("attn_gate.weight"), z, "attn_gate");
      expect_same(g("ssm_ba.weight"), h("linear_attn.in_proj_ba.weight"), "ssm_ba");
      // conv1d [C, 1, K] -> ne {K, C}: element (i, c) = weight[c][0][i].
      const std::vector<float> conv = h("linear_attn.conv1d.weight"), gconv = g("ssm_conv1d.weight");
      const int64_t K = c.i("linear_conv_kernel_dim");
      for (size_t ch = 0; ch < conv.size() / size_t(K); ++ch)
        for (int64_t i = 0; i < K; ++i) ASSERT_EQ(gconv[ch * size_t(K) + size_t(i)], conv[ch * size_t(K) + size_t(i)]);
      ++checked;
      expect_same(g("ssm_dt.bias"), h("linear_attn.dt_bias"), "ssm_dt");
      std::vector<float> a = h("linear_attn.A_log");
      for (float& x : a) x = float(-std::exp(double(x)));
      expect_same(g("ssm_a"), a, "ssm_a");
      for (float x : g("ssm_a")) EXPECT_LT(x, 0.0f);
      expect_same(g("ssm_norm.weight"), h("linear_attn.norm.weight"), "ssm_norm (no +1)");
      expect_same(g("ssm_out.weight"), h("linear_attn.out_proj.weight"), "ssm_out");
    }
    if (model == "qwen3next" || model == "qwen3moe") {
      expect_same(g("ffn_gate_inp.weight"), h("mlp.gate.weight"), "router");
      for (const char* which : {"gate", "up", "down"}) {
        std::vector<float> stacked;
        for (int64_t e = 0; e < c.experts(); ++e) {
          const std::vector<float> w = h(str_cat("mlp.experts.", e, ".", which, "_proj.weight"));
          stacked.insert(stacked.end(), w.begin(), w.end());
        }
        expect_same(g(str_cat("ffn_", which, "_exps.weight").c_str()), stacked, which);
      }
      if (next) {
        expect_same(g("ffn_gate_inp_shexp.weight"), h("mlp.shared_expert_gate.weight"), "shexp gate");
        for (const char* which : {"gate", "up", "down"})
          expect_same(g(str_cat("ffn_", which, "_shexp.weight").c_str()),
                      h(str_cat("mlp.shared_expert.", which, "_proj.weight")), which);
      }
    } else {
      for (const char* which : {"gate", "up", "down"})
        expect_same(g(str_cat("ffn_", which, ".weight").c_str()), h(str_cat("mlp.", which, "_proj.weight")), which);
    }
  }
  EXPECT_EQ(checked, int(f.tensors().size())) << "every tensor is compared above";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertFixture, ::testing::ValuesIn(kModels));

}  // namespace
}  // namespace moeserve::convert_test
