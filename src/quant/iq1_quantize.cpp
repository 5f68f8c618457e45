// Quantizers of IQ1_S and IQ1_M (quants.md §3, §5): every element is one of {-1, 0, +1} shifted
// by +-1/8 (the shift sign shared by a group), times the group scale. With only three levels the
// best weighted fit is found exactly: sort the group's values, try every pair of split points
// that cut the sorted values into a -1, a 0 and a +1 part, for both shift signs, and keep the
// split with the best least-squares score. Groups of 8 whose levels are not on the IQ1 grid are
// snapped to their best grid neighbour and the scale refitted. The float operations follow
// ggml's reference quantizers in order, so the bytes are the same as ggml's.
#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <numeric>

#include "quant/blocks.h"
#include "quant/fit.h"
#include "quant/iq_neighbours.h"
#include "quant/quants.h"

namespace moeserve {

using namespace quant;

namespace {

constexpr float kDelta = 0.125f;  // IQ1S_DELTA = IQ1M_DELTA
constexpr float kEpsIq1S = 1e-12f;
constexpr float kEpsIq1M = 1e-7f;
// The three values of each shift sign, indexed by level 0, 1, 2.
constexpr float kPlus[3] = {-1 + kDelta, kDelta, 1 + kDelta};
constexpr float kMinus[3] = {-1 - kDelta, -kDelta, 1 - kDelta};

// Indices of x sorted by value; equal values keep their order (the C library's qsort, which
// ggml uses, is a stable merge sort for arrays this small).
template <int N>
std::array<int, N> sorted_order(const float* x) {
  std::array<int, N> idx;
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [x](int a, int b) { return x[a] < x[b]; });
  return idx;
}

class Iq1Grid {
 public:
  Iq1Grid() : nb_(grid_neighbours(IqGrid::IQ1_S)), g_(*nb_.levels) {}

  // Grid index of the 8 levels in L, snapping an off-grid tuple to the neighbour closest to x at
  // `scale` with values xx (which then replaces L). Sets *on_grid.
  int index(int8_t* L, const float* x, const float* weight, float scale, const float* xx, bool* on_grid) const {
    uint32_t u = 0;
    for (int j = 0; j < 8; ++j) u |= uint32_t(L[j]) << (2 * j);
    const int direct = g_.index_of[u];
    *on_grid = direct >= 0;
    if (direct >= 0) return direct;
    float best_d2 = FLT_MAX;
    int best = -1;
    for (const uint16_t k : nb_.of(u)) {
      const uint8_t* pg = level_form(k);
      float d2 = 0;
      for (int i = 0; i < 8; ++i) {
        const float diff = scale * xx[(pg[i] - 1) / 2] - x[i];
        d2 += weight[i] * diff * diff;
      }
      if (d2 < best_d2) {
        best_d2 = d2;
        best = k;
      }
    }
    // Only non-finite inputs leave no candidate; take the nearest one in level space then.
    if (best < 0) best = nb_.of(u)[0];
    const uint8_t* pg = level_form(best);
    for (int i = 0; i < 8; ++i) L[i] = int8_t((pg[i] - 1) / 2);
    return best;
  }

  const uint8_t* level_form(int index) const { return &g_.level_form[size_t(index) * 8]; }

