// A build without the CUDA backend has no GPUs to offer.
#ifndef MOESERVE_HAS_CUDA
#include "backend/gpu_devices.h"

namespace moeserve {

GpuDeviceList list_gpu_devices() { return {{}, "this build has no GPU backend (built without CUDA)"}; }

}  // namespace moeserve
#endif
