// AVX-512 VNNI kernels (on 256-bit vectors, AVX512VL): only where they measured faster than the
// AVX2 ones on the development machine (docs/perf.md). vpdpbusd adds unsigned x signed byte
// products in groups of four straight into int32 lanes, replacing maddubs + madd; it is used
// where the AVX2 kernel's madd multiplies by one (Q8_0 and the other 32-element formats), since
// with a per-16 scale the AVX2 pair (maddubs, madd by the scale) is already two instructions.
// The int32 lanes equal the AVX2 kernels' (no 16-bit saturation can occur there with Q8
// activations), and the float steps are the same, so results are bit-identical to the AVX2 table.
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)
#include "backend/cpu/kernels_avx2_util.h"
#include "quant/blocks.h"

#define MOESERVE_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace moeserve::cpu {
namespace {

using namespace quant;
using namespace avx2;

MOESERVE_VNNI inline __m256i dot_abs_vnni(__m256i x_abs, __m256i x, __m256i y) {
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), x_abs, _mm256_sign_epi8(y, x));
}

template <int NC>
MOESERVE_VNNI void dot_q8_0(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* y[NC];
  __m256 acc0[NC], acc1[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_0*>(a[c]);
    acc0[c] = acc1[c] = _mm256_setzero_ps();
  }
  const int64_t nb = n / QK;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m256i x0 = load256(x[i].qs), x1 = load256(x[i + 1].qs);
    const __m256i ax0 = _mm256_sign_epi8(x0, x0), ax1 = _mm256_sign_epi8(x1, x1);
    const float d0 = h2f(x[i].d), d1 = h2f(x[i + 1].d);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      const __m256i p0 = dot_abs_vnni(ax0, x0, load256(y[c][i].qs));
      const __m256i p1 = dot_abs_vnni(ax1, x1, load256(y[c][i + 1].qs));
      acc0[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d0 * h2f(y[c][i].d)), acc0[c]);
      acc1[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d1 * h2f(y[c][i + 1].d)), acc1[c]);
    }
  }
  for (; i < nb; ++i) {
    const __m256i x0 = load256(x[i].qs), ax0 = _mm256_sign_epi8(x0, x0);
    const float d0 = h2f(x[i].d);
    for (int c = 0; c < NC; ++c) {
      const __m256i p = dot_abs_vnni(ax0, x0, load256(y[c][i].qs));
      acc0[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d0 * h2f(y[c][i].d)), acc0[c]);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum(_mm256_add_ps(acc0[c], acc1[c]));
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
