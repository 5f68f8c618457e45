// AVX2 dot products of the i-quants that real unsloth "UD" files mix in next to the 2-bit experts:
// IQ4_XS and IQ4_NL (16 non-linear levels looked up with a byte shuffle), IQ3_S and IQ2_S (grids
// with explicit per-element sign bits), for 1..kMaxCols activation columns at once
// (kernels_avx2_util.h). Signed weights go into the byte products as |w| times y with w's sign.
// The integer sums equal the references' (src/quant/i_quants_dot.cpp); only the float sums differ
// in order.
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)
#include "backend/cpu/kernels_avx2_iq.h"
#include "quant/i_quants.h"

namespace moeserve::cpu {
namespace {

using namespace quant;
using namespace avx2;

MOESERVE_AVX2 inline __m256i iq4_table() {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kvalues_iq4nl)));
}

// 32 sign bits (bit b: element b negated) as +1 / -1 bytes.
MOESERVE_AVX2 inline __m256i bit_signs(uint32_t bits) { return _mm256_or_si256(bit_mask(bits), _mm256_set1_epi8(1)); }

template <int NC>
MOESERVE_AVX2 void dot_iq4_xs(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockIQ4_XS*>(w);
  IqAcc<NC> st(a);
  const __m256i table = iq4_table();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    st.start();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      const __m256i v0 = _mm256_shuffle_epi8(table, unpack_nibbles(x[i].qs + 16 * ib));
      const __m256i v1 = _mm256_shuffle_epi8(table, unpack_nibbles(x[i].qs + 16 * ib + 16));
      // 6-bit scales: low nibbles in scales_l, high 2 bits in scales_h; stored +32.
      const int ls0 = ((x[i].scales_l[ib / 2] & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4)) - 32;
      const int ls1 = ((x[i].scales_l[ib / 2] >> 4) | (((x[i].scales_h >> (2 * ib + 2)) & 3) << 4)) - 32;
      st.add(i, ib, _mm256_sign_epi8(v0, v0), v0, _mm256_set1_epi16(int16_t(ls0)), _mm256_sign_epi8(v1, v1), v1,
             _mm256_set1_epi16(int16_t(ls1)));
    }
    st.finish(i, half(x[i].d) * kFracIq4Xs);
  }
  st.store(out);
}
MOESERVE_AVX2_COLS(dot_iq4_xs, 4)

template <int NC>
MOESERVE_AVX2 void dot_iq4_nl(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockIQ4_NL*>(w);
  const BlockQ8_0* y[NC];
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_0*>(a[c]);
    acc[c] = _mm256_setzero_ps();
  }
  const __m256i table = iq4_table();
  for (int64_t i = 0; i < n / QK; ++i) {
    const __m256i v = _mm256_shuffle_epi8(table, unpack_nibbles(x[i].qs));
    const __m256i av = _mm256_sign_epi8(v, v);
    const float d = h2f(x[i].d);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) {
      const __m256i p = dot_abs_i8(av, v, load256(y[c][i].qs));
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * h2f(y[c][i].d)), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum(acc[c]);
}
MOESERVE_AVX2_COLS(dot_iq4_nl, 4)

// IQ3_S: per 32 elements 8 grid indices (4 elements each, 9th bits in qh), 32 sign bits, one
// 4-bit scale per 32 elements (two per byte).
template <int NC>
MOESERVE_AVX2 void dot_iq3_s(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockIQ3_S*>(w);
  IqAcc<NC> st(a);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    st.start();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      __m256i m[2], sg[2];
      for (int h = 0; h < 2; ++h) {
        const uint8_t* g = x[i].qs + 8 * (ib + h);
        const int hb = x[i].qh[ib + h];
        m[h] = _mm256_setr_epi32(
            int32_t(iq3s_grid[g[0] | ((hb << 8) & 256)]), int32_t(iq3s_grid[g[1] | ((hb << 7) & 256)]),
            int32_t(iq3s_grid[g[2] | ((hb << 6) & 256)]), int32_t(iq3s_grid[g[3] | ((hb << 5) & 256)]),
            int32_t(iq3s_grid[g[4] | ((hb << 4) & 256)]), int32_t(iq3s_grid[g[5] | ((hb << 3) & 256)]),
            int32_t(iq3s_grid[g[6] | ((hb << 2) & 256)]), int32_t(iq3s_grid[g[7] | ((hb << 1) & 256)]));
        sg[h] = bit_signs(load_u32(x[i].signs + 4 * (ib + h)));
      }
      const int sc = x[i].scales[ib / 2];
      st.add(i, ib, m[0], sg[0], _mm256_set1_epi16(int16_t(1 + 2 * (sc & 0xF))), m[1], sg[1],
             _mm256_set1_epi16(int16_t(1 + 2 * (sc >> 4))));
    }
    st.finish(i, half(x[i].d) * kFracIq3S);
  }
  st.store(out);
}
MOESERVE_AVX2_COLS(dot_iq3_s, 8)

// IQ2_S: per 32 elements 4 grid indices (8 elements each, bits 8-9 in qh), 32 sign bits in the
// second half of qs, two 4-bit scales.
template <int NC>
MOESERVE_AVX2 void dot_iq2_s(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockIQ2_S*>(w);
  IqAcc<NC> st(a);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    st.start();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      __m256i m[2], sg[2], sc[2];
      for (int h = 0; h < 2; ++h) {
        const uint8_t* g = x[i].qs + 4 * (ib + h);
        const int hb = x[i].qh[ib + h];
        m[h] = _mm256_set_epi64x(int64_t(iq2s_grid[g[3] | ((hb << 2) & 0x300)]),
                                 int64_t(iq2s_grid[g[2] | ((hb << 4) & 0x300)]),
                                 int64_t(iq2s_grid[g[1] | ((hb << 6) & 0x300)]),
                                 int64_t(iq2s_grid[g[0] | ((hb << 8) & 0x300)]));
        sg[h] = bit_signs(load_u32(x[i].qs + QK_K / 8 + 4 * (ib + h)));
        const int s = x[i].scales[ib + h];
        sc[h] = two_scales(2 * (s & 0xF) + 1, 2 * (s >> 4) + 1);
      }
      st.add(i, ib, m[0], sg[0], sc[0], m[1], sg[1], sc[1]);
    }
    st.finish(i, half(x[i].d) * kFracIq2);
  }
  st.store(out);
}
MOESERVE_AVX2_COLS(dot_iq2_s, 8)

}  // namespace

void install_avx2_iq_more_kernels(Kernels& k) {
  MOESERVE_INSTALL_COLS(k, IQ4_XS, dot_iq4_xs);
  MOESERVE_INSTALL_COLS(k, IQ4_NL, dot_iq4_nl);
  MOESERVE_INSTALL_COLS(k, IQ3_S, dot_iq3_s);
  MOESERVE_INSTALL_COLS(k, IQ2_S, dot_iq2_s);
}

}  // namespace moeserve::cpu

#endif  // __x86_64__
