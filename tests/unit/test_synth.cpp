// moeserve synth: every tiny preset is written and read back by the GGUF reader; the weights
// dequantize (registry reference dequantizers) to finite values of the intended scale for every
// supported type; the synthetic vocabulary is a consistent BPE vocabulary with the family's
// special tokens where the real ones are; a real tokenizer.json can replace it.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <unordered_map>

#include "convert_test_util.h"
#include "model/synth/presets.h"
#include "model/synth/random_blocks.h"
#include "model/synth/synth.h"

namespace moeserve::convert_test {
namespace {

using gguf::GgufFile;

std::string synth_file(const TempDir& dir, synth::SynthOptions opt) {
  if (opt.out_path.empty()) opt.out_path = dir.file(opt.preset + ".gguf");
  synth::synthesize(opt);
  return opt.out_path;
}

class SynthPreset : public ::testing::TestWithParam<const char*> {};

TEST_P(SynthPreset, WellFormedFiniteWeights) {
  TempDir dir;
  synth::SynthOptions opt;
  opt.preset = GetParam();
  const synth::Preset& preset = synth::find_preset(opt.preset);
  const GgufFile f = GgufFile::open(synth_file(dir, opt));
  const std::string a = convert::arch_name(preset.shape.arch);
  EXPECT_EQ(f.architecture(), a);
  EXPECT_EQ(f.get_uint(a + ".block_count"), uint64_t(preset.shape.n_layer));
  EXPECT_EQ(f.get_uint(a + ".embedding_length"), uint64_t(preset.shape.n_embd));
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), size_t(preset.shape.n_vocab));
  EXPECT_EQ(f.find_tensor("output.weight") == nullptr, preset.shape.tied_embeddings);
  for (const gguf::TensorInfo& t : f.tensors()) {
    const bool experts = t.name.find("_exps") != std::string::npos;
    const bool f32 = t.n_dims == 1 || t.name.find("ssm_conv1d") != std::string::npos ||
                     t.name.find("ffn_gate_inp.weight") != std::string::npos;
    EXPECT_EQ(t.type, f32 ? GgmlType::F32 : experts ? GgmlType::IQ2_XS : GgmlType::Q8_0) << t.name;
    const std::vector<float> v = tensor_f32(f, t.name);
    double ss = 0;
    for (float x : v) {
      ASSERT_TRUE(std::isfinite(x)) << t.name;
      ss += double(x) * x;
    }
    const double rms = std::sqrt(ss / double(v.size()));
    if (t.name.find("norm.weight") != std::string::npos) {
      EXPECT_NEAR(rms, 1.0, 0.1) << t.name;
    } else if (t.name.find("ssm_a") != std::string::npos) {
      for (float x : v) EXPECT_LT(x, 0.0f) << t.name;  // A = -exp(A_log) < 0: decaying state
    } else if (t.n_dims >= 2 && t.name.find("conv1d") == std::string::npos) {
      const double want = 1.0 / std::sqrt(double(t.ne[0]));
      EXPECT_GT(rms, 0.5 * want) << t.name;
      EXPECT_LT(rms, 2.0 * want) << t.name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, SynthPreset,
                         ::testing::Values("tiny-qwen3next", "tiny-qwen3moe", "tiny-qwen3", "tiny-llama"));

TEST(Synth, VocabularyIsConsistentBpe) {
  TempDir dir;
  for (const char* preset : {"tiny-qwen3next", "tiny-llama"}) {
    synth::SynthOptions opt;
    opt.preset = preset;
    const GgufFile f = GgufFile::open(synth_file(dir, opt));
    const std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
    const std::vector<int64_t> types = f.get_int_array("tokenizer.ggml.token_type");
    const std::vector<std::string> merges = f.get_string_array("tokenizer.ggml.merges");
    std::unordered_map<std::string, size_t> id;
    for (size_t i = 0; i < tokens.size(); ++i) ASSERT_TRUE(id.emplace(tokens[i], i).second) << "duplicate " << tokens[i];
    // Merge rank r makes token 256 + r from two tokens that already exist.
    for (size_t r = 0; r < merges.size(); ++r) {
      const size_t sp = merges[r].find(' ');
      ASSERT_NE(sp, std::string::npos);
      ASSERT_EQ(merges[r].find(' ', sp + 1), std::string::npos) << merges[r];
      const std::string l = merges[r].substr(0, sp), rt = merges[r].substr(sp + 1);
      ASSERT_TRUE(id.count(l) && id.count(rt)) << merges[r];
      EXPECT_EQ(id.at(l + rt), 256 + r);
      EXPECT_LT(id.at(l), 256 + r);
      EXPECT_LT(id.at(rt), 256 + r);
    }
    const uint64_t bos = *f.get_uint("tokenizer.ggml.bos_token_id"), eos = *f.get_uint("tokenizer.ggml.eos_token_id");
    if (std::string(preset) == "tiny-llama") {
      EXPECT_EQ(tokens[bos], "<|begin_of_text|>");
      EXPECT_EQ(tokens[eos], "<|eot_id|>");
      EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "llama-bpe");
      EXPECT_EQ(f.get_bool("tokenizer.ggml.add_bos_token"), true);
    } else {
      // gguf.md §5.1 order: <|endoftext|>, <|im_start|>, <|im_end|>, ... </think>.
      EXPECT_EQ(tokens[bos], "<|endoftext|>");
      EXPECT_EQ(tokens[bos + 1], "<|im_start|>");
      EXPECT_EQ(tokens[eos], "<|im_end|>");
      EXPECT_EQ(tokens[bos + 14], "<tool_call>");
      EXPECT_EQ(types[bos + 14], 4);  // USER_DEFINED
      EXPECT_EQ(tokens[bos + 25], "</think>");
      EXPECT_EQ(types[bos], 3);  // CONTROL
      EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "qwen2");
      EXPECT_EQ(tokens.back(), str_cat("[PAD", tokens.size() - 1, "]"));
      EXPECT_EQ(types.back(), 5);
    }
  }
}

