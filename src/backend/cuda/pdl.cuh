// Programmatic dependent launch, apart from cuda_common.cuh so that the weight kernels (which
// include mm_kernels.cuh, not cuda_common.cuh) launch this way too.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "backend/cuda/cuda_check.h"

namespace moeserve::cuda {

// ---- programmatic dependent launch (PDL) ----------------------------------------------------
// launch_pdl starts a kernel so that its blocks may be scheduled while the previous kernel on the
// stream is still finishing (also inside recorded graphs, where it becomes a programmatic edge):
// the launch latency hides behind the previous kernel's tail. The rule for every kernel launched
// this way: each block calls pdl_wait() before it reads any input or writes any output, and
// before any early exit (a block that exits without waiting could let the kernel complete before
// its predecessor, and the next kernel's wait only covers this one). pdl_wait() returns once the
// previous kernel has completed and its memory is visible; it is a no-op for a normal launch.
// pdl_trigger() lets the next kernel start launching early; every kernel calls it after its wait.
// Kernels launched with <<<>>> need no change: they wait for their predecessor as always.
// Before its wait a kernel may read memory no kernel writes (weights, constant tables: a weight
// product starts streaming its first weight tiles while its predecessor finishes), and memory
// that the previous kernel does not write: whatever wrote it came before that kernel, which
// passed its own wait (so those writers had completed) before it let this one launch.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether launch_pdl asks for early launch (MOESERVE_CUDA_PDL=0 turns it off, for measurements).
bool pdl_enabled();

// kernel<<<grid, block, smem, stream>>>(args...) with programmatic stream serialization; checks
// the launch. One call per launch: launch_pdl(kernel, grid, block, smem, stream, args...).
template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = pdl_enabled() ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  MOESERVE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, Params(std::forward<Args>(args))...));
}

}  // namespace moeserve::cuda
