// Internal to the AVX2 i-quant kernel files: signs from ksigns64 masks, the scaled 32-element dot
// and the per-column accumulators every i-quant kernel shares.
#pragma once

#if defined(__x86_64__)
#include "backend/cpu/kernels_avx2_util.h"
#include "quant/blocks.h"
#include "quant/grids.h"

namespace moeserve::cpu::avx2 {

// Signs of 32 elements from four 7-bit sign indices (ksigns64: 0xFF per negative element), as
// +1 / -1 bytes for _mm256_sign_epi8.
MOESERVE_AVX2 inline __m256i signs(uint32_t s0, uint32_t s1, uint32_t s2, uint32_t s3) {
  using quant::ksigns64;
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

// Per-column state of the i-quant kernels: the float sum, and the super-block's integer sums (one
// column: two, for the even and odd 32-element groups, for instruction-level parallelism; several
// columns give that parallelism and need the registers). Integer sums are exact, so the split does
// not change any result.
template <int NC>
struct IqAcc {
  static constexpr int kSums = NC == 1 ? 2 : 1;
  const quant::BlockQ8_K* y[NC];
  __m256 acc[NC];
  __m256i sum[kSums][NC];

  MOESERVE_AVX2 explicit IqAcc(const void* const* a) {
    for (int c = 0; c < NC; ++c) {
      y[c] = static_cast<const quant::BlockQ8_K*>(a[c]);
      acc[c] = _mm256_setzero_ps();
    }
  }
  MOESERVE_AVX2 void start() {
    for (int s = 0; s < kSums; ++s) {
      for (int c = 0; c < NC; ++c) sum[s][c] = _mm256_setzero_si256();
    }
  }
  // Groups ib and ib + 1 of super-block i: magnitudes, signs and scales of each.
  MOESERVE_AVX2 void add(int64_t i, int ib, __m256i m0, __m256i sg0, __m256i sc0, __m256i m1, __m256i sg1,
                         __m256i sc1) {
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) {
      const __m256i p0 = scaled_dot(m0, sg0, y[c][i].qs + 32 * ib, sc0);
      const __m256i p1 = scaled_dot(m1, sg1, y[c][i].qs + 32 * ib + 32, sc1);
      if constexpr (kSums == 2) {
        sum[0][c] = _mm256_add_epi32(sum[0][c], p0);
        sum[1][c] = _mm256_add_epi32(sum[1][c], p1);
      } else {
        sum[0][c] = _mm256_add_epi32(sum[0][c], _mm256_add_epi32(p0, p1));
      }
    }
  }
  // d: the weight super-block's scale times its type's frac.
  MOESERVE_AVX2 void finish(int64_t i, float d) {
    for (int c = 0; c < NC; ++c) {
      const __m256i total = kSums == 2 ? _mm256_add_epi32(sum[0][c], sum[kSums - 1][c]) : sum[0][c];
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(d * y[c][i].d), acc[c]);
    }
  }
  MOESERVE_AVX2 void store(float* out) const {
    for (int c = 0; c < NC; ++c) out[c] = hsum(acc[c]);
  }
};

}  // namespace moeserve::cpu::avx2

#endif  // __x86_64__
