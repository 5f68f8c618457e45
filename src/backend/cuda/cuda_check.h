// Every CUDA runtime call and kernel launch is checked: a failure becomes one moeserve::Error
// naming the call, the source line and CUDA's own message (never a silent wrong result).
#pragma once

#include <cuda_runtime.h>

namespace moeserve::cuda {

[[noreturn]] void cuda_fail(cudaError_t err, const char* call, const char* file, int line);

}  // namespace moeserve::cuda

#define MOESERVE_CUDA_CHECK(call)                                                          \
  do {                                                                                     \
    const cudaError_t moeserve_cuda_err_ = (call);                                         \
    if (moeserve_cuda_err_ != cudaSuccess) {                                               \
      ::moeserve::cuda::cuda_fail(moeserve_cuda_err_, #call, __FILE__, __LINE__);         \
    }                                                                                      \
  } while (0)

// After a kernel launch: catches bad launch configurations at once.
#define MOESERVE_CUDA_CHECK_LAUNCH() MOESERVE_CUDA_CHECK(cudaGetLastError())
