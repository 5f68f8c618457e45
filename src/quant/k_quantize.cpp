// Quantizers of the K-quants and Q8_K. They reproduce ggml's *_ref quantizers (used without an
// importance matrix) and its quantize_row_*_impl (with one) operation by operation, so that a row
// quantized here has the same bytes as one quantized by ggml: each sub-block gets a scale (and
// min) from a small search, the scales are quantized against a super-block scale, then every
// element is re-rounded with the scale it will actually be decoded with.
#include <algorithm>
#include <cmath>

#include "quant/blocks.h"
#include "quant/fit.h"
#include "quant/k_quants.h"
#include "quant/quants.h"

namespace moeserve {

using namespace quant;

namespace {

// Q3_K's sub-block search: symmetric levels in [-nmax, nmax), weighted by x^2, then up to 5
// passes that move single elements to the level that improves the least-squares fit.
// Returns the scale; L gets level + nmax (all 0 for an all-zero sub-block).
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t(0));
    return 0;
  }
  const float iscale = float(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = int8_t(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * float(L[i]);
      if (slx > 0) {
        float sl2 = suml2 - w * float(L[i]) * float(L[i]);
        const int new_l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
        if (new_l != L[i]) {
          slx += w * x[i] * float(new_l);
          sl2 += w * float(new_l) * float(new_l);
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = int8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
  return suml2 > 0 ? sumlx / suml2 : 0.0f;
}

// Affine quantization x ~ scale * L + min (min <= 0) to L in [0, nmax], minimising the weighted
// error (|.| with use_mad, else squared) over nstep + 1 trial scales
// (rmin + rdelta * is + nmax) / (max - min), each refit by weighted least squares.
// Returns the scale; *neg_min gets -min (>= 0).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* neg_min,
                       float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, uint8_t(0));
    *neg_min = -min;
    return 0;
  }
  auto error = [use_mad](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
  float iscale = float(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = uint8_t(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    best_error += weights[i] * error(scale * float(L[i]) + min - x[i]);
  }
  uint8_t Laux[32];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = uint8_t(l);
      const float w = weights[i];
      sum_l += w * float(l);
      sum_l2 += w * float(l) * float(l);
      sum_xl += w * float(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) cur_error += weights[i] * error(this_scale * float(Laux[i]) + this_min - x[i]);
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *neg_min = -min;
  return scale;
}

// Q2_K/Q3_K store 2 low bits per element: element 128c + 32j + l in qs[32c + l] at bit 2j.
void pack_two_bits(const uint8_t* L, uint8_t* qs) {
  for (int c = 0; c < QK_K; c += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[c / 4 + l] = uint8_t(L[c + l] | (L[c + l + 32] << 2) | (L[c + l + 64] << 4) | (L[c + l + 96] << 6));
    }
  }
}

// Q4_K/Q5_K: 8 (scale, min) pairs of 6 bits into 12 bytes (inverse of q4k_scale_min).
void pack_scale_min(uint8_t scales[12], int j, uint8_t ls, uint8_t lm) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
    scales[j - 4] |= uint8_t((ls >> 4) << 6);
    scales[j] |= uint8_t((lm >> 4) << 6);
  }
}

// Q4_K/Q5_K: every element re-rounded with the scale and min it will be decoded with.
template <typename Block>
void requantize_q45_k(const float* x, const Block& y, uint8_t* L, int nmax) {
  for (int j = 0; j < QK_K / 32; ++j) {
    const ScaleMin sm = q4k_scale_min(y.scales, j);
    const float d = half(y.d) * float(sm.scale);
    if (d == 0) continue;
    const float dm = half(y.dmin) * float(sm.min);
    for (int i = 32 * j; i < 32 * j + 32; ++i) L[i] = uint8_t(std::clamp(nearest_int((x[i] + dm) / d), 0, nmax));
  }
}

