// convert's options and input variants: weight types (f16, bf16, q8_0 through the registry's
// quantizers, with llama.cpp's F16 fallback for rows that do not split into blocks), the legacy
// qwen3next ssm_in layout, transformers-5 fused expert tensors, sharded checkpoints, and the
// refusals with one clear message for checkpoints and configs convert cannot represent.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "convert_test_util.h"
#include "model/convert/safetensors.h"

namespace moeserve::convert_test {
namespace {

using gguf::GgufFile;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string error_of(const convert::ConvertOptions& opt) {
  try {
    convert::convert_hf_to_gguf(opt);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<StEntry> fixture_tensors(const std::string& model) {
  const convert::SafetensorsSet st = convert::SafetensorsSet::open_dir(hf_fixture(model));
  std::vector<StEntry> out;
  for (const auto& [name, t] : st.tensors()) out.push_back({name, t.shape, st.read_f32(name)});
  return out;
}

// Every tensor of `a` equals the one of the same name in `b`, bytes and shape.
void expect_same_tensors(const std::string& a, const std::string& b) {
  const GgufFile fa = GgufFile::open(a), fb = GgufFile::open(b);
  ASSERT_EQ(fa.tensors().size(), fb.tensors().size());
  for (const gguf::TensorInfo& t : fa.tensors()) {
    const gguf::TensorInfo* u = fb.find_tensor(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(t.ne, u->ne) << t.name;
    ASSERT_EQ(t.n_bytes, u->n_bytes) << t.name;
    EXPECT_EQ(std::memcmp(t.data, u->data, t.n_bytes), 0) << t.name;
  }
}

class ConvertTypes : public ::testing::TestWithParam<std::tuple<const char*, GgmlType>> {};

TEST_P(ConvertTypes, MatricesTakeTheTypeVectorsStayF32) {
  const auto [model, type] = GetParam();
  const GgufFile q = GgufFile::open(converted(model, type));
  const GgufFile ref = GgufFile::open(converted(model, GgmlType::F32));
  const uint64_t want_ftype = type == GgmlType::F16 ? 1 : type == GgmlType::BF16 ? 32 : 7;
  EXPECT_EQ(q.get_uint("general.file_type"), want_ftype);
  // Relative RMS error bound of each type on these weights (F16: 11-bit, BF16: 8-bit mantissa).
  const double bound = type == GgmlType::F16 ? 1e-3 : type == GgmlType::BF16 ? 8e-3 : 2e-2;
  for (const gguf::TensorInfo& t : q.tensors()) {
    const std::string& n = t.name;
    const bool f32 = t.n_dims == 1 || n.find("ffn_gate_inp.weight") != std::string::npos ||
                     n.find("ssm_conv1d") != std::string::npos;
    GgmlType want = f32 ? GgmlType::F32 : type;
    if (!f32 && t.ne[0] % type_traits(type).block_size != 0) want = GgmlType::F16;  // llama.cpp's fallback
    EXPECT_EQ(t.type, want) << n;
    const std::vector<float> a = tensor_f32(q, n), b = tensor_f32(ref, n);
    double err = 0, norm = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      err += double(a[i] - b[i]) * (a[i] - b[i]);
      norm += double(b[i]) * b[i];
    }
    if (want == GgmlType::F32) {
      EXPECT_EQ(err, 0.0) << n;
    } else {
      EXPECT_GT(err, 0.0) << n << " should be rounded";
      EXPECT_LT(std::sqrt(err / norm), bound) << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertTypes,
                         ::testing::Combine(::testing::Values("qwen3next", "llama"),
                                            ::testing::Values(GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0)));

TEST(ConvertOptions, LegacySsmInKeepsInProjQkvzUnchanged) {
  TempDir dir;
  convert::ConvertOptions opt;
  opt.hf_dir = hf_fixture("qwen3next");
  opt.out_path = dir.file("legacy.gguf");
  opt.type = GgmlType::F32;
  opt.legacy_ssm_in = true;
  convert::convert_hf_to_gguf(opt);
  const GgufFile f = GgufFile::open(opt.out_path);
  const convert::SafetensorsSet st = convert::SafetensorsSet::open_dir(opt.hf_dir);
  EXPECT_EQ(f.find_tensor("blk.0.attn_qkv.weight"), nullptr);
  EXPECT_EQ(f.find_tensor("blk.0.attn_gate.weight"), nullptr);
  EXPECT_EQ(tensor_f32(f, "blk.0.ssm_in.weight"), st.read_f32("model.layers.0.linear_attn.in_proj_qkvz.weight"));
  EXPECT_EQ(dims(*f.find_tensor("blk.0.ssm_in.weight")), (std::vector<int64_t>{64, 192}));
  EXPECT_NE(f.find_tensor("blk.3.attn_q.weight"), nullptr);  // attention layers unaffected
}

// transformers 5 keeps experts fused in memory: gate_up_proj [E, 2I, H] (gate rows first) and
// down_proj [E, H, I]. A checkpoint saved that way converts to the same GGUF.
TEST(ConvertOptions, FusedExpertTensorsGiveTheSameGguf) {
  TempDir dir;
  copy_fixture_files("qwen3moe", dir.path());
  const nlohmann::json cfg = load_json(hf_fixture("qwen3moe") + "/config.json");
  const int64_t X = cfg["num_local_experts"], I = cfg["moe_intermediate_size"], H = cfg["hidden_size"];
  std::map<std::string, StEntry> by_name;
  for (StEntry& e : fixture_tensors("qwen3moe")) by_name[e.name] = std::move(e);
  std::vector<StEntry> out;
  for (int64_t il = 0; il < cfg["num_hidden_layers"].get<int64_t>(); ++il) {
    const std::string p = str_cat("model.layers.", il, ".mlp.experts.");
    StEntry gate_up{p + "gate_up_proj", {X, 2 * I, H}, {}}, down{p + "down_proj", {X, H, I}, {}};
    for (int64_t e = 0; e < X; ++e) {
      for (const char* w : {"gate", "up"}) {
        const std::string n = str_cat(p, e, ".", w, "_proj.weight");
        gate_up.data.insert(gate_up.data.end(), by_name[n].data.begin(), by_name[n].data.end());
        by_name.erase(n);
      }
      const std::string n = str_cat(p, e, ".down_proj.weight");
      down.data.insert(down.data.end(), by_name[n].data.begin(), by_name[n].data.end());
      by_name.erase(n);
    }
    out.push_back(std::move(gate_up));
    out.push_back(std::move(down));
  }
  for (auto& [name, e] : by_name) out.push_back(std::move(e));
  write_safetensors(dir.file("model.safetensors"), out);
  convert::ConvertOptions opt;
  opt.hf_dir = dir.path().string();
  opt.out_path = dir.file("fused.gguf");
  opt.type = GgmlType::F32;
  convert::convert_hf_to_gguf(opt);
  expect_same_tensors(opt.out_path, converted("qwen3moe"));
}

TEST(ConvertOptions, ShardedCheckpointGivesTheSameGguf) {
  TempDir dir;
  copy_fixture_files("qwen3next", dir.path());
  std::vector<StEntry> all = fixture_tensors("qwen3next");
  std::vector<StEntry> a(all.begin(), all.begin() + long(all.size() / 2)), b(all.begin() + long(all.size() / 2), all.end());
  write_safetensors(dir.file("model-00001-of-00002.safetensors"), a);
  write_safetensors(dir.file("model-00002-of-00002.safetensors"), b);
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  for (const StEntry& e : a) index["weight_map"][e.name] = "model-00001-of-00002.safetensors";
  for (const StEntry& e : b) index["weight_map"][e.name] = "model-00002-of-00002.safetensors";
  std::ofstream(dir.file("model.safetensors.index.json")) << index.dump();
  convert::ConvertOptions opt;
  opt.hf_dir = dir.path().string();
  opt.out_path = dir.file("sharded.gguf");
  opt.type = GgmlType::F32;
  convert::convert_hf_to_gguf(opt);
  expect_same_tensors(opt.out_path, converted("qwen3next"));
}

// A fixture copy whose config.json is edited by `edit`, or whose tensors are edited by `edit_st`.
std::string convert_error(const std::string& model, const std::function<void(nlohmann::json&)>& edit,
                          const std::function<void(std::vector<StEntry>&)>& edit_st = nullptr) {
  TempDir dir;
  copy_fixture_files(model, dir.path());
  nlohmann::json cfg = load_json(hf_fixture(model) + "/config.json");
  if (edit) edit(cfg);
  std::ofstream(dir.file("config.json")) << cfg.dump();
  std::vector<StEntry> tensors = fixture_tensors(model);
  if (edit_st) edit_st(tensors);
  write_safetensors(dir.file("model.safetensors"), tensors);
  convert::ConvertOptions opt;
  opt.hf_dir = dir.path().string();
  opt.out_path = dir.file("out.gguf");
  const std::string err = error_of(opt);
  if (!err.empty()) {
    EXPECT_FALSE(std::filesystem::exists(opt.out_path)) << "no output file after a refusal";
  }
  return err;
}

TEST(ConvertErrors, ConfigsThatGgufCannotExpress) {
  EXPECT_PRED2(contains, convert_error("llama", [](auto& c) { c["architectures"] = {"GPT2LMHeadModel"}; }),
              ("architecture 'GPT2LMHeadModel' is not supported"));
  EXPECT_PRED2(contains, convert_error("llama", [](auto& c) { c["hidden_act"] = "gelu"; }), ("hidden_act 'gelu'"));
  EXPECT_PRED2(contains, convert_error("llama",
                            [](auto& c) { c["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1e6}, {"factor", 4.0}}; }),
              ("rope scaling 'yarn'"));
  EXPECT_PRED2(contains, convert_error("qwen3moe", [](auto& c) { c["norm_topk_prob"] = false; }), ("norm_topk_prob"));
  EXPECT_PRED2(contains, convert_error("qwen3moe", [](auto& c) { c["mlp_only_layers"] = {1}; }), ("mlp_only_layers"));
  EXPECT_PRED2(contains, convert_error("qwen3next", [](auto& c) { c["layer_types"][0] = "full_attention"; }),
              ("layer_types"));
  EXPECT_PRED2(contains, convert_error("qwen3next", [](auto& c) { c["linear_num_value_heads"] = 3; }),
              ("multiple of linear key heads"));
  EXPECT_PRED2(contains, convert_error("qwen3", [](auto& c) { c.erase("hidden_size"); }), ("missing 'hidden_size'"));
}

TEST(ConvertErrors, CheckpointsThatDoNotMatchTheirConfig) {
  EXPECT_PRED2(contains, convert_error("qwen3", nullptr,
                            [](auto& t) {
                              std::erase_if(t, [](const StEntry& e) { return e.name == "model.layers.1.self_attn.k_norm.weight"; });
                            }),
              ("no tensor 'model.layers.1.self_attn.k_norm.weight' (needed for blk.1.attn_k_norm.weight)"));
  EXPECT_PRED2(contains, convert_error("qwen3", nullptr, [](auto& t) { t.push_back({"model.layers.0.mlp.extra.weight", {2}, {1, 2}}); }),
              ("'model.layers.0.mlp.extra.weight' has no GGUF counterpart"));
  EXPECT_PRED2(contains, convert_error("qwen3", [](auto& c) { c["intermediate_size"] = 64; }),
              ("has shape [128, 64], but the config implies [64, 64]"));
  // The MTP head of the real checkpoints is dropped, not refused.
  EXPECT_EQ(convert_error("qwen3next", nullptr, [](auto& t) { t.push_back({"mtp.fc.weight", {2, 2}, {1, 2, 3, 4}}); }), "");
}

TEST(ConvertErrors, UnsupportedTypeAndMissingFiles) {
  TempDir dir;
  convert::ConvertOptions opt;
  opt.hf_dir = hf_fixture("llama");
  opt.out_path = dir.file("x.gguf");
  opt.type = GgmlType::Q4_K;
  EXPECT_PRED2(contains, error_of(opt), ("--type Q4_K is not supported"));
  opt.type = GgmlType::F16;
  opt.hf_dir = dir.path().string();
  EXPECT_PRED2(contains, error_of(opt), ("no config.json"));
}

}  // namespace
}  // namespace moeserve::convert_test
