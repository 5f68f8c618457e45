// Weight x activations: activations quantized once to the weight's vec_dot_type, then tiles of
// (weight rows x activation columns) spread over the threads; a tile's weight rows stay in cache
// while every column of the tile passes over them. Consecutive tiles walk down the rows of one
// column block, so each thread streams through contiguous weight memory. Within a tile each weight
// row is decoded once for up to kMaxCols columns (Kernels::dot_cols), which gives every column the
// same result as a one-column product, so the output does not depend on the tiling or threads.
#include <atomic>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace moeserve::cpu {

void CpuBackend::do_matmul(const Tensor& dst, const Tensor& w, const Tensor& x) {
  const int64_t k = w.ne[0], m = w.ne[1], n = x.ne[1];
  const GgmlType act_type = type_traits(w.type).vec_dot_type;
  const size_t act_stride = row_bytes(act_type, k);
  if (skip(act_stride * size_t(n))) return;
  if (times_) label_timed("matmul", matmul_label(w, x));
  if (!kernels_.dot_for(w.type) || !kernels_.quantize_for(act_type)) {
    fail("matmul: no dot product for ", type_name(w.type), " weights");
  }
  char* act = static_cast<char*>(workspace());

  constexpr int64_t kTileRows = 16, kTileCols = 8;
  const int64_t row_tiles = (m + kTileRows - 1) / kTileRows, col_tiles = (n + kTileCols - 1) / kTileCols;
  const int64_t n_tiles = row_tiles * col_tiles;
  // A few columns (decode) are quantized by the caller alone; the tiles are then handed out
  // dynamically to whichever threads run (a thread the OS delays does not hold the product up).
  if (n < pool_.size()) {
    quantize_rows(x, act_type, act, 0, 1);
  } else {
    pool_.run([&](int ith, int nth) { quantize_rows(x, act_type, act, ith, nth); });
  }
  for_each_claimed(n_tiles, [&](int, int64_t tile) {
    const int64_t r0 = (tile % row_tiles) * kTileRows, c0 = (tile / row_tiles) * kTileCols;
    const int64_t r1 = std::min(m, r0 + kTileRows), c1 = std::min(n, c0 + kTileCols);
    const void* a[kTileCols];
    float* y[kTileCols];
    for (int64_t c = c0; c < c1; ++c) {
      a[c - c0] = act + size_t(c) * act_stride;
      y[c - c0] = reinterpret_cast<float*>(dst.row(c));
    }
    const int nc = int(c1 - c0);
    float out[kTileCols];
    const TilePrefetch pf(w.row(r0), w.nb[1], w.row_size(), r1 - r0);
    for (int64_t r = r0; r < r1; ++r) {
      pf.at(r - r0);
      kernels_.dot_cols(w.type, k, w.row(r), a, nc, out);
      for (int c = 0; c < nc; ++c) y[c][r] = out[c];
    }
  });
}

}  // namespace moeserve::cpu
