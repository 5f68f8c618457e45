// Scale packing shared by the K-quant dequantizers and quantizers (quants.md §2).
#pragma once

#include <cstdint>

namespace moeserve::quant {

// Q4_K/Q5_K: 8 (6-bit scale, 6-bit min) pairs packed into 12 bytes; j = 0..7.
struct ScaleMin {
  uint8_t scale;
  uint8_t min;
};
ScaleMin q4k_scale_min(const uint8_t scales[12], int j);

// Q3_K: 16 signed 6-bit scales (-32..31) packed into 12 bytes; j = 0..15.
int q3k_scale(const uint8_t scales[12], int j);

}  // namespace moeserve::quant
