// The split backend sharing a decode step's RAM-resident routed experts between the accelerator and
// the host (MOESERVE_SPLIT_GPU_SLOTS), with the scalar reference backend standing in for the
// accelerator (its memory labelled CUDA0; like CUDA with unified addressing it reads the
// page-locked copy of the experts in place) and the CPU backend as host:
// * op level: the result is the accelerator's op over the first kg slots of every token plus the
//   host's op over the others, bit for bit (one float add per element), for kg = 0 (the host
//   alone: the CPU backend's own result), 1, k/2 and k (the accelerator alone), one token or
//   three (strided slot views, packed on both sides), x contiguous or strided; and within 1e-5
//   of the CPU backend's op over all slots: the two sums differ only in the order of the slot
//   sum and in the two backends' rounding of the same Q8_0 products;
// * whole models: the Hugging Face fixtures with every expert in RAM (--cpu-moe), decode steps of
//   one and of three sequences, logits against the all-CPU run within the 1e-4 of
//   test_split_backend.cpp, the counters showing which way the expert ops ran.
#include <gtest/gtest.h>

#include <cstdlib>

#include "backend/split_backend.h"
#include "convert_test_util.h"
#include "core/error.h"
#include "model/model.h"
#include "ops_test_util.h"
#include "runtime/device_setup.h"
#include "runtime/engine.h"
#include "split_slots_test_util.h"

namespace moeserve::test {
namespace {

const DeviceId kCpu{DeviceKind::cpu, 0};
const DeviceId kGpu{DeviceKind::cuda, 0};

TEST(SplitSlots, OpIsThePrimarysSlotsPlusTheHosts) {
  const int64_t n_embd = 64, n_ff = 32, n_expert = 8, k = 4;
  const HostTensor gate = on(kCpu, random_typed(GgmlType::Q8_0, {n_embd, n_ff, n_expert, 1}));
  const HostTensor up = on(kCpu, random_typed(GgmlType::Q8_0, {n_embd, n_ff, n_expert, 1}));
  const HostTensor down = on(kCpu, random_typed(GgmlType::Q8_0, {n_ff, n_embd, n_expert, 1}));
  const ExpertWeights experts{gate.t, up.t, down.t};
  auto ref = make_ref_backend(kCpu);
  auto cpu = make_cpu_backend(2);

  for (int64_t kg : {int64_t(0), int64_t(1), k / 2, k}) {
    for (int64_t n : {1, 3}) {
      for (bool strided_x : {false, true}) {
        SCOPED_TRACE("kg " + std::to_string(kg) + ", n " + std::to_string(n) + (strided_x ? ", strided x" : ""));
        const SlotsSetting setting(std::to_string(kg));
        auto be = make_split_backend(make_ref_backend(kGpu), make_cpu_backend(2),
                                     [](const std::string& name) { return name.starts_with("host.") ? kCpu : kGpu; });
        ASSERT_TRUE(be->reads_host_memory());
        // x: every other row of a [n_embd, 2n] tensor when strided.
        const HostTensor x_all = on(kGpu, random_f32({n_embd, 2 * n, 1, 1}));
        HostTensor x = x_all;
        x.t = strided_x ? x_all.t.view({n_embd, n, 1, 1}, {x_all.t.nb[0], 2 * x_all.t.nb[1], 0, 0})
                        : x_all.t.rows(0, n);
        const HostTensor logits = on(kGpu, random_f32({n_expert, n, 1, 1}, -3, 3));
        HostTensor ids = on(kGpu, HostTensor::make(GgmlType::I32, {k, n, 1, 1}));
        HostTensor w = on(kGpu, HostTensor::make(GgmlType::F32, {k, n, 1, 1}));
        ref->moe_route(on(kCpu, ids).t, on(kCpu, w).t, on(kCpu, logits).t, true);
        HostTensor y = on(kGpu, HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1}));

        // The dry run plans the staging and, ending, copies the experts to page-locked memory.
        be->begin_measure();
        be->moe_experts(y.t, x.t, experts, ids.t, w.t);
        be->end_measure();
        be->moe_experts(y.t, x.t, experts, ids.t, w.t);
        HostTensor got = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
        be->download(got.t.data, y.t);

        HostTensor hx = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
        for (int64_t r = 0; r < n; ++r) std::memcpy(hx.t.row(r), x.t.row(r), x.t.row_size());
        auto part = [&](Backend& b, int64_t first, int64_t count) {
          HostTensor out = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1});
          b.moe_experts(out.t, hx.t, experts, slots(ids, first, count).t, slots(w, first, count).t);
          return to_floats(out.t);
        };
        std::vector<float> want;
        if (kg == 0) {
          want = part(*cpu, 0, k);
        } else if (kg == k) {
          want = part(*ref, 0, k);
        } else {
          const std::vector<float> g = part(*ref, 0, kg), h = part(*cpu, kg, k - kg);
          for (size_t i = 0; i < g.size(); ++i) want.push_back(g[i] + h[i]);
        }
        EXPECT_EQ(to_floats(got.t), want);
        EXPECT_LT(rel_error(to_floats(got.t), part(*cpu, 0, k)), 1e-5);

