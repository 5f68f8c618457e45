// matmul, matmuls, matmul_swiglu and get_rows on CUDA (see cuda_matmul.h). Up to kMaxDecodeCols
// activation columns use one warp per weight row (fused dequantize + dot, weights read once; the
// products of one input share a launch); more use the tensor-core tiles of gemm_prefill
// (cuda_gemm.cu), or with F32 weights the FP32 tiles of cuda_f32_gemm.cu. The decode kernels
// launch with PDL (pdl.cuh).
#include "backend/cuda/cuda_matmul.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_f32_gemm.h"
#include "backend/cuda/cuda_matvec.h"
#include "backend/cuda/cuda_prefill.h"
#include "backend/cuda/mm_kernels.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/row_segments.cuh"
#include "core/error.h"

namespace moeserve::cuda {

namespace {

constexpr int kMaxDecodeCols = 8;
constexpr int kWarpsPerBlock = 4;  // in the decode kernels

// Rows per block: each activation chunk is loaded once for all of them; fewer rows when many
// columns already give the reuse (and hold registers).
template <int NC>
constexpr int rows_per_block() {
  return NC <= 2 ? 2 : 1;
}

// Chunks per thread that the decode kernel loads before it waits for the kernel before.
constexpr int kChunksAhead = 4;

// The rows of up to kMaxMatmuls weights of type T (row_segments.cuh) times NC columns of x. The
// block's threads share out the 8-element chunks of its R rows, four chunks in flight each: a
// product with few rows (the router: 512 rows of 2048 F32 values) then needs one or two memory
// round trips per block instead of k / 1024 per warp. Rows of at most kChunksAhead chunks per
// thread (the router's) are loaded whole before the wait: they are no kernel's output, so what
// the kernel does once its input is ready is the input's loads and the arithmetic.
template <GgmlType T, int NC>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    matvec_kernel(RowSegments segs, int64_t k, const float* x, int64_t x_stride, bool x_aligned) {
  constexpr int R = rows_per_block<NC>(), kThreads = 32 * kWarpsPerBlock;
  __shared__ float part[kWarpsPerBlock][R][NC];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int seg = segment_of(segs, blockIdx.x);
  const int64_t m = segs.m[seg];
  const int64_t r0 = int64_t(blockIdx.x - segs.first[seg]) * R;
  const uint8_t* rows[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rows[r] = segs.w[seg] + size_t(min(r0 + r, m - 1)) * segs.nb1[seg];  // past the end: recompute the last
  float acc[R][NC];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[r][c] = 0.0f;
  const int64_t n_chunks = (k + 7) / 8;
  if (n_chunks <= kChunksAhead * kThreads) {
    // The same chunks in the same order as the loops below.
    float v[kChunksAhead][R][8];
#pragma unroll
    for (int u = 0; u < kChunksAhead; ++u) {
      const int64_t c = threadIdx.x + kThreads * u;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (c < n_chunks) row_chunk<T>(rows[r], c, k, v[u][r]);
      }
    }
    pdl_wait();
    pdl_trigger();
#pragma unroll
    for (int u = 0; u < kChunksAhead; ++u) {
      const int64_t c = threadIdx.x + kThreads * u;
      if (c < n_chunks) chunk_dot<T, NC, R>(v[u], c, k, x, x_stride, x_aligned, acc);
    }
  } else {
    pdl_wait();
    pdl_trigger();
    int64_t c = threadIdx.x;
    for (; c + 3 * kThreads < n_chunks; c += 4 * kThreads) {
#pragma unroll
      for (int u = 0; u < 4; ++u) dot_chunk<T, NC, R>(rows, c + kThreads * u, k, x, x_stride, x_aligned, acc);
    }
    for (; c < n_chunks; c += kThreads) dot_chunk<T, NC, R>(rows, c, k, x, x_stride, x_aligned, acc);
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int col = 0; col < NC; ++col) {
      const float v = warp_sum(acc[r][col]);
      if (lane == 0) part[warp][r][col] = v;
    }
  __syncthreads();
  if (threadIdx.x < R * NC) {
    const int r = threadIdx.x / NC, col = threadIdx.x % NC;
    float v = part[0][r][col];
#pragma unroll
    for (int w = 1; w < kWarpsPerBlock; ++w) v += part[w][r][col];
    if (r0 + r < m) segs.dst[seg][col * segs.d_stride[seg] + r0 + r] = v;
  }
}

template <GgmlType T>
__global__ void get_rows_kernel(float* dst, int64_t d_stride, const uint8_t* src, size_t s_nb1, int64_t n_src_rows,
                                int64_t k, const int32_t* ids) {
  pdl_wait();
  pdl_trigger();
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

// Products of x (at most kMaxDecodeCols columns) with weights of type T, one launch.
template <GgmlType T, int NC>
void launch_matvec(cudaStream_t stream, std::span<const MatmulProduct> products, const Tensor& x) {
  const RowSegments segs = row_segments(products, rows_per_block<NC>());
  if (segs.first[segs.n] == 0) return;
  const int64_t x_stride = float_stride(x, "matmul x");
  const bool aligned = reinterpret_cast<uintptr_t>(x.data) % 16 == 0 && x_stride % 4 == 0;
  launch_pdl(matvec_kernel<T, NC>, segs.first[segs.n], 32 * kWarpsPerBlock, 0, stream, segs, x.ne[0],
             x.as<const float>(), x_stride, aligned);
}

template <GgmlType T>
void launch_matmul(cudaStream_t stream, std::span<const MatmulProduct> products, const Tensor& x) {
  if (products.empty()) return;
  const int64_t n = x.ne[1];
  if (with_column_count<kMaxDecodeCols>(n, [&]<int NC>() { launch_matvec<T, NC>(stream, products, x); })) return;
  // More columns come here only with F32 weights (the other types take gemm_prefill): F32
  // weights keep F32 products (the tensor-core tiles round activations to f16, which F32 models
  // would notice): the FP32 kernels of cuda_f32_gemm.cu, or for a few columns the decode kernel
  // over groups of 8 columns.
  if constexpr (T == GgmlType::F32) {
    std::vector<MatmulProduct> grouped;
    for (const MatmulProduct& p : products) {
      if (f32_matmul_preferred(p.w, x)) {
        f32_matmul(stream, p.dst, p.w, x);
      } else {
        grouped.push_back(p);
      }
    }
    if (grouped.size() < products.size()) return launch_matmul<T>(stream, grouped, x);
  }
  for (int64_t j = 0; j < n; j += kMaxDecodeCols) {
    const int64_t c = std::min<int64_t>(kMaxDecodeCols, n - j);
    std::vector<MatmulProduct> part;
    for (const MatmulProduct& p : products) {
      part.push_back({p.dst.view({p.dst.ne[0], c, 1, 1}, p.dst.nb, size_t(j) * p.dst.nb[1]), p.w});
    }
    launch_matmul<T>(stream, part, x.view({x.ne[0], c, 1, 1}, x.nb, size_t(j) * x.nb[1]));
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
  const MatmulProduct p{dst, w};
  const bool ok = dispatch_type(w.type, [&]<GgmlType T>() { launch_matmul<T>(stream, std::span(&p, 1), x); });
  if (!ok) fail("internal: cuda matmul has no kernel for weight type ", type_name(w.type));
  MOESERVE_CUDA_CHECK_LAUNCH();
}

namespace {

// Where a product of matmuls runs: the 8-bit activation path, the decode kernel of its weight
// type (both share launches), or alone (many columns: the prefill tiles).
enum class Path { q8, decode, alone };

Path path_of(const MatmulProduct& p, const Tensor& x) {
  if (x.ne[1] > kMaxDecodeCols || !supports_weight_type(p.w.type)) return Path::alone;
  return q8_matvec_usable(p.w, x) ? Path::q8 : Path::decode;
}

}  // namespace

size_t matmuls_workspace_bytes(const Tensor& x, std::span<const MatmulProduct> products) {
  size_t bytes = 0;
  for (const MatmulProduct& p : products) bytes = std::max(bytes, matmul_workspace_bytes(p.dst, p.w, x));
  return bytes;
}

void matmuls(cudaStream_t stream, const Tensor& x, std::span<const MatmulProduct> products, void* workspace) {
  if (x.ne[1] == 0) return;
  std::vector<MatmulProduct> q8, decode;
  for (const MatmulProduct& p : products) {
    switch (path_of(p, x)) {
      case Path::q8: q8.push_back(p); break;
      case Path::decode: decode.push_back(p); break;
      case Path::alone: matmul(stream, p.dst, p.w, x, workspace); break;
    }
  }
  if (!q8.empty()) q8_matvecs(stream, x, q8, workspace);  // cuda_matvec.cu
  // The others: one launch per run of one weight type.
  for (size_t i = 0; i < decode.size();) {
    size_t j = i + 1;
    while (j < decode.size() && decode[j].w.type == decode[i].w.type) ++j;
    const std::span<const MatmulProduct> run = std::span(decode).subspan(i, j - i);
    dispatch_type(decode[i].w.type, [&]<GgmlType T>() { launch_matmul<T>(stream, run, x); });
    i = j;
  }
  MOESERVE_CUDA_CHECK_LAUNCH();
}

bool matmul_swiglu_fused(const Tensor& gate, const Tensor& up, const Tensor& x) {
  return gate.type == up.type && q8_matvec_usable(gate, x) && q8_matvec_usable(up, x);
}

void matmul_swiglu(cudaStream_t stream, const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                   void* workspace) {
  if (x.ne[1] == 0) return;
  q8_matvec_swiglu(stream, dst, gate, up, x, workspace);  // cuda_matvec.cu
  MOESERVE_CUDA_CHECK_LAUNCH();
}

void get_rows(cudaStream_t stream, const Tensor& dst, const Tensor& src, const Tensor& ids) {
  const int64_t n = dst.ne[1], k = src.ne[0];
  if (n == 0 || k == 0) return;
  const int64_t n_chunks = (k + 7) / 8;
  const dim3 grid(unsigned((n_chunks + 127) / 128), unsigned(n));
  const bool ok = dispatch_type(src.type, [&]<GgmlType T>() {
    launch_pdl(get_rows_kernel<T>, grid, 128, 0, stream, dst.as<float>(), float_stride(dst, "get_rows dst"),
               static_cast<const uint8_t*>(src.data), src.nb[1], src.ne[1], k, ids.as<const int32_t>());
  });
  if (!ok) fail("internal: cuda get_rows has no kernel for type ", type_name(src.type));
  MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
