// Weight-side kernels of the CUDA backend: products with weights of any supported ggml type
// (decode: fused dequantize + dot per row; prefill: tensor cores on dequantized tiles), embedding
// rows, and the routed-expert FFN. The backend class calls these on its stream; they never
// synchronize the host, so a decode step can be captured as a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <span>

#include "backend/backend.h"

namespace moeserve::cuda {

// Whether matmul / get_rows / moe_experts have device kernels for weights of this type.
bool supports_weight_type(GgmlType type);

// Same shapes and semantics as Backend::matmul / get_rows / moe_experts (backend.h). Tensors are
// in device memory. `workspace` holds at least the bytes the *_workspace_bytes function returned
// for these shapes.
size_t matmul_workspace_bytes(const Tensor& dst, const Tensor& w, const Tensor& x);
void matmul(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x, void* workspace);

// Backend::matmuls: the products of one input, sharing its quantization and launches where they
// take the decode kernels (the others run as matmul).
size_t matmuls_workspace_bytes(const Tensor& x, std::span<const MatmulProduct> products);
void matmuls(cudaStream_t stream, const Tensor& x, std::span<const MatmulProduct> products, void* workspace);

// Backend::matmul_swiglu as one kernel, where matmul_swiglu_fused says so (few columns, gate and
// up of one type on the 8-bit activation path); workspace: matmul_workspace_bytes of gate.
bool matmul_swiglu_fused(const Tensor& gate, const Tensor& up, const Tensor& x);
void matmul_swiglu(cudaStream_t stream, const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                   void* workspace);

void get_rows(cudaStream_t stream, const Tensor& dst, const Tensor& src, const Tensor& ids);

size_t moe_experts_workspace_bytes(const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                                   const Tensor& ids);
void moe_experts(cudaStream_t stream, const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                 const Tensor& ids, const Tensor& weights, void* workspace);

}  // namespace moeserve::cuda
