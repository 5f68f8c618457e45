// Internal: i-quant super-blocks decoded to integers, shared by the dequantizers and the dot
// products. Every i-quant value is d * scale * value * frac with small integers scale and value
// and a power-of-two frac, so (as in ggml, where the products are exact too) the float result
// does not depend on the order of the multiplications, except for the sign of a zero.
#pragma once

#include <cstdint>

#include "quant/blocks.h"

namespace moeserve::quant {

struct IqDecoded {
  float d = 0;                  // super-block scale
  int16_t scale[QK_K / 16] = {};  // integer scale of each 16 elements
  int8_t value[QK_K] = {};        // integer value of each element
};

void decode_iq2_xxs(const BlockIQ2_XXS& b, IqDecoded& out);
void decode_iq2_xs(const BlockIQ2_XS& b, IqDecoded& out);
void decode_iq2_s(const BlockIQ2_S& b, IqDecoded& out);
void decode_iq3_xxs(const BlockIQ3_XXS& b, IqDecoded& out);
void decode_iq3_s(const BlockIQ3_S& b, IqDecoded& out);
void decode_iq1_s(const BlockIQ1_S& b, IqDecoded& out);
void decode_iq1_m(const BlockIQ1_M& b, IqDecoded& out);
void decode_iq4_xs(const BlockIQ4_XS& b, IqDecoded& out);

// frac of each type (the power of two left after making scale and value integers).
inline constexpr float kFracIq2 = 0.125f;     // (0.5 + ls) * 0.25 = (2ls + 1) / 8
inline constexpr float kFracIq3Xxs = 0.25f;   // (0.5 + ls) * 0.5 = (2ls + 1) / 4
inline constexpr float kFracIq3S = 1.0f;      // 1 + 2ls
inline constexpr float kFracIq1 = 0.125f;     // value = 8 * grid +- 1 for grid +- IQ1S_DELTA (1/8)
inline constexpr float kFracIq4Xs = 1.0f;     // ls - 32

}  // namespace moeserve::quant
