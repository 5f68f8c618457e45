// Row norms: rms_norm (optional weight), rms_norm_gated (times weight and silu(z)), l2_norm, and the
// fused add_rms_norm (residual add, then the norm) and qk_l2_norm (the delta-net q and k rows in
// one launch, q scaled). One block per row; the sum of squares in float (rows are at most a few
// thousand elements, so its relative error stays near 1e-6 of the reference's double sum).
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace moeserve::cuda {
namespace {

enum class Norm : int { rms, rms_gated, l2, rms_add };

// One row: y = x * s(x) [* weight] [* silu(z)] [* factor]. rms_add first makes x = x + add (and
// stores it back into x, the residual stream).
template <Norm kind>
__device__ __forceinline__ void norm_row(float* y, const float* x, const float* add, const float* weight,
                                         const float* zr, int64_t d, float eps, float factor) {
  float ss = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float v = x[i];
    if constexpr (kind == Norm::rms_add) {
      v += add[i];
      const_cast<float*>(x)[i] = v;  // read back below by this same thread
    }
    ss += v * v;
  }
  ss = block_sum(ss);
  const float s = kind == Norm::l2 ? 1.0f / sqrtf(ss + eps) : 1.0f / sqrtf(ss / float(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float v = x[i] * s;
    if (weight) v *= weight[i];
    if constexpr (kind == Norm::rms_gated) v *= silu_f(zr[i]);
    if (factor != 1.0f) v *= factor;
    y[i] = v;
  }
}

template <Norm kind>
__global__ void norm_kernel(View dst, View src, const float* weight, View z, float eps, int64_t n_rows) {
  pdl_wait();
  pdl_trigger();
  const int64_t d = src.ne[0];
  for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
    const float* x = reinterpret_cast<const float*>(flat_row_ptr(src, r));
    float* y = reinterpret_cast<float*>(flat_row_ptr(dst, r));
    // z: the gate of rms_gated, the addend of rms_add.
    const float* zr = kind == Norm::rms_gated || kind == Norm::rms_add
                          ? reinterpret_cast<const float*>(flat_row_ptr(z, r))
                          : nullptr;
    norm_row<kind>(y, x, kind == Norm::rms_add ? zr : nullptr, weight, kind == Norm::rms_gated ? zr : nullptr, d, eps,
                   1.0f);
  }
}

// Rows [0, q_rows) are q's, the rest k's.
__global__ void qk_l2_kernel(View q, View k, View q_src, View k_src, float eps, float q_scale, int64_t q_rows,
                             int64_t n_rows) {
  pdl_wait();
  pdl_trigger();
  const int64_t d = q_src.ne[0];
  for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
    const bool is_q = r < q_rows;
    const int64_t rr = is_q ? r : r - q_rows;
    const float* x = reinterpret_cast<const float*>(flat_row_ptr(is_q ? q_src : k_src, rr));
    float* y = reinterpret_cast<float*>(flat_row_ptr(is_q ? q : k, rr));
    norm_row<Norm::l2>(y, x, nullptr, nullptr, nullptr, d, eps, is_q ? q_scale : 1.0f);
  }
}

int threads_for(int64_t d) { return d <= 128 ? 128 : d <= 512 ? 256 : 512; }
unsigned blocks_for(int64_t rows) { return unsigned(std::min<int64_t>(rows, 65535)); }

template <Norm kind>
void launch(cudaStream_t stream, const Tensor& dst, const Tensor& src, const float* weight, const Tensor* z, float eps) {
  const int64_t rows = src.n_rows();
  if (rows == 0) return;
  launch_pdl(norm_kernel<kind>, blocks_for(rows), threads_for(src.ne[0]), 0, stream, view_of(dst), view_of(src), weight,
             z ? view_of(*z) : view_of(src), eps, rows);
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
  launch_pdl(qk_l2_kernel, blocks_for(rows), threads_for(q_src.ne[0]), 0, stream_, view_of(q), view_of(k),
             view_of(q_src), view_of(k_src), eps, q_scale, q_rows, rows);
}

}  // namespace moeserve::cuda
