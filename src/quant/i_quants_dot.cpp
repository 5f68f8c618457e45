// Dot products of the i-quants with their activation formats: Q8_K for the 256-element types,
// Q8_0 for IQ4_NL. Exact integer sums per super-block, one float multiply per super-block.
#include "quant/grids.h"
#include "quant/i_quants.h"
#include "quant/quants.h"

namespace moeserve {

using namespace quant;

namespace {

// `frac` is an argument: clang 14 (the fuzz build) has no float non-type template parameters.
template <typename Block, void (*decode)(const Block&, IqDecoded&)>
float dot_iq(int64_t n, const void* w, const void* a, float frac) {
  const auto* x = blocks_of<Block>(w);
  const auto* y = blocks_of<BlockQ8_K>(a);
  IqDecoded dec;
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    decode(x[i], dec);
    int isum = 0;
    for (int g = 0; g < QK_K / 16; ++g) {
      int sub = 0;
      for (int e = 16 * g; e < 16 * g + 16; ++e) sub += dec.value[e] * y[i].qs[e];
      isum += dec.scale[g] * sub;
    }
    sum += dec.d * y[i].d * frac * float(isum);
  }
  return sum;
}

}  // namespace

float vec_dot_iq2_xxs_q8_K(int64_t n, const void* w, const void* a) {
  return dot_iq<BlockIQ2_XXS, decode_iq2_xxs>(n, w, a, kFracIq2);
}
float vec_dot_iq2_xs_q8_K(int64_t n, const void* w, const void* a) {
  return dot_iq<BlockIQ2_XS, decode_iq2_xs>(n, w, a, kFracIq2);
}
float vec_dot_iq2_s_q8_K(int64_t n, const void* w, const void* a) {
  return dot_iq<BlockIQ2_S, decode_iq2_s>(n, w, a, kFracIq2);
}
float vec_dot_iq3_xxs_q8_K(int64_t n, const void* w, const void* a) {
  return dot_iq<BlockIQ3_XXS, decode_iq3_xxs>(n, w, a, kFracIq3Xxs);
}
float vec_dot_iq3_s_q8_K(int64_t n, const void* w, const void* a) {
  return dot_iq<BlockIQ3_S, decode_iq3_s>(n, w, a, kFracIq3S);
}
float vec_dot_iq1_s_q8_K(int64_t n, const void* w, const void* a) {
  return dot_iq<BlockIQ1_S, decode_iq1_s>(n, w, a, kFracIq1);
}
float vec_dot_iq1_m_q8_K(int64_t n, const void* w, const void* a) {
  return dot_iq<BlockIQ1_M, decode_iq1_m>(n, w, a, kFracIq1);
}
float vec_dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a) {
  return dot_iq<BlockIQ4_XS, decode_iq4_xs>(n, w, a, kFracIq4Xs);
}

float vec_dot_iq4_nl_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<BlockIQ4_NL>(w);
  const auto* y = blocks_of<BlockQ8_0>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    int isum = 0;
    for (int j = 0; j < QK / 2; ++j) {
      isum += kvalues_iq4nl[x[i].qs[j] & 0xF] * y[i].qs[j] + kvalues_iq4nl[x[i].qs[j] >> 4] * y[i].qs[j + QK / 2];
    }
    sum += half(x[i].d) * half(y[i].d) * float(isum);
  }
  return sum;
}

}  // namespace moeserve
