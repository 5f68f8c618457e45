// AVX-512 dot products of the grid i-quants the MoE experts use (IQ2_XXS, IQ2_XS, IQ3_XXS) with
// Q8_K activations, 64 elements per 512-bit step. What the AVX2 kernels do with scalar code per 8
// elements is done for a whole super-block at once:
//  - grid magnitudes: 8 entries of 8 bytes (or 16 of 4 bytes for IQ3_XXS) per 64 elements, by
//    inserts or by a gather (GridLookup, below);
//  - signs: the 7-bit sign fields of all 256 elements become a 256-bit mask in registers (the 8th
//    bit of each 8 is the parity of the other seven, the rule ksigns64 tabulates), and the
//    activations are negated under that mask (one masked subtract per 64 elements) instead of
//    32 ksigns64 loads;
//  - scales: all 16 (or 8) of the super-block widened once, then spread per 64 elements with a
//    word permute; products summed by maddubs then vpdpwssd (VNNI: madd by the scale and add).
// The int32 lanes are folded to the AVX2 kernels' 8 lanes (lane l and l + 8 hold the same
// positions of two 32-element groups) before the float steps, which are the AVX2 kernels'
// (kernels_avx2_iq.h), so results are bit-identical to the AVX2 table (CpuKernels.Avx512DotsEqualAvx2).
// Each type's super-block decoding is one function, shared by the column kernels (one weight row,
// 1..8 activation columns) and the row kernels (up to kMaxRows weight rows, one column: decode).
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)
#include "backend/cpu/kernels_avx2_util.h"
#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/i_quants.h"

// GCC 12's AVX-512 intrinsic headers start some conversions from an "undefined" register, which
// -Wmaybe-uninitialized reports at every use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define MOESERVE_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace moeserve::cpu {
namespace {

using namespace quant;
using namespace avx2;

// Sign fields of 8 elements each (7 bits in the low bits of every byte, higher bits zero) ->
// the full 8-bit sign mask per byte: bit 7 set when the seven have odd parity (the rule ksigns64
// tabulates). The parity of each nibble comes from a 16-entry byte shuffle: the low nibble's
// directly (bit 7 of the field is clear, so vpshufb looks up bits 0-3), the high nibble's after
// a shift.
MOESERVE_AVX512 inline __m256i add_parity_bit(__m256i s) {
  const __m256i odd = _mm256_broadcastsi128_si256(
      _mm_setr_epi8(0, -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0));
  const __m256i lo = _mm256_shuffle_epi8(odd, s);
  const __m256i hi = _mm256_shuffle_epi8(odd, _mm256_and_si256(_mm256_srli_epi16(s, 4), _mm256_set1_epi8(15)));
  return _mm256_ternarylogic_epi32(s, lo, hi, 0xF6);  // s | (lo ^ hi)
}

// Eight u32 words of IQ2_XXS / IQ3_XXS (per 32 elements: four 7-bit sign fields, a 4-bit scale
// on top) -> the 32 sign bytes in element order, stored as four 64-bit masks.
MOESERVE_AVX512 inline void xxs_signs(__m256i aux, uint64_t* masks) {
  // Field f (bits 7f..7f+6) moves up by f bits to byte f: bit selects (0xD8: b where c, else a)
  // take bytes 1-3 from the shifted words, then bit 7 of every byte is cleared.
  __m256i s = _mm256_ternarylogic_epi32(aux, _mm256_slli_epi32(aux, 1), _mm256_set1_epi32(0x0000FF00), 0xD8);
  s = _mm256_ternarylogic_epi32(s, _mm256_slli_epi32(aux, 2), _mm256_set1_epi32(0x00FF0000), 0xD8);
  s = _mm256_ternarylogic_epi32(s, _mm256_slli_epi32(aux, 3), _mm256_set1_epi32(int32_t(0xFF000000u)), 0xD8);
  s = _mm256_and_si256(s, _mm256_set1_epi8(0x7F));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(masks), add_parity_bit(s));
}

// Per-32-element scales 2 * (aux >> 28) + 1 of IQ2_XXS / IQ3_XXS, one int32 per group; returns
// for each 64-element step j the words [scale(2j) x 16, scale(2j + 1) x 16].
MOESERVE_AVX512 inline void xxs_scales(__m256i aux, __m512i* scales) {
  const __m256i s = _mm256_add_epi32(_mm256_slli_epi32(_mm256_srli_epi32(aux, 28), 1), _mm256_set1_epi32(1));
  const __m512i s512 = _mm512_castsi256_si512(s);
  for (int j = 0; j < 4; ++j) {
    const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16(int16_t(4 * j)), _mm256_set1_epi16(int16_t(4 * j + 2)), 1);
    scales[j] = _mm512_permutexvar_epi16(idx, s512);
  }
}