// Shared by Q4_K and Q5_K: sub-block search on 32 elements weighted by rms + |x|, 6-bit scales
// and mins against d = max_scale / 63, dmin = max_min / 63, then the final levels in L.
template <typename Block>
void quantize_q45_k(const float* x, Block& y, uint8_t* L, int nmax, float rmin, int nstep) {
  float scales[QK_K / 32], mins[QK_K / 32], weights[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < QK_K / 32; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = make_qkx2_quants(32, nmax, xs, weights, L + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < QK_K / 32; ++j) {
    const uint8_t ls = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
    pack_scale_min(y.scales, j, ls, lm);
  }
  y.d = to_half(max_scale / 63.f);
  y.dmin = to_half(max_min / 63.f);
  requantize_q45_k(x, y, L, nmax);
}

// Q2_K: re-round every element with the 4-bit scale and min it is decoded with, then pack.
void finish_q2_k(const float* x, BlockQ2_K& y, uint8_t* L) {
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = half(y.d) * float(y.scales[j] & 0xF);
    if (d == 0) continue;
    const float dm = half(y.dmin) * float(y.scales[j] >> 4);
    for (int e = 16 * j; e < 16 * j + 16; ++e) L[e] = uint8_t(std::clamp(nearest_int((x[e] + dm) / d), 0, 3));
  }
  pack_two_bits(L, y.qs);
}

// Q3_K: 16 signed 6-bit scales stored as level + 32: low nibbles in bytes 0..7, top 2 bits in
// bytes 8..11 (inverse of q3k_scale). `scales` must start zeroed.
void pack_q3_k_scale(uint8_t scales[12], int j, int l) {
  if (j < 8) {
    scales[j] = uint8_t(l & 0xF);
  } else {
    scales[j - 8] |= uint8_t((l & 0xF) << 4);
  }
  scales[j % 4 + 8] |= uint8_t((l >> 4) << (2 * (j / 4)));
}

// Q3_K: re-round with the decoded scales; the high bit of level L (0..7) goes to
// hmask[e % 32] bit e / 32, qs keeps the low 2 bits.
void finish_q3_k(const float* x, BlockQ3_K& y, int8_t* L) {
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = half(y.d) * float(q3k_scale(y.scales, j));
    if (d == 0) continue;
    for (int e = 16 * j; e < 16 * j + 16; ++e) L[e] = int8_t(std::clamp(nearest_int(x[e] / d), -4, 3) + 4);
  }
  uint8_t low[QK_K];
  std::fill(y.hmask, y.hmask + QK_K / 8, uint8_t(0));
  for (int e = 0; e < QK_K; ++e) {
    if (L[e] > 3) y.hmask[e % 32] |= uint8_t(1 << (e / 32));
    low[e] = uint8_t(L[e] & 3);
  }
  pack_two_bits(low, y.qs);
}

void pack_q4_k_levels(const uint8_t* L, BlockQ4_K& y) {
  for (int c = 0; c < QK_K / 64; ++c) {
    for (int l = 0; l < 32; ++l) y.qs[32 * c + l] = uint8_t(L[64 * c + l] | (L[64 * c + l + 32] << 4));
  }
}

// Low 4 bits as in Q4_K; the 5th bit of element e goes to qh[e % 32] bit e / 32.
void pack_q5_k_levels(const uint8_t* L, BlockQ5_K& y) {
  std::fill(y.qh, y.qh + QK_K / 8, uint8_t(0));
  for (int e = 0; e < QK_K; ++e) {
    if (L[e] > 15) y.qh[e % 32] |= uint8_t(1 << (e / 32));
  }
  for (int c = 0; c < QK_K / 64; ++c) {
    for (int l = 0; l < 32; ++l) {
      y.qs[32 * c + l] = uint8_t((L[64 * c + l] & 0xF) | ((L[64 * c + l + 32] & 0xF) << 4));
    }
  }
}

// Q4_K/Q5_K with an importance matrix: elements weighted by imatrix * sqrt(sigma2 + x^2), each
// sub-block fitted with its min, then the 8 scales and 8 mins themselves fitted to 6 bits
// weighted by the sub-blocks' total weights.
template <typename Block>
void quantize_q45_k_imatrix(const float* x, const float* qw, Block& y, uint8_t* L, int nmax) {
  float scales[QK_K / 32], mins[QK_K / 32], sw[QK_K / 32], weights[32];
  float sum_x2 = 0;
  for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
  const float sigma2 = 2 * sum_x2 / QK_K;
  for (int j = 0; j < QK_K / 32; ++j) {
    for (int l = 0; l < 32; ++l) weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 32; ++l) sumw += weights[l];
    sw[j] = sumw;
    scales[j] = make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], -0.9f, 0.05f, 36);
  }
  uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
  const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
  const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
  for (int j = 0; j < QK_K / 32; ++j) pack_scale_min(y.scales, j, Ls[j], Lm[j]);
  y.d = to_half(d_block);
  y.dmin = to_half(m_block);
  requantize_q45_k(x, y, L, nmax);
}

