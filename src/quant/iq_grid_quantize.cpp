// Quantizers of the lattice i-quants IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S (quants.md §3, §5).
// Per sub-block (32 or 16 elements): take magnitudes and signs apart (the 7-bit sign formats make
// each group of 8 have an even number of negatives by flipping the least important element),
// search the sub-block scale over a few trial inverse scales, rounding each group of 8 (or 4)
// magnitudes to levels and snapping tuples that are not grid points to their best neighbour,
// keep the best weighted least-squares fit, then quantize the sub-block scales to 4 bits against
// the super-block scale. Element weights are w = imatrix * sqrt(sigma2 + x^2) with an importance
// matrix, x^2 (0.25 sigma2 + x^2 for IQ2_S) without one. The float operations follow ggml's
// reference quantizers in order, so the bytes are the same as ggml's.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <optional>

#include "quant/blocks.h"
#include "quant/fit.h"
#include "quant/iq_neighbours.h"
#include "quant/quants.h"

namespace moeserve {

using namespace quant;

namespace {

// ggml's thresholds under which a sub-block counts as all zero.
constexpr float kEpsIq3Xxs = 1e-8f;
constexpr float kEpsIq2S = 1e-8f;

inline float max_of(const float* x, int n) {
  float m = x[0];
  for (int i = 1; i < n; ++i) m = m > x[i] ? m : x[i];
  return m;
}

// One grid with its neighbour lists: rounds a group to levels and snaps it onto the grid.
class GridSearch {
 public:
  explicit GridSearch(IqGrid grid) : nb_(grid_neighbours(grid)), g_(*nb_.levels) {}

  int group() const { return g_.elems; }
  int max_level() const { return int(g_.magnitudes.size()) - 1; }

  // Levels of one group at inverse scale id (grid value 2l + 1 ~ id * x), packed.
  uint32_t round(const float* xval, float id, int8_t* L) const {
    uint32_t u = 0;
    for (int i = 0; i < g_.elems; ++i) {
      L[i] = int8_t(std::clamp(nearest_int(0.5f * (id * xval[i] - 1)), 0, max_level()));
      u |= uint32_t(L[i]) << (g_.bits * i);
    }
    return u;
  }

  int index_of(uint32_t u) const { return g_.index_of[u]; }

  // The neighbour of off-grid tuple u closest to xval at `scale` (weights waux on the squared
  // differences); its levels go to L. First one wins ties. The distances of kLanes candidates are
  // computed at once, each lane with exactly the operations (and order) of one candidate's sum.
  int best_neighbour(uint32_t u, const float* xval, const float* waux, float scale, int8_t* L) const {
    using f4 = float __attribute__((vector_size(16)));
    using i4 = int32_t __attribute__((vector_size(16)));
    static_assert(GridNeighbours::kLanes == 4);
    const std::span<const uint16_t> candidates = nb_.of(u);
    const int n = int(candidates.size());
    const size_t np = nb_.padded(u);
    const float* values = nb_.values.data() + nb_.value_start[u];
    f4 x[8], w[8];
    for (int i = 0; i < g_.elems; ++i) {
      x[i] = f4{} + xval[i];
      w[i] = f4{} + waux[i];
    }
    // Per lane: the smallest distance so far and its candidate (the first one on ties, as a
    // sequential scan with `<` finds); lanes past the end of the list never win.
    f4 best = f4{} + FLT_MAX;
    i4 best_index = i4{} - 1;
    const i4 lane = {0, 1, 2, 3};
    for (size_t c = 0; c < np; c += 4) {
      f4 acc = {0, 0, 0, 0};
      for (int i = 0; i < g_.elems; ++i) {
        f4 q;
        std::memcpy(&q, values + size_t(i) * np + c, sizeof q);
        const f4 diff = scale * q - x[i];
        acc += w[i] * diff * diff;
      }
      const i4 index = lane + int32_t(c);
      const i4 better = (acc < best) & (index < n);
      best = f4((i4(acc) & better) | (i4(best) & ~better));
      best_index = (index & better) | (best_index & ~better);
    }
    int found = -1;
    float found_d2 = FLT_MAX;
    for (int l = 0; l < 4; ++l) {
      if (best_index[l] < 0) continue;
      if (found < 0 || best[l] < found_d2 || (best[l] == found_d2 && best_index[l] < found)) {
        found = best_index[l];
        found_d2 = best[l];
      }
    }
    // Only non-finite inputs leave no candidate; the nearest one in level space is taken then.
    const int index = candidates[size_t(std::max(found, 0))];
    set_levels(index, L);
    return index;
  }