// Grid magnitudes of 64 elements, two ways (GridLookup):
//  - inserts: eight 8-byte entries (or sixteen 4-byte ones) loaded by index and inserted into one
//    register, the indices read with scalar loads from the block itself (not extracted from a
//    vector register: vpextrw is two uops, one on the shuffle port the inserts need too);
//  - gathers: one vpgatherdq (vpgatherdd) per 64 elements, indices widened in registers, mostly
//    load-port work. One thread decodes IQ2_XS twice as fast with gathers on Sapphire Rapids,
//    while on Zen 4 inserts are faster (docs/perf.md, cpu-moe).
template <typename Index>
MOESERVE_AVX512 inline __m512i grid8(const uint64_t* grid, const Index* g, unsigned mask) {
  return _mm512_set_epi64(int64_t(grid[g[7] & mask]), int64_t(grid[g[6] & mask]), int64_t(grid[g[5] & mask]),
                          int64_t(grid[g[4] & mask]), int64_t(grid[g[3] & mask]), int64_t(grid[g[2] & mask]),
                          int64_t(grid[g[1] & mask]), int64_t(grid[g[0] & mask]));
}

// Sixteen int32 indices -> two gathers of eight 8-byte grid entries.
MOESERVE_AVX512 inline void gather16(const uint64_t* grid, __m512i idx, __m512i* mags) {
  const auto* base = reinterpret_cast<const long long*>(grid);
  mags[0] = _mm512_i32gather_epi64(_mm512_castsi512_si256(idx), base, 8);
  mags[1] = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(idx, 1), base, 8);
}

// One super-block decoded for the products: per 64-element step j the grid magnitudes (unsigned
// bytes), the sign mask (bit e: element 64j + e negated) and the word scales; d = the block's
// scale times its type's frac.
struct Decoded {
  __m512i mags[4], scales[4];
  alignas(32) uint64_t masks[4];
  float d;
};

// IQ2_XXS: per 32 elements 4 grid indices (bytes) and a u32 of signs and scale.
template <GridLookup L>
struct Iq2Xxs {
  using Block = BlockIQ2_XXS;
  MOESERVE_AVX512 static void decode(const Block& b, Decoded& o) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i q = _mm512_loadu_si512(b.qs);
    const __m256i aux = _mm512_castsi512_si256(_mm512_permutexvar_epi32(odd, q));
    if constexpr (L == GridLookup::gathers) {
      const __m256i grid_idx = _mm512_castsi512_si256(_mm512_permutexvar_epi32(even, q));  // 4 bytes per group
      gather16(iq2xxs_grid, _mm512_cvtepu8_epi32(_mm256_castsi256_si128(grid_idx)), o.mags);
      gather16(iq2xxs_grid, _mm512_cvtepu8_epi32(_mm256_extracti128_si256(grid_idx, 1)), o.mags + 2);
    } else {
      // Group g's indices are bytes 8g..8g+3 of qs.
      const auto* qb = reinterpret_cast<const uint8_t*>(b.qs);
      for (int j = 0; j < 4; ++j) {
        const uint8_t* g = qb + 16 * j;
        const uint8_t idx[8] = {g[0], g[1], g[2], g[3], g[8], g[9], g[10], g[11]};
        o.mags[j] = grid8(iq2xxs_grid, idx, 0xFF);
      }
    }
    xxs_signs(aux, o.masks);
    xxs_scales(aux, o.scales);
    o.d = _cvtsh_ss(b.d) * kFracIq2;
  }
};

