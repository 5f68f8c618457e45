// Raw device memory for the kernel tests: cudaMalloc'd and filled with 0xFF bytes (all-ones floats
// are NaN), so an output element a kernel forgets to write shows up.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "backend/cuda/cuda_check.h"

namespace moeserve {

struct DeviceBytes {
  void* p = nullptr;
  explicit DeviceBytes(size_t bytes) {
    MOESERVE_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 1)));
    MOESERVE_CUDA_CHECK(cudaMemset(p, 0xFF, std::max<size_t>(bytes, 1)));
  }
  ~DeviceBytes() { cudaFree(p); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  char* bytes() const { return static_cast<char*>(p); }
};

}  // namespace moeserve
