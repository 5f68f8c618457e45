// The two product shapes every weight-side op reduces to:
// * lane_dot: the lanes of a warp share out the 8-element chunks of R weight rows; each chunk is
//   dequantized once and used for every one of the NC F32 activation columns, each activation
//   chunk once for the R rows (decode: the weight bytes are read once, in registers);
// * tensor-core tiles: a 64 x BN output tile (f16 inputs, f32 accumulation) from weight tiles
//   dequantized into shared memory and activation columns found through a column map, so the
//   same code serves dense products and the routed-expert products over gathered tokens.
#pragma once

#include <cuda_fp16.h>
#include <mma.h>

#include "backend/cuda/dequant.cuh"

namespace moeserve::cuda {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// 8 activations at p: two 16-byte loads where the caller vouched for alignment.
__device__ __forceinline__ void load_x8(const float* p, bool aligned, float* out) {
  if (aligned) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) out[i] = __ldg(p + i);
  }
}

// One chunk step of lane_dot: chunk c of each of the R rows against the NC columns.
template <GgmlType T, int NC, int R>
__device__ __forceinline__ void dot_chunk(const uint8_t* const (&rows)[R], int64_t c, int64_t k, const float* x,
                                          int64_t x_stride, bool aligned, float (&acc)[R][NC]) {
  const int64_t e0 = 8 * c;
  const bool tail = Dq<T>::kPlain && e0 + 8 > k;
  float v[R][8];
#pragma unroll
  for (int r = 0; r < R; ++r) row_chunk<T>(rows[r], c, k, v[r]);
#pragma unroll
  for (int col = 0; col < NC; ++col) {
    float xv[8];
    if (tail) {
      for (int i = 0; i < 8; ++i) xv[i] = e0 + i < k ? x[col * x_stride + e0 + i] : 0.0f;
    } else {
      load_x8(x + col * x_stride + e0, aligned, xv);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float s = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) s = fmaf(v[r][i], xv[i], s);
      acc[r][col] += s;
    }
  }
}

// acc[r][c] += rows[r] . x_c over this lane's chunks (lane, lane + 32, ...); the caller sums over
// the warp. x_c = x + c * x_stride (floats); `aligned`: x and x_stride allow 16-byte loads. Each
// activation chunk is loaded once for the R rows, and four chunks per row are in flight per lane:
// a low-bit row is a few hundred bytes, so memory parallelism has to come from unrolling.
template <GgmlType T, int NC, int R>
__device__ __forceinline__ void lane_dot(const uint8_t* const (&rows)[R], int64_t k, const float* x, int64_t x_stride,
                                         bool aligned, float (&acc)[R][NC], int lane) {
  const int64_t n_chunks = (k + 7) / 8;
  int64_t c = lane;
  for (; c + 96 < n_chunks; c += 128) {
#pragma unroll
    for (int u = 0; u < 4; ++u) dot_chunk<T, NC, R>(rows, c + 32 * u, k, x, x_stride, aligned, acc);
  }
  for (; c < n_chunks; c += 32) dot_chunk<T, NC, R>(rows, c, k, x, x_stride, aligned, acc);
}

// ---- tensor-core tiles ------------------------------------------------------------------------------
// 64 weight rows x BN columns per block of 4 warps, k in steps of 64. BN = 64 for dense products;
// 32 for the routed experts, whose experts see ~10 tokens each in a 512-token prefill.
inline constexpr int kTileM = 64, kTileK = 64, kGemmThreads = 128;
inline constexpr int kLdA = kTileK + 8, kLdC = kTileM + 4;  // padded against bank conflicts

template <int BN>
struct TileShape {
  static constexpr int kWarpRows = BN == 64 ? 2 : 4;           // warps along m
  static constexpr int kWarpCols = 4 / kWarpRows;              // warps along n
  static constexpr int kFm = kTileM / kWarpRows / 16;          // 16x16 fragments per warp along m
  static constexpr int kFn = BN / kWarpCols / 16;              // ... along n
};

using FragA = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major>;
using FragB = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __half, nvcuda::wmma::col_major>;
using FragC = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;

template <int BN>
struct Acc {
  FragC f[TileShape<BN>::kFm][TileShape<BN>::kFn];
};

// Dequantizes rows [m0, m0 + 64) x k-range [k0, k0 + 64) of w into a (f16, row-major, ld kLdA).
template <GgmlType T>
__device__ __forceinline__ void load_a_tile(__half* a, const uint8_t* w, size_t w_nb1, int64_t m, int64_t k,
                                            int64_t m0, int64_t k0) {
#pragma unroll
  for (int it = 0; it < kTileM * (kTileK / 8) / kGemmThreads; ++it) {
    const int idx = threadIdx.x + it * kGemmThreads;
    const int r = idx / (kTileK / 8), ch = idx % (kTileK / 8);
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int64_t c = k0 / 8 + ch;
    if (m0 + r < m && 8 * c < k) row_chunk<T>(w + size_t(m0 + r) * w_nb1, c, k, v);
    __align__(16) __half h[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) h[i] = __float2half_rn(v[i]);
    *reinterpret_cast<uint4*>(a + r * kLdA + ch * 8) = *reinterpret_cast<const uint4*>(h);
  }
}