  void set_levels(int index, int8_t* L) const {
    const uint8_t* pg = &g_.level_form[size_t(index) * size_t(g_.elems)];
    for (int i = 0; i < g_.elems; ++i) L[i] = int8_t((pg[i] - 1) / 2);
  }

  // Rounds a whole sub-block of n values at inverse scale id, snapping off-grid groups with
  // scale `snap_scale`; on_grid[k] tells whether group k was on the grid as rounded.
  void round_all(int n, const float* xval, const float* waux, float id, float snap_scale, int8_t* L,
                 bool* on_grid) const {
    for (int k = 0; k < n / g_.elems; ++k) {
      const int o = k * g_.elems;
      const uint32_t u = round(xval + o, id, L + o);
      on_grid[k] = index_of(u) >= 0;
      if (!on_grid[k]) best_neighbour(u, xval + o, waux + o, snap_scale, L + o);
    }
  }

  // Grid index of each group of L (every group must be on the grid).
  int grid_index(const int8_t* L) const {
    uint32_t u = 0;
    for (int i = 0; i < g_.elems; ++i) u |= uint32_t(L[i]) << (g_.bits * i);
    return index_of(u);
  }

 private:
  const GridNeighbours& nb_;
  const GridLevels& g_;
};

// Weighted least squares of xval against the odd levels 2L + 1.
struct Fit {
  float sumqx = 0, sumq2 = 0;
};
inline Fit fit_levels(int n, const float* xval, const float* weight, const int8_t* L) {
  Fit f;
  for (int i = 0; i < n; ++i) {
    const float q = float(2 * L[i] + 1);
    f.sumqx += weight[i] * xval[i] * q;
    f.sumq2 += weight[i] * q * q;
  }
  return f;
}

// Magnitudes and signs of the groups of 8 of a sub-block. With `even_parity` an odd number of
// negatives is fixed by flipping the sign of the element with the smallest w x^2 (its magnitude
// then enters the search negated), and each mask keeps 7 bits.
void split_signs(int n, const float* xb, const float* weight, bool even_parity, float* xval, uint8_t* signs) {
  for (int k = 0; k < n / 8; ++k) {
    int nflip = 0;
    uint8_t s = 0;
    for (int i = 0; i < 8; ++i) {
      if (xb[8 * k + i] >= 0) {
        xval[8 * k + i] = xb[8 * k + i];
      } else {
        xval[8 * k + i] = -xb[8 * k + i];
        ++nflip;
        s |= uint8_t(1 << i);
      }
    }
    if (even_parity && nflip % 2) {
      int imin = 0;
      float min = weight[8 * k] * xb[8 * k] * xb[8 * k];
      for (int i = 1; i < 8; ++i) {
        const float ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
        if (ax < min) {
          min = ax;
          imin = i;
        }
      }
      xval[8 * k + imin] = -xval[8 * k + imin];
      s ^= uint8_t(1 << imin);
    }
    signs[k] = even_parity ? uint8_t(s & 127) : s;
  }
}

// The scale search of IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S: trial inverse scales
// (2 kmax - 1 + k step) / max for |k| <= trials, then, if the best trial had groups off the grid,
// one more rounding at the fitted scale (of those groups, or of all with refit_all) and a refit.
struct SearchSpec {
  int n;                // sub-block size
  int trials;
  float step;
  bool assume_on_grid;  // on-grid flags before any trial improved the fit
  bool refit_all;
};

float search_scale(const GridSearch& gs, const SearchSpec& spec, const float* xval, const float* weight,
                   const float* waux, float max, int8_t* L) {
  const int n_groups = spec.n / gs.group();
  const int kmax = gs.max_level() + 1;
  int8_t Laux[32];
  bool on_grid[8], on_grid_aux[8];
  std::fill(on_grid, on_grid + n_groups, spec.assume_on_grid);
  float best = 0;
  float scale = max / float(2 * kmax - 1);
  for (int is = -spec.trials; is <= spec.trials; ++is) {
    const float id = (float(2 * kmax - 1) + float(is) * spec.step) / max;
    gs.round_all(spec.n, xval, waux, id, 1 / id, Laux, on_grid_aux);
    const Fit f = fit_levels(spec.n, xval, weight, Laux);
    if (f.sumq2 > 0 && f.sumqx * f.sumqx > best * f.sumq2) {
      scale = f.sumqx / f.sumq2;
      best = scale * f.sumqx;
      std::copy(Laux, Laux + spec.n, L);
      std::copy(on_grid_aux, on_grid_aux + n_groups, on_grid);
    }
  }
  const bool any_off = std::find(on_grid, on_grid + n_groups, false) != on_grid + n_groups;
  if (any_off && scale > 0) {
    const float id = 1 / scale;
    for (int k = 0; k < n_groups; ++k) {
      if (on_grid[k] && !spec.refit_all) continue;
      const int o = k * gs.group();
      const uint32_t u = gs.round(xval + o, id, L + o);
      if (gs.index_of(u) < 0) gs.best_neighbour(u, xval + o, waux + o, scale, L + o);
    }
    const Fit f = fit_levels(spec.n, xval, weight, L);
    if (f.sumq2 > 0) scale = f.sumqx / f.sumq2;
  }
  return scale;
}

// Element weights with an importance matrix: imatrix * sqrt(sigma2 + x^2); waux = sqrt(weight)
// weighs the neighbour searches.
void imatrix_weights(int n, const float* xb, const float* qw, float sigma2, float* weight) {
  for (int i = 0; i < n; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
}
void square_weights(int n, const float* xb, float* weight) {
  for (int i = 0; i < n; ++i) weight[i] = xb[i] * xb[i];
}
void sqrt_weights(int n, const float* weight, float* waux) {
  for (int i = 0; i < n; ++i) waux[i] = std::sqrt(weight[i]);
}

float sum_squares(const float* x, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

// Sub-block scale s ~ d (2l + 1), l in [0, 15].
inline int scale_level(float id, float scale, int max_level) {
  return std::clamp(nearest_int(0.5f * (id * scale - 1)), 0, max_level);
}

// What differs between the formats in the per-sub-block part of quantizing one super-block.
enum class DefaultWeights { unit_imatrix, quarter_sigma2, squares };  // element weights without an imatrix
struct SubBlockRule {
  int size;               // 16 or 32 elements
  float sigma2_factor;    // sigma2 = factor * mean(x^2)
  DefaultWeights no_imatrix;
  bool even_parity;       // 7-bit sign masks (see split_signs)
  float zero_eps;         // a sub-block whose largest magnitude is below this (or zero) stays zero
};

// Quantizes the sub-blocks of one super-block xbl: weights, signs, the format's scale `search`
// (xval, weight, waux, max, L) -> scale (none: the sub-block stays zero), sign flip for a negative
// scale, then `store`(ib, L, signs) for each non-zero sub-block. Fills scales[] and returns the
// largest.
template <typename Search, typename Store>
float quantize_sub_blocks(const SubBlockRule& rule, const float* xbl, const float* qwbl, float* scales,
                          Search&& search, Store&& store) {
  const float sigma2 = rule.sigma2_factor * sum_squares(xbl, QK_K) / QK_K;
  if (!qwbl && rule.no_imatrix == DefaultWeights::unit_imatrix) qwbl = unit_weights();
  const uint8_t sign_mask = rule.even_parity ? 127 : 255;
  float max_scale = 0;
  for (int ib = 0; ib < QK_K / rule.size; ++ib) {
    const float* xb = xbl + rule.size * ib;
    float weight[32], waux[32], xval[32];
    int8_t L[32] = {};
    uint8_t signs[4];
    if (qwbl) {
      imatrix_weights(rule.size, xb, qwbl + rule.size * ib, sigma2, weight);
    } else if (rule.no_imatrix == DefaultWeights::quarter_sigma2) {
      for (int i = 0; i < rule.size; ++i) weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
    } else {
      square_weights(rule.size, xb, weight);
    }
    sqrt_weights(rule.size, weight, waux);
    split_signs(rule.size, xb, weight, rule.even_parity, xval, signs);
    const float max = max_of(xval, rule.size);
    scales[ib] = 0;
    if (max < rule.zero_eps || max == 0) continue;
    const std::optional<float> found = search(xval, weight, waux, max, L);
    if (!found) continue;
    float scale = *found;
    if (scale < 0) {
      scale = -scale;
      for (uint8_t& sg : signs) sg = uint8_t(~sg & sign_mask);
    }
    store(ib, L, signs);
    scales[ib] = scale;
    max_scale = std::max(max_scale, scale);
  }
  return max_scale;
}

// The scale search shared by IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S, as a quantize_sub_blocks callback.
auto grid_search(const GridSearch& gs, const SearchSpec& spec) {
  return [&gs, spec](const float* xval, const float* weight, const float* waux, float max, int8_t* L) {
    return std::optional<float>(search_scale(gs, spec, xval, weight, waux, max, L));
  };
}

}  // namespace

void quantize_row_iq2_xxs_imatrix(const float* x, void* blocks, int64_t n, const float* qw_row) {
  static const GridSearch gs(IqGrid::IQ2_XXS);
  auto* y = blocks_of<BlockIQ2_XXS>(blocks);
  constexpr int kMaxQ = 3;
  // IQ2_XXS starts from a plain 4-level fit of the magnitudes, whose top level sets the range.
  auto search = [](const float* xval, const float* weight, const float* waux, float,
                   int8_t* L) -> std::optional<float> {
    float scale = make_qp_quants(32, kMaxQ + 1, xval, reinterpret_cast<uint8_t*>(L), weight);
    const float eff_max = scale * kMaxQ;
    if (eff_max <= 0) return std::nullopt;
    int8_t Laux[32];
    bool on_grid[4];
    float best = 0;
    for (int is = -6; is <= 6; ++is) {
      const float id = (float(2 * kMaxQ - 1) + float(is) * 0.1f) / eff_max;
      gs.round_all(32, xval, waux, id, 1 / id, Laux, on_grid);
      const Fit f = fit_levels(32, xval, weight, Laux);
      if (f.sumq2 > 0 && f.sumqx * f.sumqx > best * f.sumq2) {
        scale = f.sumqx / f.sumq2;
        best = scale * f.sumqx;
        std::copy(Laux, Laux + 32, L);
      }
    }
    if (scale > 0) {
      gs.round_all(32, xval, waux, 1 / scale, scale, L, on_grid);
      const Fit f = fit_levels(32, xval, weight, L);
      if (f.sumq2 > 0) scale = f.sumqx / f.sumq2;
    }
    return scale;
  };
  const SubBlockRule rule{32, 1, DefaultWeights::unit_imatrix, true, kGroupMaxEps};
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    uint32_t q2[2 * (QK_K / 32)] = {};
    float scales[QK_K / 32];
    const float max_scale = quantize_sub_blocks(
        rule, x + QK_K * ibl, qw_row ? qw_row + QK_K * ibl : nullptr, scales, search,
        [&](int ib, const int8_t* L, const uint8_t* signs) {
          for (int k = 0; k < 4; ++k) {
            q2[2 * ib] |= uint32_t(gs.grid_index(L + 8 * k)) << (8 * k);
            q2[2 * ib + 1] |= uint32_t(signs[k]) << (7 * k);
          }
        });
    y[ibl].d = to_half(0.f);
    if (!max_scale) {
      std::memset(y[ibl].qs, 0, sizeof y[ibl].qs);
      continue;
    }
    const float d = max_scale / 31;
    y[ibl].d = to_half(d);
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 32; ++ib) q2[2 * ib + 1] |= uint32_t(scale_level(id, scales[ib], 15)) << 28;
    std::memcpy(y[ibl].qs, q2, sizeof q2);
  }
}

void quantize_row_iq2_xs_imatrix(const float* x, void* blocks, int64_t n, const float* qw_row) {
  static const GridSearch gs(IqGrid::IQ2_XS);
  auto* y = blocks_of<BlockIQ2_XS>(blocks);
  const SubBlockRule rule{16, 1, DefaultWeights::unit_imatrix, true, kGroupMaxEps};
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    uint16_t q2[QK_K / 8] = {};
    float scales[QK_K / 16];
    const float max_scale = quantize_sub_blocks(
        rule, x + QK_K * ibl, qw_row ? qw_row + QK_K * ibl : nullptr, scales,
        grid_search(gs, {16, 9, 0.1f, true, false}), [&](int ib, const int8_t* L, const uint8_t* signs) {
          for (int k = 0; k < 2; ++k) q2[2 * ib + k] = uint16_t(gs.grid_index(L + 8 * k) | (signs[k] << 9));
        });
    y[ibl].d = to_half(0.f);
    std::memset(y[ibl].scales, 0, sizeof y[ibl].scales);
    if (!max_scale) {
      std::memset(y[ibl].qs, 0, sizeof y[ibl].qs);
      continue;
    }
    const float d = max_scale / 31;
    y[ibl].d = to_half(d);
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
      y[ibl].scales[ib / 2] |= uint8_t(scale_level(id, scales[ib], 15) << (4 * (ib % 2)));
    }
    std::memcpy(y[ibl].qs, q2, sizeof q2);
  }
}

