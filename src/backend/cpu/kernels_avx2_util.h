// Helpers shared by the AVX2 kernel files (each function carries its target attribute, so the
// including files build with the project's default flags), and the glue that turns a kernel
// written for NC activation columns into the table's single-column and multi-column entries.
//
// A multi-column kernel decodes each weight block once and keeps one set of accumulators per
// column; every column goes through exactly the operations of the single-column instance, so
// vec_dot_cols(..., out)[c] == vec_dot(n, w, a[c]) bit for bit whatever the column grouping.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/kernels.h"

#define MOESERVE_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace moeserve::cpu::avx2 {

MOESERVE_AVX2 inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  lo = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, lo);
  return _mm_cvtss_f32(_mm_add_ss(lo, sh));
}

MOESERVE_AVX2 inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

MOESERVE_AVX2 inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Sum of products of 32 signed bytes, as 8 int32 lanes: |x| (unsigned) times y with x's sign.
MOESERVE_AVX2 inline __m256i dot_i8(__m256i x, __m256i y) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// The same with |x| computed once for several columns.
MOESERVE_AVX2 inline __m256i dot_abs_i8(__m256i x_abs, __m256i x, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(x_abs, _mm256_sign_epi8(y, x)), _mm256_set1_epi16(1));
}

// 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..15), then high nibbles (16..31).
MOESERVE_AVX2 inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// 32 bits -> 32 bytes, 0xFF where bit b of `bits` is set (byte b).
MOESERVE_AVX2 inline __m256i bit_mask(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(bits)),
                                             _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202,
                                                                0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

MOESERVE_AVX2 inline __m256i two_scales(int lo, int hi) {
  return _mm256_set_m128i(_mm_set1_epi16(int16_t(hi)), _mm_set1_epi16(int16_t(lo)));
}

}  // namespace moeserve::cpu::avx2

// From `template <int NC> void NAME(int64_t n, const void* w, const void* const* a, float* out)`:
// NAME_one (a VecDotFn) and NAME_cols (a VecDotColsFn for 1..kMaxCols columns), the latter in
// groups of at most MAXNC columns (kernels whose per-column work dominates gain nothing from more
// columns than the registers hold).
#define MOESERVE_AVX2_COLS(NAME, MAXNC)                                                               \
  MOESERVE_AVX2 float NAME##_one(int64_t n, const void* w, const void* a) {                           \
    float r;                                                                                          \
    NAME<1>(n, w, &a, &r);                                                                            \
    return r;                                                                                         \
  }                                                                                                   \
  MOESERVE_AVX2 void NAME##_cols(int64_t n, const void* w, const void* const* a, int ncols, float* out) { \
    static_assert(kMaxCols == 8 && (MAXNC == 4 || MAXNC == 8));                                       \
    for (; ncols > MAXNC; ncols -= MAXNC, a += MAXNC, out += MAXNC) NAME<MAXNC>(n, w, a, out);        \
    switch (ncols) {                                                                                  \
      case 1: NAME<1>(n, w, a, out); break;                                                           \
      case 2: NAME<2>(n, w, a, out); break;                                                           \
      case 3: NAME<3>(n, w, a, out); break;                                                           \
      case 4: NAME<4>(n, w, a, out); break;                                                           \
      case 5: NAME<MAXNC == 8 ? 5 : 1>(n, w, a, out); break;                                          \
      case 6: NAME<MAXNC == 8 ? 6 : 1>(n, w, a, out); break;                                          \
      case 7: NAME<MAXNC == 8 ? 7 : 1>(n, w, a, out); break;                                          \
      default: NAME<MAXNC == 8 ? 8 : 1>(n, w, a, out); break;                                         \
    }                                                                                                 \
  }

#define MOESERVE_INSTALL_COLS(K, TYPE, NAME)          \
  do {                                                \
    (K).vec_dot[size_t(GgmlType::TYPE)] = NAME##_one; \
    (K).vec_dot_cols[size_t(GgmlType::TYPE)] = NAME##_cols; \
  } while (0)

#endif  // __x86_64__
