// AVX2 dot products of the K-quants with Q8_K activations, for 1..kMaxCols activation columns at
// once (kernels_avx2_util.h): the weight block's bits are unpacked once, then each column adds
// unsigned weight x signed activation byte products, weighted by the integer sub-block scales.
// Offsets and mins (Q2_K, Q4_K, Q5_K: d_min * min; Q3_K, Q6_K: the stored bias) come from the
// activations' 16-element sums (bsums). The integer sums equal the references' in
// src/quant/k_quants.cpp; only the final float sum is ordered differently.
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)
#include <type_traits>

#include "backend/cpu/kernels_avx2_util.h"
#include "quant/blocks.h"
#include "quant/k_quants.h"

namespace moeserve::cpu {
namespace {

using namespace quant;
using namespace avx2;

// Unsigned weights (< 128) times the activation bytes, each pair of int16 sums weighted by scale.
MOESERVE_AVX2 inline __m256i scaled(__m256i q, const int8_t* y, __m256i scale) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(q, load256(y)), scale);
}

// Q2_K / Q3_K: element 128h + 32j + l keeps its low 2 bits in qs[32h + l] at bit 2j; one scale
// per 16 elements. Q2_K: unsigned values, 4-bit scale and min per 16. Q3_K: the high bit
// (hmask[l] bit 4h + j) set means +0, clear means -4: the kernel multiplies the unsigned 3-bit
// value and subtracts 4 * scale * (sum of the activations) from bsums.
template <int NC, bool kQ3>
MOESERVE_AVX2 void dot_q23_k(int64_t n, const void* w, const void* const* a, float* out) {
  using Block = std::conditional_t<kQ3, BlockQ3_K, BlockQ2_K>;
  const auto* x = static_cast<const Block*>(w);
  const BlockQ8_K* y[NC];
  __m256 acc[NC];
  float mins[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_K*>(a[c]);
    acc[c] = _mm256_setzero_ps();
    mins[c] = 0;
  }
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int sc[16], mn[16];
    for (int s = 0; s < 16; ++s) {
      if constexpr (kQ3) {
        sc[s] = q3k_scale(x[i].scales, s);
        mn[s] = 4 * sc[s];
      } else {
        sc[s] = x[i].scales[s] & 0xF;
        mn[s] = x[i].scales[s] >> 4;
      }
    }
    __m256i isum[NC];
    for (int c = 0; c < NC; ++c) isum[c] = _mm256_setzero_si256();
    __m256i hm = _mm256_setzero_si256();
    if constexpr (kQ3) hm = load256(x[i].hmask);
    for (int h = 0; h < 2; ++h) {
      const __m256i q2 = load256(x[i].qs + 32 * h);
      for (int j = 0; j < 4; ++j) {
        __m256i v = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * j), three);
        if constexpr (kQ3) {
          v = _mm256_or_si256(v, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), one), 2));
        }
        const __m256i scales = two_scales(sc[8 * h + 2 * j], sc[8 * h + 2 * j + 1]);
#pragma GCC unroll 4
        for (int c = 0; c < NC; ++c) {
          isum[c] = _mm256_add_epi32(isum[c], scaled(v, y[c][i].qs + 128 * h + 32 * j, scales));
        }
      }
    }
    const float d = h2f(x[i].d);
    float dmin = d;
    if constexpr (!kQ3) dmin = h2f(x[i].dmin);
    for (int c = 0; c < NC; ++c) {
      int msum = 0;
      for (int s = 0; s < 16; ++s) msum += mn[s] * y[c][i].bsums[s];
      acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(y[c][i].d * d), _mm256_cvtepi32_ps(isum[c]), acc[c]);
      mins[c] += y[c][i].d * dmin * float(msum);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum(acc[c]) - mins[c];
}

template <int NC>
MOESERVE_AVX2 void dot_q2_k(int64_t n, const void* w, const void* const* a, float* out) {
  dot_q23_k<NC, false>(n, w, a, out);
}
MOESERVE_AVX2_COLS(dot_q2_k, 4)

template <int NC>
MOESERVE_AVX2 void dot_q3_k(int64_t n, const void* w, const void* const* a, float* out) {
  dot_q23_k<NC, true>(n, w, a, out);
}
MOESERVE_AVX2_COLS(dot_q3_k, 4)

