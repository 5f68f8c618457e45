// Shared by the split-slots tests (tests/unit/test_split_slots.cpp with a stand-in for the GPU,
// tests/gpu/test_cuda_split_slots.cpp with CUDA): the MOESERVE_SPLIT_GPU_SLOTS setting for a scope,
// and the logits of a decode run.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

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

// Token by token, n_seq sequences with the same prompt in the same steps (steps of n_seq tokens):
// the logits of every step, sequence after sequence.
inline std::vector<std::vector<float>> decode_logits(const Model& model, Backend& be, const std::vector<int32_t>& ids,
                                                     int n_seq) {
  EngineOptions o;
  o.n_ctx = 128;
  o.n_seq = n_seq;
  o.n_batch = 128 * n_seq;
  o.type_k = o.type_v = GgmlType::F32;
  Engine e(model, be, o);
  std::vector<std::vector<std::vector<float>>> per_seq(static_cast<size_t>(n_seq));
  std::vector<BatchToken> batch;
  for (size_t i = 0; i < ids.size(); ++i) {
    batch.clear();
    for (int s = 0; s < n_seq; ++s) batch.push_back({ids[i], int32_t(i), s, true});
    e.decode(batch);
    for (int s = 0; s < n_seq; ++s) per_seq[size_t(s)].emplace_back(e.logits(s), e.logits(s) + e.n_vocab());
  }
  std::vector<std::vector<float>> out;
  for (auto& seq : per_seq) {
    for (auto& l : seq) out.push_back(std::move(l));
  }
  return out;
}

}  // namespace moeserve::test