// Activation columns [0, BN) of the tile, k-range [k0, k0 + 64): column j reads cols[j] (null:
// past the end, zeros). Stored as b[j * kLdA + kk] (a col-major K x N operand). `aligned`: every
// column pointer allows 16-byte loads.
template <int BN>
__device__ __forceinline__ void load_b_tile(__half* b, const float* const* cols, int64_t k, int64_t k0, bool aligned) {
#pragma unroll
  for (int it = 0; it < BN * (kTileK / 4) / kGemmThreads; ++it) {
    const int idx = threadIdx.x + it * kGemmThreads;
    const int j = idx / (kTileK / 4), q = idx % (kTileK / 4);
    const float* col = cols[j];
    const int64_t e = k0 + 4 * q;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (col) {
      if (aligned && e + 4 <= k) {
        v = __ldg(reinterpret_cast<const float4*>(col + e));
      } else {
        v.x = e < k ? col[e] : 0.0f;
        v.y = e + 1 < k ? col[e + 1] : 0.0f;
        v.z = e + 2 < k ? col[e + 2] : 0.0f;
        v.w = e + 3 < k ? col[e + 3] : 0.0f;
      }
    }
    __align__(8) __half2 h[2] = {__floats2half2_rn(v.x, v.y), __floats2half2_rn(v.z, v.w)};
    *reinterpret_cast<uint2*>(b + j * kLdA + 4 * q) = *reinterpret_cast<const uint2*>(h);
  }
}

// One k-tile of products for this warp's fragments.
template <int BN>
__device__ __forceinline__ void mma_tile(const __half* a, const __half* b, Acc<BN>& acc, int warp) {
  using namespace nvcuda;
  using S = TileShape<BN>;
  const int wm = warp / S::kWarpCols, wn = warp % S::kWarpCols;
#pragma unroll
  for (int kk = 0; kk < kTileK; kk += 16) {
    FragA fa[S::kFm];
    FragB fb[S::kFn];
#pragma unroll
    for (int i = 0; i < S::kFm; ++i) wmma::load_matrix_sync(fa[i], a + (wm * S::kFm * 16 + i * 16) * kLdA + kk, kLdA);
#pragma unroll
    for (int j = 0; j < S::kFn; ++j) wmma::load_matrix_sync(fb[j], b + (wn * S::kFn * 16 + j * 16) * kLdA + kk, kLdA);
#pragma unroll
    for (int i = 0; i < S::kFm; ++i)
#pragma unroll
      for (int j = 0; j < S::kFn; ++j) wmma::mma_sync(acc.f[i][j], fa[i], fb[j], acc.f[i][j]);
  }
}

// Stores the accumulators as c[col * kLdC + row] (f32), for a bounds-checked write-out.
template <int BN>
__device__ __forceinline__ void store_c(float* c, Acc<BN>& acc, int warp) {
  using S = TileShape<BN>;
  const int wm = warp / S::kWarpCols, wn = warp % S::kWarpCols;
#pragma unroll
  for (int i = 0; i < S::kFm; ++i)
#pragma unroll
    for (int j = 0; j < S::kFn; ++j)
      nvcuda::wmma::store_matrix_sync(c + (wn * S::kFn * 16 + j * 16) * kLdC + wm * S::kFm * 16 + i * 16, acc.f[i][j],
                                      kLdC, nvcuda::wmma::mem_col_major);
}

template <int BN>
__device__ __forceinline__ void zero_acc(Acc<BN>& acc) {
#pragma unroll
  for (int i = 0; i < TileShape<BN>::kFm; ++i)
#pragma unroll
    for (int j = 0; j < TileShape<BN>::kFn; ++j) nvcuda::wmma::fill_fragment(acc.f[i][j], 0.0f);
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }

// One output tile of a weight x activation product: rows [m0, m0 + 64) of w [k, m] times the BN
// columns `cols` over the whole k, left in c (c[col * kLdC + row], f32) for the caller's
// bounds-checked write-out. a, b and c may share memory: c is written only after the last
// operands are read.
template <GgmlType T, int BN>
__device__ __forceinline__ void tile_product(__half* a, __half* b, float* c, const float* const* cols,
                                             const uint8_t* w, size_t w_nb1, int64_t m, int64_t k, int64_t m0,
                                             bool aligned) {
  const int warp = threadIdx.x / 32;
  Acc<BN> acc;
  zero_acc(acc);
  for (int64_t k0 = 0; k0 < k; k0 += kTileK) {
    __syncthreads();
    load_a_tile<T>(a, w, w_nb1, m, k, m0, k0);
    load_b_tile<BN>(b, cols, k, k0, aligned);
    __syncthreads();
    mma_tile(a, b, acc, warp);
  }
  __syncthreads();  // every warp is done reading the operands that c overwrites
  store_c(c, acc, warp);
  __syncthreads();
}

}  // namespace moeserve::cuda