template <int NC, typename Block, bool kFifthBit>
MOESERVE_AVX2 void dot_q45_k(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const Block*>(w);
  const BlockQ8_K* y[NC];
  __m256 acc[NC];
  float mins[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_K*>(a[c]);
    acc[c] = _mm256_setzero_ps();
    mins[c] = 0;
  }
  const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int16_t sc[8];
    uint8_t mn[8];
    for (int s = 0; s < 8; ++s) {
      const ScaleMin sm = q4k_scale_min(x[i].scales, s);
      sc[s] = sm.scale;
      mn[s] = sm.min;
    }
    __m256i isum[NC];
    for (int c = 0; c < NC; ++c) isum[c] = _mm256_setzero_si256();
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kFifthBit) qh = load256(x[i].qh);
    for (int j = 0; j < 4; ++j) {
      const __m256i q4 = load256(x[i].qs + 32 * j);
      __m256i lo = _mm256_and_si256(q4, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low4);
      if constexpr (kFifthBit) {
        // qh[l] bit 2j (2j+1): the fifth bit of element 64j + l (64j + 32 + l).
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one), 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one), 4));
      }
      const __m256i s_lo = _mm256_set1_epi16(sc[2 * j]), s_hi = _mm256_set1_epi16(sc[2 * j + 1]);
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) {
        const int8_t* yq = y[c][i].qs + 64 * j;
        isum[c] = _mm256_add_epi32(isum[c], _mm256_add_epi32(scaled(lo, yq, s_lo), scaled(hi, yq + 32, s_hi)));
      }
    }
    const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
    for (int c = 0; c < NC; ++c) {
      int msum = 0;
      for (int s = 0; s < 8; ++s) msum += mn[s] * (y[c][i].bsums[2 * s] + y[c][i].bsums[2 * s + 1]);
      acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(y[c][i].d * d), _mm256_cvtepi32_ps(isum[c]), acc[c]);
      mins[c] += y[c][i].d * dmin * float(msum);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum(acc[c]) - mins[c];
}

template <int NC>
MOESERVE_AVX2 void dot_q4_k(int64_t n, const void* w, const void* const* a, float* out) {
  dot_q45_k<NC, BlockQ4_K, false>(n, w, a, out);
}
MOESERVE_AVX2_COLS(dot_q4_k, 4)

template <int NC>
MOESERVE_AVX2 void dot_q5_k(int64_t n, const void* w, const void* const* a, float* out) {
  dot_q45_k<NC, BlockQ5_K, true>(n, w, a, out);
}
MOESERVE_AVX2_COLS(dot_q5_k, 4)

// Q6_K: values stored +32; sum (q - 32) * y = sum q * y - 32 * sum y, the latter from bsums.
template <int NC>
MOESERVE_AVX2 void dot_q6_k(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y[NC];
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_K*>(a[c]);
    acc[c] = _mm256_setzero_ps();
  }
  const __m256i low4 = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    __m256i isum[NC];
    for (int c = 0; c < NC; ++c) isum[c] = _mm256_setzero_si256();
    for (int h2 = 0; h2 < 2; ++h2) {
      const __m256i l0 = load256(x[i].ql + 64 * h2), l1 = load256(x[i].ql + 64 * h2 + 32);
      const __m256i h = load256(x[i].qh + 32 * h2);
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_slli_epi16(_mm256_and_si256(h, two), 4)),
          _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), two), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), two), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), two), 4)),
      };
      for (int j = 0; j < 4; ++j) {
        const int8_t* sc = x[i].scales + 8 * h2 + 2 * j;  // scales of the two 16-element halves
        const __m256i scales = two_scales(sc[0], sc[1]);
#pragma GCC unroll 4
        for (int c = 0; c < NC; ++c) {
          isum[c] = _mm256_add_epi32(isum[c], scaled(q[j], y[c][i].qs + 128 * h2 + 32 * j, scales));
        }
      }
    }
    const float d = h2f(x[i].d);
    for (int c = 0; c < NC; ++c) {
      int offset = 0;
      for (int g = 0; g < QK_K / 16; ++g) offset += x[i].scales[g] * y[c][i].bsums[g];
      const __m256i total = _mm256_sub_epi32(isum[c], _mm256_setr_epi32(32 * offset, 0, 0, 0, 0, 0, 0, 0));
      acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(y[c][i].d * d), _mm256_cvtepi32_ps(total), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum(acc[c]);
}
MOESERVE_AVX2_COLS(dot_q6_k, 4)

}  // namespace

void install_avx2_k_kernels(Kernels& k) {
  MOESERVE_INSTALL_COLS(k, Q2_K, dot_q2_k);
  MOESERVE_INSTALL_COLS(k, Q3_K, dot_q3_k);
  MOESERVE_INSTALL_COLS(k, Q4_K, dot_q4_k);
  MOESERVE_INSTALL_COLS(k, Q5_K, dot_q5_k);
  MOESERVE_INSTALL_COLS(k, Q6_K, dot_q6_k);
}

}  // namespace moeserve::cpu

#endif  // __x86_64__
