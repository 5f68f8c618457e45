#include "gguf/gguf_summary.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string_view>

#include "core/error.h"

namespace moeserve::gguf {
namespace {

// N of a "blk.N.<rest>" name, and <rest>.
std::optional<std::pair<int64_t, std::string_view>> layer_of(std::string_view name) {
  constexpr std::string_view kPrefix = "blk.";
  if (name.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  size_t i = kPrefix.size();
  int64_t n = 0;
  const size_t first_digit = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && i - first_digit < 9) n = n * 10 + (name[i++] - '0');
  if (i == first_digit || i >= name.size() || name[i] != '.') return std::nullopt;
  return std::make_pair(n, name.substr(i + 1));
}

bool starts_with_any(std::string_view s, std::initializer_list<std::string_view> prefixes) {
  for (std::string_view p : prefixes) {
    if (s.substr(0, p.size()) == p) return true;
  }
  return false;
}

// The name of a layer with a recurrent mixer (ssm_* tensors): the Gated DeltaNet of Qwen3-Next and
// Qwen3.5, a generic word for the rest (Mamba, RWKV-like, ...).
std::string recurrent_kind(const std::string& arch) {
  if (arch == "qwen3next" || arch == "qwen35" || arch == "qwen35moe") return "delta-net";
  return "recurrent";
}

// An integer hparam, or nullopt when absent or not a non-negative integer: the summary describes
// whatever it is given and leaves validation of hparams to the model loader.
std::optional<uint64_t> uint_key(const GgufFile& file, const std::string& key) {
  const Value* v = file.find(key);
  if (!v || !v->is_integer()) return std::nullopt;
  if (v->type == ValueType::INT8 || v->type == ValueType::INT16 || v->type == ValueType::INT32 ||
      v->type == ValueType::INT64) {
    const int64_t i = std::get<int64_t>(v->data);
    return i < 0 ? std::nullopt : std::optional<uint64_t>(uint64_t(i));
  }
  return std::get<uint64_t>(v->data);
}

std::vector<GgmlType> types_by_bytes(const std::map<GgmlType, uint64_t>& bytes) {
  std::vector<std::pair<GgmlType, uint64_t>> v(bytes.begin(), bytes.end());
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<GgmlType> out;
  for (const auto& [type, n] : v) out.push_back(type);
  return out;
}

std::string join_types(const std::vector<GgmlType>& types) {
  std::string out;
  for (GgmlType t : types) out += (out.empty() ? "" : "/") + std::string(type_name(t));
  return out;
}

}  // namespace

void TensorTotals::add(const TensorInfo& t) {
  n_tensors += 1;
  n_elements += uint64_t(t.n_elements());
  n_bytes += t.n_bytes;
}

ModelSummary summarize(const GgufFile& file) {
  ModelSummary s;
  // Read leniently (no throw on a wrong type): the summary describes whatever it is given.
  if (const Value* v = file.find("general.architecture"); v && v->type == ValueType::STRING) {
    s.architecture = v->as_string();
  }

  struct LayerInfo {
    TensorTotals totals;
    bool recurrent = false;
    bool attention = false;
  };
  std::map<int64_t, LayerInfo> layers;
  std::map<GgmlType, TensorTotals> by_type;
  std::map<GgmlType, uint64_t> expert_bytes, all_bytes;
  std::optional<uint64_t> experts_from_tensors;
  for (const TensorInfo& t : file.tensors()) {
    s.total.add(t);
    by_type[t.type].add(t);
    all_bytes[t.type] += t.n_bytes;
    const bool is_expert = t.name.find("_exps.") != std::string::npos;
    if (is_expert) {
      expert_bytes[t.type] += t.n_bytes;
      if (!experts_from_tensors) experts_from_tensors = uint64_t(t.ne[2]);
    }
    if (t.name.find("_shexp.") != std::string::npos) s.shared_expert = true;
    const auto layer = layer_of(t.name);
    if (!layer) {
      s.outside_layers.add(t);
      continue;
    }
    LayerInfo& info = layers[layer->first];
    info.totals.add(t);
    const std::string_view rest = layer->second;
    if (starts_with_any(rest, {"ssm_"})) info.recurrent = true;
    if (starts_with_any(rest, {"attn_q.", "attn_k.", "attn_v.", "attn_qkv."})) info.attention = true;
  }

  const std::string prefix = s.architecture + ".";
  s.n_layers = int64_t(uint_key(file, prefix + "block_count").value_or(layers.size()));
  std::map<std::string, int64_t> kinds;
  for (const auto& [index, info] : layers) {
    // A recurrent layer may also hold attn_* projections (Qwen3-Next's attn_qkv/attn_gate feed the
    // delta net), so ssm_* decides first.
    std::string kind = info.recurrent ? recurrent_kind(s.architecture) : info.attention ? "attention" : "other";
    kinds[kind] += 1;
    s.by_layer.push_back({index, std::move(kind), info.totals});
  }
  s.layer_kinds.assign(kinds.begin(), kinds.end());
  std::stable_sort(s.layer_kinds.begin(), s.layer_kinds.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });

  s.n_experts = uint_key(file, prefix + "expert_count").value_or(experts_from_tensors.value_or(0));
  s.n_experts_used = uint_key(file, prefix + "expert_used_count").value_or(0);
  s.expert_types = types_by_bytes(expert_bytes);
  s.main_types = types_by_bytes(all_bytes);
  for (const auto& [type, totals] : by_type) s.by_type.push_back({type, totals});
  return s;
}

std::string ModelSummary::line() const {
  std::string out = architecture.empty() ? "(no general.architecture)" : architecture;
  out += ":";
  std::vector<std::string> parts;
  if (n_layers > 0) {
    std::string layers_part = str_cat(n_layers, n_layers == 1 ? " layer" : " layers");
    if (layer_kinds.size() > 1) {
      layers_part += " (";
      for (size_t i = 0; i < layer_kinds.size(); ++i) {
        layers_part += str_cat(i ? ", " : "", layer_kinds[i].second, " ", layer_kinds[i].first);
      }
      layers_part += ")";
    }
    parts.push_back(std::move(layers_part));
  }
  if (n_experts > 0) {
    std::string moe = str_cat(n_experts, " experts");
    if (n_experts_used > 0) moe += str_cat(" top-", n_experts_used);
    if (shared_expert) moe += " + shared";
    parts.push_back(std::move(moe));
  } else if (n_layers > 0) {
    parts.push_back("dense");
  }
  parts.push_back(str_cat(format_count(total.n_elements), " params"));
  parts.push_back(format_bytes(total.n_bytes));
  if (!expert_types.empty()) {
    parts.push_back(join_types(expert_types) + " experts");
  } else if (!main_types.empty()) {
    parts.push_back("mostly " + std::string(type_name(main_types[0])));
  } else {
    parts.push_back("no tensors");
  }
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? ", " : " ") + parts[i];
  return out;
}

std::string format_count(uint64_t n) {
  char buf[32];
  if (n >= 1000000000ull) {
    std::snprintf(buf, sizeof(buf), "%.1fB", double(n) / 1e9);
  } else if (n >= 1000000ull) {
    std::snprintf(buf, sizeof(buf), "%.1fM", double(n) / 1e6);
  } else if (n >= 1000ull) {
    std::snprintf(buf, sizeof(buf), "%.1fK", double(n) / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%llu", (unsigned long long)n);
  }
  return buf;
}

std::string format_bytes(uint64_t n) {
  char buf[32];
  const double d = double(n);
  if (n >= (1ull << 30)) {
    std::snprintf(buf, sizeof(buf), "%.1f GiB", d / double(1ull << 30));
  } else if (n >= (1ull << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", d / double(1ull << 20));
  } else if (n >= (1ull << 10)) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", d / double(1ull << 10));
  } else {
    std::snprintf(buf, sizeof(buf), "%llu bytes", (unsigned long long)n);
  }
  return buf;
}

}  // namespace moeserve::gguf