// IQ2_XS: per 8 elements a u16 (9-bit grid index, 7-bit sign field); a 4-bit scale per 16.
template <GridLookup L>
struct Iq2Xs {
  using Block = BlockIQ2_XS;
  MOESERVE_AVX512 static void decode(const Block& b, Decoded& o) {
    const __m512i q = _mm512_loadu_si512(b.qs);
    if constexpr (L == GridLookup::gathers) {
      const __m512i grid_idx = _mm512_and_si512(q, _mm512_set1_epi16(511));
      gather16(iq2xs_grid, _mm512_cvtepu16_epi32(_mm512_castsi512_si256(grid_idx)), o.mags);
      gather16(iq2xs_grid, _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(grid_idx, 1)), o.mags + 2);
    } else {
      for (int j = 0; j < 4; ++j) o.mags[j] = grid8(iq2xs_grid, b.qs + 8 * j, 511);
    }
    // One sign byte per u16, in element order (7 bits per 16-bit word; the parity fold stays
    // inside each byte since the word's high byte is zero).
    const __m256i fields = _mm512_cvtepi16_epi8(_mm512_srli_epi16(q, 9));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.masks), add_parity_bit(fields));
    // Scales: nibble 2b (low) for elements 32b..32b+15, nibble 2b+1 for the next 16.
    const __m128i sb = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.scales)));
    const __m128i lo = _mm_and_si128(sb, _mm_set1_epi16(15)), hi = _mm_srli_epi16(sb, 4);
    __m256i s16 = _mm256_set_m128i(_mm_unpackhi_epi16(lo, hi), _mm_unpacklo_epi16(lo, hi));
    s16 = _mm256_add_epi16(_mm256_add_epi16(s16, s16), _mm256_set1_epi16(1));
    const __m512i s512 = _mm512_castsi256_si512(s16);
    for (int j = 0; j < 4; ++j) {
      const __m512i idx = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(int16_t(4 * j + 1)), _mm_set1_epi16(int16_t(4 * j)))),
          _mm256_set_m128i(_mm_set1_epi16(int16_t(4 * j + 3)), _mm_set1_epi16(int16_t(4 * j + 2))), 1);
      o.scales[j] = _mm512_permutexvar_epi16(idx, s512);
    }
    o.d = _cvtsh_ss(b.d) * kFracIq2;
  }
};

// IQ3_XXS: 64 grid indices (bytes, 4 elements each), then a u32 of signs and scale per 32.
template <GridLookup L>
struct Iq3Xxs {
  using Block = BlockIQ3_XXS;
  MOESERVE_AVX512 static void decode(const Block& b, Decoded& o) {
    for (int j = 0; j < 4; ++j) {
      const uint8_t* g = b.qs + 16 * j;
      if constexpr (L == GridLookup::gathers) {
        const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
        o.mags[j] = _mm512_i32gather_epi32(idx, reinterpret_cast<const int*>(iq3xxs_grid), 4);
      } else {
        o.mags[j] = _mm512_setr_epi32(
            int32_t(iq3xxs_grid[g[0]]), int32_t(iq3xxs_grid[g[1]]), int32_t(iq3xxs_grid[g[2]]), int32_t(iq3xxs_grid[g[3]]),
            int32_t(iq3xxs_grid[g[4]]), int32_t(iq3xxs_grid[g[5]]), int32_t(iq3xxs_grid[g[6]]), int32_t(iq3xxs_grid[g[7]]),
            int32_t(iq3xxs_grid[g[8]]), int32_t(iq3xxs_grid[g[9]]), int32_t(iq3xxs_grid[g[10]]), int32_t(iq3xxs_grid[g[11]]),
            int32_t(iq3xxs_grid[g[12]]), int32_t(iq3xxs_grid[g[13]]), int32_t(iq3xxs_grid[g[14]]), int32_t(iq3xxs_grid[g[15]]));
      }
    }
    const __m256i aux = load256(b.qs + 64);
    xxs_signs(aux, o.masks);
    xxs_scales(aux, o.scales);
    o.d = _cvtsh_ss(b.d) * kFracIq3Xxs;
  }
};

// The super-block's integer sum of one decoded weight block with one Q8_K block, folded to the
// AVX2 kernels' 8 lanes (lane l and l + 8 hold the same positions of two 32-element groups):
// maddubs then vpdpwssd (VNNI: madd by the scale and add).
MOESERVE_AVX512 inline __m256i block_sum(const Decoded& dw, const int8_t* y) {
  __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    __m512i ys = _mm512_loadu_si512(y + 64 * j);
    ys = _mm512_mask_sub_epi8(ys, _cvtu64_mask64(dw.masks[j]), _mm512_setzero_si512(), ys);
    sum = _mm512_dpwssd_epi32(sum, _mm512_maddubs_epi16(dw.mags[j], ys), dw.scales[j]);
  }
  return _mm256_add_epi32(_mm512_castsi512_si256(sum), _mm512_extracti64x4_epi64(sum, 1));
}

