// AVX2 + FMA + F16C kernels. Each function carries its target attribute, so this file builds with
// the project's default flags and the table only points here when cpuid says the CPU has them.
// Quantizers are bit-exact with the registry's references (tests/unit/test_cpu_kernels.cpp); dot
// products sum the same integers and differ from the references only in float summation order.
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/kernels_avx2_util.h"
#include "core/fp16.h"
#include "quant/blocks.h"


namespace moeserve::cpu {
namespace {

using namespace quant;
using namespace avx2;

MOESERVE_AVX2 inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// Four vectors of 8 int32 (each within int8 range) -> 32 int8 in order.
MOESERVE_AVX2 inline __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// ---- float kernels ---------------------------------------------------------------------------

MOESERVE_AVX2 float dot_f32(int64_t n, const float* a, const float* b) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float sum = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

MOESERVE_AVX2 void axpy_f32(int64_t n, float a, const float* x, float* y) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

MOESERVE_AVX2 void scale_f32(int64_t n, float a, float* y) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] *= a;
}

MOESERVE_AVX2 float vec_dot_f32(int64_t n, const void* w, const void* a) {
  return dot_f32(n, static_cast<const float*>(w), static_cast<const float*>(a));
}

MOESERVE_AVX2 float vec_dot_f16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const uint16_t*>(a);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))),
                         _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y + i))), s0);
    s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8))),
                         _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y + i + 8))), s1);
  }
  float sum = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) sum += h2f(x[i]) * h2f(y[i]);
  return sum;
}

MOESERVE_AVX2 void dequantize_f16(const void* src, float* out, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  for (; i < n; ++i) out[i] = h2f(x[i]);
}

// ---- Q8_0 / Q4_0 -----------------------------------------------------------------------------

// round(x) with halves away from zero, exactly as std::round: truncate, then step away from zero
// when the dropped fraction is at least one half (x - trunc(x) is exact in float).
MOESERVE_AVX2 inline __m256 round_away(__m256 x) {
  const __m256 t = _mm256_round_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
  const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(x, t));
  const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), _mm256_or_ps(sign, _mm256_set1_ps(1.0f)));
  return _mm256_add_ps(t, step);
}

MOESERVE_AVX2 void quantize_q8_0(const float* in, void* blocks, int64_t n) {
  auto* b = static_cast<BlockQ8_0*>(blocks);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t i = 0; i < n / QK; ++i, in += QK) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(in + 8 * j);
      amax = _mm256_max_ps(amax, _mm256_and_ps(v[j], abs_mask));
    }
    const float d = hmax(amax) / 127;
    const __m256 id = _mm256_set1_ps(d != 0 ? 1.0f / d : 0.0f);
    __m256i q[4];
    for (int j = 0; j < 4; ++j) q[j] = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[j], id)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs), pack_i8(q[0], q[1], q[2], q[3]));
    b[i].d = fp32_to_fp16(d);
  }
}

MOESERVE_AVX2 void dequantize_q8_0(const void* blocks, float* out, int64_t n) {
  const auto* b = static_cast<const BlockQ8_0*>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, out += QK) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d));
    for (int j = 0; j < 4; ++j) {
      const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[i].qs + 8 * j)));
      _mm256_storeu_ps(out + 8 * j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
    }
  }
}

template <int NC>
MOESERVE_AVX2 void dot_q8_0(int64_t n, const void* w, const void* const* a, float* out) {
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
      const __m256i p0 = dot_abs_i8(ax0, x0, load256(y[c][i].qs));
      const __m256i p1 = dot_abs_i8(ax1, x1, load256(y[c][i + 1].qs));
      acc0[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d0 * h2f(y[c][i].d)), acc0[c]);
      acc1[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d1 * h2f(y[c][i + 1].d)), acc1[c]);
    }
  }
  for (; i < nb; ++i) {
    const __m256i x0 = load256(x[i].qs), ax0 = _mm256_sign_epi8(x0, x0);
    const float d0 = h2f(x[i].d);
    for (int c = 0; c < NC; ++c) {
      const __m256i p = dot_abs_i8(ax0, x0, load256(y[c][i].qs));
      acc0[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d0 * h2f(y[c][i].d)), acc0[c]);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum(_mm256_add_ps(acc0[c], acc1[c]));
}
MOESERVE_AVX2_COLS(dot_q8_0, 4)

