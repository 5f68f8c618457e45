// I-quants (quants.md §3): decoding of the lattice/grid formats and their dequantizers.
// The dot products against Q8_K are in i_quants_dot.cpp.
#include "quant/i_quants.h"

#include "quant/grids.h"
#include "quant/quants.h"

namespace moeserve {

using namespace quant;

namespace quant {
namespace {

// 8 elements from a grid entry with sign mask `signs` (bit b set: element b negated).
inline void put_signed8(int8_t* v, uint64_t entry, uint8_t signs) {
  for (int b = 0; b < 8; ++b) {
    const int m = grid_byte(entry, b);
    v[b] = int8_t(signs & (1 << b) ? -m : m);
  }
}

// 4 elements from a 3-bit grid entry, signed by bits 0..3 of `signs`.
inline void put_signed4(int8_t* v, uint32_t entry, uint8_t signs) {
  for (int b = 0; b < 4; ++b) {
    const int m = grid_byte(entry, b);
    v[b] = int8_t(signs & (1 << b) ? -m : m);
  }
}

// IQ1: 8 elements 8 * grid + delta_sign (grid bytes are int8 in {-1, 0, 1}).
inline void put_iq1(int8_t* v, uint64_t entry, int delta_sign) {
  for (int b = 0; b < 8; ++b) v[b] = int8_t(8 * int8_t(grid_byte(entry, b)) + delta_sign);
}

}  // namespace

void decode_iq2_xxs(const BlockIQ2_XXS& b, IqDecoded& out) {
  out.d = half(b.d);
  const auto* q = reinterpret_cast<const uint8_t*>(b.qs);
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    const uint8_t* g = q + 8 * ib;  // 4 grid indices, then a u32 of 4 x 7 sign bits + 4-bit scale
    const uint32_t aux = load_u32(g + 4);
    for (int l = 0; l < 4; ++l) {
      put_signed8(out.value + 32 * ib + 8 * l, iq2xxs_grid[g[l]], ksigns_iq2xs[(aux >> (7 * l)) & 127]);
    }
    out.scale[2 * ib] = out.scale[2 * ib + 1] = int16_t(2 * (aux >> 28) + 1);
  }
}

void decode_iq2_xs(const BlockIQ2_XS& b, IqDecoded& out) {
  out.d = half(b.d);
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    for (int l = 0; l < 4; ++l) {
      const uint16_t q = b.qs[4 * ib + l];  // 9-bit grid index, 7-bit sign index
      put_signed8(out.value + 32 * ib + 8 * l, iq2xs_grid[q & 511], ksigns_iq2xs[q >> 9]);
    }
    out.scale[2 * ib] = int16_t(2 * (b.scales[ib] & 0xF) + 1);
    out.scale[2 * ib + 1] = int16_t(2 * (b.scales[ib] >> 4) + 1);
  }
}

void decode_iq2_s(const BlockIQ2_S& b, IqDecoded& out) {
  out.d = half(b.d);
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    for (int l = 0; l < 4; ++l) {
      // qh[ib] bits 2l, 2l+1 are index bits 8, 9; qs[32..63] are explicit sign masks.
      const int idx = b.qs[4 * ib + l] | ((b.qh[ib] << (8 - 2 * l)) & 0x300);
      put_signed8(out.value + 32 * ib + 8 * l, iq2s_grid[idx], b.qs[32 + 4 * ib + l]);
    }
    out.scale[2 * ib] = int16_t(2 * (b.scales[ib] & 0xF) + 1);
    out.scale[2 * ib + 1] = int16_t(2 * (b.scales[ib] >> 4) + 1);
  }
}

void decode_iq3_xxs(const BlockIQ3_XXS& b, IqDecoded& out) {
  out.d = half(b.d);
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    const uint32_t aux = load_u32(b.qs + 64 + 4 * ib);
    for (int l = 0; l < 4; ++l) {
      const uint8_t signs = ksigns_iq2xs[(aux >> (7 * l)) & 127];
      int8_t* v = out.value + 32 * ib + 8 * l;
      put_signed4(v, iq3xxs_grid[b.qs[8 * ib + 2 * l]], signs);
      put_signed4(v + 4, iq3xxs_grid[b.qs[8 * ib + 2 * l + 1]], uint8_t(signs >> 4));
    }
    out.scale[2 * ib] = out.scale[2 * ib + 1] = int16_t(2 * (aux >> 28) + 1);
  }
}

void decode_iq3_s(const BlockIQ3_S& b, IqDecoded& out) {
  out.d = half(b.d);
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    for (int l = 0; l < 4; ++l) {
      // qh[ib] bit 2l is the 9th bit of the first index, bit 2l+1 of the second.
      const int i1 = b.qs[8 * ib + 2 * l] | ((b.qh[ib] << (8 - 2 * l)) & 256);
      const int i2 = b.qs[8 * ib + 2 * l + 1] | ((b.qh[ib] << (7 - 2 * l)) & 256);
      const uint8_t signs = b.signs[4 * ib + l];
      int8_t* v = out.value + 32 * ib + 8 * l;
      put_signed4(v, iq3s_grid[i1], signs);
      put_signed4(v + 4, iq3s_grid[i2], uint8_t(signs >> 4));
    }
    const int ls = ib % 2 ? b.scales[ib / 2] >> 4 : b.scales[ib / 2] & 0xF;
    out.scale[2 * ib] = out.scale[2 * ib + 1] = int16_t(1 + 2 * ls);
  }
}

