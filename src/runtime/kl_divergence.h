// KL divergence of a model's next-token distributions from a base model's, as llama-perplexity
// computes it (--kl-divergence-base FILE, then --kl-divergence), so that files and figures compare
// across engines. The base run saves, per scored position, the log-softmax of its logits as 16-bit
// steps between the row's minimum (clamped to max - 16) and maximum, with the step and the
// minimum's log-probability as two floats in front; the file starts with "_logits_", n_ctx,
// n_vocab, n_chunk (int32 each) and the n_chunk * n_ctx evaluated tokens.
#pragma once

#include <cstdint>
#include <istream>
#include <ostream>
#include <string>
#include <vector>

namespace moeserve::kld {

// uint16 words of one saved row: the two floats, then n_vocab steps padded to an even count.
inline int64_t row_words(int64_t n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }

// Saves the log-softmax of one position's logits into row (row_words(n_vocab) words); returns the
// negative log-likelihood of `target`, in the arithmetic llama-perplexity uses for it.
double encode_row(const float* logits, int64_t n_vocab, int32_t target, uint16_t* row);

// What a base file holds before its rows.
struct BaseHeader {
  int32_t n_ctx = 0, n_vocab = 0, n_chunk = 0;
  std::vector<int32_t> tokens;  // n_chunk * n_ctx
};
void write_header(std::ostream& out, const BaseHeader& h);
// Reads and checks the header; `path` names the file in errors.
BaseHeader read_header(std::istream& in, const std::string& path);

// Sums over scored positions of the model (Q) against the base.
class Stats {
 public:
  // What one position contributes: from the model's logits, the base's saved row and the token
  // that followed (independent of other positions: measured in parallel, added in order).
  struct Position {
    float nll, nll_base, p_diff;  // p_diff: the target's probability, Q - base
    double kld;
    bool same_top;
  };
  static Position measure(const float* logits, int64_t n_vocab, const uint16_t* base_row, int32_t target);
  void add(const Position& p);
  // measure + add; returns the position's KL divergence.
  double add(const float* logits, int64_t n_vocab, const uint16_t* base_row, int32_t target) {
    const Position p = measure(logits, n_vocab, base_row, target);
    add(p);
    return p.kld;
  }

  int64_t count() const { return count_; }
  // One line of the per-chunk table (running values), and the table's header.
  static std::string table_header();
  std::string chunk_row(int64_t chunk) const;
  // The closing statistics (perplexity, KL divergence, token probability), as llama-perplexity.
  std::string summary() const;

 private:
  double sum_nll_ = 0, sum_nll2_ = 0, sum_nll_base_ = 0, sum_nll_base2_ = 0, sum_nll_nll_base_ = 0;
  double sum_kld_ = 0, sum_kld2_ = 0, sum_p_diff_ = 0, sum_p_diff2_ = 0, sum_p_diff4_ = 0;
  int64_t n_same_top_ = 0, count_ = 0;
  std::vector<float> kld_values_, p_diff_values_;
};

}  // namespace moeserve::kld
