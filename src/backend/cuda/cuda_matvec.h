// Decode-side weight products with 8-bit activations (mmvq.cuh): up to 8 activation columns
// against weights of the types mmvq decodes, for the dense matmul and the routed experts. The
// callers (cuda_matmul.cu, cuda_moe.cu) route here when *_usable says so and size their
// workspace with *_workspace_bytes; nothing here synchronizes the host.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <utility>

#include "backend/backend.h"

namespace moeserve::cuda {

constexpr int64_t kQ8MaxCols = 8;

// For the decode kernels specialized per column count (here and the F32 ones in cuda_matmul.cu):
// calls f.template operator()<NC>() with NC = n when 1 <= n <= kMax; false (no call) otherwise.
template <int kMax, typename F>
bool with_column_count(int64_t n, F&& f) {
  bool called = false;
  [&]<int... I>(std::integer_sequence<int, I...>) {
    ((n == I + 1 ? (f.template operator()<I + 1>(), called = true) : false), ...);
  }(std::make_integer_sequence<int, kMax>{});
  return called;
}

// Workspace of a matmul on this path (0 when the shapes/types never take it; data not looked at).
size_t q8_matvec_workspace_bytes(const Tensor& w, const Tensor& x);
// Whether this matmul runs here: type, at most 8 columns, 16-byte aligned weight rows.
bool q8_matvec_usable(const Tensor& w, const Tensor& x);
void q8_matvec(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x, void* workspace);
// Products of one input x, each q8_matvec_usable (workspace: q8_matvec_workspace_bytes of x): x is
// quantized once, and the products of each weight type run as one launch.
void q8_matvecs(cudaStream_t stream, const Tensor& x, std::span<const MatmulProduct> products, void* workspace);
// Backend::norm_matmuls without the scratch: the products of rms_norm(x) * weight, each block
// taking the RMS of x's columns as it quantizes them. Usable when every product is
// q8_matvec_usable and x is short enough (one or two columns) for the blocks to quantize; needs
// no workspace.
bool q8_norm_matvecs_usable(const Tensor& x, std::span<const MatmulProduct> products);
void q8_norm_matvecs(cudaStream_t stream, const Tensor& x, const Tensor& weight, float eps,
                     std::span<const MatmulProduct> products);
// Backend::gated_matmul as one kernel: dst = w times x * sigmoid(gate) (x [d0, d1, n]
// contiguous, gate of its shape with unit element stride), the gate applied as the blocks
// quantize x. Usable when the product is q8_matvec_usable and x short enough; no workspace.
bool q8_gated_matvec_usable(const Tensor& w, const Tensor& x, const Tensor& gate);
void q8_gated_matvec(cudaStream_t stream, const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate);
// dst = silu(gate x) * (up x) (both q8_matvec_usable, one type): one pass over both weights.
void q8_matvec_swiglu(cudaStream_t stream, const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                      void* workspace);

size_t q8_moe_workspace_bytes(const Tensor& x, const ExpertWeights& experts, const Tensor& ids);
bool q8_moe_usable(const Tensor& x, const ExpertWeights& experts);
// Backend::moe_shared_add folded into q8_moe_experts' down kernel: h = h + (routed + shared *
// sigmoid(gate)) (h, shared [n_embd, n], gate [1, n], F32) instead of dst = routed, bit for bit as
// moe_shared_add; `join`, when set, is waited for on the stream just before that kernel (the forked
// MoE FFN's shared-expert branch: the routed gate/up kernel does not wait for it).
struct MoeSharedAdd {
  Tensor h, shared, gate;
  cudaEvent_t join = nullptr;
};
void q8_moe_experts(cudaStream_t stream, const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                    const Tensor& ids, const Tensor& weights, void* workspace, const MoeSharedAdd* add = nullptr);

}  // namespace moeserve::cuda