void quantize_row_iq2_s_imatrix(const float* x, void* blocks, int64_t n, const float* qw_row) {
  static const GridSearch gs(IqGrid::IQ2_S);
  auto* y = blocks_of<BlockIQ2_S>(blocks);
  const SubBlockRule rule{16, 2, DefaultWeights::quarter_sigma2, false, kEpsIq2S};
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    BlockIQ2_S& b = y[ibl];
    std::memset(&b, 0, sizeof b);
    float scales[QK_K / 16];
    const float max_scale = quantize_sub_blocks(
        rule, x + QK_K * ibl, qw_row ? qw_row + QK_K * ibl : nullptr, scales,
        grid_search(gs, {16, 9, 0.1f, true, false}), [&](int ib, const int8_t* L, const uint8_t* signs) {
          for (int k = 0; k < 2; ++k) {
            const int index = gs.grid_index(L + 8 * k);
            const int i8 = 2 * ib + k;
            b.qs[i8] = uint8_t(index & 255);
            b.qh[i8 / 4] |= uint8_t((index >> 8) << (2 * (i8 % 4)));
            b.qs[QK_K / 8 + i8] = signs[k];
          }
        });
    if (!max_scale) continue;
    const float d = max_scale / 31;
    b.d = to_half(d * 0.9875f);  // ggml's empirical correction of the stored super-block scale
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 16; ++ib) b.scales[ib / 2] |= uint8_t(scale_level(id, scales[ib], 15) << (4 * (ib % 2)));
  }
}

