// Weight x activations: activations quantized once to the weight's vec_dot_type, then tiles of
// (weight rows x activation columns) spread over the threads; a tile's weight rows stay in cache
// while every column of the tile passes over them. Consecutive tiles walk down the rows of one
// column block, so each thread streams through contiguous weight memory. Within a tile each weight
// row is decoded once for up to kMaxCols columns (Kernels::dot_cols), which gives every column the
// same result as a one-column product, so the output does not depend on the tiling or threads.
//
// The fused forms (matmuls: several weights times one input; matmul_swiglu: silu(gate x) * up x)
// run as one pool job: the input is quantized once per activation type, and the tiles of every
// product share one item space, so a decode step pays one fork/join per fused op instead of one
// per product (plus one for the SwiGLU). Each tile runs the same kernels on the same rows as the
// separate ops would, so the results are bit for bit those of the separate ops.

#include <numeric>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace moeserve::cpu {

// One weight product of a pool job. swiglu: a SwiGLU pair, `w` is the gate, `up` the up weight,
// and dst gets silu(w x) * (up x).
struct CpuBackend::WeightProduct {
  Tensor dst, w, up;
  bool swiglu = false;
  size_t act_offset = 0;      // of x quantized to w's vec_dot_type, in the workspace
  const char* act = nullptr;  // the same, once the workspace is known
  size_t act_stride = 0;
  int64_t row_tiles = 0, first_tile = 0;
};

namespace {

constexpr int64_t kTileRows = 16, kTileCols = 8;

}  // namespace

void CpuBackend::do_matmul(const Tensor& dst, const Tensor& w, const Tensor& x) {
  if (times_) label_timed("matmul", matmul_label(w, x));
  WeightProduct p;
  p.dst = dst;
  p.w = w;
  run_products(x, std::span<WeightProduct>(&p, 1));
}

void CpuBackend::do_matmuls(const Tensor& x, std::span<const MatmulProduct> products) {
  WeightProduct ps[kMaxMatmuls];
  for (size_t i = 0; i < products.size(); ++i) {
    ps[i].dst = products[i].dst;
    ps[i].w = products[i].w;
  }
  run_products(x, std::span<WeightProduct>(ps, products.size()));
}

void CpuBackend::do_matmul_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                                  const Tensor&) {
  WeightProduct p;
  p.dst = dst;
  p.w = gate;
  p.up = up;
  p.swiglu = true;
  run_products(x, std::span<WeightProduct>(&p, 1));
}

// x * sigmoid(gate), then the product (mul_sigmoid's arithmetic: sigmoid(g) rounded to float, then
// the product with x, in place in x as the chain leaves it), inside the product's job.
void CpuBackend::do_gated_matmul(const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate) {
  if (!options_.fused_layer_ops) return Backend::do_gated_matmul(dst, w, x, gate);
  const int64_t d0 = x.ne[0], d1 = x.ne[1];
  const ActPrologue gate_x = [&](int64_t t, int64_t begin, int64_t end) {
    auto* xt = reinterpret_cast<float*>(x.row(0, t));
    for (int64_t i = begin; i < end;) {
      const int64_t h = i / d0, head_end = std::min(end, (h + 1) * d0);
      const float* g = reinterpret_cast<const float*>(gate.row(h, t)) - h * d0;
      for (; i < head_end; ++i) xt[i] = xt[i] * sigmoid(g[i]);
    }
  };
  WeightProduct p;
  p.dst = dst;
  p.w = w;
  run_products(x.reshape({d0 * d1, x.ne[2], 1, 1}), std::span<WeightProduct>(&p, 1), &gate_x);
}

// At decode, the norm's scale per row on the caller (one dot product), then scratch = x * s *
// weight inside the products' job, in the chunks its activations are quantized in (rms_norm's
// arithmetic, so the bits of rms_norm then matmuls). Larger batches take the chain, whose norm
// and quantization are spread over the threads already.
void CpuBackend::do_norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                                 std::span<const MatmulProduct> products) {
  const int64_t d = x.ne[0], n = x.ne[1];
  if (!options_.fused_layer_ops || n >= pool_.size()) return Backend::do_norm_matmuls(x, weight, eps, scratch, products);
  WeightProduct ps[kMaxMatmuls];
  for (size_t i = 0; i < products.size(); ++i) {
    ps[i].dst = products[i].dst;
    ps[i].w = products[i].w;
  }
  const std::span<WeightProduct> span(ps, products.size());
  if (skip()) return run_products(scratch, span);  // records the products' workspace
  std::vector<float> scales(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) scales[size_t(r)] = rms_scale(d, reinterpret_cast<const float*>(x.row(r)), eps);
  const float* w = weight.as<float>();
  const ActPrologue normalize = [&](int64_t r, int64_t begin, int64_t end) {
    rms_apply(reinterpret_cast<const float*>(x.row(r)), scales[size_t(r)], w, reinterpret_cast<float*>(scratch.row(r)),
              begin, end);
  };
  run_products(scratch, span, &normalize);
}

