// Weight-side kernels of the CUDA backend: products with weights of any supported ggml type
// (decode: fused dequantize + dot per row; prefill: tensor cores on dequantized tiles), embedding
// rows, and the routed-expert FFN. The backend class calls these on its stream; they never
// synchronize the host, so a decode step can be captured as a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "backend/backend.h"

namespace moeserve::cuda {

// Whether matmul / get_rows / moe_experts have device kernels for weights of this type.
bool supports_weight_type(GgmlType type);

// Same shapes and semantics as Backend::matmul / get_rows / moe_experts (backend.h). Tensors are
// in device memory. `workspace` holds at least the bytes the *_workspace_bytes function returned
// for these shapes.
size_t matmul_workspace_bytes(const Tensor& dst, const Tensor& w, const Tensor& x);
void matmul(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x, void* workspace);

void get_rows(cudaStream_t stream, const Tensor& dst, const Tensor& src, const Tensor& ids);

size_t moe_experts_workspace_bytes(const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                                   const Tensor& ids);
void moe_experts(cudaStream_t stream, const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                 const Tensor& ids, const Tensor& weights, void* workspace);

}  // namespace moeserve::cuda
