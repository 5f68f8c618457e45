// AVX2 + FMA + F16C kernels. Each function carries its target attribute, so this file builds with
// the project's default flags and the table only points here when cpuid says the CPU has them.
// Quantizers are bit-exact with the registry's references (tests/unit/test_cpu_kernels.cpp); dot
// products sum the same integers and differ from the references only in float summation order.
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "quant/blocks.h"
#include "quant/k_quants.h"

#define MOESERVE_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace moeserve::cpu {
namespace {

using namespace quant;

MOESERVE_AVX2 inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  lo = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, lo);
  return _mm_cvtss_f32(_mm_add_ss(lo, sh));
}

MOESERVE_AVX2 inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

MOESERVE_AVX2 inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

// Sum of products of 32 signed bytes, as 8 int32 lanes: |x| (unsigned) times y with x's sign.
MOESERVE_AVX2 inline __m256i dot_i8(__m256i x, __m256i y) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// Unsigned bytes (< 128) times signed bytes, as 8 int32 lanes.
MOESERVE_AVX2 inline __m256i dot_u8_i8(__m256i x, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
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

MOESERVE_AVX2 float vec_dot_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / QK;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m256i p0 = dot_i8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs)));
    const __m256i p1 = dot_i8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i + 1].qs)),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i + 1].qs)));
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(h2f(x[i + 1].d) * h2f(y[i + 1].d)), acc1);
  }
  for (; i < nb; ++i) {
    const __m256i p = dot_i8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)),
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs)));
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), acc0);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
}

// 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..15), then high nibbles (16..31).
MOESERVE_AVX2 inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

MOESERVE_AVX2 float vec_dot_q4_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const int64_t nb = n / QK;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i xq = _mm256_sub_epi8(unpack_nibbles(x[i].qs), _mm256_set1_epi8(8));
    const __m256i p = dot_i8(xq, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs)));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), acc);
  }
  return hsum(acc);
}

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

// ---- Q8_K / Q4_K / Q5_K / Q6_K -----------------------------------------------------------------------------

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

MOESERVE_AVX2 float vec_dot_q4_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int msum = 0;
    int16_t sc[8];
    for (int s = 0; s < 8; ++s) {
      const ScaleMin sm = q4k_scale_min(x[i].scales, s);
      sc[s] = sm.scale;
      msum += sm.min * (y[i].bsums[2 * s] + y[i].bsums[2 * s + 1]);
    }
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q4 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * c));
      const __m256i lo = _mm256_and_si256(q4, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low4);
      const __m256i y_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs + 64 * c));
      const __m256i y_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs + 64 * c + 32));
      const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y_lo), _mm256_set1_epi16(sc[2 * c]));
      const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y_hi), _mm256_set1_epi16(sc[2 * c + 1]));
      isum = _mm256_add_epi32(isum, _mm256_add_epi32(p_lo, p_hi));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
    mins += y[i].d * h2f(x[i].dmin) * float(msum);
  }
  return hsum(acc) - mins;
}

MOESERVE_AVX2 float vec_dot_q5_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0;
  const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int msum = 0;
    int16_t sc[8];
    for (int s = 0; s < 8; ++s) {
      const ScaleMin sm = q4k_scale_min(x[i].scales, s);
      sc[s] = sm.scale;
      msum += sm.min * (y[i].bsums[2 * s] + y[i].bsums[2 * s + 1]);
    }
    // qh[l] bit 2c (2c+1): the fifth bit of element 64c + l (64c + 32 + l).
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh));
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q4 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * c));
      const __m256i h_lo = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
      const __m256i h_hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
      const __m256i lo = _mm256_or_si256(_mm256_and_si256(q4, low4), h_lo);
      const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), low4), h_hi);
      const __m256i y_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs + 64 * c));
      const __m256i y_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs + 64 * c + 32));
      const __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y_lo), _mm256_set1_epi16(sc[2 * c]));
      const __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y_hi), _mm256_set1_epi16(sc[2 * c + 1]));
      isum = _mm256_add_epi32(isum, _mm256_add_epi32(p_lo, p_hi));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
    mins += y[i].d * h2f(x[i].dmin) * float(msum);
  }
  return hsum(acc) - mins;
}

// Q6_K: values stored +32; sum (q - 32) * y = sum q * y - 32 * sum y, the latter from bsums.
MOESERVE_AVX2 float vec_dot_q6_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ6_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  __m256 acc = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int offset = 0;
    for (int g = 0; g < QK_K / 16; ++g) offset += x[i].scales[g] * y[i].bsums[g];
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 2; ++c) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].ql + 64 * c));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].ql + 64 * c + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh + 32 * c));
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_slli_epi16(_mm256_and_si256(h, two), 4)),
          _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), two), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), two), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), two), 4)),
      };
      for (int j = 0; j < 4; ++j) {
        const int8_t* sc = x[i].scales + 8 * c + 2 * j;  // scales of the two 16-element halves
        const __m256i yv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs + 128 * c + 32 * j));
        const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[1]), _mm_set1_epi16(sc[0]));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(q[j], yv), scales));
      }
    }
    const __m256i total = _mm256_sub_epi32(isum, _mm256_setr_epi32(32 * offset, 0, 0, 0, 0, 0, 0, 0));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)), _mm256_cvtepi32_ps(total), acc);
  }
  return hsum(acc);
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
  k.vec_dot[size_t(GgmlType::Q8_0)] = vec_dot_q8_0;
  k.vec_dot[size_t(GgmlType::Q4_0)] = vec_dot_q4_0;
  k.dequantize[size_t(GgmlType::Q4_0)] = dequantize_q4_0;
  k.quantize[size_t(GgmlType::Q8_K)] = quantize_q8_k;
  k.vec_dot[size_t(GgmlType::Q4_K)] = vec_dot_q4_k;
  k.vec_dot[size_t(GgmlType::Q5_K)] = vec_dot_q5_k;
  k.vec_dot[size_t(GgmlType::Q6_K)] = vec_dot_q6_k;
}

}  // namespace moeserve::cpu

#endif  // __x86_64__
