// Dense prefill products (cuda_prefill.h): the activation columns are rounded to f16 once into the
// workspace, then pipelined tensor-core tiles (mm_tiles.cuh) run over weight rows x columns.
// Many columns: 128 x 128 tiles of 8 warps (each weight tile is dequantized once per 128
// columns); up to 64 columns, or where the wide tile does not fit the GPU's shared memory: 64 x 64
// tiles of 4 warps.
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_prefill.h"
#include "backend/cuda/mm_tiles.cuh"
#include "core/error.h"

namespace moeserve::cuda {

namespace {

using WideTile = TileCfg<128, 128, 2, 4>;
using NarrowTile = TileCfg<64, 64, 2, 2>;
constexpr int64_t kNarrowMaxCols = 64;

template <GgmlType T, class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads)
    gemm_tile_kernel(const uint8_t* w, size_t w_nb1, int64_t row_len, const uint8_t* w_end, int64_t m, int64_t k,
                     const __half* xh, int64_t kp, int64_t n, float* dst, int64_t d_stride) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ const uint8_t* rows[Cfg::kBM];
  __shared__ const __half* cols[Cfg::kBN];
  const int64_t m0 = int64_t(blockIdx.x) * Cfg::kBM, n0 = int64_t(blockIdx.y) * Cfg::kBN;
  for (int r = threadIdx.x; r < Cfg::kBM; r += Cfg::kThreads) rows[r] = m0 + r < m ? w + size_t(m0 + r) * w_nb1 : nullptr;
  for (int j = threadIdx.x; j < Cfg::kBN; j += Cfg::kThreads) cols[j] = n0 + j < n ? xh + (n0 + j) * kp : nullptr;
  const uint8_t* const ends[1] = {w_end};
  tile_gemm<T, 1, Cfg>(smem, rows, ends, cols, row_len, k, [&](int r, int c, const float* v) {
    if (m0 + r < m && n0 + c < n) dst[(n0 + c) * d_stride + m0 + r] = v[0];
  });
}

__global__ void columns_to_f16_kernel(const float* x, int64_t x_stride, bool aligned, int64_t k, int64_t n,
                                      int64_t kp, __half* out) {
  const int64_t per_col = kp / 8;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= per_col * n) return;
  const int64_t j = i / per_col, e0 = 8 * (i % per_col);
  const float* col = x + j * x_stride;
  float v[8];
  if (aligned && e0 + 8 <= k) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(col + e0)), b = __ldg(reinterpret_cast<const float4*>(col + e0) + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = e0 + e < k ? col[e0 + e] : 0.0f;
  }
  __align__(16) __half2 h[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) h[e] = __floats2half2_rn(v[2 * e], v[2 * e + 1]);
  *reinterpret_cast<uint4*>(out + j * kp + e0) = *reinterpret_cast<const uint4*>(h);
}

int64_t float_stride(const Tensor& t, const char* what) {
  if (t.nb[1] % sizeof(float) != 0) fail("internal: cuda gemm ", what, " row stride is not a multiple of 4");
  return int64_t(t.nb[1] / sizeof(float));
}

template <GgmlType T, class Cfg>
void launch_gemm(cudaStream_t stream, const Tensor& dst, const Tensor& w, const __half* xh, int64_t kp) {
  constexpr size_t smem = tile_smem_bytes<T, 1, Cfg>();
  raise_tile_smem(gemm_tile_kernel<T, Cfg>, smem);
  const int64_t m = w.ne[1], k = w.ne[0], n = dst.ne[1];
  const dim3 grid(unsigned((m + Cfg::kBM - 1) / Cfg::kBM), unsigned((n + Cfg::kBN - 1) / Cfg::kBN));
  const auto* wd = static_cast<const uint8_t*>(w.data);
  const size_t row_len = row_bytes(T, k);
  gemm_tile_kernel<T, Cfg><<<grid, Cfg::kThreads, smem, stream>>>(wd, w.nb[1], int64_t(row_len),
                                                                   wd + size_t(m - 1) * w.nb[1] + row_len, m, k, xh,
                                                                   kp, n, dst.as<float>(), float_stride(dst, "dst"));
}

}  // namespace

void columns_to_f16(cudaStream_t stream, const float* x, int64_t x_stride, int64_t k, int64_t n, int64_t kp,
                    void* out) {
  const int64_t threads = kp / 8 * n;
  if (threads == 0) return;
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0 && x_stride % 4 == 0;
  columns_to_f16_kernel<<<unsigned((threads + 255) / 256), 256, 0, stream>>>(x, x_stride, aligned, k, n, kp,
                                                                            static_cast<__half*>(out));
  MOESERVE_CUDA_CHECK_LAUNCH();
}

size_t gemm_prefill_workspace_bytes(const Tensor& w, const Tensor& x) {
  return sizeof(__half) * size_t(round_up64(w.ne[0]) * x.ne[1]);
}

void gemm_prefill(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x, void* workspace) {
  const int64_t k = w.ne[0], n = x.ne[1], kp = round_up64(k);
  columns_to_f16(stream, x.as<const float>(), float_stride(x, "x"), k, n, kp, workspace);
  const auto* xh = static_cast<const __half*>(workspace);
  bool served = false;
  dispatch_type(w.type, [&]<GgmlType T>() {
    if constexpr (T != GgmlType::F32) {
      // Wide tiles of the largest blocks (Q5_K, Q6_K) exceed the shared memory of some GPUs.
      if (n > kNarrowMaxCols && tile_smem_fits(gemm_tile_kernel<T, WideTile>, tile_smem_bytes<T, 1, WideTile>())) {
        launch_gemm<T, WideTile>(stream, dst, w, xh, kp);
      } else {
        launch_gemm<T, NarrowTile>(stream, dst, w, xh, kp);
      }
      served = true;
    }
  });
  if (!served) fail("internal: cuda gemm_prefill has no kernel for weight type ", type_name(w.type));
  MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
