// Legacy 32-element block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 (quants.md §1): dequantize,
// ggml's reference quantizers and its importance-weighted ones (same float operations, so the
// same bits) and the dot products against Q8_0 / Q8_1 activations.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "quant/blocks.h"
#include "quant/fit.h"
#include "quant/quants.h"

namespace moeserve {

using namespace quant;

namespace {

// 5th bits of the 32 elements of a Q5 block: bit j of the little-endian u32 is element j's.
inline int high_bit(const uint8_t qh[4], int j) { return (load_u32(qh) >> j) & 1; }

// The element with the largest magnitude, sign kept (the first one on ties).
float signed_absmax(const float* x, int n) {
  float amax = 0, max = 0;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void min_max(const float* x, int n, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
}

// Q8_0 and Q8_1 share the quantization: d = amax / 127, q = round half away from zero.
float quantize_q8_block(const float* x, int8_t* qs) {
  float amax = 0;
  for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int j = 0; j < QK; ++j) qs[j] = int8_t(std::round(x[j] * id));
  return d;
}

}  // namespace

void dequantize_row_q4_0(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ4_0>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, out += QK) {
    const float d = half(b[i].d);
    for (int j = 0; j < QK / 2; ++j) {
      out[j] = float((b[i].qs[j] & 0xF) - 8) * d;
      out[j + QK / 2] = float((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ4_1>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, out += QK) {
    const float d = half(b[i].d), m = half(b[i].m);
    for (int j = 0; j < QK / 2; ++j) {
      out[j] = float(b[i].qs[j] & 0xF) * d + m;
      out[j + QK / 2] = float(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_row_q5_0(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ5_0>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, out += QK) {
    const float d = half(b[i].d);
    for (int j = 0; j < QK / 2; ++j) {
      const int x0 = (b[i].qs[j] & 0xF) | (high_bit(b[i].qh, j) << 4);
      const int x1 = (b[i].qs[j] >> 4) | (high_bit(b[i].qh, j + 16) << 4);
      out[j] = float(x0 - 16) * d;
      out[j + QK / 2] = float(x1 - 16) * d;
    }
  }
}

void dequantize_row_q5_1(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ5_1>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, out += QK) {
    const float d = half(b[i].d), m = half(b[i].m);
    for (int j = 0; j < QK / 2; ++j) {
      const int x0 = (b[i].qs[j] & 0xF) | (high_bit(b[i].qh, j) << 4);
      const int x1 = (b[i].qs[j] >> 4) | (high_bit(b[i].qh, j + 16) << 4);
      out[j] = float(x0) * d + m;
      out[j + QK / 2] = float(x1) * d + m;
    }
  }
}

void dequantize_row_q8_0(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ8_0>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, out += QK) {
    const float d = half(b[i].d);
    for (int j = 0; j < QK; ++j) out[j] = float(b[i].qs[j]) * d;
  }
}

void dequantize_row_q8_1(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockQ8_1>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, out += QK) {
    const float d = half(b[i].d);
    for (int j = 0; j < QK; ++j) out[j] = float(b[i].qs[j]) * d;
  }
}

// Q4_0 / Q5_0: d = (signed extreme) / -2^(bits-1), so the extreme maps to level 0; the shifted
// value is truncated toward zero (the +0.5 makes that a rounding).
void quantize_row_q4_0(const float* in, void* blocks, int64_t n) {
  auto* b = blocks_of<BlockQ4_0>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, in += QK) {
    const float d = signed_absmax(in, QK) / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = to_half(d);
    for (int j = 0; j < QK / 2; ++j) {
      const int q0 = std::min(15, int(in[j] * id + 8.5f));
      const int q1 = std::min(15, int(in[j + QK / 2] * id + 8.5f));
      b[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q5_0(const float* in, void* blocks, int64_t n) {
  auto* b = blocks_of<BlockQ5_0>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, in += QK) {
    const float d = signed_absmax(in, QK) / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = to_half(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const int q0 = std::min(31, int(in[j] * id + 16.5f));
      const int q1 = std::min(31, int(in[j + QK / 2] * id + 16.5f));
      b[i].qs[j] = uint8_t((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= uint32_t(q0 >> 4) << j;
      qh |= uint32_t(q1 >> 4) << (j + QK / 2);
    }
    std::memcpy(b[i].qh, &qh, sizeof qh);
  }
}

// Q4_1 / Q5_1: affine, m = min, d = (max - min) / (2^bits - 1).
void quantize_row_q4_1(const float* in, void* blocks, int64_t n) {
  auto* b = blocks_of<BlockQ4_1>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, in += QK) {
    float min, max;
    min_max(in, QK, min, max);
    const float d = (max - min) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = to_half(d);
    b[i].m = to_half(min);
    for (int j = 0; j < QK / 2; ++j) {
      const int q0 = std::min(15, int((in[j] - min) * id + 0.5f));
      const int q1 = std::min(15, int((in[j + QK / 2] - min) * id + 0.5f));
      b[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q5_1(const float* in, void* blocks, int64_t n) {
  auto* b = blocks_of<BlockQ5_1>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, in += QK) {
    float min, max;
    min_max(in, QK, min, max);
    const float d = (max - min) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = to_half(d);
    b[i].m = to_half(min);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
      // No clamp here in ggml either: (max - min) * id rounds to at most 31.
      const int q0 = int((in[j] - min) * id + 0.5f);
      const int q1 = int((in[j + QK / 2] - min) * id + 0.5f);
      b[i].qs[j] = uint8_t((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= uint32_t((q0 >> 4) & 1) << j;
      qh |= uint32_t((q1 >> 4) & 1) << (j + QK / 2);
    }
    std::memcpy(b[i].qh, &qh, sizeof qh);
  }
}

void quantize_row_q8_0(const float* in, void* blocks, int64_t n) {
  auto* b = blocks_of<BlockQ8_0>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, in += QK) b[i].d = to_half(quantize_q8_block(in, b[i].qs));
}

void quantize_row_q8_1(const float* in, void* blocks, int64_t n) {
  auto* b = blocks_of<BlockQ8_1>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, in += QK) {
    const float d = quantize_q8_block(in, b[i].qs);
    int sum = 0;
    for (int j = 0; j < QK; ++j) sum += b[i].qs[j];
    b[i].d = to_half(d);
    b[i].s = to_half(float(sum) * d);
  }
}

// With an importance matrix (ggml's quantize_row_*_impl): elements weighted by
// imatrix * sqrt(sigma2 + x^2), sigma2 the mean square of the whole row, and the scale searched
// instead of taken from the extreme. Without one they are the reference quantizers above.
namespace {

float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / float(n);
}

void block_weights(const float* xb, const float* qw, float sigma2, float* weight) {
  for (int j = 0; j < QK; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

// The 5th bits of 32 levels: bit j of the little-endian u32 is element j's.
void pack_high_bits(const uint8_t* L, uint8_t qh[4]) {
  uint32_t bits = 0;
  for (int j = 0; j < QK; ++j) bits |= uint32_t((L[j] & 0x10) >> 4) << j;
  std::memcpy(qh, &bits, 4);
}

}  // namespace

void quantize_row_q4_0_imatrix(const float* in, void* blocks, int64_t n, const float* qw) {
  if (!qw) return quantize_row_q4_0(in, blocks, n);
  auto* y = blocks_of<BlockQ4_0>(blocks);
  const float sigma2 = row_sigma2(in, n);
  for (int64_t ib = 0; ib < n / QK; ++ib) {
    float weight[QK];
    int8_t L[QK];
    block_weights(in + QK * ib, qw + QK * ib, sigma2, weight);
    y[ib].d = to_half(make_qx_quants(QK, 8, in + QK * ib, L, weight));
    for (int j = 0; j < QK / 2; ++j) y[ib].qs[j] = uint8_t(L[j] | (L[j + QK / 2] << 4));
  }
}

void quantize_row_q4_1_imatrix(const float* in, void* blocks, int64_t n, const float* qw) {
  if (!qw) return quantize_row_q4_1(in, blocks, n);
  auto* y = blocks_of<BlockQ4_1>(blocks);
  const float sigma2 = row_sigma2(in, n);
  for (int64_t ib = 0; ib < n / QK; ++ib) {
    float weight[QK], neg_min;
    uint8_t L[QK];
    block_weights(in + QK * ib, qw + QK * ib, sigma2, weight);
    y[ib].d = to_half(make_qkx3_quants(QK, 15, in + QK * ib, weight, L, &neg_min, -0.9f, 0.05f, 36));
    y[ib].m = to_half(-neg_min);
    for (int j = 0; j < QK / 2; ++j) y[ib].qs[j] = uint8_t(L[j] | (L[j + QK / 2] << 4));
  }
}

void quantize_row_q5_0_imatrix(const float* in, void* blocks, int64_t n, const float* qw) {
  if (!qw) return quantize_row_q5_0(in, blocks, n);
  auto* y = blocks_of<BlockQ5_0>(blocks);
  const float sigma2 = row_sigma2(in, n);
  for (int64_t ib = 0; ib < n / QK; ++ib) {
    float weight[QK];
    int8_t L[QK];
    block_weights(in + QK * ib, qw + QK * ib, sigma2, weight);
    y[ib].d = to_half(make_qx_quants(QK, 16, in + QK * ib, L, weight));
    for (int j = 0; j < QK / 2; ++j) y[ib].qs[j] = uint8_t((L[j] & 0xF) | ((L[j + QK / 2] & 0xF) << 4));
    pack_high_bits(reinterpret_cast<const uint8_t*>(L), y[ib].qh);
  }
}

void quantize_row_q5_1_imatrix(const float* in, void* blocks, int64_t n, const float* qw) {
  if (!qw) return quantize_row_q5_1(in, blocks, n);
  auto* y = blocks_of<BlockQ5_1>(blocks);
  const float sigma2 = row_sigma2(in, n);
  for (int64_t ib = 0; ib < n / QK; ++ib) {
    float weight[QK], neg_min;
    uint8_t L[QK];
    block_weights(in + QK * ib, qw + QK * ib, sigma2, weight);
    y[ib].d = to_half(make_qkx3_quants(QK, 31, in + QK * ib, weight, L, &neg_min, -0.9f, 0.05f, 36));
    y[ib].m = to_half(-neg_min);
    for (int j = 0; j < QK / 2; ++j) y[ib].qs[j] = uint8_t((L[j] & 0xF) | ((L[j + QK / 2] & 0xF) << 4));
    pack_high_bits(L, y[ib].qh);
  }
}

// Dot products: exact integer sums per block, then one float scale per block.

float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<BlockQ4_0>(w);
  const auto* y = blocks_of<BlockQ8_0>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    int isum = 0;
    for (int j = 0; j < QK / 2; ++j) {
      isum += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK / 2];
    }
    sum += float(isum) * half(x[i].d) * half(y[i].d);
  }
  return sum;
}

float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<BlockQ4_1>(w);
  const auto* y = blocks_of<BlockQ8_1>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    int isum = 0;
    for (int j = 0; j < QK / 2; ++j) {
      isum += (x[i].qs[j] & 0xF) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + QK / 2];
    }
    // The offset m meets sum(activation), which Q8_1 carries as s.
    sum += half(x[i].d) * half(y[i].d) * float(isum) + half(x[i].m) * half(y[i].s);
  }
  return sum;
}

float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<BlockQ5_0>(w);
  const auto* y = blocks_of<BlockQ8_0>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    int isum = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const int x0 = ((x[i].qs[j] & 0xF) | (high_bit(x[i].qh, j) << 4)) - 16;
      const int x1 = ((x[i].qs[j] >> 4) | (high_bit(x[i].qh, j + 16) << 4)) - 16;
      isum += x0 * y[i].qs[j] + x1 * y[i].qs[j + QK / 2];
    }
    sum += float(isum) * half(x[i].d) * half(y[i].d);
  }
  return sum;
}

float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<BlockQ5_1>(w);
  const auto* y = blocks_of<BlockQ8_1>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    int isum = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const int x0 = (x[i].qs[j] & 0xF) | (high_bit(x[i].qh, j) << 4);
      const int x1 = (x[i].qs[j] >> 4) | (high_bit(x[i].qh, j + 16) << 4);
      isum += x0 * y[i].qs[j] + x1 * y[i].qs[j + QK / 2];
    }
    sum += half(x[i].d) * half(y[i].d) * float(isum) + half(x[i].m) * half(y[i].s);
  }
  return sum;
}

float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<BlockQ8_0>(w);
  const auto* y = blocks_of<BlockQ8_0>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    int isum = 0;
    for (int j = 0; j < QK; ++j) isum += x[i].qs[j] * y[i].qs[j];
    sum += float(isum) * (half(x[i].d) * half(y[i].d));
  }
  return sum;
}

}  // namespace moeserve
