// cp.async (sm_80+): global -> shared copies that hold no registers while in flight, so a thread
// can have many of them out at once and wait for all with one instruction.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moeserve::cuda {

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// W = 4, 8 or 16 bytes global -> shared, asynchronously (both addresses W-aligned). 16-byte
// copies bypass L1 (.cg); the smaller ones may only go through it (.ca).
template <int W>
__device__ __forceinline__ void cp_async(void* dst, const void* src) {
  static_assert(W == 4 || W == 8 || W == 16);
  if constexpr (W == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src) : "memory");
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(smem_u32(dst)), "l"(src), "n"(W) : "memory");
  }
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace moeserve::cuda
