// F32 weights against many activation columns (cuda_f32_gemm.h), in FP32 fused multiply-adds
// only (no TF32, no f16 rounding): the results differ from the reference's double sums by the f32
// rounding of sums in another order, as the decode kernels' do. Wide outputs take a tiled SIMT
// GEMM (each weight tile is read from memory once per 32 columns, not once per 8); outputs of a
// few rows (the shared-expert gate: one row) take one warp per output element.
#include "backend/cuda/cuda_f32_gemm.h"

#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_common.cuh"

namespace moeserve::cuda {
namespace {

// Tile: kBM weight rows x kBN columns, kBK elements of k per stage, both staged row-major (as in
// memory, rows padded by 4 floats: float4 reads of 8 consecutive rows hit distinct banks). A
// thread owns 4 rows (16 apart) x 4 columns (8 apart) and reads 4 k at a time as float4: 8
// shared loads per 64 FMAs. Two groups of 128 threads each take half of every stage's k (their
// sums are added at the end): twice the warps per output tile, so each SM has enough warps when
// the grid is about one tile per SM (512 x 512 outputs = 128 tiles). The next stage's global
// loads are in flight during the current stage's sums; a 64-wide stage is long enough to cover
// their latency.
constexpr int kBM = 64, kBN = 32, kBK = 64;
constexpr int kGroups = 2, kGroupThreads = 128, kThreads = kGroups * kGroupThreads;
constexpr int kTM = 4, kTN = 4;  // outputs per thread
constexpr int kPadK = kBK + 4;   // floats per staged row
constexpr int kRowThreads = kBM / kTM, kColThreads = kBN / kTN;
constexpr int kWLoads = kBM * kBK / 4 / kThreads, kXLoads = kBN * kBK / 4 / kThreads;  // float4 each
static_assert(kRowThreads * kColThreads == kGroupThreads, "one output block per thread of a group");
static_assert(kWLoads * 4 * kThreads == kBM * kBK && kXLoads * 4 * kThreads == kBN * kBK, "whole tiles per stage");

// Up to this many weight rows: one warp per output element instead of the tiles.
constexpr int64_t kDotMaxRows = 16;
// Wider outputs with up to this many columns: the decode kernels over groups of 8 columns (a
// grid of 64-row x 32-column tiles would leave most SMs idle there).
constexpr int64_t kLoopMaxCols = 32;
constexpr int kDotWarps = 8;

// Four consecutive floats of row `row` (of `rows`) at k0 + 4q; zeros past the ends. VEC: the
// row starts and k allow one float4 load (k a multiple of 4, so a float4 is all in or all out).
template <bool VEC>
__device__ __forceinline__ float4 load4(const float* __restrict__ p, int64_t stride, int64_t row, int64_t rows,
                                        int64_t kk, int64_t k) {
  if (row >= rows) return make_float4(0, 0, 0, 0);
  const float* r = p + row * stride + kk;
  if constexpr (VEC) {
    return kk < k ? *reinterpret_cast<const float4*>(r) : make_float4(0, 0, 0, 0);
  } else {
    return make_float4(kk < k ? r[0] : 0.0f, kk + 1 < k ? r[1] : 0.0f, kk + 2 < k ? r[2] : 0.0f,
                       kk + 3 < k ? r[3] : 0.0f);
  }
}

template <bool VEC>
__global__ void __launch_bounds__(kThreads)
    f32_gemm_kernel(const float* __restrict__ w, int64_t w_stride, int64_t m, int64_t k, const float* __restrict__ x,
                    int64_t x_stride, int64_t n, float* __restrict__ dst, int64_t d_stride) {
  __shared__ __align__(16) float ws[kBM][kPadK];
  __shared__ __align__(16) float xs[kBN][kPadK];
  const int64_t m0 = int64_t(blockIdx.x) * kBM, n0 = int64_t(blockIdx.y) * kBN;
  const int tid = threadIdx.x, group = tid / kGroupThreads, gt = tid % kGroupThreads;
  const int tr = gt % kRowThreads, tc = gt / kRowThreads;  // rows tr + 16a, columns tc + 8b

  // Loads: a float4 per thread per step, consecutive threads along a row's k.
  constexpr int kQuads = kBK / 4;
  float4 wr[kWLoads], xr[kXLoads];
  auto load = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < kWLoads; ++i) {
      const int idx = tid + i * kThreads;
      wr[i] = load4<VEC>(w, w_stride, m0 + idx / kQuads, m, k0 + 4 * (idx % kQuads), k);
    }
#pragma unroll
    for (int i = 0; i < kXLoads; ++i) {
      const int idx = tid + i * kThreads;
      xr[i] = load4<VEC>(x, x_stride, n0 + idx / kQuads, n, k0 + 4 * (idx % kQuads), k);
    }
  };
  auto store = [&]() {
#pragma unroll
    for (int i = 0; i < kWLoads; ++i) {
      const int idx = tid + i * kThreads;
      *reinterpret_cast<float4*>(&ws[idx / kQuads][4 * (idx % kQuads)]) = wr[i];
    }
#pragma unroll
    for (int i = 0; i < kXLoads; ++i) {
      const int idx = tid + i * kThreads;
      *reinterpret_cast<float4*>(&xs[idx / kQuads][4 * (idx % kQuads)]) = xr[i];
    }
  };

  float acc[kTM][kTN];
#pragma unroll
  for (int a = 0; a < kTM; ++a)
#pragma unroll
    for (int b = 0; b < kTN; ++b) acc[a][b] = 0.0f;

