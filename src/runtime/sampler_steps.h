// The individual steps of the sampling chain (sampler.h), each on a list of candidate tokens.
// Semantics are llama.cpp's (src/llama-sampling.cpp, read for behaviour only): every step keeps
// at least one token, and at least `min_keep` where it truncates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moeserve {

struct Candidate {
  int32_t token;
  float logit;
  float p;  // probability, valid after softmax()
};

// p = softmax(logit) over the list (double accumulation).
void softmax(std::vector<Candidate>& cur);

// Keeps the k highest logits, sorted best first (k <= 0 or k >= size: unchanged).
void top_k(std::vector<Candidate>& cur, int32_t k);

// Locally typical sampling: keeps the tokens whose surprise is closest to the entropy until their
// mass exceeds p (p >= 1: unchanged).
void typical_p(std::vector<Candidate>& cur, float p, size_t min_keep);

// Nucleus: the fewest most likely tokens whose mass reaches p (p >= 1: unchanged).
void top_p(std::vector<Candidate>& cur, float p, size_t min_keep);

// Keeps tokens with probability >= p * the highest probability (p <= 0: unchanged).
void min_p(std::vector<Candidate>& cur, float p, size_t min_keep);

// Divides logits by t; t <= 0 keeps only the highest logit (lowest id on ties).
void temperature(std::vector<Candidate>& cur, float t);

// Index of the highest logit, lowest token id on ties.
size_t argmax(const std::vector<Candidate>& cur);

}  // namespace moeserve
