// K-quants Q2_K..Q6_K and the Q8_K activation format (quants.md §2): dequantize and the dot
// products against Q8_K. Quantizers are in k_quantize.cpp.
#include "quant/k_quants.h"

#include "quant/blocks.h"
#include "quant/quants.h"

namespace moeserve {

using namespace quant;

namespace quant {

ScaleMin q4k_scale_min(const uint8_t scales[12], int j) {
  if (j < 4) return {uint8_t(scales[j] & 63), uint8_t(scales[j + 4] & 63)};
  return {uint8_t((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4)),
          uint8_t((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4))};
}

int q3k_scale(const uint8_t scales[12], int j) {
  const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  const int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace quant

namespace {

// Element i = 128c + 32j + l of a Q2_K/Q3_K block keeps its low 2 bits in qs[32c + l] at bit 2j.
inline int two_bits(const uint8_t* qs, int i) {
  return (qs[32 * (i / 128) + i % 32] >> (2 * ((i / 32) % 4))) & 3;
}

// Q3_K: signed 3-bit value, high bit (inverted) in hmask[l] bit 4c + j.
inline int q3k_value(const BlockQ3_K& b, int i) {
  const int high = b.hmask[i % 32] & (1 << (i / 32));
  return two_bits(b.qs, i) - (high ? 0 : 4);
}

// Q4_K/Q5_K: element i = 64c + 32h + l keeps its low 4 bits in qs[32c + l], nibble h.
inline int nibble(const uint8_t* qs, int i) {
  const uint8_t byte = qs[32 * (i / 64) + i % 32];
  return (i / 32) % 2 ? byte >> 4 : byte & 0xF;
}

// Q5_K: 5th bit of element i (sub-block i / 32) in qh[i % 32] bit i / 32.
inline int q5k_value(const BlockQ5_K& b, int i) {
  return nibble(b.qs, i) + ((b.qh[i % 32] >> (i / 32)) & 1) * 16;
}

// Q6_K: element i = 128c + 32k + l: low nibble from ql[64c + l + 32(k%2)] (nibble k/2),
// high 2 bits from qh[32c + l] at bit 2k; stored with +32 offset.
inline int q6k_value(const BlockQ6_K& b, int i) {
  const int c = i / 128, k = (i / 32) % 4, l = i % 32;
  const uint8_t low = b.ql[64 * c + l + 32 * (k % 2)];
  const int lo4 = k / 2 ? low >> 4 : low & 0xF;
  const int hi2 = (b.qh[32 * c + l] >> (2 * k)) & 3;
  return (lo4 | (hi2 << 4)) - 32;
}

}  // namespace

void dequantize_row_q2_K(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ2_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, out += QK_K) {
    const float d = half(b[i].d), dmin = half(b[i].dmin);
    for (int e = 0; e < QK_K; ++e) {
      const uint8_t sc = b[i].scales[e / 16];
      out[e] = d * float(sc & 0xF) * float(two_bits(b[i].qs, e)) - dmin * float(sc >> 4);
    }
  }
}

void dequantize_row_q3_K(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ3_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, out += QK_K) {
    const float d = half(b[i].d);
    for (int s = 0; s < QK_K / 16; ++s) {
      const float dl = d * float(q3k_scale(b[i].scales, s));
      for (int e = 16 * s; e < 16 * s + 16; ++e) out[e] = dl * float(q3k_value(b[i], e));
    }
  }
}

void dequantize_row_q4_K(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ4_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, out += QK_K) {
    const float d = half(b[i].d), dmin = half(b[i].dmin);
    for (int s = 0; s < QK_K / 32; ++s) {
      const ScaleMin sm = q4k_scale_min(b[i].scales, s);
      const float dl = d * float(sm.scale), ml = dmin * float(sm.min);
      for (int e = 32 * s; e < 32 * s + 32; ++e) out[e] = dl * float(nibble(b[i].qs, e)) - ml;
    }
  }
}

