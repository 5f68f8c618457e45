// Row norms: rms_norm (optional weight), rms_norm_gated (times weight and silu(z)), l2_norm. One
// block per row; the sum of squares in float (rows are at most a few thousand elements, so its
// relative error stays near 1e-6 of the reference's double sum).
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace moeserve::cuda {
namespace {

enum class Norm : int { rms, rms_gated, l2 };

template <Norm kind>
__global__ void norm_kernel(View dst, View src, const float* weight, View z, float eps, int64_t n_rows) {
  const int64_t d = src.ne[0];
  for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
    const float* x = reinterpret_cast<const float*>(flat_row_ptr(src, r));
    float ss = 0;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += x[i] * x[i];
    ss = block_sum(ss);
    const float s = kind == Norm::l2 ? 1.0f / sqrtf(ss + eps) : 1.0f / sqrtf(ss / float(d) + eps);
    float* y = reinterpret_cast<float*>(flat_row_ptr(dst, r));
    const float* zr = kind == Norm::rms_gated ? reinterpret_cast<const float*>(flat_row_ptr(z, r)) : nullptr;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      float v = x[i] * s;
      if (weight) v *= weight[i];
      if constexpr (kind == Norm::rms_gated) v *= silu_f(zr[i]);
      y[i] = v;
    }
  }
}

template <Norm kind>
void launch(cudaStream_t stream, const Tensor& dst, const Tensor& src, const float* weight, const Tensor* z, float eps) {
  const int64_t rows = src.n_rows();
  if (rows == 0) return;
  const int threads = src.ne[0] <= 128 ? 128 : src.ne[0] <= 512 ? 256 : 512;
  const unsigned blocks = unsigned(std::min<int64_t>(rows, 65535));
  norm_kernel<kind><<<blocks, threads, 0, stream>>>(view_of(dst), view_of(src), weight, z ? view_of(*z) : view_of(src),
                                                    eps, rows);
  MOESERVE_CUDA_CHECK_LAUNCH();
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

}  // namespace moeserve::cuda
