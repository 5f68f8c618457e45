// The two product shapes every weight-side op reduces to:
// * warp_dot: one warp, one weight row against up to NC F32 activation columns, dequantizing each
//   8-element chunk once and reusing it for every column (decode: the weight bytes are read once);
// * gemm_tile: a 64 x 64 output tile on tensor cores (f16 inputs, f32 accumulation) from weight
//   tiles dequantized into shared memory and activation columns found through a column map, so the
//   same kernel serves dense products and the routed-expert products over gathered tokens.
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

// acc[c] += row . x_c for c < NC, over this lane's chunks (lane, lane + 32, ...); the caller sums
// over the warp. x_c = x + c * x_stride (floats). k need not be a multiple of 8 for plain types.
template <GgmlType T, int NC>
__device__ __forceinline__ void lane_dot(const uint8_t* row, int64_t k, const float* x, int64_t x_stride,
                                         float (&acc)[NC], int lane) {
  const int64_t n_chunks = (k + 7) / 8;
  for (int64_t c = lane; c < n_chunks; c += 32) {
    float v[8];
    row_chunk<T>(row, c, k, v);
    const int64_t e0 = 8 * c;
#pragma unroll
    for (int col = 0; col < NC; ++col) {
      const float* xc = x + col * x_stride + e0;
      float s = 0.0f;
      if (Dq<T>::kPlain && e0 + 8 > k) {
        for (int i = 0; i < 8; ++i) s += e0 + i < k ? v[i] * xc[i] : 0.0f;
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) s += v[i] * __ldg(xc + i);
      }
      acc[col] += s;
    }
  }
}

// ---- tensor-core tiles ------------------------------------------------------------------------------
inline constexpr int kTileM = 64, kTileN = 64, kTileK = 32, kGemmThreads = 128;
inline constexpr int kLdA = kTileK + 8, kLdC = kTileM + 4;  // padded against bank conflicts

struct GemmSmem {
  __half a[kTileM * kLdA];
  __half b[kTileN * kLdA];
};

// Dequantizes rows [m0, m0 + 64) x k-range [k0, k0 + 32) of w into a (f16, row-major, ld kLdA).
template <GgmlType T>
__device__ __forceinline__ void load_a_tile(__half* a, const uint8_t* w, size_t w_nb1, int64_t m, int64_t k,
                                            int64_t m0, int64_t k0) {
  for (int idx = threadIdx.x; idx < kTileM * (kTileK / 8); idx += kGemmThreads) {
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

// Activation columns [0, 64) of the tile, k-range [k0, k0 + 32): column j reads cols[j] (null:
// past the end, zeros). Stored as b[j * kLdA + kk] (a col-major K x N operand).
__device__ __forceinline__ void load_b_tile(__half* b, const float* const* cols, int64_t k, int64_t k0) {
  for (int idx = threadIdx.x; idx < kTileN * kTileK; idx += kGemmThreads) {
    const int j = idx / kTileK, kk = idx % kTileK;
    const float* col = cols[j];
    const float v = col && k0 + kk < k ? col[k0 + kk] : 0.0f;
    b[j * kLdA + kk] = __float2half_rn(v);
  }
}

using FragA = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major>;
using FragB = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __half, nvcuda::wmma::col_major>;
using FragC = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;

// One k-tile of products: warp (wm, wn) owns rows wm*32..+32 and columns wn*32..+32.
__device__ __forceinline__ void mma_tile(const __half* a, const __half* b, FragC (&acc)[2][2], int wm, int wn) {
  using namespace nvcuda;
#pragma unroll
  for (int kk = 0; kk < kTileK; kk += 16) {
    FragA fa[2];
    FragB fb[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], a + (wm * 32 + i * 16) * kLdA + kk, kLdA);
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], b + (wn * 32 + j * 16) * kLdA + kk, kLdA);
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
  }
}

// Stores the accumulators as c[col * kLdC + row] (f32), for a bounds-checked write-out.
__device__ __forceinline__ void store_c(float* c, FragC (&acc)[2][2], int wm, int wn) {
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      nvcuda::wmma::store_matrix_sync(c + (wn * 32 + j * 16) * kLdC + wm * 32 + i * 16, acc[i][j], kLdC,
                                      nvcuda::wmma::mem_col_major);
}

__device__ __forceinline__ void zero_acc(FragC (&acc)[2][2]) {
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) nvcuda::wmma::fill_fragment(acc[i][j], 0.0f);
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }

}  // namespace moeserve::cuda
