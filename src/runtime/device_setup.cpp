#include "runtime/device_setup.h"

#include "backend/split_backend.h"
#include "core/error.h"

namespace moeserve {
namespace {

// Left free on the GPU for the step scratch, the backends' workspaces and the CUDA context.
constexpr size_t kComputeMargin = size_t(1) << 30;

constexpr const char* kFlagNames = "-ngl/--n-cpu-moe/--cpu-moe/-ot";

}  // namespace

size_t plan_bytes_on(const gguf::GgufFile& file, const PlacementPlan& plan, DeviceId gpu) {
  size_t total = 0;
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (t.n_dims == 1) {
      total += size_t(t.n_elements()) * sizeof(float);  // vectors: F32 on the compute device
    } else if (plan.device_of(t.name) == gpu) {
      total += size_t(t.n_bytes);
    }
  }
  return total;
}

size_t cache_bytes(const Model& model, const EngineOptions& options) {
  const HParams& hp = model.hparams();
  const int64_t n_ctx = options.n_ctx == 0 ? hp.n_ctx_train : options.n_ctx;
  size_t total = 0;
  for (const LayerCacheSpec& s : model.cache_specs()) {
    if (s.k_width > 0) {
      total += row_bytes(options.type_k, s.k_width) * size_t(n_ctx) * size_t(options.n_seq);
      total += row_bytes(options.type_v, s.v_width) * size_t(n_ctx) * size_t(options.n_seq);
    }
    total += size_t(s.conv_values + s.ssm_values) * sizeof(float) * size_t(options.n_seq);
  }
  return total;
}

void check_vram_fits(DeviceId gpu, const std::string& what, size_t need, size_t free_bytes) {
  if (need + kComputeMargin <= free_bytes) return;
  fail(what, " need ", format_bytes(need), " on ", device_name(gpu), ", which has ", format_bytes(free_bytes),
       " free (", format_bytes(kComputeMargin), " of it kept for compute buffers): keep experts in RAM with"
       " --n-cpu-moe N (the experts of the first N layers) or --cpu-moe (all of them), or put fewer layers on"
       " the GPU with -ngl N");
}

DeviceSetup make_device_setup(const gguf::GgufFile& file, const PlacementFlags& flags, int threads) {
  return make_device_setup(file, flags, threads, list_gpu_devices(), make_cuda_backend);
}

DeviceSetup make_device_setup(const gguf::GgufFile& file, const PlacementFlags& flags, int threads,
                              const GpuDeviceList& gpus, const GpuBackendFactory& make_gpu) {
  // Device names are checked even when they cannot be used: a typo is an error everywhere.
  for (const auto& [pattern, device] : flags.overrides) parse_device_name(device, "-ot");

  DeviceSetup setup;
  if (gpus.devices.empty()) {
    if (flags.any()) {
#ifdef MOESERVE_HAS_CUDA
      setup.notice = str_cat("no GPU found (", gpus.why_none, "); ", kFlagNames, " ignored, running on the CPU");
#else
      setup.notice = str_cat("this build has no GPU backend; ", kFlagNames, " ignored, running on the CPU");
#endif
    }
    setup.backend = make_cpu_backend(threads);
    return setup;
  }

  std::vector<DeviceId> ids;
  for (const GpuDevice& g : gpus.devices) ids.push_back(DeviceId{DeviceKind::cuda, g.index});
  const DeviceId gpu = ids.front();
  PlacementPlan plan = plan_for_file(file, flags, ids);
  if (!plan.uses(gpu)) {
    setup.notice = str_cat("the placement puts no weights on ", device_name(gpu), "; running on the CPU");
    setup.backend = make_cpu_backend(threads);
    return setup;
  }
  check_vram_fits(gpu, "the weights placed on the GPU", plan_bytes_on(file, plan, gpu), gpus.devices.front().free_bytes);

  setup.gpu = gpu;
  std::unique_ptr<Backend> primary = make_gpu(gpu.index);
  if (plan.only(gpu)) {
    setup.backend = std::move(primary);
  } else {
    setup.backend = make_split_backend(std::move(primary), make_cpu_backend(threads),
                                       [plan = std::move(plan)](const std::string& name) { return plan.device_of(name); });
  }
  return setup;
}

void check_caches_fit(std::optional<DeviceId> gpu, const Model& model, const EngineOptions& options) {
  if (!gpu) return;
  const GpuDeviceList gpus = list_gpu_devices();
  for (const GpuDevice& g : gpus.devices) {
    if (g.index == gpu->index) {
      check_vram_fits(*gpu, "the KV cache and recurrent state", cache_bytes(model, options), g.free_bytes);
    }
  }
}

}  // namespace moeserve