void quantize_row_iq3_xxs_imatrix(const float* x, void* blocks, int64_t n, const float* qw_row) {
  static const GridSearch gs(IqGrid::IQ3_XXS);
  auto* y = blocks_of<BlockIQ3_XXS>(blocks);
  const SubBlockRule rule{32, 2, DefaultWeights::squares, true, kEpsIq3Xxs};
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    uint8_t q3[3 * QK_K / 8] = {};  // 64 grid indices, then 8 words of 4 x 7 sign bits + scale
    float scales[QK_K / 32];
    const float max_scale = quantize_sub_blocks(
        rule, x + QK_K * ibl, qw_row ? qw_row + QK_K * ibl : nullptr, scales,
        grid_search(gs, {32, 15, 0.2f, true, false}), [&](int ib, const int8_t* L, const uint8_t* signs) {
          for (int k = 0; k < 8; ++k) q3[8 * ib + k] = uint8_t(gs.grid_index(L + 4 * k));
          const uint32_t sign_bits = uint32_t(signs[0]) | uint32_t(signs[1]) << 7 | uint32_t(signs[2]) << 14 |
                                     uint32_t(signs[3]) << 21;
          std::memcpy(q3 + QK_K / 4 + 4 * ib, &sign_bits, 4);
        });
    y[ibl].d = to_half(0.f);
    if (!max_scale) {
      std::memset(y[ibl].qs, 0, sizeof y[ibl].qs);
      continue;
    }
    const float d = max_scale / 31;
    y[ibl].d = to_half(d * 1.0125f);  // ggml's empirical correction of the stored super-block scale
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      uint32_t word = load_u32(q3 + QK_K / 4 + 4 * ib);
      word |= uint32_t(scale_level(id, scales[ib], 15)) << 28;
      std::memcpy(q3 + QK_K / 4 + 4 * ib, &word, 4);
    }
    std::memcpy(y[ibl].qs, q3, sizeof q3);
  }
}

