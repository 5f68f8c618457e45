// AVX-512 VNNI kernels (on 256-bit vectors, AVX512VL; Q8_0 on 512-bit ones): only where they
// measured faster than the AVX2 ones (docs/perf.md). vpdpbusd adds unsigned x signed byte
// products in groups of four straight into int32 lanes, replacing maddubs + madd; it is used
// where the AVX2 kernel's madd multiplies by one (Q8_0 and the other 32-element formats), since
// with a per-16 scale the AVX2 pair (maddubs, madd by the scale) is already two instructions.
// The int32 lanes equal the AVX2 kernels' (no 16-bit saturation can occur there with Q8
// activations), and the float steps are the same, so results are bit-identical to the AVX2 table.
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)
#include "backend/cpu/kernels_avx2_util.h"
#include "quant/blocks.h"

// GCC 12's AVX-512 intrinsic headers start some conversions and inserts from an "undefined"
// register, which -W(maybe-)uninitialized reports at every use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#define MOESERVE_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace moeserve::cpu {
namespace {

using namespace quant;
using namespace avx2;

MOESERVE_VNNI inline __m256i dot_abs_vnni(__m256i x_abs, __m256i x, __m256i y) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), x_abs, _mm256_sign_epi8(y, x));
}

// Halves of a 512-bit float vector (AVX512F only: the f32x8 forms need DQ, which the avx512
// level does not require).
MOESERVE_VNNI inline __m512 join(__m256 lo, __m256 hi) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}
MOESERVE_VNNI inline __m256 high_half(__m512 v) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

// Two blocks per 512-bit step: block i in the low half, block i + 1 in the high half, so the low
// half's lanes do exactly what the 256-bit kernels' even-block accumulator does and the high
// half's what the odd-block one does (the same integer lanes, the same fused multiply-adds in the
// same order); the halves are added as those two accumulators are. On cores with 512-bit units
// this halves the instructions per weight byte of a decode product, whose one column leaves no
// other work to hide the unpacking behind. x's sign moves onto y through a mask (no 512-bit
// vpsignb); where x is 0 its |x| is 0, so the products are those of the 256-bit kernels.
template <int NC>
MOESERVE_VNNI void dot_q8_0(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* y[NC];
  __m512 acc[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_0*>(a[c]);
    acc[c] = _mm512_setzero_ps();
  }
  const int64_t nb = n / QK;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i xq = _mm512_inserti64x4(_mm512_castsi256_si512(load256(x[i].qs)), load256(x[i + 1].qs), 1);
    const __m512i ax = _mm512_abs_epi8(xq);
    const __mmask64 neg = _mm512_movepi8_mask(xq);
    const float d0 = h2f(x[i].d), d1 = h2f(x[i + 1].d);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      __m512i yq = _mm512_inserti64x4(_mm512_castsi256_si512(load256(y[c][i].qs)), load256(y[c][i + 1].qs), 1);
      yq = _mm512_mask_sub_epi8(yq, neg, _mm512_setzero_si512(), yq);
      const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, yq);
      const __m512 s = join(_mm256_set1_ps(d0 * h2f(y[c][i].d)), _mm256_set1_ps(d1 * h2f(y[c][i + 1].d)));
      acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[c]);
    }
  }
  if (i < nb) {  // an odd last block goes to the even-block (low) half only
    const __m256i x0 = load256(x[i].qs), ax0 = _mm256_sign_epi8(x0, x0);
    const float d0 = h2f(x[i].d);
    for (int c = 0; c < NC; ++c) {
      const __m256i p = dot_abs_vnni(ax0, x0, load256(y[c][i].qs));
      const __m256 lo = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d0 * h2f(y[c][i].d)),
                                        _mm512_castps512_ps256(acc[c]));
      acc[c] = join(lo, high_half(acc[c]));
    }
  }
  for (int c = 0; c < NC; ++c) {
    out[c] = hsum(_mm256_add_ps(_mm512_castps512_ps256(acc[c]), high_half(acc[c])));
  }
}
MOESERVE_AVX2_COLS(dot_q8_0, 4)

// Q4_0 (also a KV cache type): nibbles - 8.
template <int NC>
MOESERVE_VNNI void dot_q4_0(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* y[NC];
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_0*>(a[c]);
    acc[c] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < n / QK; ++i) {
    const __m256i xq = _mm256_sub_epi8(unpack_nibbles(x[i].qs), _mm256_set1_epi8(8));
    const __m256i ax = _mm256_sign_epi8(xq, xq);
    const float d = h2f(x[i].d);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      const __m256i p = dot_abs_vnni(ax, xq, load256(y[c][i].qs));
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * h2f(y[c][i].d)), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum(acc[c]);
}
MOESERVE_AVX2_COLS(dot_q4_0, 4)

}  // namespace

void install_avx512_kernels(Kernels& k) {
  MOESERVE_INSTALL_COLS(k, Q8_0, dot_q8_0);
  MOESERVE_INSTALL_COLS(k, Q4_0, dot_q4_0);
}

}  // namespace moeserve::cpu

#endif  // __x86_64__
