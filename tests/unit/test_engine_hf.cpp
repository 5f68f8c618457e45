// Our engine against Hugging Face transformers: the tiny random-weight fixtures under
// tests/fixtures/hf (written by transformers, see its README), converted to GGUF with F32 weights
// by our converter, run by the engine on the CPU backend. The logits of every prompt position must
// equal transformers' within 1e-4 of their scale (transformers' own token-by-token decode
// differs from its prefill by up to 2.5e-5): the prompt in one step, token by token, and split
// into uneven steps; qwen3next also in its legacy ssm_in layout and on the 100-token case that
// spans two DeltaNet chunks.
#include <gtest/gtest.h>

#include <algorithm>

#include "convert_test_util.h"
#include "model/model.h"
#include "ops_test_util.h"
#include "runtime/engine.h"

namespace moeserve::test {
namespace {

struct HfCase {
  std::string model;
  std::string case_name;
  bool legacy = false;
};

void PrintTo(const HfCase& c, std::ostream* os) { *os << c.model << " " << c.case_name << (c.legacy ? " legacy" : ""); }

const std::string& gguf_for(const HfCase& c) {
  if (!c.legacy) return convert_test::converted(c.model);
  static convert_test::TempDir dir;
  static const std::string path = [&] {
    convert::ConvertOptions opt;
    opt.hf_dir = convert_test::hf_fixture(c.model);
    opt.out_path = dir.file("legacy.gguf");
    opt.type = GgmlType::F32;
    opt.legacy_ssm_in = true;
    convert::convert_hf_to_gguf(opt);
    return opt.out_path;
  }();
  return path;
}

class MatchesTransformers : public ::testing::TestWithParam<HfCase> {};

TEST_P(MatchesTransformers, Logits) {
  const HfCase& c = GetParam();
  const convert_test::RefArray ids = convert_test::reference(c.model, c.case_name, "input_ids");
  const convert_test::RefArray logits = convert_test::reference(c.model, c.case_name, "logits");
  const int64_t n = int64_t(ids.i32.size()), n_vocab = logits.shape[1];

  auto backend = make_cpu_backend(2);
  auto model = load_model(std::make_shared<const gguf::GgufFile>(gguf::GgufFile::open(gguf_for(c))), *backend);
  ASSERT_EQ(model->hparams().n_vocab, n_vocab);
  for (FlashMode fa : {FlashMode::off, FlashMode::on}) {
    EngineOptions o;
    o.n_ctx = 128;
    o.n_batch = 128;
    o.type_k = o.type_v = GgmlType::F32;
    o.flash = fa;
    Engine e(*model, *backend, o);
    for (const std::vector<int64_t>& pieces : {std::vector<int64_t>{n}, std::vector<int64_t>(size_t(n), 1),
                                               std::vector<int64_t>{9, 1, n - 10}}) {
      e.seq_clear(0);
      double worst = 0;
      int64_t at = 0;
      for (int64_t piece : pieces) {
        std::vector<BatchToken> batch;
        for (int64_t i = 0; i < piece; ++i) batch.push_back({ids.i32[size_t(at + i)], int32_t(at + i), 0, true});
        e.decode(batch);
        for (int64_t i = 0; i < piece; ++i, ++at) {
          const float* ref = logits.f32.data() + at * n_vocab;
          worst = std::max(worst, rel_error(std::vector<float>(e.logits(i), e.logits(i) + n_vocab),
                                            std::vector<float>(ref, ref + n_vocab)));
        }
      }
      EXPECT_LT(worst, 1e-4) << "flash " << int(fa) << ", " << pieces.size() << " steps";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Hf, MatchesTransformers,
                         ::testing::Values(HfCase{"qwen3next", "prompt"}, HfCase{"qwen3next", "long"},
                                           HfCase{"qwen3next", "prompt", true}, HfCase{"qwen3moe", "prompt"},
                                           HfCase{"qwen3", "prompt"}, HfCase{"llama", "prompt"}),
                         [](const auto& info) {
                           return info.param.model + "_" + info.param.case_name + (info.param.legacy ? "_legacy" : "");
                         });

}  // namespace
}  // namespace moeserve::test
