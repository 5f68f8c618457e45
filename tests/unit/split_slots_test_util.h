// Shared by the split-slots tests (tests/unit/test_split_slots.cpp with a stand-in for the GPU,
// tests/gpu/test_cuda_split_slots.cpp with CUDA): the MOESERVE_SPLIT_GPU_SLOTS setting for a scope,
// the slots of ids or weights, the logits of a decode run, and the whole-model check of every share.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/split_backend.h"
#include "convert_test_util.h"
#include "engine_test_util.h"
#include "model/model.h"
#include "ops_test_util.h"
#include "runtime/device_setup.h"
#include "runtime/engine.h"

namespace moeserve::test {

// MOESERVE_SPLIT_GPU_SLOTS = value while it lives (the split backend reads it when it is made).
class SlotsSetting {
 public:
  explicit SlotsSetting(const std::string& value) { setenv("MOESERVE_SPLIT_GPU_SLOTS", value.c_str(), 1); }
  ~SlotsSetting() { unsetenv("MOESERVE_SPLIT_GPU_SLOTS"); }
  SlotsSetting(const SlotsSetting&) = delete;
  SlotsSetting& operator=(const SlotsSetting&) = delete;
};

// Slots [first, first + count) of every token of ids or weights [k, n], as a contiguous tensor.
inline HostTensor slots(const HostTensor& t, int64_t first, int64_t count) {
  HostTensor s = HostTensor::make(t.t.type, {count, t.t.ne[1], 1, 1});
  for (int64_t r = 0; r < t.t.ne[1]; ++r) std::memcpy(s.t.row(r), t.t.row(r) + first * 4, size_t(count) * 4);
  return s;
}

// Token by token, n_seq sequences with the same prompt in the same steps (steps of n_seq tokens):
// the logits of every step, sequence after sequence.
inline std::vector<std::vector<float>> decode_logits(const Model& model, Backend& be, const std::vector<int32_t>& ids,
                                                     int n_seq) {
  Engine e(model, be, test_engine_options(n_seq));
  SeqLogits per_seq(static_cast<size_t>(n_seq));
  decode_token_by_token(e, ids, n_seq, per_seq);
  return sequence_after_sequence(std::move(per_seq));
}

// max |a - b| / max |b| (b the reference); rows of different lengths never match.
inline double logit_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num = std::max(num, double(std::fabs(a[i] - b[i])));
    den = std::max(den, double(std::fabs(b[i])));
  }
  return a.size() == b.size() ? num / std::max(den, 1e-30) : INFINITY;
}

// The placement a test runs the split on: every routed expert in RAM (flags.cpu_moe).
using SplitSetupFn = std::function<DeviceSetup(const gguf::GgufFile& file, const PlacementFlags& flags)>;

// The decode logits of the fixture's model with every routed expert in RAM against the all-CPU
// run (cpu_threads threads) within the F32 bound, for kg = 0, 1, k/2 and k routed slots on the
// primary and 1 and 3 sequences (3 only where the slots are shared, unless three_seq_always),
// with one expert op per layer and decode step counted the way kg says (the dry runs count none).
inline void check_logits_for_every_share(const std::string& fixture, int cpu_threads, bool three_seq_always,
                                         const SplitSetupFn& setup_for) {
  const convert_test::RefArray ids = convert_test::reference(fixture, "prompt", "input_ids");
  const auto file = std::make_shared<const gguf::GgufFile>(gguf::GgufFile::open(convert_test::converted(fixture)));
  auto cpu = make_cpu_backend(cpu_threads);
  auto cpu_model = load_model(file, *cpu);
  const int64_t k = cpu_model->hparams().n_expert_used, n_layer = cpu_model->hparams().n_layer;
  ASSERT_GE(k, 2);
  const std::vector<std::vector<float>> expect = decode_logits(*cpu_model, *cpu, ids.i32, 1);
  PlacementFlags flags;
  flags.cpu_moe = true;
  for (int64_t kg : {int64_t(0), int64_t(1), k / 2, k}) {
    for (int n_seq : {1, 3}) {
      // Three sequences: decode steps of three tokens, whose slot views are strided.
      if (n_seq == 3 && !three_seq_always && (kg == 0 || kg == k)) continue;
      SCOPED_TRACE("kg " + std::to_string(kg) + ", sequences " + std::to_string(n_seq));
      const SlotsSetting setting(std::to_string(kg));
      DeviceSetup setup = setup_for(*file, flags);
      auto model = load_model(file, *setup.backend);
      const std::vector<std::vector<float>> got = decode_logits(*model, *setup.backend, ids.i32, n_seq);
      ASSERT_EQ(got.size(), expect.size() * size_t(n_seq));
      double worst = 0;
      for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, logit_error(got[i], expect[i % expect.size()]));
      EXPECT_LT(worst, 1e-4) << setup.backend->name();
      const SplitExpertCounts c = split_expert_counts(*setup.backend);
      const int64_t ops = n_layer * int64_t(ids.i32.size());
      EXPECT_EQ(c.shared, kg > 0 && kg < k ? ops : 0);
      EXPECT_EQ(c.primary_only, kg == k ? ops : 0);
      EXPECT_EQ(c.host_only, kg == 0 ? ops : 0);
    }
  }
}

}  // namespace moeserve::test
