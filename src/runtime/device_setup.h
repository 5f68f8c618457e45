// Which backend runs a model, from the GPUs present and the manual placement flags (shared by
// `serve`, `run`, `bench` and `perplexity`):
// * no GPU (CPU-only build, none found) or nothing placed on it: the CPU backend; placement flags
//   that cannot be honoured are reported once;
// * every weight on the GPU: the GPU backend alone;
// * otherwise the split backend: the GPU computes, weights placed in RAM run on the CPU backend.
// Without -ngl every layer goes to the GPU (automatic fitting is a later step); when the weights,
// or later the caches, do not fit its free memory the error suggests --n-cpu-moe / -ngl.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "backend/backend.h"
#include "backend/gpu_devices.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "model/placement_plan.h"
#include "runtime/engine.h"

namespace moeserve {

struct DeviceSetup {
  std::unique_ptr<Backend> backend;
  std::optional<DeviceId> gpu;  // the accelerator weights and caches live on, when one is used
  std::string notice;           // one line for start-up ("" when there is nothing to say)
};

using GpuBackendFactory = std::function<std::unique_ptr<Backend>(int index)>;

// `gpus` and `make_gpu` default to the machine's GPUs and this build's GPU backend.
DeviceSetup make_device_setup(const gguf::GgufFile& file, const PlacementFlags& flags, int threads);
DeviceSetup make_device_setup(const gguf::GgufFile& file, const PlacementFlags& flags, int threads,
                              const GpuDeviceList& gpus, const GpuBackendFactory& make_gpu);

// Memory the weights of `plan` take on `gpu` (file bytes; small vectors, which always go to the
// compute device, counted too).
size_t plan_bytes_on(const gguf::GgufFile& file, const PlacementPlan& plan, DeviceId gpu);
// KV cache and recurrent state the engine will allocate for `model` with `options`.
size_t cache_bytes(const Model& model, const EngineOptions& options);

// Fails with a message suggesting --n-cpu-moe / --cpu-moe / -ngl when `need` bytes (`what`) do
// not fit `free_bytes` of `gpu` less a margin for compute buffers.
void check_vram_fits(DeviceId gpu, const std::string& what, size_t need, size_t free_bytes);

// After loading: the caches of `options` must fit what is left on `gpu` (no-op without one).
void check_caches_fit(std::optional<DeviceId> gpu, const Model& model, const EngineOptions& options);

}  // namespace moeserve