void quantize_row_iq3_s_imatrix(const float* x, void* blocks, int64_t n, const float* qw_row) {
  static const GridSearch gs(IqGrid::IQ3_S);
  auto* y = blocks_of<BlockIQ3_S>(blocks);
  // An exactly zero sub-block keeps index 0 and no signs. (ggml's reference also leaves its write
  // position for the indices and signs behind then, so that the following sub-blocks' bytes land
  // one sub-block early; here every sub-block is written in its own place.)
  const SubBlockRule rule{32, 2, DefaultWeights::squares, false, 0};
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    BlockIQ3_S& b = y[ibl];
    std::memset(&b, 0, sizeof b);
    float scales[QK_K / 32];
    const float max_scale = quantize_sub_blocks(
        rule, x + QK_K * ibl, qw_row ? qw_row + QK_K * ibl : nullptr, scales,
        grid_search(gs, {32, 9, 0.2f, false, true}), [&](int ib, const int8_t* L, const uint8_t* signs) {
          for (int k = 0; k < 8; ++k) {
            const int index = gs.grid_index(L + 4 * k);
            b.qs[8 * ib + k] = uint8_t(index & 255);
            b.qh[ib] |= uint8_t((index >> 8) << k);
          }
          std::copy(signs, signs + 4, b.signs + 4 * ib);
        });
    if (!max_scale) continue;
    const float d = max_scale / 31;
    b.d = to_half(d * 1.033f);  // ggml's empirical correction of the stored super-block scale
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      b.scales[ib / 2] = uint8_t(scale_level(id, scales[ib], 15) | (scale_level(id, scales[ib + 1], 15) << 4));
    }
  }
}

void quantize_row_iq2_xxs(const float* in, void* blocks, int64_t n) {
  quantize_row_iq2_xxs_imatrix(in, blocks, n, nullptr);
}
void quantize_row_iq2_xs(const float* in, void* blocks, int64_t n) {
  quantize_row_iq2_xs_imatrix(in, blocks, n, nullptr);
}
void quantize_row_iq2_s(const float* in, void* blocks, int64_t n) {
  quantize_row_iq2_s_imatrix(in, blocks, n, nullptr);
}
void quantize_row_iq3_xxs(const float* in, void* blocks, int64_t n) {
  quantize_row_iq3_xxs_imatrix(in, blocks, n, nullptr);
}
void quantize_row_iq3_s(const float* in, void* blocks, int64_t n) {
  quantize_row_iq3_s_imatrix(in, blocks, n, nullptr);
}

}  // namespace moeserve
