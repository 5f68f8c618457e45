#include "model/placement_plan.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "core/error.h"
#include "model/gguf_meta.h"

namespace moeserve {
namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool is_input_tensor(std::string_view name) {
  return name.starts_with("token_embd") || name.starts_with("position_embd") || name.starts_with("token_types");
}

}  // namespace

DeviceId parse_device_name(std::string_view name, std::string_view flag) {
  const std::string u = upper(name);
  if (u == "CPU") return DeviceId{DeviceKind::cpu, 0};
  if (u.starts_with("CUDA") && u.size() > 4) {
    int index = -1;
    const char* first = u.data() + 4;
    const char* last = u.data() + u.size();
    const auto [end, ec] = std::from_chars(first, last, index);
    if (ec == std::errc() && end == last && index >= 0) return DeviceId{DeviceKind::cuda, index};
  }
  fail("option ", flag, ": unknown device '", name, "' (devices are CPU, CUDA0, CUDA1, ...)");
}

std::optional<int64_t> tensor_layer(std::string_view name) {
  if (!name.starts_with("blk.")) return std::nullopt;
  const char* first = name.data() + 4;
  const char* last = name.data() + name.size();
  int64_t il = -1;
  const auto [end, ec] = std::from_chars(first, last, il);
  if (ec != std::errc() || end == last || *end != '.' || il < 0) return std::nullopt;
  return il;
}

bool is_expert_tensor(std::string_view name) {
  return tensor_layer(name).has_value() && name.find("_exps") != std::string_view::npos;
}

PlacementPlan::PlacementPlan(const PlacementFlags& flags, const std::vector<std::string>& tensor_names,
                             int64_t n_layer, const std::vector<DeviceId>& gpus)
    : n_cpu_moe_(flags.cpu_moe ? INT32_MAX : flags.n_cpu_moe), n_layer_(n_layer) {
  if (gpus.empty()) fail("internal: a placement plan needs a GPU");
  gpu_ = gpus.front();
  for (const auto& [pattern, device_text] : flags.overrides) {
    const DeviceId device = parse_device_name(device_text, "-ot");
    if (device.kind != DeviceKind::cpu && std::find(gpus.begin(), gpus.end(), device) == gpus.end()) {
      std::string present;
      for (DeviceId g : gpus) present += str_cat(present.empty() ? "" : ", ", device_name(g));
      fail("option -ot: device ", device_name(device), " (in '", pattern, "=", device_text,
           "') is not present; this machine has ", present, " and CPU");
    }
    if (device.kind != DeviceKind::cpu && device != gpu_) {
      fail("option -ot: device ", device_name(device), " (in '", pattern, "=", device_text, "'): only ",
           device_name(gpu_), " can hold weights for now");
    }
    try {
      rules_.push_back(Rule{pattern, std::regex(pattern, std::regex::ECMAScript | std::regex::optimize), device});
    } catch (const std::regex_error& e) {
      fail("option -ot: '", pattern, "' is not a valid regular expression (", e.what(), ")");
    }
  }
  // -ngl N: the last N layers; N > n_layer also takes the output head (llama.cpp's n_layer + 1
  // "layers", the head counted as the last one).
  const int64_t ngl = !flags.n_gpu_layers || *flags.n_gpu_layers < 0 ? n_layer + 1 : *flags.n_gpu_layers;
  first_gpu_layer_ = std::max<int64_t>(0, n_layer - ngl);
  output_on_gpu_ = ngl > n_layer;

  for (const std::string& name : tensor_names) devices_[name] = by_rules(name);
  // The embedding stays in RAM as llama.cpp keeps it, unless every other weight is on the GPU:
  // then it goes there too, so that a step has no host op and decode replays as a CUDA graph.
  const bool rest_on_gpu = std::all_of(devices_.begin(), devices_.end(),
                                       [&](const auto& d) { return is_input_tensor(d.first) || d.second == gpu_; });
  for (auto& [name, device] : devices_) {
    if (rest_on_gpu && is_input_tensor(name) && !override_of(name)) device = gpu_;
  }

  // A layer's experts run as one op (moe_experts) on one device.
  std::map<int64_t, std::pair<std::string, DeviceId>> expert_home;
  for (const auto& [name, device] : devices_) {
    if (!is_expert_tensor(name)) continue;
    const auto [it, inserted] = expert_home.try_emplace(*tensor_layer(name), name, device);
    if (!inserted && it->second.second != device) {
      fail("placement: ", it->second.first, " is on ", device_name(it->second.second), " but ", name, " on ",
           device_name(device), "; the expert tensors of a layer run as one operation and must share a device"
           " (adjust -ot)");
    }
  }
}

std::optional<DeviceId> PlacementPlan::override_of(const std::string& name) const {
  for (const Rule& r : rules_) {
    if (std::regex_search(name, r.re)) return r.device;
  }
  return std::nullopt;
}

DeviceId PlacementPlan::by_rules(const std::string& name) const {
  if (const std::optional<DeviceId> d = override_of(name)) return *d;
  const DeviceId cpu{DeviceKind::cpu, 0};
  if (is_input_tensor(name)) return cpu;
  const std::optional<int64_t> il = tensor_layer(name);
  if (!il) return output_on_gpu_ ? gpu_ : cpu;
  if (is_expert_tensor(name) && *il < n_cpu_moe_) return cpu;
  return *il >= first_gpu_layer_ ? gpu_ : cpu;
}

DeviceId PlacementPlan::device_of(const std::string& name) const {
  const auto it = devices_.find(name);
  return it != devices_.end() ? it->second : by_rules(name);
}

bool PlacementPlan::uses(DeviceId device) const {
  return std::any_of(devices_.begin(), devices_.end(), [&](const auto& d) { return d.second == device; });
}

bool PlacementPlan::only(DeviceId device) const {
  return std::all_of(devices_.begin(), devices_.end(), [&](const auto& d) { return d.second == device; });
}

PlacementPlan plan_for_file(const gguf::GgufFile& file, const PlacementFlags& flags, const std::vector<DeviceId>& gpus) {
  const std::string arch = file.architecture();
  if (arch.empty()) fail(file.path(), ": missing key general.architecture");
  const int64_t n_layer = GgufMeta(file, arch).count("block_count");
  std::vector<std::string> names;
  for (const gguf::TensorInfo& t : file.tensors()) names.push_back(t.name);
  return PlacementPlan(flags, names, n_layer, gpus);
}

}  // namespace moeserve