// One weight row, NC activation columns: each block decoded once for all columns; the float
// steps are the AVX2 kernels' (avx2::IqAcc::finish), so results are bit-identical to them.
template <class T, int NC>
MOESERVE_AVX512 void dot_cols(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const typename T::Block*>(w);
  const BlockQ8_K* y[NC];
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_K*>(a[c]);
    acc[c] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < n / QK_K; ++i) {
    Decoded dw;
    T::decode(x[i], dw);
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) {
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_sum(dw, y[c][i].qs)), _mm256_set1_ps(dw.d * y[c][i].d), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum(acc[c]);
}

// NR weight rows (`stride` bytes apart), one activation column: the rows' independent work
// interleaved, and the per-call costs (the call, the setup, the final sums) shared. Each row's
// steps are those of dot_cols<T, 1>, so out[r] is its result bit for bit.
template <class T, int NR>
MOESERVE_AVX512 void dot_rows(int64_t n, const void* w, size_t stride, const void* a, float* out) {
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const typename T::Block* x[NR];
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) {
    x[r] = reinterpret_cast<const typename T::Block*>(static_cast<const char*>(w) + size_t(r) * stride);
    acc[r] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < n / QK_K; ++i) {
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r) {
      Decoded dw;
      T::decode(x[r][i], dw);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_sum(dw, y[i].qs)), _mm256_set1_ps(dw.d * y[i].d), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) out[r] = hsum(acc[r]);
}

// The table entries of one type and lookup method (MOESERVE_AVX2_COLS takes a template of NC alone).
#define MOESERVE_IQ512(NAME, T)                                                                   \
  template <int NC>                                                                               \
  MOESERVE_AVX512 void NAME(int64_t n, const void* w, const void* const* a, float* out) {         \
    dot_cols<T, NC>(n, w, a, out);                                                                \
  }                                                                                               \
  MOESERVE_AVX2_COLS(NAME, 8)                                                                     \
  MOESERVE_AVX512 void NAME##_rows(int64_t n, const void* w, size_t stride, const void* a, int nrows, float* out) { \
    static_assert(kMaxRows == 4);                                                                 \
    switch (nrows) {                                                                              \
      case 1: dot_cols<T, 1>(n, w, &a, out); break;                                               \
      case 2: dot_rows<T, 2>(n, w, stride, a, out); break;                                        \
      case 3: dot_rows<T, 3>(n, w, stride, a, out); break;                                        \
      default: dot_rows<T, 4>(n, w, stride, a, out); break;                                       \
    }                                                                                             \
  }

MOESERVE_IQ512(dot_iq2_xxs_ins, Iq2Xxs<GridLookup::inserts>)
MOESERVE_IQ512(dot_iq2_xs_ins, Iq2Xs<GridLookup::inserts>)
MOESERVE_IQ512(dot_iq3_xxs_ins, Iq3Xxs<GridLookup::inserts>)
MOESERVE_IQ512(dot_iq2_xxs_gat, Iq2Xxs<GridLookup::gathers>)
MOESERVE_IQ512(dot_iq2_xs_gat, Iq2Xs<GridLookup::gathers>)
MOESERVE_IQ512(dot_iq3_xxs_gat, Iq3Xxs<GridLookup::gathers>)

// vec_dot, vec_dot_cols and vec_dot_rows of one type.
#define MOESERVE_INSTALL_IQ512(K, TYPE, NAME)                  \
  do {                                                         \
    MOESERVE_INSTALL_COLS(K, TYPE, NAME);                      \
    (K).vec_dot_rows[size_t(GgmlType::TYPE)] = NAME##_rows;    \
  } while (0)

}  // namespace

void install_avx512_iq_kernels(Kernels& k, GridLookup lookup) {
  if (lookup == GridLookup::gathers) {
    MOESERVE_INSTALL_IQ512(k, IQ2_XXS, dot_iq2_xxs_gat);
    MOESERVE_INSTALL_IQ512(k, IQ2_XS, dot_iq2_xs_gat);
    MOESERVE_INSTALL_IQ512(k, IQ3_XXS, dot_iq3_xxs_gat);
  } else {
    MOESERVE_INSTALL_IQ512(k, IQ2_XXS, dot_iq2_xxs_ins);
    MOESERVE_INSTALL_IQ512(k, IQ2_XS, dot_iq2_xs_ins);
    MOESERVE_INSTALL_IQ512(k, IQ3_XXS, dot_iq3_xxs_ins);
  }
}

}  // namespace moeserve::cpu

#endif  // __x86_64__
