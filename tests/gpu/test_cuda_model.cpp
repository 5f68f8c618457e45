// Whole models on the CUDA backend, alone and split with the CPU backend (manual hybrid), against
// the all-CPU run of our engine and against Hugging Face transformers' logits (the tiny fixtures
// under tests/fixtures/hf, converted to GGUF here). Placements: everything on the GPU (the
// default: the CUDA backend alone), the embedding in RAM (-ot token_embd=CPU), --n-cpu-moe 1,
// --cpu-moe and a partial -ngl. Each run: the prompt in one step, then token by token (the decode path, replayed
// as CUDA graphs where the step has no host ops). The prompt step (48 tokens, 144 with three
// sequences) streams RAM-resident experts to the GPU (split_backend.h: kStreamMinTokens); the
// decode steps (1 or 3 tokens) run them on the CPU.
//
// The fixtures are found through the MOESERVE_TEST_FIXTURES environment variable (else the path
// compiled in), so the binary can run on a machine with the tree elsewhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "../unit/convert_test_util.h"
#include "../unit/engine_test_util.h"
#include "backend/gpu_devices.h"
#include "model/model.h"
#include "runtime/device_setup.h"
#include "runtime/engine.h"

namespace moeserve::test {
namespace {

// max |a - b| / max |b| (b the reference).
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num = std::max(num, double(std::fabs(a[i] - b[i])));
    den = std::max(den, double(std::fabs(b[i])));
  }
  return a.size() == b.size() ? num / std::max(den, 1e-30) : INFINITY;
}

// Logits of every prompt position: the whole prompt in one step, then again one token per step.
// With n_seq > 1 every sequence holds the same prompt, all in the same steps (the prompt step then
// has n_seq times as many tokens); the logits come sequence after sequence, each as n_seq = 1's.
std::vector<std::vector<float>> run(const Model& model, Backend& be, const std::vector<int32_t>& ids, bool flash,
                                    int n_seq = 1) {
  EngineOptions o = test_engine_options(n_seq);
  o.flash = flash ? FlashMode::on : FlashMode::off;
  Engine e(model, be, o);
  const size_t n = ids.size();
  SeqLogits per_seq(static_cast<size_t>(n_seq));
  std::vector<BatchToken> batch;
  for (int s = 0; s < n_seq; ++s) {
    for (size_t i = 0; i < n; ++i) batch.push_back({ids[i], int32_t(i), s, true});
  }
  e.decode(batch);
  for (int s = 0; s < n_seq; ++s) {
    for (size_t i = 0; i < n; ++i) {
      const float* l = e.logits(int64_t(size_t(s) * n + i));
      per_seq[size_t(s)].emplace_back(l, l + e.n_vocab());
    }
    e.seq_clear(s);
  }
  decode_token_by_token(e, ids, n_seq, per_seq);
  return sequence_after_sequence(std::move(per_seq));
}

struct Placed {
  std::string label;
  PlacementFlags flags;
  int n_seq = 1;
};

std::vector<Placed> placements(int64_t n_layer, bool moe) {
  std::vector<Placed> p;
  p.push_back({"everything on the GPU", {}});
  p.back().flags.overrides = {{".", "CUDA0"}};
  p.push_back({"embedding in RAM", {}});
  p.back().flags.overrides = {{"token_embd", "CPU"}};
  if (moe) {
    p.push_back({"--n-cpu-moe 1", {}});
    p.back().flags.n_cpu_moe = 1;
    p.push_back({"--cpu-moe", {}});
    p.back().flags.cpu_moe = true;
    // Three sequences: a prompt step of 3x the tokens, decode steps of 3 tokens.
    p.push_back({"--n-cpu-moe 1, 3 sequences", {}, 3});
    p.back().flags.n_cpu_moe = 1;
    p.push_back({"--cpu-moe, 3 sequences", {}, 3});
    p.back().flags.cpu_moe = true;
  }
  p.push_back({"-ngl " + std::to_string(n_layer - 1), {}});
  p.back().flags.n_gpu_layers = int(n_layer - 1);
  return p;
}

struct Case {
  std::string model;
  GgmlType type;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.model << " " << type_name(c.type); }

class CudaModel : public ::testing::TestWithParam<Case> {};

TEST_P(CudaModel, HybridPlacementsMatchCpuAndTransformers) {
  if (list_gpu_devices().devices.empty()) GTEST_SKIP() << "no GPU: " << list_gpu_devices().why_none;
  const Case& c = GetParam();
  const convert_test::RefArray ids = convert_test::reference(c.model, "prompt", "input_ids");
  const convert_test::RefArray hf = convert_test::reference(c.model, "prompt", "logits");
  const auto file = std::make_shared<const gguf::GgufFile>(gguf::GgufFile::open(convert_test::converted(c.model, c.type)));
  const int64_t n = int64_t(ids.i32.size()), n_vocab = hf.shape[1];
  // F32 weights: products in F32 on both sides. Q8_0 (qwen3moe only: on qwen3next last-bit
  // differences already change router picks between our two CPU-side backends, see
  // test_split_backend.cpp): the CPU quantizes activations to Q8_0 blocks, the GPU keeps them in
  // F32 (decode) or f16 (tensor-core prefill), so the two runs are two different approximations of
  // the F32 model: each is held to the same distance from it (transformers' F32 logits), and to
  // each other within the sum of the two.
  const double tol_cpu = c.type == GgmlType::F32 ? 1e-4 : 1e-1;
  const double tol_hf = c.type == GgmlType::F32 ? 1e-4 : 5e-2;

  auto cpu = make_cpu_backend(0);
  auto cpu_model = load_model(file, *cpu);
  const HParams& hp = cpu_model->hparams();
  for (bool flash : {false, true}) {
    const std::vector<std::vector<float>> expect = run(*cpu_model, *cpu, ids.i32, flash);
    for (const Placed& p : placements(hp.n_layer, hp.n_expert > 0)) {
      SCOPED_TRACE(p.label + (flash ? ", flash" : ""));
      DeviceSetup setup = make_device_setup(*file, p.flags, 0);
      ASSERT_TRUE(setup.gpu);
      auto model = load_model(file, *setup.backend);
      EXPECT_GT(model->placement().bytes_on(*setup.gpu), 0u) << model->placement().device_summary();
      const std::vector<std::vector<float>> got = run(*model, *setup.backend, ids.i32, flash, p.n_seq);
      ASSERT_EQ(got.size(), expect.size() * size_t(p.n_seq));
      double worst_cpu = 0, worst_hf = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        worst_cpu = std::max(worst_cpu, rel_error(got[i], expect[i % expect.size()]));
        const float* ref = hf.f32.data() + int64_t(i % size_t(n)) * n_vocab;
        worst_hf = std::max(worst_hf, rel_error(got[i], std::vector<float>(ref, ref + n_vocab)));
      }
      EXPECT_LT(worst_cpu, tol_cpu) << setup.backend->name() << "; " << model->placement().device_summary();
      EXPECT_LT(worst_hf, tol_hf) << setup.backend->name();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Hf, CudaModel,
                         ::testing::Values(Case{"qwen3next", GgmlType::F32}, Case{"qwen3moe", GgmlType::F32},
                                           Case{"qwen3", GgmlType::F32}, Case{"llama", GgmlType::F32},
                                           Case{"qwen3moe", GgmlType::Q8_0}),
                         [](const auto& info) { return info.param.model + "_" + type_name(info.param.type); });

}  // namespace
}  // namespace moeserve::test