  load(0);
  for (int64_t k0 = 0; k0 < k; k0 += kBK) {
    __syncthreads();  // the previous stage is consumed
    store();
    __syncthreads();
    if (k0 + kBK < k) load(k0 + kBK);
#pragma unroll
    for (int q = 0; q < kQuads / kGroups; ++q) {
      const int kk = 4 * (group * (kQuads / kGroups) + q);
      float4 wv[kTM], xv[kTN];
#pragma unroll
      for (int a = 0; a < kTM; ++a) wv[a] = *reinterpret_cast<const float4*>(&ws[tr + kRowThreads * a][kk]);
#pragma unroll
      for (int b = 0; b < kTN; ++b) xv[b] = *reinterpret_cast<const float4*>(&xs[tc + kColThreads * b][kk]);
#pragma unroll
      for (int a = 0; a < kTM; ++a)
#pragma unroll
        for (int b = 0; b < kTN; ++b) {
          acc[a][b] = fmaf(wv[a].x, xv[b].x, acc[a][b]);
          acc[a][b] = fmaf(wv[a].y, xv[b].y, acc[a][b]);
          acc[a][b] = fmaf(wv[a].z, xv[b].z, acc[a][b]);
          acc[a][b] = fmaf(wv[a].w, xv[b].w, acc[a][b]);
        }
    }
  }

  // Group 1 hands its sums to group 0 through the (now free) weight tile.
  static_assert(kGroupThreads * kTM * kTN <= kBM * kPadK, "the hand-over fits the weight tile");
  float* hand = &ws[0][0];
  __syncthreads();
  if (group == 1) {
#pragma unroll
    for (int a = 0; a < kTM; ++a)
#pragma unroll
      for (int b = 0; b < kTN; ++b) hand[(a * kTN + b) * kGroupThreads + gt] = acc[a][b];
  }
  __syncthreads();
  if (group == 0) {
#pragma unroll
    for (int b = 0; b < kTN; ++b) {
      const int64_t c = n0 + tc + kColThreads * b;
      if (c >= n) continue;
#pragma unroll
      for (int a = 0; a < kTM; ++a) {
        const int64_t r = m0 + tr + kRowThreads * a;
        if (r < m) dst[c * d_stride + r] = acc[a][b] + hand[(a * kTN + b) * kGroupThreads + gt];
      }
    }
  }
}

// One warp per output element (row i, column j); consecutive warps share a column (cached).
// vec: k, the strides and both base pointers allow float4 loads.
__global__ void __launch_bounds__(32 * kDotWarps)
    f32_dot_kernel(const float* __restrict__ w, int64_t w_stride, int64_t m, int64_t k, const float* __restrict__ x,
                   int64_t x_stride, int64_t n, bool vec, float* __restrict__ dst, int64_t d_stride) {
  const int64_t e = int64_t(blockIdx.x) * kDotWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (e >= m * n) return;
  const int64_t j = e / m, i = e % m;
  const float* wr = w + i * w_stride;
  const float* xc = x + j * x_stride;
  float acc[4] = {0, 0, 0, 0};  // independent chains
  if (vec) {
    const float4* w4 = reinterpret_cast<const float4*>(wr);
    const float4* x4 = reinterpret_cast<const float4*>(xc);
    for (int64_t q = lane; q < k / 4; q += 32) {
      const float4 a = w4[q], b = x4[q];
      acc[0] = fmaf(a.x, b.x, acc[0]);
      acc[1] = fmaf(a.y, b.y, acc[1]);
      acc[2] = fmaf(a.z, b.z, acc[2]);
      acc[3] = fmaf(a.w, b.w, acc[3]);
    }
  } else {
    for (int64_t q = lane; q < k; q += 128) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        if (q + 32 * u < k) acc[u] = fmaf(wr[q + 32 * u], xc[q + 32 * u], acc[u]);
      }
    }
  }
  const float s = warp_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
  if (lane == 0) dst[j * d_stride + i] = s;
}

int64_t stride_of(const Tensor& t) { return int64_t(t.nb[1] / sizeof(float)); }

}  // namespace

bool f32_matmul_preferred(const Tensor& w, const Tensor& x) {
  return w.ne[1] <= kDotMaxRows || x.ne[1] > kLoopMaxCols;
}

void f32_matmul(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x) {
  const int64_t m = w.ne[1], k = w.ne[0], n = x.ne[1];
  if (m == 0 || n == 0) return;
  const float* wp = w.as<const float>();
  const float* xp = x.as<const float>();
  const int64_t ws = stride_of(w), xs = stride_of(x), ds = stride_of(dst);
  const bool vec = k % 4 == 0 && ws % 4 == 0 && xs % 4 == 0 && reinterpret_cast<uintptr_t>(wp) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(xp) % 16 == 0;
  if (m <= kDotMaxRows) {
    const int64_t blocks = (m * n + kDotWarps - 1) / kDotWarps;
    f32_dot_kernel<<<unsigned(blocks), 32 * kDotWarps, 0, stream>>>(wp, ws, m, k, xp, xs, n, vec, dst.as<float>(), ds);
  } else {
    const dim3 grid(unsigned((m + kBM - 1) / kBM), unsigned((n + kBN - 1) / kBN));
    (vec ? f32_gemm_kernel<true> : f32_gemm_kernel<false>)<<<grid, kThreads, 0, stream>>>(wp, ws, m, k, xp, xs, n,
                                                                                          dst.as<float>(), ds);
  }
  MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
