// The last step of the MoE FFN with a gated shared expert, shared by the kernels that compute it
// (moe_shared_add, and the routed experts' down kernel when the forked MoE FFN folds the add into
// it), so that both give the same bits: h = residual + (routed + shared * sigmoid(gate)), rounded
// after each operation in that order (no contraction into an fma: the reference backend's chain
// rounds each op too).
#pragma once

namespace moeserve::cuda {

__device__ __forceinline__ float moe_shared_sum(float residual, float routed, float shared, float gate) {
  const float sig = 1.0f / (1.0f + expf(-gate));
  return __fadd_rn(residual, __fadd_rn(routed, __fmul_rn(shared, sig)));
}

}  // namespace moeserve::cuda
