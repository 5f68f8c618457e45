// What a GGUF file holds, in numbers a person checks first: layers by kind, experts, parameters,
// bytes, totals per tensor type and per layer. Derived from hparams keys and tensor names only, so
// it works for any architecture (unknown ones get the generic parts) and for files whose tensor
// data is cut short.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf_file.h"

namespace moeserve::gguf {

struct TensorTotals {
  size_t n_tensors = 0;
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  void add(const TensorInfo& t);
};

struct TypeTotals {
  GgmlType type;
  TensorTotals totals;
};

struct LayerTotals {
  int64_t layer;     // N of blk.N
  std::string kind;  // "attention", "delta-net", "recurrent" or "other"
  TensorTotals totals;
};

struct ModelSummary {
  std::string architecture;  // general.architecture, "" when absent
  int64_t n_layers = 0;      // <arch>.block_count, else the number of distinct blk.N
  std::vector<std::pair<std::string, int64_t>> layer_kinds;  // most frequent first
  uint64_t n_experts = 0;       // 0 for dense models
  uint64_t n_experts_used = 0;  // 0 when not given
  bool shared_expert = false;
  std::vector<GgmlType> expert_types;  // types of the *_exps tensors, most bytes first
  std::vector<GgmlType> main_types;    // types of all tensors, most bytes first
  TensorTotals total;
  std::vector<TypeTotals> by_type;    // in type-id order
  std::vector<LayerTotals> by_layer;  // in layer order
  TensorTotals outside_layers;        // token_embd, output, ...

  // e.g. "qwen3next: 48 layers (36 delta-net, 12 attention), 512 experts top-10 + shared,
  // 79.7B params, 23.3 GiB, IQ2_XS experts"
  std::string line() const;
};

ModelSummary summarize(const GgufFile& file);

// 79674391296 -> "79.7B", 596049920 -> "596.0M", 1234 -> "1.2K", 12 -> "12".
std::string format_count(uint64_t n);
// Binary units: "23.3 GiB", "330.6 MiB", "1.5 KiB", "12 bytes".
std::string format_bytes(uint64_t n);

}  // namespace moeserve::gguf
