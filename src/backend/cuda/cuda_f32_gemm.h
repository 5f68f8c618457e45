// Products with F32 weights and more activation columns than the decode kernels take
// (cuda_matmul.cu routes them here): exact FP32 sums, no tensor cores, so F32 models see the
// same products as on the CPU up to the f32 rounding of the sums.
#pragma once

#include <cuda_runtime.h>

#include "backend/backend.h"

namespace moeserve::cuda {

// Whether f32_matmul beats the decode kernels run over groups of 8 columns (each group reads the
// weights once): always for outputs of a few rows; for wider ones once there are enough columns
// to give the tiles a grid that fills the GPU.
bool f32_matmul_preferred(const Tensor& w, const Tensor& x);

// dst [m, n] = w [k, m] x [k, n], w F32; rows of every tensor contiguous, strides any multiple
// of 4 bytes. Nothing here synchronizes the host.
void f32_matmul(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x);

}  // namespace moeserve::cuda
