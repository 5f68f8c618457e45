// Where each weight of a model lives, chosen before loading from the file's tensor names, its
// layer count and llama-server's manual placement flags (design §4):
//   -ngl N          the LAST N repeating layers on the GPU; the output head (output_norm, output)
//                   too when N > n_layer; unset or negative: every layer and the head;
//   --n-cpu-moe N   the routed-expert tensors (`*_exps`) of layers 0..N-1 stay in RAM;
//   --cpu-moe       those of every layer stay in RAM;
//   -ot REGEX=DEV   tensors whose name matches REGEX (searched, as std::regex_search does) go to
//                   DEV (CPU, CUDA0, ...); rules are tried in order and the first match wins.
// Precedence as in llama.cpp: -ot rules, then the expert rules, then the layer rule. The input
// embedding (token_embd) stays in RAM: one row per token is read, the GPU gains nothing from it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backend/tensor.h"
#include "gguf/gguf_file.h"

namespace moeserve {

struct PlacementFlags {
  std::optional<int> n_gpu_layers;  // -ngl; unset or negative: all layers and the output head
  int n_cpu_moe = 0;                // --n-cpu-moe N
  bool cpu_moe = false;             // --cpu-moe
  std::vector<std::pair<std::string, std::string>> overrides;  // -ot REGEX=DEVICE, in order

  // Whether the user gave any placement flag at all.
  bool any() const { return n_gpu_layers || n_cpu_moe > 0 || cpu_moe || !overrides.empty(); }
};

// "CPU" -> cpu, "CUDA<n>" -> cuda n (case-insensitive, as llama.cpp's device names); anything else
// is an Error naming `flag` and the accepted names.
DeviceId parse_device_name(std::string_view name, std::string_view flag);

// The layer of a per-layer tensor ("blk.12.attn_q.weight" -> 12), nullopt for the others.
std::optional<int64_t> tensor_layer(std::string_view name);
// A stacked routed-expert tensor (ffn_gate_exps, ffn_up_exps, ffn_down_exps, ffn_gate_up_exps).
bool is_expert_tensor(std::string_view name);

class PlacementPlan {
 public:
  // Everything on the CPU (a CPU-only run).
  PlacementPlan() = default;
  // `gpus`: the accelerators present (the first takes the GPU layers). -ot devices must be CPU or
  // one of them; the three tensors of a layer's experts must end up on one device (they run as
  // one op). Errors name the flag and the tensor.
  PlacementPlan(const PlacementFlags& flags, const std::vector<std::string>& tensor_names, int64_t n_layer,
                const std::vector<DeviceId>& gpus);

  DeviceId device_of(const std::string& name) const;
  // Whether some / every tensor of the file is placed on `device`.
  bool uses(DeviceId device) const;
  bool only(DeviceId device) const;
  // Every tensor's device, by name.
  const std::map<std::string, DeviceId>& devices() const { return devices_; }

 private:
  struct Rule {
    std::string pattern;
    std::regex re;
    DeviceId device;
  };
  // The device of the first -ot rule matching `name`, if any.
  std::optional<DeviceId> override_of(const std::string& name) const;
  DeviceId by_rules(const std::string& name) const;

  std::vector<Rule> rules_;
  int n_cpu_moe_ = 0;
  int64_t n_layer_ = 0;
  int64_t first_gpu_layer_ = 0;  // layers >= this are on the GPU
  bool output_on_gpu_ = false;
  DeviceId gpu_{};
  std::map<std::string, DeviceId> devices_;
};

// The plan for a model file: its tensor names and layer count (`<arch>.block_count`).
PlacementPlan plan_for_file(const gguf::GgufFile& file, const PlacementFlags& flags, const std::vector<DeviceId>& gpus);

}  // namespace moeserve
