// Prefill products on tensor cores (mm_tiles.cuh): dense weights x many activation columns
// (cuda_gemm.cu) and the routed experts over their tokens grouped by expert
// (cuda_moe_prefill.cu). Activations and the experts' intermediate rows are rounded to f16 once;
// products accumulate in f32. F32 weights never come here (they keep F32 products).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/backend.h"

namespace moeserve::cuda {

// dst [m, n] = w [k, m] x [k, n] for any supported weight type but F32.
size_t gemm_prefill_workspace_bytes(const Tensor& w, const Tensor& x);
void gemm_prefill(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x, void* workspace);

// Backend::moe_experts for many tokens and experts of any supported type but F32.
size_t moe_prefill_workspace_bytes(const Tensor& x, const ExpertWeights& experts, const Tensor& ids);
void moe_prefill(cudaStream_t stream, const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                 const Tensor& ids, const Tensor& weights, void* workspace);

// out[j * kp + e] = f16(x[j * x_stride + e]) for e < k, zeros up to kp (a multiple of 8), j < n.
void columns_to_f16(cudaStream_t stream, const float* x, int64_t x_stride, int64_t k, int64_t n, int64_t kp,
                    void* out);

}  // namespace moeserve::cuda
