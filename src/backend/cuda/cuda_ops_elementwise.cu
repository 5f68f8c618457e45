// Element-wise ops over strided 4-D views (rows contiguous): unary, binary with broadcasting,
// scale, swiglu, zero. One launch each; a thread per element, its 4-D index from the flat one.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

constexpr int kThreads = 256;

// Byte offset of element idx (flat over ne) in a view with strides nb (nb[0] = element size).
__device__ __forceinline__ int64_t offset_of(int64_t idx, const int64_t ne[4], const int64_t nb[4]) {
  const int64_t i0 = idx % ne[0];
  int64_t r = idx / ne[0];
  const int64_t i1 = r % ne[1];
  r /= ne[1];
  const int64_t i2 = r % ne[2], i3 = r / ne[2];
  return i0 * nb[0] + i1 * nb[1] + i2 * nb[2] + i3 * nb[3];
}

enum class Op : int { silu, sigmoid, softplus, add, mul, scale, swiglu };

// dst = op(a, b); b's strides are already zero along broadcast dims.
template <Op op>
__global__ void elementwise_kernel(View dst, View a, View b, float factor, int64_t n) {
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const float x = *reinterpret_cast<const float*>(a.data + offset_of(idx, a.ne, a.nb));
    float y;
    if constexpr (op == Op::silu) {
      y = silu_f(x);
    } else if constexpr (op == Op::sigmoid) {
      y = sigmoid_f(x);
    } else if constexpr (op == Op::softplus) {
      y = softplus_f(x);
    } else if constexpr (op == Op::scale) {
      y = x * factor;
    } else {
      const float z = *reinterpret_cast<const float*>(b.data + offset_of(idx, a.ne, b.nb));
      if constexpr (op == Op::add) y = x + z;
      else if constexpr (op == Op::mul) y = x * z;
      else y = silu_f(x) * z;
    }
    *reinterpret_cast<float*>(dst.data + offset_of(idx, dst.ne, dst.nb)) = y;
  }
}

template <Op op>
void launch(cudaStream_t stream, const Tensor& dst, const Tensor& a, const Tensor* b, float factor) {
  const int64_t n = dst.n_elements();
  if (n == 0) return;
  View vb = b ? view_of(*b) : view_of(a);
  if (b) {
    for (int d = 0; d < 4; ++d) {
      if (b->ne[d] == 1) vb.nb[d] = 0;  // broadcast: the same element along this dim
    }
  }
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535);
  elementwise_kernel<op><<<unsigned(blocks), kThreads, 0, stream>>>(view_of(dst), view_of(a), vb, factor, n);
  MOESERVE_CUDA_CHECK_LAUNCH();
}

__global__ void zero_rows_kernel(View dst, int64_t row_bytes, int64_t n_rows) {
  for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
    char* row = flat_row_ptr(dst, r);
    for (int64_t i = threadIdx.x; i < row_bytes; i += blockDim.x) row[i] = 0;
  }
}

}  // namespace

void CudaBackend::do_unary(const Tensor& dst, const Tensor& src, UnaryOp op) {
  if (skip()) return;
  switch (op) {
    case UnaryOp::silu: return launch<Op::silu>(stream_, dst, src, nullptr, 0);
    case UnaryOp::sigmoid: return launch<Op::sigmoid>(stream_, dst, src, nullptr, 0);
    case UnaryOp::softplus: return launch<Op::softplus>(stream_, dst, src, nullptr, 0);
  }
}

void CudaBackend::do_binary(const Tensor& dst, const Tensor& a, const Tensor& b, BinaryOp op) {
  if (skip()) return;
  if (op == BinaryOp::add) {
    launch<Op::add>(stream_, dst, a, &b, 0);
  } else {
    launch<Op::mul>(stream_, dst, a, &b, 0);
  }
}

void CudaBackend::do_scale(const Tensor& dst, const Tensor& src, float factor) {
  if (skip()) return;
  launch<Op::scale>(stream_, dst, src, nullptr, factor);
}

void CudaBackend::do_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up) {
  if (skip()) return;
  launch<Op::swiglu>(stream_, dst, gate, &up, 0);
}

void CudaBackend::do_zero(const Tensor& dst) {
  if (skip()) return;
  if (dst.n_rows() == 0) return;
  if (dst.is_contiguous()) {
    MOESERVE_CUDA_CHECK(cudaMemsetAsync(dst.data, 0, dst.n_bytes(), stream_));
    return;
  }
  const int64_t rows = dst.n_rows();
  zero_rows_kernel<<<unsigned(std::min<int64_t>(rows, 65535)), 256, 0, stream_>>>(view_of(dst), int64_t(dst.row_size()),
                                                                                  rows);
  MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
