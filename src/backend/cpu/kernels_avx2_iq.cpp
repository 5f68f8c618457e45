// AVX2 dot products of the i-quants the large MoE GGUFs use most (IQ2_XXS, IQ2_XS, IQ3_XXS) with
// Q8_K activations. Per 32 elements: grid magnitudes gathered into one vector, the element signs
// (a 64-bit byte mask per 8 elements, ksigns64) applied to the activations (x*y = |x| * (y with
// x's sign)), unsigned x signed byte products summed in pairs, then each 16-element half weighted
// by its integer scale; two 32-element groups per iteration for instruction-level parallelism. The integer sums equal
// the reference's (src/quant/i_quants_dot.cpp); only the final float sum is ordered differently.
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/i_quants.h"

#define MOESERVE_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace moeserve::cpu {
namespace {

using namespace quant;

MOESERVE_AVX2 inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  return _mm_cvtss_f32(_mm_add_ss(lo, _mm_movehdup_ps(lo)));
}

// Signs of 32 elements from four 7-bit sign indices (ksigns64: 0xFF per negative element), as
// +1 / -1 bytes for _mm256_sign_epi8.
MOESERVE_AVX2 inline __m256i signs(uint32_t s0, uint32_t s1, uint32_t s2, uint32_t s3) {
  const __m256i mask = _mm256_set_epi64x(int64_t(ksigns64[s3]), int64_t(ksigns64[s2]), int64_t(ksigns64[s1]),
                                         int64_t(ksigns64[s0]));
  return _mm256_or_si256(mask, _mm256_set1_epi8(1));
}

// 32 magnitudes (unsigned) times 32 activations with the elements' signs; each 16-element half
// weighted by its scale (`scales`: the low half's scale in the low 128 bits, the high half's in
// the high 128 bits): 8 int32 lanes.
MOESERVE_AVX2 inline __m256i scaled_dot(__m256i mags, __m256i sgn, const int8_t* y, __m256i scales) {
  const __m256i ys = _mm256_sign_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y)), sgn);
  return _mm256_madd_epi16(_mm256_maddubs_epi16(mags, ys), scales);
}

MOESERVE_AVX2 inline __m256i two_scales(int lo, int hi) {
  return _mm256_set_m128i(_mm_set1_epi16(int16_t(hi)), _mm_set1_epi16(int16_t(lo)));
}

MOESERVE_AVX2 float vec_dot_iq2_xxs(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ2_XXS*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const auto* q = reinterpret_cast<const uint8_t*>(x[i].qs);
    __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      // Per 32 elements: 4 grid indices, then 4 x 7 sign bits and a 4-bit scale.
      const uint8_t* g0 = q + 8 * ib;
      const uint8_t* g1 = g0 + 8;
      const uint32_t a0 = load_u32(g0 + 4), a1 = load_u32(g1 + 4);
      const __m256i m0 = _mm256_set_epi64x(int64_t(iq2xxs_grid[g0[3]]), int64_t(iq2xxs_grid[g0[2]]),
                                           int64_t(iq2xxs_grid[g0[1]]), int64_t(iq2xxs_grid[g0[0]]));
      const __m256i m1 = _mm256_set_epi64x(int64_t(iq2xxs_grid[g1[3]]), int64_t(iq2xxs_grid[g1[2]]),
                                           int64_t(iq2xxs_grid[g1[1]]), int64_t(iq2xxs_grid[g1[0]]));
      const int s0 = int(2 * (a0 >> 28) + 1), s1 = int(2 * (a1 >> 28) + 1);
      sum0 = _mm256_add_epi32(sum0, scaled_dot(m0, signs(a0 & 127, (a0 >> 7) & 127, (a0 >> 14) & 127, (a0 >> 21) & 127),
                                               y[i].qs + 32 * ib, _mm256_set1_epi16(int16_t(s0))));
      sum1 = _mm256_add_epi32(sum1, scaled_dot(m1, signs(a1 & 127, (a1 >> 7) & 127, (a1 >> 14) & 127, (a1 >> 21) & 127),
                                               y[i].qs + 32 * ib + 32, _mm256_set1_epi16(int16_t(s1))));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(sum0, sum1)),
                          _mm256_set1_ps(half(x[i].d) * y[i].d * kFracIq2), acc);
  }
  return hsum(acc);
}

