// Quantizers of the non-linear 4-bit formats IQ4_NL (one scale per 32) and IQ4_XS (6-bit scales
// of 32-element blocks under a super-block scale), quants.md §1, §3, §5: each value is mapped to
// the nearest entry of the 16-value codebook at the block scale, which is searched among 15
// trial inverse scales (k + K[0]) / max, k in [-7, 7], by weighted least squares. Weights are
// imatrix * sqrt(sigma2 + x^2) with an importance matrix, x^2 without. The float operations
// follow ggml's quantize_iq4_nl / quantize_iq4_xs in order, so the bytes are the same as ggml's.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/blocks.h"
#include "quant/fit.h"
#include "quant/grids.h"
#include "quant/quants.h"

namespace moeserve {

using namespace quant;

namespace {

constexpr int kTrials = 7;
constexpr int kBlock = 32;

// Index of the codebook entry nearest to x (K ascending): x picks entry i once it reaches the
// midpoint of K[i-1] and K[i]. Comparing 2x with K[i-1] + K[i] keeps both sides exact.
inline int best_index(float x) {
  const float x2 = x + x;
  int idx = 0;
  for (int step = 8; step > 0; step >>= 1) {
    const int j = idx + step;
    idx = x2 >= float(kvalues_iq4nl[j - 1] + kvalues_iq4nl[j]) ? j : idx;
  }
  return idx;
}

// Quantizes one super-block of `size` (32 for IQ4_NL, 256 for IQ4_XS) to levels L and returns the
// block scales in scales[]; qw is the super-block's importance weights or null.
struct Iq4Blocks {
  float scales[QK_K / kBlock];
  float max_scale = 0;  // the block scale of largest magnitude, sign kept
};

Iq4Blocks search_blocks(int size, const float* x, const float* qw, uint8_t* L) {
  float sigma2 = 0;
  for (int j = 0; j < size; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / float(size);
  Iq4Blocks r;
  float amax_scale = 0;
  for (int ib = 0; ib < size / kBlock; ++ib) {
    const float* xb = x + ib * kBlock;
    uint8_t* Lb = L + ib * kBlock;
    float weight[kBlock];
    for (int j = 0; j < kBlock; ++j) weight[j] = qw ? qw[ib * kBlock + j] * std::sqrt(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
    float amax = 0, max = 0;
    for (int j = 0; j < kBlock; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    if (amax < kGroupMaxEps) {
      r.scales[ib] = 0;
      std::fill(Lb, Lb + kBlock, uint8_t(0));
      continue;
    }
    // Start with the extreme on the codebook's extreme, then try the trial scales.
    float d = -max / float(kvalues_iq4nl[0]);
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < kBlock; ++j) {
      const int l = best_index(id * xb[j]);
      Lb[j] = uint8_t(l);
      const float q = float(kvalues_iq4nl[l]);
      sumqx += weight[j] * q * xb[j];
      sumq2 += weight[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -kTrials; itry <= kTrials; ++itry) {
      id = float(itry + kvalues_iq4nl[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < kBlock; ++j) {
        const float q = float(kvalues_iq4nl[best_index(id * xb[j])]);
        sumqx += weight[j] * q * xb[j];
        sumq2 += weight[j] * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    r.scales[ib] = d;
    if (std::fabs(d) > amax_scale) {
      amax_scale = std::fabs(d);
      r.max_scale = d;
    }
  }
  return r;
}

// Two 4-bit indices per byte: element j of a 32-block in the low nibble, element j + 16 high.
void pack_nibbles(int size, const uint8_t* L, uint8_t* qs) {
  for (int i = 0; i < size / kBlock; ++i) {
    for (int j = 0; j < 16; ++j) qs[16 * i + j] = uint8_t(L[kBlock * i + j] | (L[kBlock * i + 16 + j] << 4));
  }
}

}  // namespace

void quantize_row_iq4_nl_imatrix(const float* x, void* blocks, int64_t n, const float* qw) {
  auto* y = blocks_of<BlockIQ4_NL>(blocks);
  for (int64_t ib = 0; ib < n / kBlock; ++ib) {
    const float* xb = x + kBlock * ib;
    uint8_t L[kBlock];
    const Iq4Blocks r = search_blocks(kBlock, xb, qw ? qw + kBlock * ib : nullptr, L);
    y[ib].d = to_half(r.scales[0]);
    // Every element re-mapped with the block scale found (the search only scored the trials).
    const float id = r.scales[0] ? 1 / r.scales[0] : 0;
    for (int j = 0; j < kBlock; ++j) L[j] = uint8_t(best_index(id * xb[j]));
    pack_nibbles(kBlock, L, y[ib].qs);
  }
}

void quantize_row_iq4_xs_imatrix(const float* x, void* blocks, int64_t n, const float* qw) {
  auto* y = blocks_of<BlockIQ4_XS>(blocks);
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    const float* xbl = x + QK_K * ibl;
    uint8_t L[QK_K];
    const Iq4Blocks r = search_blocks(QK_K, xbl, qw ? qw + QK_K * ibl : nullptr, L);
    BlockIQ4_XS& b = y[ibl];
    // Block scales as signed 6-bit levels of d = -max_scale / 32, the elements re-mapped with the
    // scale each block will be decoded with.
    const float d = -r.max_scale / 32;
    b.d = to_half(d);
    b.scales_h = 0;
    const float id = d ? 1 / d : 0.f;
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
      int l = std::clamp(nearest_int(id * r.scales[ib]), -32, 31);
      const float dl = d * float(l);
      const float idl = dl ? 1 / dl : 0.f;
      for (int j = 0; j < kBlock; ++j) L[kBlock * ib + j] = uint8_t(best_index(idl * xbl[kBlock * ib + j]));
      l += 32;
      if (ib % 2 == 0) {
        b.scales_l[ib / 2] = uint8_t(l & 0xF);
      } else {
        b.scales_l[ib / 2] |= uint8_t((l & 0xF) << 4);
      }
      b.scales_h |= uint16_t((l >> 4) << (2 * ib));
    }
    pack_nibbles(QK_K, L, b.qs);
  }
}

void quantize_row_iq4_nl(const float* in, void* blocks, int64_t n) {
  quantize_row_iq4_nl_imatrix(in, blocks, n, nullptr);
}
void quantize_row_iq4_xs(const float* in, void* blocks, int64_t n) {
  quantize_row_iq4_xs_imatrix(in, blocks, n, nullptr);
}

}  // namespace moeserve
