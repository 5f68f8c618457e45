// matmul and get_rows on CUDA (see cuda_matmul.h). Up to kMaxDecodeCols activation columns use
// one warp per weight row (fused dequantize + dot, weights read once); more use the tensor-core
// tiles of gemm_prefill (cuda_gemm.cu), or with F32 weights the FP32 tiles of cuda_f32_gemm.cu.
#include "backend/cuda/cuda_matmul.h"

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_f32_gemm.h"
#include "backend/cuda/cuda_matvec.h"
#include "backend/cuda/cuda_prefill.h"
#include "backend/cuda/mm_kernels.cuh"
#include "core/error.h"

namespace moeserve::cuda {

namespace {

constexpr int kMaxDecodeCols = 8;
constexpr int kWarpsPerBlock = 4;  // in the decode kernels

// Rows per warp: each activation chunk is loaded once for all of them; fewer rows when many
// columns already give the reuse (and hold registers).
template <int NC>
constexpr int rows_per_warp() {
  return NC <= 2 ? 2 : 1;
}

template <GgmlType T, int NC>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    matvec_kernel(const uint8_t* w, size_t w_nb1, int64_t m, int64_t k, const float* x, int64_t x_stride,
                  bool x_aligned, float* dst, int64_t d_stride) {
  constexpr int R = rows_per_warp<NC>();
  const int lane = threadIdx.x % 32;
  const int64_t r0 = (int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32) * R;
  if (r0 >= m) return;
  const uint8_t* rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rows[r] = w + size_t(min(r0 + r, m - 1)) * w_nb1;  // past the end: recompute the last
  float acc[R][NC];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[r][c] = 0.0f;
  lane_dot<T, NC, R>(rows, k, x, x_stride, x_aligned, acc, lane);
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const float s = warp_sum(acc[r][c]);
      if (lane == 0 && r0 + r < m) dst[c * d_stride + r0 + r] = s;
    }
  }
}

template <GgmlType T>
__global__ void get_rows_kernel(float* dst, int64_t d_stride, const uint8_t* src, size_t s_nb1, int64_t n_src_rows,
                                int64_t k, const int32_t* ids) {
  const int64_t i = blockIdx.y;
  const int32_t id = ids[i];
  float* out = dst + i * d_stride;
  const int64_t n_chunks = (k + 7) / 8;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < n_chunks; c += int64_t(gridDim.x) * blockDim.x) {
    float v[8];
    // An id outside the table has no row: NaN makes the caller's bug visible instead of reading
    // out of bounds (the host-side reference fails on it; device code cannot).
    if (id < 0 || id >= n_src_rows) {
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = __int_as_float(0x7fc00000);
    } else {
      row_chunk<T>(src + size_t(id) * s_nb1, c, k, v);
    }
    for (int e = 0; e < 8 && 8 * c + e < k; ++e) out[8 * c + e] = v[e];
  }
}

int64_t float_stride(const Tensor& t, const char* what) {
  if (t.nb[1] % sizeof(float) != 0) fail("internal: cuda ", what, " row stride ", t.nb[1], " is not a multiple of 4");
  return int64_t(t.nb[1] / sizeof(float));
}

template <GgmlType T, int NC>
void launch_matvec(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x) {
  const int64_t m = w.ne[1], rows_per_block = int64_t(kWarpsPerBlock) * rows_per_warp<NC>();
  const dim3 grid(unsigned((m + rows_per_block - 1) / rows_per_block));
  const int64_t x_stride = float_stride(x, "matmul x");
  const bool aligned = reinterpret_cast<uintptr_t>(x.data) % 16 == 0 && x_stride % 4 == 0;
  matvec_kernel<T, NC><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(static_cast<const uint8_t*>(w.data), w.nb[1], m,
                                                                 w.ne[0], x.as<const float>(), x_stride, aligned,
                                                                 dst.as<float>(), float_stride(dst, "matmul dst"));
}

template <GgmlType T>
void launch_matmul(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x) {
  const int64_t n = x.ne[1];
  if (with_column_count<kMaxDecodeCols>(n, [&]<int NC>() { launch_matvec<T, NC>(stream, dst, w, x); })) return;
  // More columns come here only with F32 weights (the other types take gemm_prefill): F32
  // weights keep F32 products (the tensor-core tiles round activations to f16, which F32 models
  // would notice): the FP32 kernels of cuda_f32_gemm.cu, or for a few columns the decode kernel
  // over groups of 8 columns.
  if (T == GgmlType::F32 && f32_matmul_preferred(w, x)) return f32_matmul(stream, dst, w, x);
  for (int64_t j = 0; j < n; j += kMaxDecodeCols) {
    const int64_t c = std::min<int64_t>(kMaxDecodeCols, n - j);
    launch_matmul<T>(stream, dst.view({dst.ne[0], c, 1, 1}, dst.nb, size_t(j) * dst.nb[1]), w,
                     x.view({x.ne[0], c, 1, 1}, x.nb, size_t(j) * x.nb[1]));
  }
}

// Many columns of a quantized or half-precision weight: tensor-core tiles (cuda_prefill.h).
bool takes_gemm(const Tensor& w, const Tensor& x) { return x.ne[1] > kMaxDecodeCols && w.type != GgmlType::F32; }

struct NoOp {
  template <GgmlType>
  void operator()() const {}
};

}  // namespace

bool supports_weight_type(GgmlType type) {
  return dispatch_type(type, NoOp{});
}

size_t matmul_workspace_bytes(const Tensor&, const Tensor& w, const Tensor& x) {
  if (takes_gemm(w, x) && supports_weight_type(w.type)) return gemm_prefill_workspace_bytes(w, x);
  return q8_matvec_workspace_bytes(w, x);
}

void matmul(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x, void* workspace) {
  if (dst.ne[1] == 0 || w.ne[1] == 0) return;
  if (takes_gemm(w, x) && supports_weight_type(w.type)) return gemm_prefill(stream, dst, w, x, workspace);  // cuda_gemm.cu
  if (q8_matvec_usable(w, x)) return q8_matvec(stream, dst, w, x, workspace);  // cuda_matvec.cu
  const bool ok = dispatch_type(w.type, [&]<GgmlType T>() { launch_matmul<T>(stream, dst, w, x); });
  if (!ok) fail("internal: cuda matmul has no kernel for weight type ", type_name(w.type));
  MOESERVE_CUDA_CHECK_LAUNCH();
}

void get_rows(cudaStream_t stream, const Tensor& dst, const Tensor& src, const Tensor& ids) {
  const int64_t n = dst.ne[1], k = src.ne[0];
  if (n == 0 || k == 0) return;
  const int64_t n_chunks = (k + 7) / 8;
  const dim3 grid(unsigned((n_chunks + 127) / 128), unsigned(n));
  const bool ok = dispatch_type(src.type, [&]<GgmlType T>() {
    get_rows_kernel<T><<<grid, 128, 0, stream>>>(dst.as<float>(), float_stride(dst, "get_rows dst"),
                                                 static_cast<const uint8_t*>(src.data), src.nb[1], src.ne[1], k,
                                                 ids.as<const int32_t>());
  });
  if (!ok) fail("internal: cuda get_rows has no kernel for type ", type_name(src.type));
  MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