 private:
  const GridNeighbours& nb_;
  const GridLevels& g_;
};

float sum_squares(const float* x, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

float max_abs(const float* x, int n) {
  float m = std::fabs(x[0]);
  for (int i = 1; i < n; ++i) m = m > std::fabs(x[i]) ? m : std::fabs(x[i]);
  return m;
}

// Levels of the sorted split: positions [0, i1) -> 0, [i1, i2) -> 1, [i2, n) -> 2.
template <int N>
void split_levels(const std::array<int, N>& idx, int i1, int i2, int8_t* L) {
  for (int j = 0; j < N; ++j) L[idx[size_t(j)]] = int8_t(j < i1 ? 0 : j < i2 ? 1 : 2);
}

}  // namespace

void quantize_row_iq1_s_imatrix(const float* x, void* blocks, int64_t n, const float* qw_row) {
  static const Iq1Grid grid;
  constexpr int kBlock = 32;
  auto* y = blocks_of<BlockIQ1_S>(blocks);
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    const float* xbl = x + QK_K * ibl;
    const float* qwbl = qw_row ? qw_row + QK_K * ibl : unit_weights();
    BlockIQ1_S& b = y[ibl];
    b.d = to_half(0.f);
    std::memset(b.qs, 0, sizeof b.qs);
    std::memset(b.qh, 0, sizeof b.qh);
    float scales[QK_K / kBlock];
    int shifts[QK_K / kBlock];
    float max_scale = 0;
    const float sigma2 = 2 * sum_squares(xbl, QK_K) / QK_K;
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
      const float* xb = xbl + kBlock * ib;
      const float* qw = qwbl + kBlock * ib;
      float weight[kBlock];
      for (int i = 0; i < kBlock; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
      scales[ib] = 0;
      shifts[ib] = 1;
      const float max = max_abs(xb, kBlock);
      if (max < kEpsIq1S) continue;
      const auto idx = sorted_order<kBlock>(xb);
      float sumx[kBlock + 1], sumw[kBlock + 1];
      sumx[0] = sumw[0] = 0;
      for (int j = 0; j < kBlock; ++j) {
        const int i = idx[size_t(j)];
        sumx[j + 1] = sumx[j] + weight[i] * xb[i];
        sumw[j + 1] = sumw[j] + weight[i];
      }
      float best_score = -FLT_MAX, scale = max;
      int besti1 = -1, besti2 = -1, best_shift = 0;
      for (int i1 = 0; i1 <= kBlock; ++i1) {
        for (int i2 = i1; i2 <= kBlock; ++i2) {
          for (const int shift : {1, -1}) {
            const float* xs = shift == 1 ? kPlus : kMinus;
            const float sumqx =
                (sumx[i1] - sumx[0]) * xs[0] + (sumx[i2] - sumx[i1]) * xs[1] + (sumx[kBlock] - sumx[i2]) * xs[2];
            const float sumq2 = (sumw[i1] - sumw[0]) * xs[0] * xs[0] + (sumw[i2] - sumw[i1]) * xs[1] * xs[1] +
                                (sumw[kBlock] - sumw[i2]) * xs[2] * xs[2];
            if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
              scale = sumqx / sumq2;
              best_score = scale * sumqx;
              besti1 = i1;
              besti2 = i2;
              best_shift = shift;
            }
          }
        }
      }
      if (besti1 < 0 || besti2 < 0 || best_shift == 0) continue;
      int8_t L[kBlock];
      split_levels<kBlock>(idx, besti1, besti2, L);
      if (scale < 0) {
        for (int8_t& l : L) l = int8_t(2 - l);
        scale = -scale;
        best_shift = -best_shift;
      }
      const float* xx = best_shift == 1 ? kPlus : kMinus;
      bool all_on_grid = true;
      int index[kBlock / 8];
      for (int k = 0; k < kBlock / 8; ++k) {
        bool on_grid;
        index[k] = grid.index(L + 8 * k, xb + 8 * k, weight + 8 * k, scale, xx, &on_grid);
        all_on_grid = all_on_grid && on_grid;
      }
      if (!all_on_grid) {
        float sumqx = 0, sumq2 = 0;
        for (int k = 0; k < kBlock / 8; ++k) {
          const uint8_t* pg = grid.level_form(index[k]);
          for (int j = 0; j < 8; ++j) {
            const float w = weight[8 * k + j];
            const float q = xx[(pg[j] - 1) / 2];
            sumqx += w * q * xb[8 * k + j];
            sumq2 += w * q * q;
          }
        }
        if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
      }
      uint16_t h = 0;
      for (int k = 0; k < kBlock / 8; ++k) {
        b.qs[(kBlock / 8) * ib + k] = uint8_t(index[k] & 255);
        h |= uint16_t((index[k] >> 8) << (3 * k));
      }
      b.qh[ib] = h;
      scales[ib] = scale;
      shifts[ib] = best_shift;
      max_scale = std::max(max_scale, scale);
    }
    if (!max_scale) continue;
    const float d = max_scale / 15;
    b.d = to_half(d * 1.125f);  // ggml's empirical correction of the stored super-block scale
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
      int l = std::clamp(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 7);
      if (shifts[ib] == -1) l |= 8;
      b.qh[ib] |= uint16_t(l << 12);
    }
  }
}

