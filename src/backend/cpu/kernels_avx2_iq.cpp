// AVX2 dot products of the i-quants the large MoE GGUFs use most (IQ2_XXS, IQ2_XS, IQ3_XXS) with
// Q8_K activations. Per 32 elements: grid magnitudes gathered into one vector, the element signs
// applied to the activations (x*y = |x| * (y with x's sign)), unsigned x signed byte products
// summed in pairs, then each 16-element half weighted by its integer scale. The integer sums equal
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

// Four sign bytes (one per 8 elements, bit b = element b negative) -> a byte mask of 32 lanes.
MOESERVE_AVX2 inline __m256i sign_mask(uint32_t signs) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int32_t(signs)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bits = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bits), bits);
}

// 32 magnitudes (unsigned) times 32 activations, signed by `mask`; each 16-element half weighted
// by its scale: 8 int32 lanes.
MOESERVE_AVX2 inline __m256i scaled_dot(__m256i mags, __m256i mask, const int8_t* y, int scale_lo, int scale_hi) {
  const __m256i yv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y));
  const __m256i ys = _mm256_sub_epi8(_mm256_xor_si256(yv, mask), mask);
  const __m256i p16 = _mm256_maddubs_epi16(mags, ys);
  const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(int16_t(scale_hi)), _mm_set1_epi16(int16_t(scale_lo)));
  return _mm256_madd_epi16(p16, scales);
}

inline uint32_t signs4(uint32_t aux) {
  return uint32_t(ksigns_iq2xs[aux & 127]) | uint32_t(ksigns_iq2xs[(aux >> 7) & 127]) << 8 |
         uint32_t(ksigns_iq2xs[(aux >> 14) & 127]) << 16 | uint32_t(ksigns_iq2xs[(aux >> 21) & 127]) << 24;
}

MOESERVE_AVX2 float vec_dot_iq2_xxs(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ2_XXS*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const auto* q = reinterpret_cast<const uint8_t*>(x[i].qs);
    __m256i isum = _mm256_setzero_si256();
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const uint8_t* g = q + 8 * ib;  // 4 grid indices, then 4 x 7 sign bits + a 4-bit scale
      const uint32_t aux = load_u32(g + 4);
      const __m256i mags = _mm256_set_epi64x(int64_t(iq2xxs_grid[g[3]]), int64_t(iq2xxs_grid[g[2]]),
                                             int64_t(iq2xxs_grid[g[1]]), int64_t(iq2xxs_grid[g[0]]));
      const int s = int(2 * (aux >> 28) + 1);
      isum = _mm256_add_epi32(isum, scaled_dot(mags, sign_mask(signs4(aux)), y[i].qs + 32 * ib, s, s));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(half(x[i].d) * y[i].d * kFracIq2), acc);
  }
  return hsum(acc);
}

MOESERVE_AVX2 float vec_dot_iq2_xs(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ2_XS*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    __m256i isum = _mm256_setzero_si256();
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const uint16_t* q = x[i].qs + 4 * ib;  // 9-bit grid index, 7-bit sign index
      const __m256i mags = _mm256_set_epi64x(int64_t(iq2xs_grid[q[3] & 511]), int64_t(iq2xs_grid[q[2] & 511]),
                                             int64_t(iq2xs_grid[q[1] & 511]), int64_t(iq2xs_grid[q[0] & 511]));
      const uint32_t signs = uint32_t(ksigns_iq2xs[q[0] >> 9]) | uint32_t(ksigns_iq2xs[q[1] >> 9]) << 8 |
                             uint32_t(ksigns_iq2xs[q[2] >> 9]) << 16 | uint32_t(ksigns_iq2xs[q[3] >> 9]) << 24;
      const int lo = 2 * (x[i].scales[ib] & 0xF) + 1, hi = 2 * (x[i].scales[ib] >> 4) + 1;
      isum = _mm256_add_epi32(isum, scaled_dot(mags, sign_mask(signs), y[i].qs + 32 * ib, lo, hi));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(half(x[i].d) * y[i].d * kFracIq2), acc);
  }
  return hsum(acc);
}

MOESERVE_AVX2 float vec_dot_iq3_xxs(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockIQ3_XXS*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    __m256i isum = _mm256_setzero_si256();
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const uint8_t* g = x[i].qs + 8 * ib;  // 8 grid indices of 4 elements each
      const uint32_t aux = load_u32(x[i].qs + 64 + 4 * ib);
      const __m256i mags = _mm256_setr_epi32(
          int32_t(iq3xxs_grid[g[0]]), int32_t(iq3xxs_grid[g[1]]), int32_t(iq3xxs_grid[g[2]]), int32_t(iq3xxs_grid[g[3]]),
          int32_t(iq3xxs_grid[g[4]]), int32_t(iq3xxs_grid[g[5]]), int32_t(iq3xxs_grid[g[6]]), int32_t(iq3xxs_grid[g[7]]));
      const int s = int(2 * (aux >> 28) + 1);
      isum = _mm256_add_epi32(isum, scaled_dot(mags, sign_mask(signs4(aux)), y[i].qs + 32 * ib, s, s));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(half(x[i].d) * y[i].d * kFracIq3Xxs), acc);
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
