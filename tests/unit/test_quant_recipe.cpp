// The per-tensor types of the quantization recipes. Reference: llama.cpp itself, whose
// llama_quant_compute_types (libllama from npm @node-llama-cpp/linux-x64) runs llama-quantize's
// rules on the same tensor list and model hyperparameters, for every file type, on a
// Qwen3-Coder-Next-shaped model and on dense, 8-expert, 70B and Falcon-shaped ones that reach the
// other rules. The rules that depend on an importance matrix (which that entry point never has)
// are checked against expectations written from llama.cpp's source, cited at each.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "llama_reference.h"
#include "quant/recipe.h"

namespace moeserve::quant {
namespace {

using test::RefTensor;

struct Model {
  const char* name;
  test::LlamaQuantModelDesc desc;
  std::vector<RefTensor> tensors;  // in llama-quantize's order
};

void add(std::vector<RefTensor>& v, const std::string& name, GgmlType type, std::array<int64_t, 4> ne) {
  v.push_back({name, type, ne});
}

// Qwen3-Coder-Next (qwen3next, shared/spec/qwen3next.md): 48 layers, every 4th full attention,
// the others Gated DeltaNet; 512 experts plus a shared one per layer. Weights BF16, norms and
// the small SSM tensors F32.
Model qwen3next() {
  Model m{"qwen3next", {"qwen3next", 2048, 5120, 48, 16, 2, 512, 256, 256}, {}};
  auto& t = m.tensors;
  add(t, "token_embd.weight", GgmlType::BF16, {2048, 151936, 1, 1});
  add(t, "output_norm.weight", GgmlType::F32, {2048, 1, 1, 1});
  add(t, "output.weight", GgmlType::BF16, {2048, 151936, 1, 1});
  for (int il = 0; il < 48; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    add(t, b + "attn_norm.weight", GgmlType::F32, {2048, 1, 1, 1});
    add(t, b + "post_attention_norm.weight", GgmlType::F32, {2048, 1, 1, 1});
    if ((il + 1) % 4 == 0) {
      add(t, b + "attn_q.weight", GgmlType::BF16, {2048, 8192, 1, 1});
      add(t, b + "attn_k.weight", GgmlType::BF16, {2048, 512, 1, 1});
      add(t, b + "attn_v.weight", GgmlType::BF16, {2048, 512, 1, 1});
      add(t, b + "attn_output.weight", GgmlType::BF16, {4096, 2048, 1, 1});
      add(t, b + "attn_q_norm.weight", GgmlType::F32, {256, 1, 1, 1});
      add(t, b + "attn_k_norm.weight", GgmlType::F32, {256, 1, 1, 1});
    } else {
      add(t, b + "attn_qkv.weight", GgmlType::BF16, {2048, 8192, 1, 1});
      add(t, b + "attn_gate.weight", GgmlType::BF16, {2048, 4096, 1, 1});
      add(t, b + "ssm_ba.weight", GgmlType::BF16, {2048, 64, 1, 1});
      add(t, b + "ssm_conv1d.weight", GgmlType::F32, {4, 8192, 1, 1});
      add(t, b + "ssm_dt.bias", GgmlType::F32, {32, 1, 1, 1});
      add(t, b + "ssm_a", GgmlType::F32, {32, 1, 1, 1});
      add(t, b + "ssm_norm.weight", GgmlType::F32, {128, 1, 1, 1});
      add(t, b + "ssm_out.weight", GgmlType::BF16, {4096, 2048, 1, 1});
    }
    add(t, b + "ffn_gate_inp.weight", GgmlType::F32, {2048, 512, 1, 1});
    add(t, b + "ffn_gate_exps.weight", GgmlType::BF16, {2048, 512, 512, 1});
    add(t, b + "ffn_up_exps.weight", GgmlType::BF16, {2048, 512, 512, 1});
    add(t, b + "ffn_down_exps.weight", GgmlType::BF16, {512, 2048, 512, 1});
    add(t, b + "ffn_gate_inp_shexp.weight", GgmlType::BF16, {2048, 1, 1, 1});
    add(t, b + "ffn_gate_shexp.weight", GgmlType::BF16, {2048, 512, 1, 1});
    add(t, b + "ffn_up_shexp.weight", GgmlType::BF16, {2048, 512, 1, 1});
    add(t, b + "ffn_down_shexp.weight", GgmlType::BF16, {512, 2048, 1, 1});
  }
  return m;
}

// A dense llama model: the counting rules (attn_v and ffn_down by position) and GQA.
Model dense(const char* name, int n_layer, int n_head, int n_head_kv, int n_embd, int n_ff, bool tied,
            const char* arch = "llama") {
  const int head_dim = 128;
  Model m{name, {arch, uint32_t(n_embd), uint32_t(n_ff), uint32_t(n_layer), uint32_t(n_head), uint32_t(n_head_kv), 0,
                 uint32_t(head_dim), uint32_t(head_dim)},
          {}};
  auto& t = m.tensors;
  add(t, "token_embd.weight", GgmlType::F16, {n_embd, 32000, 1, 1});
  add(t, "output_norm.weight", GgmlType::F32, {n_embd, 1, 1, 1});
  if (!tied) add(t, "output.weight", GgmlType::F16, {n_embd, 32000, 1, 1});
  for (int il = 0; il < n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    add(t, b + "attn_norm.weight", GgmlType::F32, {n_embd, 1, 1, 1});
    add(t, b + "attn_q.weight", GgmlType::F16, {n_embd, n_head * head_dim, 1, 1});
    add(t, b + "attn_k.weight", GgmlType::F16, {n_embd, n_head_kv * head_dim, 1, 1});
    add(t, b + "attn_v.weight", GgmlType::F16, {n_embd, n_head_kv * head_dim, 1, 1});
    add(t, b + "attn_output.weight", GgmlType::F16, {n_head * head_dim, n_embd, 1, 1});
    add(t, b + "ffn_norm.weight", GgmlType::F32, {n_embd, 1, 1, 1});
    add(t, b + "ffn_gate.weight", GgmlType::F16, {n_embd, n_ff, 1, 1});
    add(t, b + "ffn_up.weight", GgmlType::F16, {n_embd, n_ff, 1, 1});
    add(t, b + "ffn_down.weight", GgmlType::F16, {n_ff, n_embd, 1, 1});
  }
  return m;
}

// Mixtral-shaped: 8 experts (the n_expert == 8 rules), stacked expert tensors.
Model eight_experts() {
  Model m{"mixtral", {"llama", 4096, 14336, 32, 32, 8, 8, 128, 128}, {}};
  auto& t = m.tensors;
  add(t, "token_embd.weight", GgmlType::F16, {4096, 32000, 1, 1});
  add(t, "output.weight", GgmlType::F16, {4096, 32000, 1, 1});
  for (int il = 0; il < 32; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    add(t, b + "attn_q.weight", GgmlType::F16, {4096, 4096, 1, 1});
    add(t, b + "attn_k.weight", GgmlType::F16, {4096, 1024, 1, 1});
    add(t, b + "attn_v.weight", GgmlType::F16, {4096, 1024, 1, 1});
    add(t, b + "attn_output.weight", GgmlType::F16, {4096, 4096, 1, 1});
    add(t, b + "ffn_gate_inp.weight", GgmlType::F32, {4096, 8, 1, 1});
    add(t, b + "ffn_gate_exps.weight", GgmlType::F16, {4096, 14336, 8, 1});
    add(t, b + "ffn_up_exps.weight", GgmlType::F16, {4096, 14336, 8, 1});
    add(t, b + "ffn_down_exps.weight", GgmlType::F16, {14336, 4096, 8, 1});
  }
  return m;
}

// Falcon-shaped: its own rules, a fused QKV, and rows of 4544 that fit no 256-element block
// (the fallback types).
Model falcon() {
  Model m{"falcon", {"falcon", 4544, 18176, 32, 71, 1, 0, 64, 64}, {}};
  auto& t = m.tensors;
  add(t, "token_embd.weight", GgmlType::F16, {4544, 65024, 1, 1});
  add(t, "output.weight", GgmlType::F16, {4544, 65024, 1, 1});
  for (int il = 0; il < 32; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    add(t, b + "attn_norm.weight", GgmlType::F32, {4544, 1, 1, 1});
    add(t, b + "attn_qkv.weight", GgmlType::F16, {4544, 4672, 1, 1});
    add(t, b + "attn_output.weight", GgmlType::F16, {4544, 4544, 1, 1});
    add(t, b + "ffn_up.weight", GgmlType::F16, {4544, 18176, 1, 1});
    add(t, b + "ffn_down.weight", GgmlType::F16, {18176, 4544, 1, 1});
  }
  return m;
}

std::vector<TensorDesc> descs_of(const Model& m);

// llama-quantize visits tensors in its loader's order (by block, then by name); so do the tests.
Model sorted(Model m) {
  std::vector<RefTensor> t;
  for (size_t i : llama_tensor_order(descs_of(m))) t.push_back(m.tensors[i]);
  m.tensors = std::move(t);
  return m;
}

std::vector<Model> models() {
  std::vector<Model> all = {qwen3next(),
                            dense("llama-8b", 32, 32, 8, 4096, 14336, false),
                            dense("tied-gqa1", 28, 16, 16, 2048, 5632, true),
                            dense("llama-70b", 80, 64, 8, 8192, 28672, false),
                            eight_experts(),
                            falcon()};
  for (Model& m : all) m = sorted(std::move(m));
  return all;
}

ModelInfo info_of(const Model& m) {
  return {m.desc.architecture, int(m.desc.n_layer), int(m.desc.n_expert), int(m.desc.n_head), int(m.desc.n_head_kv)};
}

std::vector<TensorDesc> descs_of(const Model& m) {
  std::vector<TensorDesc> d;
  for (const RefTensor& t : m.tensors) {
    int n_dims = 1;
    for (int i = 1; i < 4; ++i) {
      if (t.ne[size_t(i)] > 1) n_dims = i + 1;
    }
    d.push_back({t.name, t.type, n_dims, t.ne});
  }
  return d;
}

// Ours against llama.cpp's for one model and options.
void expect_same_types(const Model& m, const RecipeOptions& ours, const test::RefOptions& theirs) {
  const std::vector<TensorDesc> descs = descs_of(m);
  std::vector<TensorPlan> plans;
  try {
    plans = plan_types(info_of(m), ours, descs);
  } catch (const Error& e) {
    ADD_FAILURE() << m.name << " " << ours.ftype->name << ": " << e.what();
    return;
  }
  const std::vector<int> ref = test::llama_tensor_types(m.desc, m.tensors, ours.ftype->id, theirs);
  for (size_t i = 0; i < descs.size(); ++i) {
    if (ref[i] < 0) {
      EXPECT_FALSE(plans[i].quantize) << m.name << " " << ours.ftype->name << " " << descs[i].name;
      EXPECT_EQ(plans[i].type, descs[i].type) << m.name << " " << ours.ftype->name << " " << descs[i].name;
    } else {
      EXPECT_EQ(int(plans[i].type), ref[i]) << m.name << " " << ours.ftype->name << " " << descs[i].name << ": ours "
                                            << type_name(plans[i].type) << ", llama.cpp "
                                            << type_name(GgmlType(ref[i]));
    }
  }
}

TEST(QuantRecipe, EveryFileTypeMatchesLlamaCpp) {
  REQUIRE_LLAMA();
  for (const Model& m : models()) {
    for (const FileType& f : file_types()) {
      RecipeOptions options;
      options.ftype = &f;
      expect_same_types(m, options, {});
    }
  }
}

TEST(QuantRecipe, OptionsMatchLlamaCpp) {
  REQUIRE_LLAMA();
  const Model m = sorted(qwen3next());
  const FileType* iq2_xs = find_file_type("IQ2_XS");
  const FileType* q4_k_m = find_file_type("Q4_K_M");
  {  // --pure: the base type everywhere, output and embedding included.
    RecipeOptions o;
    o.ftype = q4_k_m;
    o.pure = true;
    test::RefOptions r;
    r.pure = true;
    expect_same_types(m, o, r);
  }
  {  // --output-tensor-type / --token-embedding-type win over the recipe.
    RecipeOptions o;
    o.ftype = iq2_xs;
    o.output_type = GgmlType::Q8_0;
    o.token_embedding_type = GgmlType::Q4_K;
    test::RefOptions r;
    r.output_type = GgmlType::Q8_0;
    r.token_embedding_type = GgmlType::Q4_K;
    expect_same_types(m, o, r);
  }
  {  // --tensor-type: first matching pattern wins; matched tensors skip the recipe's rules.
    RecipeOptions o;
    o.ftype = iq2_xs;
    o.overrides = {{"ffn_down_exps", GgmlType::IQ3_XXS}, {"blk\\.(0|1)\\.", GgmlType::Q6_K}, {"ssm_ba", GgmlType::Q8_0}};
    test::RefOptions r;
    for (const TypeOverride& x : o.overrides) r.overrides.emplace_back(x.pattern, x.type);
    expect_same_types(m, o, r);
  }
}

// The rules llama_quant_compute_types cannot show: those that change when an importance matrix
// is given (it always runs without one). Expectations from src/llama-quant.cpp,
// llama_tensor_get_type_impl.
TEST(QuantRecipe, ImatrixDependentRules) {
  const Model m = sorted(qwen3next());
  const std::vector<TensorDesc> descs = descs_of(m);
  auto types = [&](const char* ftype, bool has_imatrix) {
    RecipeOptions o;
    o.ftype = find_file_type(ftype);
    o.has_imatrix = has_imatrix;
    const std::vector<TensorPlan> plans = plan_types(info_of(m), o, descs);
    std::map<std::string, GgmlType> by_name;
    for (size_t i = 0; i < descs.size(); ++i) by_name[descs[i].name] = plans[i].type;
    return by_name;
  };
  // IQ3_XXS, attn_v: "n_gqa() >= 4 ? Q4_K : !has_imatrix ? IQ3_S : IQ3_XXS" -- Qwen3-Next's GQA
  // is 16/2 = 8, so Q4_K either way, for attn_v and the linear layers' attn_qkv alike.
  for (bool im : {false, true}) {
    const auto t = types("IQ3_XXS", im);
    EXPECT_EQ(t.at("blk.3.attn_v.weight"), GgmlType::Q4_K);
    EXPECT_EQ(t.at("blk.0.attn_qkv.weight"), GgmlType::Q4_K);
  }
  // IQ3_XXS, ffn_down: "IQ3_XXS && !has_imatrix: i_layer < n_layer/8 ? Q4_K : Q3_K"; with an
  // imatrix no rule applies and the base IQ3_XXS stays. MoE: i_layer is the block number.
  {
    const auto without = types("IQ3_XXS", false), with = types("IQ3_XXS", true);
    EXPECT_EQ(without.at("blk.5.ffn_down_exps.weight"), GgmlType::Q4_K);  // 5 < 48/8
    EXPECT_EQ(without.at("blk.6.ffn_down_exps.weight"), GgmlType::Q3_K);
    EXPECT_EQ(without.at("blk.6.ffn_down_shexp.weight"), GgmlType::Q3_K);
    EXPECT_EQ(with.at("blk.5.ffn_down_exps.weight"), GgmlType::IQ3_XXS);
    EXPECT_EQ(with.at("blk.40.ffn_down_exps.weight"), GgmlType::IQ3_XXS);
    // attn_q / attn_k of IQ3_XXS are IQ2_S, with or without ("ftype == IQ3_XXS -> IQ2_S").
    EXPECT_EQ(with.at("blk.3.attn_q.weight"), GgmlType::IQ2_S);
    EXPECT_EQ(with.at("blk.3.attn_k.weight"), GgmlType::IQ2_S);
  }
  // IQ4_XS / IQ4_NL, ffn_down: "i_layer < n_layer/8 && (IQ4_NL || IQ4_XS) && !has_imatrix -> Q5_K".
  for (const char* f : {"IQ4_XS", "IQ4_NL"}) {
    const auto without = types(f, false), with = types(f, true);
    const GgmlType base = find_file_type(f)->base;
    EXPECT_EQ(without.at("blk.0.ffn_down_exps.weight"), GgmlType::Q5_K) << f;
    EXPECT_EQ(without.at("blk.6.ffn_down_exps.weight"), base) << f;
    EXPECT_EQ(with.at("blk.0.ffn_down_exps.weight"), base) << f;
  }
  // Q4_0 / Q5_0 with an imatrix: "(Q4_0 || Q5_0) && has_imatrix && i_layer < n_layer/8 -> Q4_1 / Q5_1".
  EXPECT_EQ(types("Q4_0", true).at("blk.2.ffn_down_exps.weight"), GgmlType::Q4_1);
  EXPECT_EQ(types("Q4_0", false).at("blk.2.ffn_down_exps.weight"), GgmlType::Q4_0);
  EXPECT_EQ(types("Q5_0", true).at("blk.5.ffn_down_shexp.weight"), GgmlType::Q5_1);
  EXPECT_EQ(types("Q5_0", true).at("blk.6.ffn_down_shexp.weight"), GgmlType::Q5_0);
}

// The Qwen3-Coder-Next recipes people use, spelled out (each also matches llama.cpp above).
TEST(QuantRecipe, Qwen3NextRecipes) {
  const Model m = sorted(qwen3next());
  const std::vector<TensorDesc> descs = descs_of(m);
  auto plan = [&](const char* ftype) {
    RecipeOptions o;
    o.ftype = find_file_type(ftype);
    o.has_imatrix = true;
    const std::vector<TensorPlan> plans = plan_types(info_of(m), o, descs);
    std::map<std::string, TensorPlan> by_name;
    for (size_t i = 0; i < descs.size(); ++i) by_name.emplace(descs[i].name, plans[i]);
    return by_name;
  };
  for (const char* f : {"IQ2_XXS", "IQ2_XS"}) {
    const auto p = plan(f);
    const GgmlType base = find_file_type(f)->base;
    // Output: Q5_K for the 1/2-bit i-quant file types.
    EXPECT_EQ(p.at("output.weight").type, GgmlType::Q5_K);
    // Token embedding: Q2_K for IQ2_XXS/IQ2_XS/IQ1_*.
    EXPECT_EQ(p.at("token_embd.weight").type, GgmlType::Q2_K);
    // attn_v-like (attn_v, attn_qkv): Q4_K since n_gqa >= 4 (and n_expert >= 4).
    EXPECT_EQ(p.at("blk.3.attn_v.weight").type, GgmlType::Q4_K);
    EXPECT_EQ(p.at("blk.4.attn_qkv.weight").type, GgmlType::Q4_K);
    // ffn_down: the first n_layer/8 = 6 ffn_down tensors in order (counted, exps and shexp
    // alike, so blocks 0-2) get Q2_K, the rest the base type.
    EXPECT_EQ(p.at("blk.2.ffn_down_exps.weight").type, GgmlType::Q2_K);
    EXPECT_EQ(p.at("blk.2.ffn_down_shexp.weight").type, GgmlType::Q2_K);
    EXPECT_EQ(p.at("blk.3.ffn_down_exps.weight").type, base);
    EXPECT_EQ(p.at("blk.20.ffn_gate_exps.weight").type, base);
    EXPECT_EQ(p.at("blk.20.ssm_out.weight").type, base);
    // Kept as they are: norms, router, conv1d, the 1-D SSM tensors.
    for (const char* kept : {"blk.0.ssm_conv1d.weight", "blk.0.ssm_a", "blk.0.ssm_dt.bias", "blk.0.ssm_norm.weight",
                             "blk.0.ffn_gate_inp.weight", "blk.0.ffn_gate_inp_shexp.weight", "output_norm.weight"}) {
      EXPECT_FALSE(p.at(kept).quantize) << kept;
    }
    EXPECT_EQ(p.at("blk.0.ssm_a").type, GgmlType::F32);
    // ssm_ba (64 rows of 2048) is an ordinary weight: the base type.
    EXPECT_EQ(p.at("blk.0.ssm_ba.weight").type, base);
  }
  const auto q4 = plan("Q4_K_M");
  EXPECT_EQ(q4.at("output.weight").type, GgmlType::Q6_K);
  EXPECT_EQ(q4.at("token_embd.weight").type, GgmlType::Q4_K);
  // use_more_bits(i, 48): i < 6, i >= 42, or (i - 6) % 3 == 2.
  EXPECT_EQ(q4.at("blk.5.ffn_down_exps.weight").type, GgmlType::Q6_K);
  EXPECT_EQ(q4.at("blk.6.ffn_down_exps.weight").type, GgmlType::Q4_K);
  EXPECT_EQ(q4.at("blk.8.ffn_down_exps.weight").type, GgmlType::Q6_K);
  EXPECT_EQ(q4.at("blk.42.ffn_down_exps.weight").type, GgmlType::Q6_K);
  // attn_v-like tensors counted in order: the 1st (blk.0 attn_qkv) is within the first eighth.
  EXPECT_EQ(q4.at("blk.0.attn_qkv.weight").type, GgmlType::Q6_K);
  EXPECT_EQ(q4.at("blk.6.attn_qkv.weight").type, GgmlType::Q4_K);
}

TEST(QuantRecipe, FileTypeNames) {
  EXPECT_EQ(find_file_type("q4_k_m")->id, 15);
  EXPECT_EQ(find_file_type("Q4_K")->id, 15);  // alias of Q4_K_M
  EXPECT_EQ(find_file_type("20")->base, GgmlType::IQ2_XS);
  EXPECT_EQ(find_file_type("IQ2_M")->base, GgmlType::IQ2_S);
  EXPECT_EQ(find_file_type("Q4_K_X"), nullptr);
  EXPECT_EQ(find_file_type("4"), nullptr);  // a removed file type
}

TEST(QuantRecipe, BadOverridePatternIsOneError) {
  const Model m = qwen3next();
  RecipeOptions o;
  o.ftype = find_file_type("Q4_K_M");
  o.overrides = {{"ffn_(down", GgmlType::Q8_0}};
  try {
    plan_types(info_of(m), o, descs_of(m));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ffn_(down"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moeserve::quant
