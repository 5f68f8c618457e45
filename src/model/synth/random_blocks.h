// Random but valid tensor data of any ggml weight type, for synthetic models: every block's bytes
// are random (grid indices, signs, sub-block scales: all values are legal for these formats,
// shared/spec/quants.md) except the float super-scales, which are set so that the dequantized
// values are finite with a chosen RMS. The RMS per unit scale of each type is measured once with
// the registry's reference dequantizer.
#pragma once

#include <cstdint>

#include "core/ggml_type.h"

namespace moeserve::synth {

// xoshiro256** seeded through splitmix64: fast, reproducible random bits.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  float uniform();  // [0, 1)
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }

 private:
  uint64_t s_[4];
};

uint64_t hash_name(const char* name);  // FNV-1a, to derive per-tensor seeds

class BlockFiller {
 public:
  // Throws for types that cannot hold weights here: activation-only (Q8_1, Q8_K), integer types,
  // and types without a reference dequantizer.
  explicit BlockFiller(GgmlType type);

  GgmlType type() const { return type_; }
  // n_rows rows of row_len elements (row_len a multiple of the block size, checked), dequantizing
  // to values with an RMS of about target_rms.
  void fill(uint8_t* out, int64_t row_len, int64_t n_rows, float target_rms, Rng& rng) const;

 private:
  void fill_blocks(uint8_t* out, int64_t n_blocks, float scale, Rng& rng) const;
  GgmlType type_;
  float unit_scale_ = 1.0f;  // super-scale giving dequantized RMS 1
};

}  // namespace moeserve::synth
