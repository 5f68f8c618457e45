// The decode product shape (the prefill tiles are in mm_tiles.cuh):
// * lane_dot: the lanes of a warp share out the 8-element chunks of R weight rows; each chunk is
//   dequantized once and used for every one of the NC F32 activation columns, each activation
//   chunk once for the R rows (decode: the weight bytes are read once, in registers).
#pragma once

#include <cuda_fp16.h>

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

// Chunk c of each of the R rows, decoded (v), against the NC columns.
template <GgmlType T, int NC, int R>
__device__ __forceinline__ void chunk_dot(const float (&v)[R][8], int64_t c, int64_t k, const float* x,
                                          int64_t x_stride, bool aligned, float (&acc)[R][NC]) {
  const int64_t e0 = 8 * c;
  const bool tail = Dq<T>::kPlain && e0 + 8 > k;
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

// One chunk step of lane_dot: chunk c of each of the R rows against the NC columns.
template <GgmlType T, int NC, int R>
__device__ __forceinline__ void dot_chunk(const uint8_t* const (&rows)[R], int64_t c, int64_t k, const float* x,
                                          int64_t x_stride, bool aligned, float (&acc)[R][NC]) {
  float v[R][8];
#pragma unroll
  for (int r = 0; r < R; ++r) row_chunk<T>(rows[r], c, k, v[r]);
  chunk_dot<T, NC, R>(v, c, k, x, x_stride, aligned, acc);
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

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + __expf(-x)); }

}  // namespace moeserve::cuda