template <int NC>
MOESERVE_AVX2 void dot_q4_0(int64_t n, const void* w, const void* const* a, float* out) {
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
      const __m256i p = dot_abs_i8(ax, xq, load256(y[c][i].qs));
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * h2f(y[c][i].d)), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum(acc[c]);
}
MOESERVE_AVX2_COLS(dot_q4_0, 4)

MOESERVE_AVX2 void dequantize_q4_0(const void* blocks, float* out, int64_t n) {
  const auto* b = static_cast<const BlockQ4_0*>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, out += QK) {
    const __m256 d = _mm256_set1_ps(h2f(b[i].d));
    alignas(32) int8_t q[32];
    _mm256_store_si256(reinterpret_cast<__m256i*>(q), _mm256_sub_epi8(unpack_nibbles(b[i].qs), _mm256_set1_epi8(8)));
    for (int j = 0; j < 4; ++j) {
      const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * j)));
      _mm256_storeu_ps(out + 8 * j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(v)));
    }
  }
}

// ---- Q8_K -----------------------------------------------------------------------------

MOESERVE_AVX2 void quantize_q8_k(const float* in, void* blocks, int64_t n) {
  auto* y = static_cast<BlockQ8_K*>(blocks);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K) {
    __m256 amax_v = _mm256_setzero_ps();
    for (int j = 0; j < QK_K; j += 8) amax_v = _mm256_max_ps(amax_v, _mm256_and_ps(_mm256_loadu_ps(in + j), abs_mask));
    const float amax = hmax(amax_v);
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof y[i]);
      continue;
    }
    // The signed value of the first element of largest magnitude (the reference's choice).
    float max = 0;
    for (int j = 0; j < QK_K; ++j) {
      if (std::fabs(in[j]) == amax) {
        max = in[j];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    const __m256i cap = _mm256_set1_epi32(127);
    for (int j = 0; j < QK_K; j += 32) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        const __m256 r = _mm256_round_ps(_mm256_mul_ps(vs, _mm256_loadu_ps(in + j + 8 * k)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(r), cap);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + j), pack_i8(q[0], q[1], q[2], q[3]));
    }
    for (int g = 0; g < QK_K / 16; ++g) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(y[i].qs + 16 * g));
      const __m256i w = _mm256_cvtepi8_epi16(v);
      const __m256i s = _mm256_madd_epi16(w, _mm256_set1_epi16(1));
      const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
      y[i].bsums[g] = int16_t(_mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1))));
    }
    y[i].d = 1 / iscale;
  }
}

}  // namespace

void install_avx2_kernels(Kernels& k) {
  k.dot_f32 = dot_f32;
  k.axpy_f32 = axpy_f32;
  k.scale_f32 = scale_f32;
  k.vec_dot[size_t(GgmlType::F32)] = vec_dot_f32;
  k.vec_dot[size_t(GgmlType::F16)] = vec_dot_f16;
  k.dequantize[size_t(GgmlType::F16)] = dequantize_f16;
  k.quantize[size_t(GgmlType::Q8_0)] = quantize_q8_0;
  k.dequantize[size_t(GgmlType::Q8_0)] = dequantize_q8_0;
  MOESERVE_INSTALL_COLS(k, Q8_0, dot_q8_0);
  MOESERVE_INSTALL_COLS(k, Q4_0, dot_q4_0);
  k.dequantize[size_t(GgmlType::Q4_0)] = dequantize_q4_0;
  k.quantize[size_t(GgmlType::Q8_K)] = quantize_q8_k;
}

}  // namespace moeserve::cpu

#endif  // __x86_64__
