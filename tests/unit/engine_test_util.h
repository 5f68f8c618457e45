// Decode runs for the whole-model tests: an engine for a few short sequences of F32 KV, and the
// logits of prompts decoded one token per step.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "runtime/engine.h"

namespace moeserve::test {

// A 128-token context for each of n_seq sequences, a whole prompt of each in one step, F32 K and V.
inline EngineOptions test_engine_options(int n_seq) {
  EngineOptions o;
  o.n_ctx = 128;
  o.n_seq = n_seq;
  o.n_batch = 128 * n_seq;
  o.type_k = o.type_v = GgmlType::F32;
  return o;
}

// Logits per sequence, each sequence's rows in order.
using SeqLogits = std::vector<std::vector<std::vector<float>>>;

// The prompt ids one token per step, n_seq sequences with the same prompt in the same steps
// (positions from 0): appends each step's logits to per_seq[s].
inline void decode_token_by_token(Engine& e, const std::vector<int32_t>& ids, int n_seq, SeqLogits& per_seq) {
  std::vector<BatchToken> batch;
  for (size_t i = 0; i < ids.size(); ++i) {
    batch.clear();
    for (int s = 0; s < n_seq; ++s) batch.push_back({ids[i], int32_t(i), s, true});
    e.decode(batch);
    for (int s = 0; s < n_seq; ++s) per_seq[size_t(s)].emplace_back(e.logits(s), e.logits(s) + e.n_vocab());
  }
}

// The rows of every sequence, sequence after sequence.
inline std::vector<std::vector<float>> sequence_after_sequence(SeqLogits per_seq) {
  std::vector<std::vector<float>> out;
  for (auto& seq : per_seq) {
    for (auto& l : seq) out.push_back(std::move(l));
  }
  return out;
}

}  // namespace moeserve::test