TEST(Synth, RealSizeQwenVocabularyHasTheRealSpecialIds) {
  // One layer, two experts, small types: only the vocabulary is full size.
  const synth::Preset& p = synth::find_preset("qwen3-coder-next");
  TempDir dir;
  synth::SynthOptions opt;
  opt.preset = "qwen3-coder-next";
  opt.layers = 1;
  opt.experts = 2;
  opt.expert_type = GgmlType::IQ2_XXS;
  opt.other_type = GgmlType::IQ2_XXS;
  const GgufFile f = GgufFile::open(synth_file(dir, opt));
  const std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), size_t(p.shape.n_vocab));
  EXPECT_EQ(tokens[151643], "<|endoftext|>");
  EXPECT_EQ(tokens[151645], "<|im_end|>");
  EXPECT_EQ(tokens[151657], "<tool_call>");
  EXPECT_EQ(tokens[151668], "</think>");
  EXPECT_EQ(tokens[151669], "[PAD151669]");
  EXPECT_EQ(f.get_uint("tokenizer.ggml.bos_token_id"), 151643u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.eos_token_id"), 151645u);
}

TEST(Synth, SeedDecidesTheBytes) {
  TempDir dir;
  synth::SynthOptions opt;
  opt.preset = "tiny-qwen3moe";
  opt.out_path = dir.file("a.gguf");
  const GgufFile a = GgufFile::open(synth_file(dir, opt));
  opt.out_path = dir.file("b.gguf");
  const GgufFile b = GgufFile::open(synth_file(dir, opt));
  opt.seed = 2;
  opt.out_path = dir.file("c.gguf");
  const GgufFile c = GgufFile::open(synth_file(dir, opt));
  const gguf::TensorInfo *ta = a.find_tensor("blk.1.ffn_up_exps.weight"), *tb = b.find_tensor("blk.1.ffn_up_exps.weight"),
                         *tc = c.find_tensor("blk.1.ffn_up_exps.weight");
  EXPECT_EQ(std::memcmp(ta->data, tb->data, ta->n_bytes), 0);
  EXPECT_NE(std::memcmp(ta->data, tc->data, ta->n_bytes), 0);
}

