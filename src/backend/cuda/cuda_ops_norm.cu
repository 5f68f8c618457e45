// Row norms: rms_norm (optional weight), rms_norm_gated (times weight and silu(z)), l2_norm, and the
// fused add_rms_norm (residual add, then the norm) and qk_l2_norm (the delta-net q and k rows in
// one launch, q scaled). One warp per short row, one block per long one; the sum of squares in
// float (rows are at most a few thousand elements, so its relative error stays near 1e-6 of the
// reference's double sum).
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace moeserve::cuda {
namespace {

enum class Norm : int { rms, rms_gated, l2, rms_add };

// Rows of up to this many elements take one warp each (in registers, no block barriers): the
// delta-net heads (128) come in tens of thousands of rows per prefill step. Longer rows (the
// hidden size) take a block each.
constexpr int kWarpRowMax = 256;
constexpr int kWarpRowsPerBlock = 8;
// Longer rows of up to this many elements per thread of their block are held in registers.
constexpr int kBlockRowRegs = 8;

// The row's scale: 1/sqrt(sum x^2 + eps) for l2, 1/sqrt(mean x^2 + eps) for the rms kinds.
template <Norm kind>
__device__ __forceinline__ float row_scale(float ss, int64_t d, float eps) {
  return kind == Norm::l2 ? 1.0f / sqrtf(ss + eps) : 1.0f / sqrtf(ss / float(d) + eps);
}

// One row: y = x * s(x) [* weight] [* silu(z)] [* factor]. rms_add first makes x = x + add (and
// stores it back into x, the residual stream). Block-wide (blockDim.x threads) or one warp.
template <Norm kind, bool kWarp>
__device__ __forceinline__ void norm_row(float* y, const float* x, const float* add, const float* weight,
                                         const float* zr, int64_t d, float eps, float factor) {
  if constexpr (kWarp) {
    constexpr int E = kWarpRowMax / 32;
    const int lane = threadIdx.x % 32;
    // Everything the row needs is loaded before the reduction (and the gate computed), so the
    // loads overlap each other and the shuffles instead of following them.
    float v[E], mul[E];
    float ss = 0;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int64_t i = lane + 32 * e;
      v[e] = 0.0f;
      mul[e] = 1.0f;
      if (i < d) {
        v[e] = x[i];
        if constexpr (kind == Norm::rms_add) {
          v[e] += add[i];
          const_cast<float*>(x)[i] = v[e];
        }
        if (weight) mul[e] = weight[i];
        if constexpr (kind == Norm::rms_gated) mul[e] *= silu_f(zr[i]);
      }
      ss += v[e] * v[e];
    }
    const float s = row_scale<kind>(warp_sum(ss), d, eps);
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int64_t i = lane + 32 * e;
      if (i >= d) break;
      float o = v[e] * s * mul[e];
      if (factor != 1.0f) o *= factor;
      y[i] = o;
    }
  } else if (d <= kBlockRowRegs * int64_t(blockDim.x)) {
    // The row in registers (the hidden size: 2048 values over 512 threads): every load of the
    // row is issued before the first use, as in the warp form. The loop below cannot do that: its
    // store of the residual (rms_add) may alias the next iteration's loads, so each of a
    // thread's elements waited for its own memory round trip.
    float v[kBlockRowRegs], w[kBlockRowRegs], g[kBlockRowRegs];
    float ss = 0;
#pragma unroll
    for (int e = 0; e < kBlockRowRegs; ++e) {
      const int64_t i = threadIdx.x + int64_t(blockDim.x) * e;
      v[e] = 0.0f;
      w[e] = 1.0f;
      g[e] = 1.0f;
      if (i < d) {
        v[e] = x[i];
        if constexpr (kind == Norm::rms_add) v[e] += add[i];
        if (weight) w[e] = weight[i];
        if constexpr (kind == Norm::rms_gated) g[e] = silu_f(zr[i]);
      }
      ss += v[e] * v[e];
    }
    if constexpr (kind == Norm::rms_add) {
#pragma unroll
      for (int e = 0; e < kBlockRowRegs; ++e) {
        const int64_t i = threadIdx.x + int64_t(blockDim.x) * e;
        if (i < d) const_cast<float*>(x)[i] = v[e];
      }
    }
    const float s = row_scale<kind>(block_sum(ss), d, eps);
    // The same products in the same order as the loop's.
#pragma unroll
    for (int e = 0; e < kBlockRowRegs; ++e) {
      const int64_t i = threadIdx.x + int64_t(blockDim.x) * e;
      if (i >= d) break;
      float o = v[e] * s;
      if (weight) o *= w[e];
      if constexpr (kind == Norm::rms_gated) o *= g[e];
      if (factor != 1.0f) o *= factor;
      y[i] = o;
    }
  } else {
    float ss = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      float v = x[i];
      if constexpr (kind == Norm::rms_add) {
        v += add[i];
        const_cast<float*>(x)[i] = v;  // read back below by this same thread
      }
      ss += v * v;
    }
    const float s = row_scale<kind>(block_sum(ss), d, eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      float v = x[i] * s;
      if (weight) v *= weight[i];
      if constexpr (kind == Norm::rms_gated) v *= silu_f(zr[i]);
      if (factor != 1.0f) v *= factor;
      y[i] = v;
    }
  }
}

