// The GPUs this build can use, with their memory: placement and auto-fit start from here.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace moeserve {

struct GpuDevice {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  size_t total_bytes = 0;
  size_t free_bytes = 0;
};

struct GpuDeviceList {
  std::vector<GpuDevice> devices;
  std::string why_none;  // when devices is empty: "CPU-only build", the driver's error, ...
};

GpuDeviceList list_gpu_devices();

}  // namespace moeserve
