// The manual placement rules, as llama.cpp documents and implements its flags (common/arg.cpp,
// src/llama-model.cpp): -ngl N offloads the last N repeating layers and the output head once
// N > n_layer, the input embedding stays on the CPU, --n-cpu-moe / --cpu-moe keep `_exps`
// tensors in RAM, -ot REGEX=DEVICE rules are searched in order and the first match wins, before
// any other rule.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/placement_plan.h"
#include "model/weights.h"

namespace moeserve {
namespace {

const DeviceId kCpu{DeviceKind::cpu, 0};
const DeviceId kGpu{DeviceKind::cuda, 0};

// A qwen3next-like manifest of n_layer layers.
std::vector<std::string> names(int64_t n_layer) {
  std::vector<std::string> n = {"token_embd.weight", "output_norm.weight", "output.weight"};
  for (int64_t il = 0; il < n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    for (const char* t : {"attn_norm.weight", "attn_qkv.weight", "ssm_conv1d.weight", "ffn_gate_inp.weight",
                          "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight",
                          "ffn_up_shexp.weight", "ffn_gate_inp_shexp.weight"}) {
      n.push_back(p + t);
    }
  }
  return n;
}

PlacementPlan plan(const PlacementFlags& f, int64_t n_layer = 4) { return PlacementPlan(f, names(n_layer), n_layer, {kGpu}); }

std::string error_of(const PlacementFlags& f, std::vector<DeviceId> gpus = {kGpu}) {
  try {
    PlacementPlan(f, names(4), 4, gpus);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PlacementPlan, DefaultPutsEverythingOnTheGpu) {
  // The embedding too: with every weight there a step has no host op (CUDA graphs replay it).
  const PlacementPlan p = plan({});
  EXPECT_EQ(p.device_of("token_embd.weight"), kGpu);
  EXPECT_TRUE(p.only(kGpu));
  EXPECT_EQ(p.device_of("output.weight"), kGpu);
  EXPECT_EQ(p.device_of("output_norm.weight"), kGpu);
  for (const std::string& n : names(4)) {
    if (n.starts_with("blk.")) {
      EXPECT_EQ(p.device_of(n), kGpu) << n;
    }
  }
  EXPECT_FALSE(p.uses(kCpu));
  // Negative -ngl (llama.cpp's -1) means all, like "all".
  PlacementFlags f;
  f.n_gpu_layers = -1;
  EXPECT_EQ(plan(f).device_of("blk.0.attn_qkv.weight"), kGpu);
}

TEST(PlacementPlan, NglOffloadsTheLastLayersAndTheHeadOnlyAboveNLayer) {
  PlacementFlags f;
  f.n_gpu_layers = 2;
  PlacementPlan p = plan(f);
  EXPECT_EQ(p.device_of("blk.0.attn_qkv.weight"), kCpu);
  EXPECT_EQ(p.device_of("blk.1.ffn_down_exps.weight"), kCpu);
  EXPECT_EQ(p.device_of("blk.2.attn_qkv.weight"), kGpu);
  EXPECT_EQ(p.device_of("blk.3.ffn_down_exps.weight"), kGpu);
  EXPECT_EQ(p.device_of("output.weight"), kCpu);
  f.n_gpu_layers = 4;  // every repeating layer, not the head
  p = plan(f);
  EXPECT_EQ(p.device_of("blk.0.attn_qkv.weight"), kGpu);
  EXPECT_EQ(p.device_of("output.weight"), kCpu);
  EXPECT_EQ(p.device_of("token_embd.weight"), kCpu);  // stays in RAM, as llama.cpp keeps it
  f.n_gpu_layers = 5;  // n_layer + 1: the head too
  p = plan(f);
  EXPECT_EQ(p.device_of("output.weight"), kGpu);
  EXPECT_EQ(p.device_of("token_embd.weight"), kGpu);  // every other weight is there
  f.n_cpu_moe = 1;
  p = plan(f);
  EXPECT_EQ(p.device_of("token_embd.weight"), kCpu);
  f.n_cpu_moe = 0;
  f.n_gpu_layers = 0;
  p = plan(f);
  EXPECT_FALSE(p.uses(kGpu));
  EXPECT_TRUE(p.only(kCpu));
}

TEST(PlacementPlan, CpuMoeKeepsExpertsOfTheFirstLayersInRam) {
  PlacementFlags f;
  f.n_cpu_moe = 2;
  const PlacementPlan p = plan(f);
  for (const char* t : {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"}) {
    EXPECT_EQ(p.device_of(std::string("blk.0.") + t), kCpu);
    EXPECT_EQ(p.device_of(std::string("blk.1.") + t), kCpu);
    EXPECT_EQ(p.device_of(std::string("blk.2.") + t), kGpu);
  }
  // Router, shared expert and attention of those layers stay on the GPU.
  EXPECT_EQ(p.device_of("blk.0.ffn_gate_inp.weight"), kGpu);
  EXPECT_EQ(p.device_of("blk.0.ffn_up_shexp.weight"), kGpu);
  EXPECT_EQ(p.device_of("blk.0.ffn_gate_inp_shexp.weight"), kGpu);
  EXPECT_EQ(p.device_of("blk.0.attn_qkv.weight"), kGpu);

  PlacementFlags all;
  all.cpu_moe = true;
  const PlacementPlan q = plan(all, 48);
  EXPECT_EQ(q.device_of("blk.47.ffn_down_exps.weight"), kCpu);
  EXPECT_EQ(q.device_of("blk.47.ffn_up_shexp.weight"), kGpu);
  // More than n_layer is all of them, not an error.
  PlacementFlags many;
  many.n_cpu_moe = 100;
  EXPECT_EQ(plan(many).device_of("blk.3.ffn_up_exps.weight"), kCpu);
}

TEST(PlacementPlan, OverridesAreTriedInOrderAndWinOverTheOtherRules) {
  PlacementFlags f;
  f.n_gpu_layers = 0;
  f.cpu_moe = true;
  f.overrides = {{"blk\\.3\\.ffn_.*_exps", "CUDA0"}, {"blk\\.[23]\\.", "cuda0"}, {"blk\\.2\\.attn", "CPU"},
                 {"^output", "CUDA0"}};
  const PlacementPlan p = plan(f);
  EXPECT_EQ(p.device_of("blk.3.ffn_up_exps.weight"), kGpu);   // -ot before --cpu-moe
  EXPECT_EQ(p.device_of("blk.2.ffn_up_exps.weight"), kGpu);   // second rule, searched not anchored
  EXPECT_EQ(p.device_of("blk.2.attn_qkv.weight"), kGpu);      // the earlier rule wins over the later CPU one
  EXPECT_EQ(p.device_of("blk.1.ffn_up_exps.weight"), kCpu);
  EXPECT_EQ(p.device_of("blk.1.attn_qkv.weight"), kCpu);      // -ngl 0
  EXPECT_EQ(p.device_of("output.weight"), kGpu);
  EXPECT_EQ(p.device_of("output_norm.weight"), kGpu);
  EXPECT_EQ(p.device_of("token_embd.weight"), kCpu);

  // The classic "all experts on the CPU" spelling.
  PlacementFlags exps;
  exps.overrides = {{"exps", "CPU"}};
  const PlacementPlan e = plan(exps);
  EXPECT_EQ(e.device_of("blk.0.ffn_gate_exps.weight"), kCpu);
  EXPECT_EQ(e.device_of("blk.0.ffn_up_shexp.weight"), kGpu);
}

TEST(PlacementPlan, BadDevicesRegexesAndSplitExpertsAreClearErrors) {
  PlacementFlags f;
  f.overrides = {{"exps", "GPU0"}};
  EXPECT_NE(error_of(f).find("unknown device 'GPU0'"), std::string::npos) << error_of(f);
  f.overrides = {{"exps", "CUDA1"}};
  EXPECT_NE(error_of(f).find("CUDA1"), std::string::npos);
  EXPECT_NE(error_of(f).find("not present"), std::string::npos) << error_of(f);
  f.overrides = {{"exps", "CUDAx"}};
  EXPECT_NE(error_of(f).find("'CUDAx'"), std::string::npos);
  f.overrides = {{"blk.(", "CPU"}};
  EXPECT_NE(error_of(f).find("'blk.(' is not a valid regular expression"), std::string::npos) << error_of(f);
  f.overrides = {{"blk\\.2\\.ffn_down_exps", "CPU"}};
  EXPECT_NE(error_of(f).find("must share a device"), std::string::npos) << error_of(f);
  EXPECT_EQ(parse_device_name("cpu", "-ot"), kCpu);
  EXPECT_EQ(parse_device_name("CUDA3", "-ot"), (DeviceId{DeviceKind::cuda, 3}));
}

TEST(PlacementPlan, LayerOfATensorName) {
  EXPECT_EQ(tensor_layer("blk.12.attn_q.weight"), 12);
  EXPECT_EQ(tensor_layer("token_embd.weight"), std::nullopt);
  EXPECT_EQ(tensor_layer("blk.x.attn_q.weight"), std::nullopt);
  EXPECT_TRUE(is_expert_tensor("blk.0.ffn_gate_up_exps.weight"));
  EXPECT_FALSE(is_expert_tensor("blk.0.ffn_up_shexp.weight"));
}

TEST(PlacementSummary, BytesPerDeviceAndExpertLayersInRam) {
  Placement p;
  p.add({"token_embd.weight", GgmlType::F32, 100, kCpu, {}});
  p.add({"blk.0.attn_q.weight", GgmlType::F32, 1 << 20, kGpu, {}});
  p.add({"blk.0.ffn_up_exps.weight", GgmlType::F32, 4 << 20, kCpu, {kCpu, kCpu, kCpu, kCpu}});
  p.add({"blk.0.ffn_down_exps.weight", GgmlType::F32, 4 << 20, kCpu, {kCpu, kCpu, kCpu, kCpu}});
  p.add({"blk.1.ffn_up_exps.weight", GgmlType::F32, 4 << 20, kGpu, {kGpu, kGpu, kGpu, kGpu}});
  EXPECT_EQ(p.device_summary(), "CUDA0: 5.0 MiB (experts of 1 layer), CPU: 8.0 MiB (experts of 1 layer)");
  Placement cpu;
  cpu.add({"blk.0.ffn_up_exps.weight", GgmlType::F32, 2 << 20, kCpu, {kCpu, kCpu}});
  EXPECT_EQ(cpu.device_summary(), "CPU: 2.0 MiB");
}

}  // namespace
}  // namespace moeserve