MOESERVE_AVX2 float vec_dot_iq2_xs(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ2_XS*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  alignas(32) uint16_t grid_idx[QK_K / 8], sign_idx[QK_K / 8];
  for (int64_t i = 0; i < n / QK_K; ++i) {
    // Each u16: a 9-bit grid index and a 7-bit sign index; split all 32 at once.
    for (int j = 0; j < QK_K / 8; j += 16) {
      const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + j));
      _mm256_store_si256(reinterpret_cast<__m256i*>(grid_idx + j), _mm256_and_si256(qv, _mm256_set1_epi16(511)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(sign_idx + j), _mm256_srli_epi16(qv, 9));
    }
    __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      const uint16_t* g0 = grid_idx + 4 * ib;
      const uint16_t* s0 = sign_idx + 4 * ib;
      const __m256i m0 = _mm256_set_epi64x(int64_t(iq2xs_grid[g0[3]]), int64_t(iq2xs_grid[g0[2]]),
                                           int64_t(iq2xs_grid[g0[1]]), int64_t(iq2xs_grid[g0[0]]));
      const __m256i m1 = _mm256_set_epi64x(int64_t(iq2xs_grid[g0[7]]), int64_t(iq2xs_grid[g0[6]]),
                                           int64_t(iq2xs_grid[g0[5]]), int64_t(iq2xs_grid[g0[4]]));
      const uint8_t sc0 = x[i].scales[ib], sc1 = x[i].scales[ib + 1];
      sum0 = _mm256_add_epi32(sum0, scaled_dot(m0, signs(s0[0], s0[1], s0[2], s0[3]), y[i].qs + 32 * ib,
                                               two_scales(2 * (sc0 & 0xF) + 1, 2 * (sc0 >> 4) + 1)));
      sum1 = _mm256_add_epi32(sum1, scaled_dot(m1, signs(s0[4], s0[5], s0[6], s0[7]), y[i].qs + 32 * ib + 32,
                                               two_scales(2 * (sc1 & 0xF) + 1, 2 * (sc1 >> 4) + 1)));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(sum0, sum1)),
                          _mm256_set1_ps(half(x[i].d) * y[i].d * kFracIq2), acc);
  }
  return hsum(acc);
}

MOESERVE_AVX2 float vec_dot_iq3_xxs(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ3_XXS*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      const uint8_t* g = x[i].qs + 8 * ib;  // 16 grid indices of 4 elements each
      const uint32_t a0 = load_u32(x[i].qs + 64 + 4 * ib), a1 = load_u32(x[i].qs + 68 + 4 * ib);
      const __m256i m0 = _mm256_setr_epi32(
          int32_t(iq3xxs_grid[g[0]]), int32_t(iq3xxs_grid[g[1]]), int32_t(iq3xxs_grid[g[2]]), int32_t(iq3xxs_grid[g[3]]),
          int32_t(iq3xxs_grid[g[4]]), int32_t(iq3xxs_grid[g[5]]), int32_t(iq3xxs_grid[g[6]]), int32_t(iq3xxs_grid[g[7]]));
      const __m256i m1 = _mm256_setr_epi32(
          int32_t(iq3xxs_grid[g[8]]), int32_t(iq3xxs_grid[g[9]]), int32_t(iq3xxs_grid[g[10]]), int32_t(iq3xxs_grid[g[11]]),
          int32_t(iq3xxs_grid[g[12]]), int32_t(iq3xxs_grid[g[13]]), int32_t(iq3xxs_grid[g[14]]), int32_t(iq3xxs_grid[g[15]]));
      sum0 = _mm256_add_epi32(sum0, scaled_dot(m0, signs(a0 & 127, (a0 >> 7) & 127, (a0 >> 14) & 127, (a0 >> 21) & 127),
                                               y[i].qs + 32 * ib, _mm256_set1_epi16(int16_t(2 * (a0 >> 28) + 1))));
      sum1 = _mm256_add_epi32(sum1, scaled_dot(m1, signs(a1 & 127, (a1 >> 7) & 127, (a1 >> 14) & 127, (a1 >> 21) & 127),
                                               y[i].qs + 32 * ib + 32, _mm256_set1_epi16(int16_t(2 * (a1 >> 28) + 1))));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(sum0, sum1)),
                          _mm256_set1_ps(half(x[i].d) * y[i].d * kFracIq3Xxs), acc);
  }
  return hsum(acc);
}

}  // namespace

void install_avx2_iq_kernels(Kernels& k) {
  k.vec_dot[size_t(GgmlType::IQ2_XXS)] = vec_dot_iq2_xxs;
  k.vec_dot[size_t(GgmlType::IQ2_XS)] = vec_dot_iq2_xs;
  k.vec_dot[size_t(GgmlType::IQ3_XXS)] = vec_dot_iq3_xxs;
}

}  // namespace moeserve::cpu

#endif  // __x86_64__