        const SplitExpertCounts c = split_expert_counts(*be);
        EXPECT_EQ(c.shared, kg > 0 && kg < k ? 1 : 0);
        EXPECT_EQ(c.primary_only, kg == k ? 1 : 0);
        EXPECT_EQ(c.host_only, kg == 0 ? 1 : 0);
      }
    }
  }
}

TEST(SplitSlots, SettingBeyondTheSlotsRunsThemAllOnThePrimaryAndBadSettingsFail) {
  const int64_t n_embd = 64, n_ff = 32, n_expert = 4, k = 2;
  const HostTensor gate = on(kCpu, random_typed(GgmlType::Q8_0, {n_embd, n_ff, n_expert, 1}));
  const HostTensor up = on(kCpu, random_typed(GgmlType::Q8_0, {n_embd, n_ff, n_expert, 1}));
  const HostTensor down = on(kCpu, random_typed(GgmlType::Q8_0, {n_ff, n_embd, n_expert, 1}));
  const HostTensor x = on(kGpu, random_f32({n_embd, 1, 1, 1}));
  HostTensor ids = on(kGpu, HostTensor::make(GgmlType::I32, {k, 1, 1, 1}));
  ids.i()[0] = 3, ids.i()[1] = 1;
  HostTensor w = on(kGpu, HostTensor::make(GgmlType::F32, {k, 1, 1, 1}));
  w.f()[0] = 0.75f, w.f()[1] = 0.25f;
  HostTensor y = on(kGpu, HostTensor::make(GgmlType::F32, {n_embd, 1, 1, 1}));
  auto home = [](const std::string&) { return kCpu; };
  {
    const SlotsSetting setting("9");
    auto be = make_split_backend(make_ref_backend(kGpu), make_cpu_backend(1), home);
    be->begin_measure();
    be->moe_experts(y.t, x.t, ExpertWeights{gate.t, up.t, down.t}, ids.t, w.t);
    be->end_measure();
    be->moe_experts(y.t, x.t, ExpertWeights{gate.t, up.t, down.t}, ids.t, w.t);
    EXPECT_EQ(split_expert_counts(*be).primary_only, 1);
    HostTensor want = HostTensor::make(GgmlType::F32, {n_embd, 1, 1, 1});
    make_ref_backend(kCpu)->moe_experts(want.t, on(kCpu, x).t, ExpertWeights{gate.t, up.t, down.t}, on(kCpu, ids).t,
                                        on(kCpu, w).t);
    EXPECT_EQ(to_floats(y.t), to_floats(want.t));
  }
  for (const char* bad : {"half", "-1", "", "3x"}) {
    const SlotsSetting setting(bad);
    try {
      make_split_backend(make_ref_backend(kGpu), make_cpu_backend(1), home);
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("MOESERVE_SPLIT_GPU_SLOTS"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(split_expert_counts(*make_cpu_backend(1)).shared, 0);
}

// ---- whole models ------------------------------------------------------------------------------

class SplitSlotsModel : public ::testing::TestWithParam<std::string> {};

TEST_P(SplitSlotsModel, LogitsMatchTheCpuForEveryShare) {
  check_logits_for_every_share(GetParam(), 2, false, [](const gguf::GgufFile& file, const PlacementFlags& flags) {
    return make_device_setup(file, flags, 2, stand_in_gpu(), [](int) { return make_ref_backend(kGpu); });
  });
}

INSTANTIATE_TEST_SUITE_P(Hf, SplitSlotsModel, ::testing::Values("qwen3next", "qwen3moe"));

}  // namespace
}  // namespace moeserve::test