TEST(Synth, TokenizerJsonReplacesTheSyntheticVocabulary) {
  TempDir dir;
  synth::SynthOptions opt;
  opt.preset = "tiny-qwen3";
  opt.tokenizer_json = hf_fixture("qwen3") + "/tokenizer.json";
  const GgufFile f = GgufFile::open(synth_file(dir, opt));
  const GgufFile fixture = GgufFile::open(converted("qwen3"));
  const std::vector<std::string> mine = f.get_string_array("tokenizer.ggml.tokens");
  const std::vector<std::string> theirs = fixture.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(mine.size(), 2048u);  // the preset's vocabulary size, padded
  for (size_t i = 0; i < theirs.size(); ++i) {
    if (theirs[i].rfind("[PAD", 0) != 0) {
      EXPECT_EQ(mine[i], theirs[i]) << i;
    }
  }
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.merges"), fixture.get_string_array("tokenizer.ggml.merges"));
  EXPECT_EQ(f.get_string("tokenizer.chat_template"), fixture.get_string("tokenizer.chat_template"));
}

TEST(Synth, EveryWeightTypeFillsToTheTargetScale) {
  int tested = 0;
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    bool supported = true;
    try {
      synth::BlockFiller probe(t->type);
    } catch (const Error&) {
      supported = false;
    }
    const bool weight_type = t->dequantize && t->type != GgmlType::Q8_1 && t->type != GgmlType::Q8_K;
    ASSERT_EQ(supported, weight_type) << t->name;
    if (!supported) continue;
    const synth::BlockFiller filler(t->type);
    synth::Rng rng(7);
    const int64_t row = 1024, rows = 16;
    std::vector<uint8_t> bytes(row_bytes(t->type, row) * rows);
    filler.fill(bytes.data(), row, rows, 0.03f, rng);
    std::vector<float> v(size_t(row * rows));
    for (int64_t r = 0; r < rows; ++r) t->dequantize(bytes.data() + size_t(r) * row_bytes(t->type, row), v.data() + r * row, row);
    double ss = 0;
    for (float x : v) {
      ASSERT_TRUE(std::isfinite(x)) << t->name;
      ss += double(x) * x;
    }
    const double rms = std::sqrt(ss / double(v.size()));
    EXPECT_GT(rms, 0.03 * 0.5) << t->name;
    EXPECT_LT(rms, 0.03 * 2.0) << t->name;  // MXFP4's power-of-two scale may be off by up to sqrt(2)
    ++tested;
  }
  EXPECT_GE(tested, 22);
}

TEST(Synth, RefusesWhatCannotBeBuilt) {
  TempDir dir;
  synth::SynthOptions opt;
  opt.out_path = dir.file("x.gguf");
  const auto error_of = [&]() -> std::string {
    try {
      synth::synthesize(opt);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  opt.preset = "gpt-5";
  EXPECT_NE(error_of().find("unknown preset 'gpt-5' (known: qwen3-coder-next"), std::string::npos);
  opt.preset = "tiny-qwen3";
  opt.experts = 4;
  EXPECT_NE(error_of().find("has no experts"), std::string::npos);
  opt.experts.reset();
  opt.other_type = GgmlType::Q8_K;
  EXPECT_NE(error_of().find("Q8_K weights are not supported"), std::string::npos);
  opt.other_type = GgmlType::Q8_0;
  opt.legacy_ssm_in = true;
  EXPECT_NE(error_of().find("--ssm-in applies to qwen3next"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(opt.out_path));
}

}  // namespace
}  // namespace moeserve::convert_test