void CpuBackend::run_products(const Tensor& x, std::span<WeightProduct> products, const ActPrologue* prologue) {
  const int64_t k = x.ne[0], n = x.ne[1];
  // The input once per distinct activation type (products of one type share it).
  GgmlType act_types[kMaxMatmuls];
  size_t act_offsets[kMaxMatmuls];
  int n_act = 0;
  size_t act_bytes = 0;
  for (WeightProduct& p : products) {
    if (!kernels_.dot_for(p.w.type)) fail("matmul: no dot product for ", type_name(p.w.type), " weights");
    const GgmlType t = type_traits(p.w.type).vec_dot_type;
    if (!kernels_.quantize_for(t)) fail("matmul: no conversion of activations to ", type_name(t));
    int a = 0;
    while (a < n_act && act_types[a] != t) ++a;
    if (a == n_act) {
      act_types[n_act] = t;
      act_offsets[n_act++] = act_bytes;
      act_bytes += row_bytes(t, k) * size_t(n);
    }
    p.act_stride = row_bytes(t, k);
    p.act_offset = act_offsets[a];
  }
  if (skip(act_bytes)) return;
  char* const ws = static_cast<char*>(workspace());
  for (WeightProduct& p : products) p.act = ws + p.act_offset;

  // Elements [begin, end) of row r (begin a multiple of every activation type's block): the
  // prologue, then quantized to each activation type (blocks are quantized independently, so the
  // bits are those of quantizing the whole row).
  const auto prepare = [&](int64_t r, int64_t begin, int64_t end) {
    if (prologue) (*prologue)(r, begin, end);
    const float* xr = reinterpret_cast<const float*>(x.row(r)) + begin;
    for (int a = 0; a < n_act; ++a) {
      const size_t at = act_offsets[a] + size_t(r) * row_bytes(act_types[a], k) + row_bytes(act_types[a], begin);
      kernels_.quantize_for(act_types[a])(xr, ws + at, end - begin);
    }
  };
  // At decode (fewer columns than threads) the columns' prologue and quantization are cut into
  // chunks that the job's threads share before they go on to the tiles (rather than the caller
  // doing them alone before the job): every thread that takes part claims chunks until none is
  // left, then waits for those still running (each was claimed by a thread that is running it).
  const bool chunked = n < pool_.size() && options_.fused_layer_ops;
  int64_t chunk = 256;
  for (int a = 0; a < n_act; ++a) chunk = std::lcm(chunk, type_traits(act_types[a]).block_size);
  const int64_t chunks_per_row = (k + chunk - 1) / chunk, n_chunks = chunked ? n * chunks_per_row : 0;
  std::atomic<int64_t> next_chunk{0}, chunks_done{0};
  const auto share_chunks = [&](int) {
    for (int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed); c < n_chunks;
         c = next_chunk.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t begin = (c % chunks_per_row) * chunk;
      prepare(c / chunks_per_row, begin, std::min(k, begin + chunk));
      chunks_done.fetch_add(1, std::memory_order_release);
    }
    for (int spin = 1; chunks_done.load(std::memory_order_acquire) < n_chunks; ++spin) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      if (spin % 1024 == 0) std::this_thread::yield();
    }
  };
  if (!chunked) {
    // A few columns are quantized by the caller alone (MOESERVE_CPU_FUSE=0).
    const auto prepare_rows = [&](int ith, int nth) {
      const auto [b, e] = share(n, ith, nth);
      for (int64_t r = b; r < e; ++r) prepare(r, 0, k);
    };
    if (n < pool_.size()) {
      prepare_rows(0, 1);
    } else {
      pool_.run(prepare_rows);
    }
  }

  const int64_t col_tiles = (n + kTileCols - 1) / kTileCols;
  int64_t n_tiles = 0;
  for (WeightProduct& p : products) {
    p.row_tiles = (p.w.ne[1] + kTileRows - 1) / kTileRows;
    p.first_tile = n_tiles;
    n_tiles += p.row_tiles * col_tiles;
  }
  for_each_claimed_in_spans(n_tiles, [&](int, int64_t item) {
    size_t pi = 0;
    while (pi + 1 < products.size() && item >= products[pi + 1].first_tile) ++pi;
    const WeightProduct& p = products[pi];
    const int64_t tile = item - p.first_tile, m = p.w.ne[1];
    const int64_t r0 = (tile % p.row_tiles) * kTileRows, c0 = (tile / p.row_tiles) * kTileCols;
    const int64_t r1 = std::min(m, r0 + kTileRows), c1 = std::min(n, c0 + kTileCols);
    const void* a[kTileCols];
    float* y[kTileCols];
    for (int64_t c = c0; c < c1; ++c) {
      a[c - c0] = p.act + size_t(c) * p.act_stride;
      y[c - c0] = reinterpret_cast<float*>(p.dst.row(c));
    }
    const int nc = int(c1 - c0);
    float out[kTileCols];
    if (!p.swiglu) {
      const TilePrefetch pf(p.w.row(r0), p.w.nb[1], p.w.row_size(), r1 - r0);
      for (int64_t r = r0; r < r1; ++r) {
        pf.at(r - r0);
        kernels_.dot_cols(p.w.type, k, p.w.row(r), a, nc, out);
        for (int c = 0; c < nc; ++c) y[c][r] = out[c];
      }
      return;
    }
    // The gate rows of the tile, then the up rows; the up rows' first lines are requested with
    // the gate's.
    float gate[kTileRows][kTileCols];
    const TilePrefetch pf(p.w.row(r0), p.w.nb[1], p.w.row_size(), r1 - r0);
    const TilePrefetch pf_up(p.up.row(r0), p.up.nb[1], p.up.row_size(), r1 - r0);
    for (int64_t r = r0; r < r1; ++r) {
      pf.at(r - r0);
      kernels_.dot_cols(p.w.type, k, p.w.row(r), a, nc, gate[r - r0]);
    }
    for (int64_t r = r0; r < r1; ++r) {
      pf_up.at(r - r0);
      kernels_.dot_cols(p.up.type, k, p.up.row(r), a, nc, out);
      for (int c = 0; c < nc; ++c) y[c][r] = silu(gate[r - r0][c]) * out[c];
    }
  }, share_chunks);
}

}  // namespace moeserve::cpu