void dequantize_row_q5_K(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ5_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, out += QK_K) {
    const float d = half(b[i].d), dmin = half(b[i].dmin);
    for (int s = 0; s < QK_K / 32; ++s) {
      const ScaleMin sm = q4k_scale_min(b[i].scales, s);
      const float dl = d * float(sm.scale), ml = dmin * float(sm.min);
      for (int e = 32 * s; e < 32 * s + 32; ++e) out[e] = dl * float(q5k_value(b[i], e)) - ml;
    }
  }
}

void dequantize_row_q6_K(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ6_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, out += QK_K) {
    const float d = half(b[i].d);
    for (int e = 0; e < QK_K; ++e) out[e] = d * float(b[i].scales[e / 16]) * float(q6k_value(b[i], e));
  }
}

void dequantize_row_q8_K(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ8_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, out += QK_K) {
    for (int e = 0; e < QK_K; ++e) out[e] = b[i].d * float(b[i].qs[e]);
  }
}

// Dot products with Q8_K: integer sums per sub-block times the integer sub-block scale, one float
// multiply per super-block. Mins meet the activation's 16-element sums (bsums) instead of
// every element.

float vec_dot_q2_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<BlockQ2_K>(w);
  const auto* y = blocks_of<BlockQ8_K>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int isum = 0, msum = 0;
    for (int s = 0; s < QK_K / 16; ++s) {
      int sub = 0;
      for (int e = 16 * s; e < 16 * s + 16; ++e) sub += two_bits(x[i].qs, e) * y[i].qs[e];
      isum += (x[i].scales[s] & 0xF) * sub;
      msum += (x[i].scales[s] >> 4) * y[i].bsums[s];
    }
    sum += y[i].d * half(x[i].d) * float(isum) - y[i].d * half(x[i].dmin) * float(msum);
  }
  return sum;
}

float vec_dot_q3_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<BlockQ3_K>(w);
  const auto* y = blocks_of<BlockQ8_K>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int isum = 0;
    for (int s = 0; s < QK_K / 16; ++s) {
      int sub = 0;
      for (int e = 16 * s; e < 16 * s + 16; ++e) sub += q3k_value(x[i], e) * y[i].qs[e];
      isum += q3k_scale(x[i].scales, s) * sub;
    }
    sum += y[i].d * half(x[i].d) * float(isum);
  }
  return sum;
}

namespace {

template <typename Block, int (*value)(const Block&, int)>
float dot_q45_k(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<Block>(w);
  const auto* y = blocks_of<BlockQ8_K>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int isum = 0, msum = 0;
    for (int s = 0; s < QK_K / 32; ++s) {
      const ScaleMin sm = q4k_scale_min(x[i].scales, s);
      int sub = 0;
      for (int e = 32 * s; e < 32 * s + 32; ++e) sub += value(x[i], e) * y[i].qs[e];
      isum += sm.scale * sub;
      msum += sm.min * (y[i].bsums[2 * s] + y[i].bsums[2 * s + 1]);
    }
    sum += y[i].d * half(x[i].d) * float(isum) - y[i].d * half(x[i].dmin) * float(msum);
  }
  return sum;
}

int q4k_value(const BlockQ4_K& b, int i) { return nibble(b.qs, i); }

}  // namespace

float vec_dot_q4_K_q8_K(int64_t n, const void* w, const void* a) {
  return dot_q45_k<BlockQ4_K, q4k_value>(n, w, a);
}

float vec_dot_q5_K_q8_K(int64_t n, const void* w, const void* a) {
  return dot_q45_k<BlockQ5_K, q5k_value>(n, w, a);
}

float vec_dot_q6_K_q8_K(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<BlockQ6_K>(w);
  const auto* y = blocks_of<BlockQ8_K>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int isum = 0;
    for (int s = 0; s < QK_K / 16; ++s) {
      int sub = 0;
      for (int e = 16 * s; e < 16 * s + 16; ++e) sub += q6k_value(x[i], e) * y[i].qs[e];
      isum += x[i].scales[s] * sub;
    }
    sum += y[i].d * half(x[i].d) * float(isum);
  }
  return sum;
}

}  // namespace moeserve
