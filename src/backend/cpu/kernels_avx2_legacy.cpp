// AVX2 dot products of the remaining 32-element formats: Q5_0 with Q8_0 activations, Q4_1 and
// Q5_1 (an offset m per block) with Q8_1 activations, whose s = d * sum(q) meets the offset. For
// 1..kMaxCols activation columns at once (kernels_avx2_util.h). Integer sums equal the
// references' (src/quant/legacy.cpp); only the float sums differ in order.
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)
#include <cstring>
#include <type_traits>

#include "backend/cpu/kernels_avx2_util.h"
#include "quant/blocks.h"

namespace moeserve::cpu {
namespace {

using namespace quant;
using namespace avx2;

// kFive: a fifth bit per element in qh (bit j for element j). kMin: unsigned values plus d_min
// offset (Q4_1, Q5_1); otherwise values centred by -16 (Q5_0).
template <int NC, typename Block, bool kFive, bool kMin>
MOESERVE_AVX2 void dot_legacy(int64_t n, const void* w, const void* const* a, float* out) {
  using Act = std::conditional_t<kMin, BlockQ8_1, BlockQ8_0>;
  const auto* x = static_cast<const Block*>(w);
  const Act* y[NC];
  __m256 acc[NC];
  float mins[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const Act*>(a[c]);
    acc[c] = _mm256_setzero_ps();
    mins[c] = 0;
  }
  for (int64_t i = 0; i < n / QK; ++i) {
    __m256i q = unpack_nibbles(x[i].qs);
    if constexpr (kFive) {
      uint32_t qh;
      std::memcpy(&qh, x[i].qh, sizeof qh);
      q = _mm256_or_si256(q, _mm256_and_si256(bit_mask(qh), _mm256_set1_epi8(0x10)));
    }
    if constexpr (!kMin) q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
    const __m256i aq = kMin ? q : _mm256_sign_epi8(q, q);
    const float d = h2f(x[i].d);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      const __m256i yv = load256(y[c][i].qs);
      const __m256i p = kMin ? _mm256_madd_epi16(_mm256_maddubs_epi16(q, yv), _mm256_set1_epi16(1))
                             : dot_abs_i8(aq, q, yv);
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * h2f(y[c][i].d)), acc[c]);
      if constexpr (kMin) mins[c] += h2f(x[i].m) * h2f(y[c][i].s);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum(acc[c]) + mins[c];
}

template <int NC>
MOESERVE_AVX2 void dot_q4_1(int64_t n, const void* w, const void* const* a, float* out) {
  dot_legacy<NC, BlockQ4_1, false, true>(n, w, a, out);
}
MOESERVE_AVX2_COLS(dot_q4_1, 4)

template <int NC>
MOESERVE_AVX2 void dot_q5_0(int64_t n, const void* w, const void* const* a, float* out) {
  dot_legacy<NC, BlockQ5_0, true, false>(n, w, a, out);
}
MOESERVE_AVX2_COLS(dot_q5_0, 4)

template <int NC>
MOESERVE_AVX2 void dot_q5_1(int64_t n, const void* w, const void* const* a, float* out) {
  dot_legacy<NC, BlockQ5_1, true, true>(n, w, a, out);
}
MOESERVE_AVX2_COLS(dot_q5_1, 4)

}  // namespace

void install_avx2_legacy_kernels(Kernels& k) {
  MOESERVE_INSTALL_COLS(k, Q4_1, dot_q4_1);
  MOESERVE_INSTALL_COLS(k, Q5_0, dot_q5_0);
  MOESERVE_INSTALL_COLS(k, Q5_1, dot_q5_1);
}

}  // namespace moeserve::cpu

#endif  // __x86_64__