// Q6_K: 16 sub-blocks of 16 with symmetric 6-bit levels, weighted by the importance matrix when
// given (x^2 otherwise), 8-bit sub-block scales against the super-block scale.
void quantize_q6_k(const float* in, void* blocks, int64_t n, const float* qw) {
  auto* y = blocks_of<BlockQ6_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
      scales[ib] = make_qx_quants(16, 32, in + 16 * ib, L + 16 * ib, qw ? qw + QK_K * i + 16 * ib : nullptr);
      if (std::fabs(scales[ib]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof y[i]);
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = to_half(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ++ib) y[i].scales[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < QK_K / 16; ++j) {
      const float d = half(y[i].d) * float(y[i].scales[j]);
      if (d == 0) continue;
      for (int e = 16 * j; e < 16 * j + 16; ++e) L[e] = int8_t(std::clamp(nearest_int(in[e] / d), -32, 31) + 32);
    }
    // Element 128c + 32k + l: low nibble in ql[64c + l + 32(k%2)] (nibble k/2), high 2 bits in
    // qh[32c + l] at bit 2k.
    for (int c = 0; c < 2; ++c) {
      const int8_t* Lc = L + 128 * c;
      for (int l = 0; l < 32; ++l) {
        y[i].ql[64 * c + l] = uint8_t((Lc[l] & 0xF) | ((Lc[l + 64] & 0xF) << 4));
        y[i].ql[64 * c + l + 32] = uint8_t((Lc[l + 32] & 0xF) | ((Lc[l + 96] & 0xF) << 4));
        y[i].qh[32 * c + l] =
            uint8_t((Lc[l] >> 4) | ((Lc[l + 32] >> 4) << 2) | ((Lc[l + 64] >> 4) << 4) | ((Lc[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace

void quantize_row_q2_K(const float* in, void* blocks, int64_t n) {
  auto* y = blocks_of<BlockQ2_K>(blocks);
  constexpr float q4scale = 15.f;
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K) {
    uint8_t L[QK_K];
    float scales[QK_K / 16], mins[QK_K / 16], weights[16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(in[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, in + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = uint8_t(nearest_int(iscale * scales[j]));
      y[i].d = to_half(max_scale / q4scale);
    } else {
      std::fill(y[i].scales, y[i].scales + QK_K / 16, uint8_t(0));
      y[i].d = to_half(0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] |= uint8_t(nearest_int(iscale * mins[j]) << 4);
      y[i].dmin = to_half(max_min / q4scale);
    } else {
      y[i].dmin = to_half(0.f);
    }
    finish_q2_k(in, y[i], L);
  }
}

void quantize_row_q3_K(const float* in, void* blocks, int64_t n) {
  auto* y = blocks_of<BlockQ3_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      scales[j] = make_q3_quants(16, 4, in + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::fill(y[i].scales, y[i].scales + 12, uint8_t(0));
    if (max_scale != 0) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < QK_K / 16; ++j) pack_q3_k_scale(y[i].scales, j, std::clamp(nearest_int(iscale * scales[j]), -32, 31) + 32);
      y[i].d = to_half(1 / iscale);
    } else {
      y[i].d = to_half(0.f);
    }
    finish_q3_k(in, y[i], L);
  }
}

void quantize_row_q4_K(const float* in, void* blocks, int64_t n) {
  auto* y = blocks_of<BlockQ4_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K) {
    uint8_t L[QK_K];
    quantize_q45_k(in, y[i], L, 15, -1.f, 20);
    pack_q4_k_levels(L, y[i]);
  }
}

void quantize_row_q5_K(const float* in, void* blocks, int64_t n) {
  auto* y = blocks_of<BlockQ5_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K) {
    uint8_t L[QK_K];
    quantize_q45_k(in, y[i], L, 31, -0.5f, 15);
    pack_q5_k_levels(L, y[i]);
  }
}

void quantize_row_q6_K(const float* in, void* blocks, int64_t n) { quantize_q6_k(in, blocks, n, nullptr); }

// With an importance matrix (ggml's quantize_row_*_impl). Without one they are the reference
// quantizers above, as in ggml.

void quantize_row_q2_K_imatrix(const float* in, void* blocks, int64_t n, const float* qw) {
  if (!qw) return quantize_row_q2_K(in, blocks, n);
  auto* y = blocks_of<BlockQ2_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K, qw += QK_K) {
    uint8_t L[QK_K];
    float scales[QK_K / 16], mins[QK_K / 16], sw[QK_K / 16], weight[16];
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += in[j] * in[j];
    const float sigma2 = sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + in[16 * j + l] * in[16 * j + l]);
      sw[j] = 0;
      for (int l = 0; l < 16; ++l) sw[j] += weight[l];
      scales[j] = make_qkx3_quants(16, 3, in + 16 * j, weight, L + 16 * j, &mins[j], -0.9f, 0.05f, 36);
    }
    uint8_t Ls[QK_K / 16], Lm[QK_K / 16];
    y[i].d = to_half(make_qp_quants(QK_K / 16, 15, scales, Ls, sw));
    y[i].dmin = to_half(make_qp_quants(QK_K / 16, 15, mins, Lm, sw));
    for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = uint8_t(Ls[j] | (Lm[j] << 4));
    finish_q2_k(in, y[i], L);
  }
}

void quantize_row_q3_K_imatrix(const float* in, void* blocks, int64_t n, const float* qw) {
  if (!qw) return quantize_row_q3_K(in, blocks, n);
  auto* y = blocks_of<BlockQ3_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K, qw += QK_K) {
    int8_t L[QK_K];
    float scales[QK_K / 16], sw[QK_K / 16], weight[16];
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += in[j] * in[j];
    const float sigma2 = 2 * sumx2 / QK_K;
    for (int j = 0; j < QK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + in[16 * j + l] * in[16 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += weight[l];
      sw[j] = sumw;
      scales[j] = make_qx_quants(16, 4, in + 16 * j, L + 16 * j, weight);
    }
    // The 16 sub-block scales are themselves fitted to signed 6-bit levels.
    int8_t Ls[QK_K / 16];
    const float d_block = make_qx_quants(QK_K / 16, 32, scales, Ls, sw);
    std::fill(y[i].scales, y[i].scales + 12, uint8_t(0));
    for (int j = 0; j < QK_K / 16; ++j) pack_q3_k_scale(y[i].scales, j, Ls[j]);
    y[i].d = to_half(d_block);
    finish_q3_k(in, y[i], L);
  }
}

void quantize_row_q4_K_imatrix(const float* in, void* blocks, int64_t n, const float* qw) {
  if (!qw) return quantize_row_q4_K(in, blocks, n);
  auto* y = blocks_of<BlockQ4_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K, qw += QK_K) {
    uint8_t L[QK_K];
    quantize_q45_k_imatrix(in, qw, y[i], L, 15);
    pack_q4_k_levels(L, y[i]);
  }
}

void quantize_row_q5_K_imatrix(const float* in, void* blocks, int64_t n, const float* qw) {
  if (!qw) return quantize_row_q5_K(in, blocks, n);
  auto* y = blocks_of<BlockQ5_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K, qw += QK_K) {
    uint8_t L[QK_K];
    quantize_q45_k_imatrix(in, qw, y[i], L, 31);
    pack_q5_k_levels(L, y[i]);
  }
}

void quantize_row_q6_K_imatrix(const float* in, void* blocks, int64_t n, const float* qw) {
  quantize_q6_k(in, blocks, n, qw);
}

// Q8_K: the signed extreme maps to -127 (ggml's IQ SIMD code relies on that), round half to even.
void quantize_row_q8_K(const float* in, void* blocks, int64_t n) {
  auto* y = blocks_of<BlockQ8_K>(blocks);
  for (int64_t i = 0; i < n / QK_K; ++i, in += QK_K) {
    float max = 0, amax = 0;
    for (int e = 0; e < QK_K; ++e) {
      if (std::fabs(in[e]) > amax) {
        amax = std::fabs(in[e]);
        max = in[e];
      }
    }
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof y[i]);
      continue;
    }
    const float iscale = -127.f / max;
    for (int e = 0; e < QK_K; ++e) y[i].qs[e] = int8_t(std::min(127, nearest_int(iscale * in[e])));
    for (int g = 0; g < QK_K / 16; ++g) {
      int sum = 0;
      for (int e = 16 * g; e < 16 * g + 16; ++e) sum += y[i].qs[e];
      y[i].bsums[g] = int16_t(sum);
    }
    y[i].d = 1 / iscale;
  }
}

}  // namespace moeserve
