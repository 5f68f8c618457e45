// Picks the next token from logits: greedy at temperature 0, otherwise softmax(logits / T)
// restricted to the top_k most likely tokens and the smallest set reaching top_p.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace moeserve {

struct SamplerParams {
  float temperature = 0.8f;
  int top_k = 40;      // 0: no limit
  float top_p = 0.95f; // 1: no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& params) : params_(params), rng_(params.seed) {}
  int32_t sample(const float* logits, int64_t n_vocab);

 private:
  SamplerParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

int32_t argmax(const float* logits, int64_t n);

}  // namespace moeserve