void decode_iq1_s(const BlockIQ1_S& b, IqDecoded& out) {
  out.d = half(b.d);
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    const uint16_t h = b.qh[ib];  // 4 x 3 index bits, 3-bit scale, delta sign
    const int delta_sign = h & 0x8000 ? -1 : 1;
    for (int l = 0; l < 4; ++l) {
      const int idx = b.qs[4 * ib + l] | (((h >> (3 * l)) & 7) << 8);
      put_iq1(out.value + 32 * ib + 8 * l, iq1s_grid[idx], delta_sign);
    }
    out.scale[2 * ib] = out.scale[2 * ib + 1] = int16_t(2 * ((h >> 12) & 7) + 1);
  }
}

void decode_iq1_m(const BlockIQ1_M& b, IqDecoded& out) {
  uint16_t sc[4];
  std::memcpy(sc, b.scales, sizeof sc);
  // The fp16 super-block scale is spread over the top nibbles of the four scale words.
  const uint16_t d_bits =
      uint16_t((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
  out.d = half(d_bits);
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    const int shift = 6 * (ib % 2);
    out.scale[2 * ib] = int16_t(2 * ((sc[ib / 2] >> shift) & 7) + 1);
    out.scale[2 * ib + 1] = int16_t(2 * ((sc[ib / 2] >> (shift + 3)) & 7) + 1);
    const uint8_t* q = b.qs + 4 * ib;
    const uint8_t* h = b.qh + 2 * ib;
    // Per group of 8: index high bits from a nibble of h (bits 0-2 / 4-6), delta sign bit 3 / 7.
    for (int l = 0; l < 4; ++l) {
      const uint8_t nib = l % 2 ? h[l / 2] >> 4 : h[l / 2] & 0xF;
      const int idx = q[l] | ((nib & 7) << 8);
      put_iq1(out.value + 32 * ib + 8 * l, iq1s_grid[idx], nib & 8 ? -1 : 1);
    }
  }
}

void decode_iq4_xs(const BlockIQ4_XS& b, IqDecoded& out) {
  out.d = half(b.d);
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    const int ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b.scales_h >> (2 * ib)) & 3) << 4);
    out.scale[2 * ib] = out.scale[2 * ib + 1] = int16_t(ls - 32);
    for (int j = 0; j < 16; ++j) {
      out.value[32 * ib + j] = kvalues_iq4nl[b.qs[16 * ib + j] & 0xF];
      out.value[32 * ib + 16 + j] = kvalues_iq4nl[b.qs[16 * ib + j] >> 4];
    }
  }
}

}  // namespace quant

namespace {

// `frac` is a function argument, not a template parameter: clang 14 (the fuzz build) has no float
// non-type template parameters.
template <typename Block, void (*decode)(const Block&, IqDecoded&)>
void dequantize_iq(const void* blocks, float* out, int64_t n, float frac) {
  const auto* b = blocks_of<Block>(blocks);
  IqDecoded dec;
  for (int64_t i = 0; i < n / QK_K; ++i, out += QK_K) {
    decode(b[i], dec);
    // Scale first, then value, as ggml does: the order only shows in the sign of a zero scale.
    for (int e = 0; e < QK_K; ++e) out[e] = dec.d * float(dec.scale[e / 16]) * frac * float(dec.value[e]);
  }
}

}  // namespace

void dequantize_row_iq2_xxs(const void* blocks, float* out, int64_t n) {
  dequantize_iq<BlockIQ2_XXS, decode_iq2_xxs>(blocks, out, n, kFracIq2);
}
void dequantize_row_iq2_xs(const void* blocks, float* out, int64_t n) {
  dequantize_iq<BlockIQ2_XS, decode_iq2_xs>(blocks, out, n, kFracIq2);
}
void dequantize_row_iq2_s(const void* blocks, float* out, int64_t n) {
  dequantize_iq<BlockIQ2_S, decode_iq2_s>(blocks, out, n, kFracIq2);
}
void dequantize_row_iq3_xxs(const void* blocks, float* out, int64_t n) {
  dequantize_iq<BlockIQ3_XXS, decode_iq3_xxs>(blocks, out, n, kFracIq3Xxs);
}
void dequantize_row_iq3_s(const void* blocks, float* out, int64_t n) {
  dequantize_iq<BlockIQ3_S, decode_iq3_s>(blocks, out, n, kFracIq3S);
}
void dequantize_row_iq1_s(const void* blocks, float* out, int64_t n) {
  dequantize_iq<BlockIQ1_S, decode_iq1_s>(blocks, out, n, kFracIq1);
}
void dequantize_row_iq1_m(const void* blocks, float* out, int64_t n) {
  dequantize_iq<BlockIQ1_M, decode_iq1_m>(blocks, out, n, kFracIq1);
}
void dequantize_row_iq4_xs(const void* blocks, float* out, int64_t n) {
  dequantize_iq<BlockIQ4_XS, decode_iq4_xs>(blocks, out, n, kFracIq4Xs);
}

void dequantize_row_iq4_nl(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockIQ4_NL>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, out += QK) {
    const float d = half(b[i].d);
    for (int j = 0; j < QK / 2; ++j) {
      out[j] = d * float(kvalues_iq4nl[b[i].qs[j] & 0xF]);
      out[j + QK / 2] = d * float(kvalues_iq4nl[b[i].qs[j] >> 4]);
    }
  }
}

}  // namespace moeserve
