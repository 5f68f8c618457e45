// Element-wise ops over strided 4-D views (rows contiguous): unary, binary with broadcasting,
// scale, swiglu, zero, and the fused chains mul_sigmoid, delta_gates and moe_shared_add. One launch
// each; a thread per element, its 4-D index from the flat one (once per element, shared by the
// op's tensors).
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/moe_shared_sum.cuh"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

constexpr int kThreads = 256;

// The 4-D index of flat element idx of shape ne. The ops' tensors share one shape, so a kernel
// computes it once per element and applies each view's strides. N32: every index fits 32 bits,
// and the divisions take the 32-bit path (a 64-bit division is several times the instructions,
// and this runs for every element).
struct Index4 {
  int64_t i0, i1, i2, i3;
};

template <bool N32>
__device__ __forceinline__ Index4 index_of(int64_t idx, const int64_t ne[4]) {
  if constexpr (N32) {
    const uint32_t n0 = uint32_t(ne[0]), n1 = uint32_t(ne[1]), n2 = uint32_t(ne[2]);
    uint32_t r = uint32_t(idx);
    const uint32_t i0 = r % n0;
    r /= n0;
    const uint32_t i1 = r % n1;
    r /= n1;
    return Index4{i0, i1, r % n2, r / n2};
  } else {
    int64_t r = idx / ne[0];
    const int64_t i0 = idx % ne[0], i1 = r % ne[1];
    r /= ne[1];
    return Index4{i0, i1, r % ne[2], r / ne[2]};
  }
}

// The element at index x of view v (v's own strides; zero along broadcast dims).
__device__ __forceinline__ float& at(const View& v, const Index4& x) {
  return *reinterpret_cast<float*>(v.data + x.i0 * v.nb[0] + x.i1 * v.nb[1] + x.i2 * v.nb[2] + x.i3 * v.nb[3]);
}

enum class Op : int { silu, sigmoid, softplus, add, mul, scale, swiglu, mul_sigmoid };

// dst = op(a, b); b's strides are already zero along broadcast dims.
template <Op op, bool N32>
__global__ void elementwise_kernel(View dst, View a, View b, float factor, int64_t n) {
  pdl_wait();
  pdl_trigger();
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const Index4 e = index_of<N32>(idx, dst.ne);
    const float x = at(a, e);
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
      const float z = at(b, e);
      if constexpr (op == Op::add) y = x + z;
      else if constexpr (op == Op::mul) y = x * z;
      else if constexpr (op == Op::mul_sigmoid) y = x * sigmoid_f(z);
      else y = silu_f(x) * z;
    }
    at(dst, e) = y;
  }
}

// A view read as broadcast to the shape of `like`: strides zero along dims of size 1.
View broadcast_view(const Tensor& t) {
  View v = view_of(t);
  for (int d = 0; d < 4; ++d) {
    if (t.ne[d] == 1) v.nb[d] = 0;  // broadcast: the same element along this dim
  }
  return v;
}

unsigned blocks_for(int64_t n) { return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

// Whether index_of<true> covers every element of a tensor of shape t.
bool fits_32(const Tensor& t) { return uint64_t(t.n_elements()) <= UINT32_MAX; }

template <Op op>
void launch(cudaStream_t stream, const Tensor& dst, const Tensor& a, const Tensor* b, float factor) {
  const int64_t n = dst.n_elements();
  if (n == 0) return;
  const View vb = b ? broadcast_view(*b) : view_of(a);
  launch_pdl(fits_32(dst) ? elementwise_kernel<op, true> : elementwise_kernel<op, false>, blocks_for(n), kThreads, 0,
             stream, view_of(dst), view_of(a), vb, factor, n);
}

// beta = sigmoid(b); g = a_coef * softplus(a + dt_bias); indices over a's shape.
template <bool N32>
__global__ void delta_gates_kernel(View beta, View g, View b, View a, View dt_bias, View a_coef, int64_t n) {
  pdl_wait();
  pdl_trigger();
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const Index4 e = index_of<N32>(idx, a.ne);
    at(beta, e) = sigmoid_f(at(b, e));
    at(g, e) = softplus_f(at(a, e) + at(dt_bias, e)) * at(a_coef, e);
  }
}

// dst = residual + (routed + shared * sigmoid(gate)); indices over dst's shape.
template <bool N32>
__global__ void moe_shared_add_kernel(View dst, View residual, View routed, View shared, View gate, int64_t n) {
  pdl_wait();
  pdl_trigger();
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const Index4 e = index_of<N32>(idx, dst.ne);
    at(dst, e) = moe_shared_sum(at(residual, e), at(routed, e), at(shared, e), at(gate, e));
  }
}

__global__ void zero_rows_kernel(View dst, int64_t row_bytes, int64_t n_rows) {
  pdl_wait();
  pdl_trigger();
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
  launch_pdl(zero_rows_kernel, unsigned(std::min<int64_t>(rows, 65535)), 256, 0, stream_, view_of(dst),
             int64_t(dst.row_size()), rows);
}

void CudaBackend::do_mul_sigmoid(const Tensor& dst, const Tensor& x, const Tensor& gate) {
  if (skip()) return;
  launch<Op::mul_sigmoid>(stream_, dst, x, &gate, 0);
}

void CudaBackend::do_delta_gates(const Tensor& beta, const Tensor& g, const Tensor& b, const Tensor& a,
                                 const Tensor& dt_bias, const Tensor& a_coef) {
  if (skip()) return;
  const int64_t n = a.n_elements();
  if (n == 0) return;
  launch_pdl(fits_32(a) ? delta_gates_kernel<true> : delta_gates_kernel<false>, blocks_for(n), kThreads, 0, stream_,
             view_of(beta), view_of(g), view_of(b), view_of(a), broadcast_view(dt_bias), broadcast_view(a_coef), n);
}

void CudaBackend::do_moe_shared_add(const Tensor& dst, const Tensor& residual, const Tensor& routed,
                                    const Tensor& shared, const Tensor& gate) {
  if (skip()) return;
  const int64_t n = dst.n_elements();
  if (n == 0) return;
  launch_pdl(fits_32(dst) ? moe_shared_add_kernel<true> : moe_shared_add_kernel<false>, blocks_for(n), kThreads, 0,
             stream_, view_of(dst), view_of(residual), view_of(routed), view_of(shared), broadcast_view(gate), n);
}

}  // namespace moeserve::cuda
