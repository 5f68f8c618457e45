#include <cstdio>
#include <cstring>

#include "backend/gpu_devices.h"
#include "commands.h"
#include "core/error.h"

namespace moeserve::cli {

int cmd_devices(int argc, char** argv) {
  if (argc > 1) {
    if (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
      std::printf("usage: moeserve devices\n\nLists the GPUs this build can use, with total and free memory.\n");
      return 0;
    }
    fail("unknown argument '", argv[1], "' (moeserve devices takes none)");
  }
  const GpuDeviceList list = list_gpu_devices();
  if (list.devices.empty()) {
    std::printf("no GPU: %s; moeserve runs on the CPU\n", list.why_none.c_str());
    return 0;
  }
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  for (const GpuDevice& d : list.devices) {
    std::printf("CUDA%d: %s, compute %d.%d, %.1f GiB total, %.1f GiB free\n", d.index, d.name.c_str(),
                d.compute_major, d.compute_minor, double(d.total_bytes) / kGiB, double(d.free_bytes) / kGiB);
  }
  return 0;
}

}  // namespace moeserve::cli