// The rows this block (or this warp, kWarp) handles: first, then every step-th.
template <bool kWarp>
__device__ __forceinline__ int64_t first_row() {
  return kWarp ? int64_t(blockIdx.x) * kWarpRowsPerBlock + threadIdx.x / 32 : int64_t(blockIdx.x);
}
template <bool kWarp>
__device__ __forceinline__ int64_t row_step() {
  return kWarp ? int64_t(gridDim.x) * kWarpRowsPerBlock : int64_t(gridDim.x);
}

template <Norm kind, bool kWarp>
__global__ void norm_kernel(View dst, View src, const float* weight, View z, float eps, int64_t n_rows) {
  pdl_wait();
  pdl_trigger();
  const int64_t d = src.ne[0];
  for (int64_t r = first_row<kWarp>(); r < n_rows; r += row_step<kWarp>()) {
    const float* x = reinterpret_cast<const float*>(flat_row_ptr(src, r));
    float* y = reinterpret_cast<float*>(flat_row_ptr(dst, r));
    // z: the gate of rms_gated, the addend of rms_add.
    const float* zr = kind == Norm::rms_gated || kind == Norm::rms_add
                          ? reinterpret_cast<const float*>(flat_row_ptr(z, r))
                          : nullptr;
    norm_row<kind, kWarp>(y, x, kind == Norm::rms_add ? zr : nullptr, weight, kind == Norm::rms_gated ? zr : nullptr,
                          d, eps, 1.0f);
  }
}

// Rows [0, q_rows) are q's, the rest k's. The row pointers are picked per branch: picking a whole
// View by a runtime condition would copy both to local memory in every thread.
template <bool kWarp>
__global__ void qk_l2_kernel(View q, View k, View q_src, View k_src, float eps, float q_scale, int64_t q_rows,
                             int64_t n_rows) {
  pdl_wait();
  pdl_trigger();
  const int64_t d = q_src.ne[0];
  for (int64_t r = first_row<kWarp>(); r < n_rows; r += row_step<kWarp>()) {
    const float* x;
    float* y;
    float factor = 1.0f;
    if (r < q_rows) {
      x = reinterpret_cast<const float*>(flat_row_ptr(q_src, r));
      y = reinterpret_cast<float*>(flat_row_ptr(q, r));
      factor = q_scale;
    } else {
      x = reinterpret_cast<const float*>(flat_row_ptr(k_src, r - q_rows));
      y = reinterpret_cast<float*>(flat_row_ptr(k, r - q_rows));
    }
    norm_row<Norm::l2, kWarp>(y, x, nullptr, nullptr, nullptr, d, eps, factor);
  }
}

bool warp_rows(int64_t d) { return d <= kWarpRowMax; }
int threads_for(int64_t d) { return warp_rows(d) ? 32 * kWarpRowsPerBlock : d <= 512 ? 256 : 512; }
unsigned blocks_for(int64_t rows, int64_t d) {
  const int64_t per_block = warp_rows(d) ? kWarpRowsPerBlock : 1;
  return unsigned(std::min<int64_t>((rows + per_block - 1) / per_block, 65535));
}

template <Norm kind>
void launch(cudaStream_t stream, const Tensor& dst, const Tensor& src, const float* weight, const Tensor* z, float eps) {
  const int64_t rows = src.n_rows(), d = src.ne[0];
  if (rows == 0) return;
  launch_pdl(warp_rows(d) ? norm_kernel<kind, true> : norm_kernel<kind, false>, blocks_for(rows, d), threads_for(d), 0,
             stream, view_of(dst), view_of(src), weight, z ? view_of(*z) : view_of(src), eps, rows);
}

}  // namespace

void CudaBackend::do_rms_norm(const Tensor& dst, const Tensor& src, const Tensor* weight, float eps) {
  if (skip()) return;
  launch<Norm::rms>(stream_, dst, src, weight ? weight->as<float>() : nullptr, nullptr, eps);
}

void CudaBackend::do_rms_norm_gated(const Tensor& dst, const Tensor& src, const Tensor& weight, const Tensor& z,
                                    float eps) {
  if (skip()) return;
  launch<Norm::rms_gated>(stream_, dst, src, weight.as<float>(), &z, eps);
}

void CudaBackend::do_l2_norm(const Tensor& dst, const Tensor& src, float eps) {
  if (skip()) return;
  launch<Norm::l2>(stream_, dst, src, nullptr, nullptr, eps);
}

void CudaBackend::do_add_rms_norm(const Tensor& dst, const Tensor& h, const Tensor& y, const Tensor& weight, float eps) {
  if (skip()) return;
  launch<Norm::rms_add>(stream_, dst, h, weight.as<float>(), &y, eps);
}

void CudaBackend::do_qk_l2_norm(const Tensor& q, const Tensor& k, const Tensor& q_src, const Tensor& k_src, float eps,
                                float q_scale) {
  if (skip()) return;
  const int64_t q_rows = q_src.n_rows(), rows = q_rows + k_src.n_rows();
  if (rows == 0) return;
  const int64_t d = q_src.ne[0];
  launch_pdl(warp_rows(d) ? qk_l2_kernel<true> : qk_l2_kernel<false>, blocks_for(rows, d), threads_for(d), 0, stream_,
             view_of(q), view_of(k), view_of(q_src), view_of(k_src), eps, q_scale, q_rows, rows);
}

}  // namespace moeserve::cuda
