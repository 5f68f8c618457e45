#include <cuda_runtime.h>

#include "backend/gpu_devices.h"
#include "core/error.h"

namespace moeserve {

GpuDeviceList list_gpu_devices() {
  GpuDeviceList list;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    list.why_none = str_cat("CUDA: ", cudaGetErrorString(err));
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return list;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if ((err = cudaGetDeviceProperties(&prop, i)) != cudaSuccess) {
      fail("CUDA device ", i, ": ", cudaGetErrorString(err));
    }
    GpuDevice dev;
    dev.index = i;
    dev.name = prop.name;
    dev.compute_major = prop.major;
    dev.compute_minor = prop.minor;
    if ((err = cudaSetDevice(i)) != cudaSuccess || (err = cudaMemGetInfo(&dev.free_bytes, &dev.total_bytes)) != cudaSuccess) {
      fail("CUDA device ", i, ": ", cudaGetErrorString(err));
    }
    list.devices.push_back(std::move(dev));
  }
  if (count == 0) list.why_none = "CUDA: no devices found";
  return list;
}

}  // namespace moeserve