void quantize_row_iq1_m_imatrix(const float* x, void* blocks, int64_t n, const float* qw_row) {
  static const Iq1Grid grid;
  constexpr int kBlock = 16;
  // Shift combination k of a block's two halves: bit 1 = first half negative, bit 0 = second.
  constexpr uint8_t kMasks[4] = {0x00, 0x80, 0x08, 0x88};
  auto values = [](int combo, int half) {
    const bool minus = half == 0 ? combo >= 2 : combo % 2 == 1;
    return minus ? kMinus : kPlus;
  };
  auto* y = blocks_of<BlockIQ1_M>(blocks);
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    const float* xbl = x + QK_K * ibl;
    const float* qwbl = qw_row ? qw_row + QK_K * ibl : nullptr;
    BlockIQ1_M& b = y[ibl];
    std::memset(&b, 0, sizeof b);
    float scales[QK_K / kBlock];
    int shifts[QK_K / kBlock];
    float max_scale = 0;
    const float sigma2 = 2 * sum_squares(xbl, QK_K) / QK_K;
    auto block_weights = [&](int ib, float* weight) {
      const float* xb = xbl + kBlock * ib;
      for (int i = 0; i < kBlock; ++i) {
        weight[i] = qwbl ? qwbl[kBlock * ib + i] * std::sqrt(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
      }
    };
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
      const float* xb = xbl + kBlock * ib;
      float weight[kBlock];
      block_weights(ib, weight);
      scales[ib] = 0;
      shifts[ib] = 0;
      const float max = max_abs(xb, kBlock);
      if (max < kEpsIq1M) continue;
      const auto idx = sorted_order<kBlock>(xb);
      // Each split scores the 4 shift combinations; sums run over the sorted values in order. The
      // terms w q x and w q q of every sorted value at every level are the same for all splits:
      // computed once.
      float tx[kBlock][3][4], t2[kBlock][3][4];
      for (int j = 0; j < kBlock; ++j) {
        const int i = idx[size_t(j)];
        for (int level = 0; level < 3; ++level) {
          for (int k = 0; k < 4; ++k) {
            const float q = values(k, i < kBlock / 2 ? 0 : 1)[level];
            tx[j][level][k] = weight[i] * q * xb[i];
            t2[j][level][k] = weight[i] * q * q;
          }
        }
      }
      float best_score = -FLT_MAX, scale = max;
      int besti1 = -1, besti2 = -1, best_k = -1;
      for (int i1 = 0; i1 <= kBlock; ++i1) {
        for (int i2 = i1; i2 <= kBlock; ++i2) {
          float sumqx[4] = {}, sumq2[4] = {};
          for (int j = 0; j < kBlock; ++j) {
            const int level = j < i1 ? 0 : j < i2 ? 1 : 2;
            for (int k = 0; k < 4; ++k) {
              sumqx[k] += tx[j][level][k];
              sumq2[k] += t2[j][level][k];
            }
          }
          for (int k = 0; k < 4; ++k) {
            if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k]) {
              scale = sumqx[k] / sumq2[k];
              best_score = scale * sumqx[k];
              besti1 = i1;
              besti2 = i2;
              best_k = k;
            }
          }
        }
      }
      if (besti1 < 0 || besti2 < 0 || best_k < 0) continue;
      int8_t L[kBlock];
      split_levels<kBlock>(idx, besti1, besti2, L);
      if (scale < 0) {
        for (int8_t& l : L) l = int8_t(2 - l);
        scale = -scale;
        best_k = 3 - best_k;  // both halves change sign
      }
      bool all_on_grid = true;
      int index[2];
      for (int k = 0; k < 2; ++k) {
        bool on_grid;
        index[k] = grid.index(L + 8 * k, xb + 8 * k, weight + 8 * k, scale, values(best_k, k), &on_grid);
        all_on_grid = all_on_grid && on_grid;
      }
      if (!all_on_grid) {
        float sumqx = 0, sumq2 = 0;
        for (int k = 0; k < 2; ++k) {
          const float* xx = values(best_k, k);
          const uint8_t* pg = grid.level_form(index[k]);
          for (int j = 0; j < 8; ++j) {
            const float w = weight[8 * k + j];
            const float q = xx[(pg[j] - 1) / 2];
            sumqx += w * q * xb[8 * k + j];
            sumq2 += w * q * q;
          }
        }
        if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
      }
      b.qs[2 * ib] = uint8_t(index[0] & 255);
      b.qs[2 * ib + 1] = uint8_t(index[1] & 255);
      b.qh[ib] = uint8_t((index[0] >> 8) | ((index[1] >> 8) << 4));
      scales[ib] = scale;
      shifts[ib] = best_k;
      max_scale = std::max(max_scale, scale);
    }
    if (!max_scale) continue;
    // 3-bit block scales against d = max_scale / 15; then the super-block scale itself is refitted
    // by least squares over the whole super-block with the chosen levels and block scales.
    uint16_t sc[4] = {};
    float d = max_scale / 15;
    const float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < QK_K / kBlock; ++ib) {
      const int l = std::clamp(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 7);
      sc[ib / 4] |= uint16_t(l << (3 * (ib % 4)));
      b.qh[ib] |= kMasks[shifts[ib]];
      const float* xb = xbl + kBlock * ib;
      float weight[kBlock];
      block_weights(ib, weight);
      for (int k = 0; k < 2; ++k) {
        const float* xx = values(shifts[ib], k);
        const uint8_t* pg = grid.level_form(b.qs[2 * ib + k] + ((b.qh[ib] << (8 - 4 * k)) & 0x700));
        for (int j = 0; j < 8; ++j) {
          const float w = weight[8 * k + j];
          const float q = xx[(pg[j] - 1) / 2] * float(2 * l + 1);
          sumqx += w * q * xb[8 * k + j];
          sumq2 += w * q * q;
        }
      }
    }
    if (sumq2 > 0) d = sumqx / sumq2;
    const uint16_t dh = to_half(d * 1.1125f);  // ggml's empirical correction of the stored scale
    sc[0] |= uint16_t((dh & 0x000f) << 12);
    sc[1] |= uint16_t((dh & 0x00f0) << 8);
    sc[2] |= uint16_t((dh & 0x0f00) << 4);
    sc[3] |= uint16_t(dh & 0xf000);
    std::memcpy(b.scales, sc, sizeof sc);
  }
}

void quantize_row_iq1_s(const float* in, void* blocks, int64_t n) {
  quantize_row_iq1_s_imatrix(in, blocks, n, nullptr);
}
void quantize_row_iq1_m(const float* in, void* blocks, int64_t n) {
  quantize_row_iq1_m_imatrix(in, blocks, n, nullptr);
}

}  // namespace moeserve
