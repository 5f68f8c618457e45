// AVX2 dot products of the i-quants the large MoE GGUFs use most (IQ2_XXS, IQ2_XS, IQ3_XXS) with
// Q8_K activations. Per 32 elements: grid magnitudes gathered into one vector, the element signs
// (a 64-bit byte mask per 8 elements, ksigns64) applied to the activations (x*y = |x| * (y with
// x's sign)), unsigned x signed byte products summed in pairs, then each 16-element half weighted
// by its integer scale; two 32-element groups per iteration for instruction-level parallelism;
// 1..kMaxCols activation columns per call (kernels_avx2_util.h). The integer sums equal the
// reference's (src/quant/i_quants_dot.cpp); only the final float sum is ordered differently.
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)
#include "backend/cpu/kernels_avx2_iq.h"
#include "quant/grids.h"
#include "quant/i_quants.h"

namespace moeserve::cpu {
namespace {

using namespace quant;
using namespace avx2;

template <int NC>
MOESERVE_AVX2 void dot_iq2_xxs(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockIQ2_XXS*>(w);
  IqAcc<NC> st(a);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const auto* q = reinterpret_cast<const uint8_t*>(x[i].qs);
    st.start();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      // Per 32 elements: 4 grid indices, then 4 x 7 sign bits and a 4-bit scale.
      const uint8_t* g0 = q + 8 * ib;
      const uint8_t* g1 = g0 + 8;
      const uint32_t a0 = load_u32(g0 + 4), a1 = load_u32(g1 + 4);
      const __m256i m0 = _mm256_set_epi64x(int64_t(iq2xxs_grid[g0[3]]), int64_t(iq2xxs_grid[g0[2]]),
                                           int64_t(iq2xxs_grid[g0[1]]), int64_t(iq2xxs_grid[g0[0]]));
      const __m256i m1 = _mm256_set_epi64x(int64_t(iq2xxs_grid[g1[3]]), int64_t(iq2xxs_grid[g1[2]]),
                                           int64_t(iq2xxs_grid[g1[1]]), int64_t(iq2xxs_grid[g1[0]]));
      st.add(i, ib, m0, signs(a0 & 127, (a0 >> 7) & 127, (a0 >> 14) & 127, (a0 >> 21) & 127),
             _mm256_set1_epi16(int16_t(2 * (a0 >> 28) + 1)), m1,
             signs(a1 & 127, (a1 >> 7) & 127, (a1 >> 14) & 127, (a1 >> 21) & 127),
             _mm256_set1_epi16(int16_t(2 * (a1 >> 28) + 1)));
    }
    st.finish(i, half(x[i].d) * kFracIq2);
  }
  st.store(out);
}
MOESERVE_AVX2_COLS(dot_iq2_xxs, 8)

template <int NC>
MOESERVE_AVX2 void dot_iq2_xs(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockIQ2_XS*>(w);
  IqAcc<NC> st(a);
  alignas(32) uint16_t grid_idx[QK_K / 8], sign_idx[QK_K / 8];
  for (int64_t i = 0; i < n / QK_K; ++i) {
    // Each u16: a 9-bit grid index and a 7-bit sign index; split all 32 at once.
    for (int j = 0; j < QK_K / 8; j += 16) {
      const __m256i qv = load256(x[i].qs + j);
      _mm256_store_si256(reinterpret_cast<__m256i*>(grid_idx + j), _mm256_and_si256(qv, _mm256_set1_epi16(511)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(sign_idx + j), _mm256_srli_epi16(qv, 9));
    }
    st.start();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      const uint16_t* g0 = grid_idx + 4 * ib;
      const uint16_t* s0 = sign_idx + 4 * ib;
      const __m256i m0 = _mm256_set_epi64x(int64_t(iq2xs_grid[g0[3]]), int64_t(iq2xs_grid[g0[2]]),
                                           int64_t(iq2xs_grid[g0[1]]), int64_t(iq2xs_grid[g0[0]]));
      const __m256i m1 = _mm256_set_epi64x(int64_t(iq2xs_grid[g0[7]]), int64_t(iq2xs_grid[g0[6]]),
                                           int64_t(iq2xs_grid[g0[5]]), int64_t(iq2xs_grid[g0[4]]));
      const uint8_t sc0 = x[i].scales[ib], sc1 = x[i].scales[ib + 1];
      st.add(i, ib, m0, signs(s0[0], s0[1], s0[2], s0[3]), two_scales(2 * (sc0 & 0xF) + 1, 2 * (sc0 >> 4) + 1), m1,
             signs(s0[4], s0[5], s0[6], s0[7]), two_scales(2 * (sc1 & 0xF) + 1, 2 * (sc1 >> 4) + 1));
    }
    st.finish(i, half(x[i].d) * kFracIq2);
  }
  st.store(out);
}
MOESERVE_AVX2_COLS(dot_iq2_xs, 8)

template <int NC>
MOESERVE_AVX2 void dot_iq3_xxs(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockIQ3_XXS*>(w);
  IqAcc<NC> st(a);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    st.start();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      const uint8_t* g = x[i].qs + 8 * ib;  // 16 grid indices of 4 elements each
      const uint32_t a0 = load_u32(x[i].qs + 64 + 4 * ib), a1 = load_u32(x[i].qs + 68 + 4 * ib);
      const __m256i m0 = _mm256_setr_epi32(
          int32_t(iq3xxs_grid[g[0]]), int32_t(iq3xxs_grid[g[1]]), int32_t(iq3xxs_grid[g[2]]), int32_t(iq3xxs_grid[g[3]]),
          int32_t(iq3xxs_grid[g[4]]), int32_t(iq3xxs_grid[g[5]]), int32_t(iq3xxs_grid[g[6]]), int32_t(iq3xxs_grid[g[7]]));
      const __m256i m1 = _mm256_setr_epi32(
          int32_t(iq3xxs_grid[g[8]]), int32_t(iq3xxs_grid[g[9]]), int32_t(iq3xxs_grid[g[10]]), int32_t(iq3xxs_grid[g[11]]),
          int32_t(iq3xxs_grid[g[12]]), int32_t(iq3xxs_grid[g[13]]), int32_t(iq3xxs_grid[g[14]]), int32_t(iq3xxs_grid[g[15]]));
      st.add(i, ib, m0, signs(a0 & 127, (a0 >> 7) & 127, (a0 >> 14) & 127, (a0 >> 21) & 127),
             _mm256_set1_epi16(int16_t(2 * (a0 >> 28) + 1)), m1,
             signs(a1 & 127, (a1 >> 7) & 127, (a1 >> 14) & 127, (a1 >> 21) & 127),
             _mm256_set1_epi16(int16_t(2 * (a1 >> 28) + 1)));
    }
    st.finish(i, half(x[i].d) * kFracIq3Xxs);
  }
  st.store(out);
}
MOESERVE_AVX2_COLS(dot_iq3_xxs, 8)

}  // namespace

void install_avx2_iq_kernels(Kernels& k) {
  MOESERVE_INSTALL_COLS(k, IQ2_XXS, dot_iq2_xxs);
  MOESERVE_INSTALL_COLS(k, IQ2_XS, dot_iq2_xs);
  MOESERVE_INSTALL_COLS(k, IQ3_XXS, dot_iq3_xxs);
}

}  // namespace moeserve::cpu

#endif  // __x86_64__
