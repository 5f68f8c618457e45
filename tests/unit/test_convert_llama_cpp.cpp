// The GGUF files convert and synth write, loaded by llama.cpp itself (libllama from the npm
// package @node-llama-cpp/linux-x64, tests/clients, installed by scripts/setup.sh): llama.cpp
// accepts every converted fixture and its logits for the fixture prompt equal transformers'
// logits, so the tensor layout and keys are the ones llama.cpp's own converter produces; it also
// loads and runs every tiny synth preset.
#include <gtest/gtest.h>

#include <cmath>

#include "convert_test_util.h"
#include "llama_cpp_reference.h"
#include "model/synth/synth.h"

namespace moeserve::convert_test {
namespace {

using test::LlamaCpp;

// Largest |got - want| relative to the largest |want|.
double max_rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    err = std::max(err, double(std::fabs(got[i] - want[i])));
    scale = std::max(scale, double(std::fabs(want[i])));
  }
  return err / scale;
}

#define REQUIRE_LLAMA_CPP() ASSERT_TRUE(LlamaCpp::get().error().empty()) << LlamaCpp::get().error()

class LlamaCppOnConverted : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(LlamaCppOnConverted, LogitsEqualTransformers) {
  REQUIRE_LLAMA_CPP();
  const auto [model, case_name] = GetParam();
  const RefArray ids = reference(model, case_name, "input_ids");
  const RefArray want = reference(model, case_name, "logits");
  int64_t n_vocab = 0;
  const std::vector<float> got = LlamaCpp::get().logits(converted(model), ids.i32, &n_vocab);
  ASSERT_EQ(n_vocab, want.shape[1]);
  ASSERT_EQ(got.size(), want.f32.size());
  EXPECT_LT(max_rel_err(got, want.f32), 1e-4) << model << " " << case_name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlamaCppOnConverted,
                         ::testing::Values(std::make_tuple("qwen3next", "prompt"), std::make_tuple("qwen3next", "long"),
                                           std::make_tuple("qwen3moe", "prompt"), std::make_tuple("qwen3", "prompt"),
                                           std::make_tuple("llama", "prompt")));

TEST(LlamaCppOnConverted, LegacySsmInLayoutToo) {
  REQUIRE_LLAMA_CPP();
  TempDir dir;
  convert::ConvertOptions opt;
  opt.hf_dir = hf_fixture("qwen3next");
  opt.out_path = dir.file("legacy.gguf");
  opt.type = GgmlType::F32;
  opt.legacy_ssm_in = true;
  convert::convert_hf_to_gguf(opt);
  const RefArray ids = reference("qwen3next", "prompt", "input_ids");
  const RefArray want = reference("qwen3next", "prompt", "logits");
  int64_t n_vocab = 0;
  const std::vector<float> got = LlamaCpp::get().logits(opt.out_path, ids.i32, &n_vocab);
  ASSERT_EQ(got.size(), want.f32.size());
  EXPECT_LT(max_rel_err(got, want.f32), 1e-4);
}

class LlamaCppOnSynth : public ::testing::TestWithParam<const char*> {};

TEST_P(LlamaCppOnSynth, LoadsAndRunsWithFiniteLogits) {
  REQUIRE_LLAMA_CPP();
  TempDir dir;
  synth::SynthOptions opt;
  opt.preset = GetParam();
  opt.out_path = dir.file("synth.gguf");
  synth::synthesize(opt);
  const std::vector<int32_t> tokens = {1, 50, 300, 7, 1999, 42, 5, 256};
  int64_t n_vocab = 0;
  const std::vector<float> logits = LlamaCpp::get().logits(opt.out_path, tokens, &n_vocab);
  EXPECT_EQ(n_vocab, 2048);
  double ss = 0;
  for (float x : logits) {
    ASSERT_TRUE(std::isfinite(x));
    ss += double(x) * x;
  }
  EXPECT_GT(ss / double(logits.size()), 1e-6) << "logits are not all ~0";
}

INSTANTIATE_TEST_SUITE_P(Tiny, LlamaCppOnSynth,
                         ::testing::Values("tiny-qwen3next", "tiny-qwen3moe", "tiny-qwen3", "tiny-llama"));

}  // namespace
}  // namespace moeserve::convert_test
