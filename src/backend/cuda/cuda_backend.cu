// The CUDA backend's frame: device memory, copies, the step's batch in device memory, recorded
// decode steps (CUDA graphs) and the weight-side ops, which forward to cuda_matmul.h.
#include "backend/cuda/cuda_backend.h"

#include <cuda.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_matmul.h"
#include "backend/cuda/cuda_matvec.h"
#include "core/env_switch.h"
#include "core/error.h"

namespace moeserve {

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<cuda::CudaBackend>(device); }

namespace cuda {

bool pdl_enabled() {
  static const bool enabled = env_switch_on("MOESERVE_CUDA_PDL");
  return enabled;
}

namespace {

constexpr size_t kInitialBatchCapacity = 4096;

size_t batch_bytes(size_t capacity) { return capacity * (2 * sizeof(int32_t) + sizeof(SeqRun)); }

void check_weight_type(const char* op, GgmlType type) {
  if (!supports_weight_type(type)) fail("CUDA backend: ", op, " has no kernels for ", type_name(type), " weights");
}

// The driver's cuMemGetAddressRange, reached through the runtime (no link to libcuda): the base
// and size of the allocation holding an address. Null where the driver does not offer it.
using AddressRangeFn = CUresult (*)(CUdeviceptr*, size_t*, CUdeviceptr);
AddressRangeFn address_range_fn() {
  static const AddressRangeFn fn = []() -> AddressRangeFn {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult status{};
    if (cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &p, 12000, cudaEnableDefault, &status) !=
            cudaSuccess ||
        status != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return reinterpret_cast<AddressRangeFn>(p);
  }();
  return fn;
}

}  // namespace

CudaBackend::CudaBackend(int device) : Backend(DeviceId{DeviceKind::cuda, device}), device_(device) {
  int count = 0;
  MOESERVE_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count) fail("CUDA device ", device, " does not exist (", count, " devices)");
  MOESERVE_CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  MOESERVE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  name_ = str_cat("cuda (", prop.name, ")");
  sm_count_ = prop.multiProcessorCount;
  cc_major_ = prop.major;
  reads_host_memory_ = prop.unifiedAddressing != 0 && prop.canMapHostMemory != 0;
  MOESERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  MOESERVE_CUDA_CHECK(cudaEventCreateWithFlags(&batch_copied_, cudaEventDisableTiming));
  MOESERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  MOESERVE_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
  MOESERVE_CUDA_CHECK(cudaEventCreateWithFlags(&downloaded_, cudaEventDisableTiming));
  for (cudaEvent_t& e : uploaded_) MOESERVE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  MOESERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking));
  MOESERVE_CUDA_CHECK(cudaEventCreateWithFlags(&moe_fork_, cudaEventDisableTiming));
  MOESERVE_CUDA_CHECK(cudaEventCreateWithFlags(&moe_join_, cudaEventDisableTiming));
  if (OpTimes::requested()) profiler_ = std::make_unique<OpProfiler>(stream_);
}

CudaBackend::~CudaBackend() {
  // No throwing from a destructor: errors here have nowhere useful to go.
  cudaSetDevice(device_);
  cudaStreamSynchronize(stream_);
  profiler_.reset();  // prints its table
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
  if (batch_device_) cudaFree(batch_device_);
  if (batch_host_) cudaFreeHost(batch_host_);
  cudaStreamSynchronize(copy_stream_);
  cudaEventDestroy(batch_copied_);
  cudaEventDestroy(fork_);
  cudaEventDestroy(downloaded_);
  for (cudaEvent_t e : uploaded_) cudaEventDestroy(e);
  cudaStreamSynchronize(side_stream_);
  cudaEventDestroy(moe_fork_);
  cudaEventDestroy(moe_join_);
  cudaStreamDestroy(side_stream_);
  cudaStreamDestroy(copy_stream_);
  cudaStreamDestroy(stream_);
}

bool CudaBackend::one_allocation(const void* begin, const void* end) const {
  const AddressRangeFn range = address_range_fn();
  if (!range || end <= begin || cudaSetDevice(device_) != cudaSuccess) return false;
  // Only device memory has a driver address range (asking about other memory is an API error).
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, begin) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (attr.type != cudaMemoryTypeDevice || attr.device != device_) return false;
  CUdeviceptr base = 0;
  size_t size = 0;
  if (range(&base, &size, CUdeviceptr(reinterpret_cast<uintptr_t>(begin))) != CUDA_SUCCESS) return false;
  return reinterpret_cast<uintptr_t>(end) <= uintptr_t(base) + size;
}

Buffer CudaBackend::alloc(size_t bytes) {
  MOESERVE_CUDA_CHECK(cudaSetDevice(device_));
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    fail("out of GPU memory allocating ", bytes, " bytes on ", name_);
  }
  MOESERVE_CUDA_CHECK(err);
  MOESERVE_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
  MOESERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  const int dev = device_;
  return Buffer(p, bytes, [dev](void* q) {
    cudaSetDevice(dev);
    cudaFree(q);
  });
}

Buffer CudaBackend::alloc_host(size_t bytes) {
  MOESERVE_CUDA_CHECK(cudaSetDevice(device_));
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    fail("out of page-locked host memory allocating ", bytes, " bytes for ", name_);
  }
  MOESERVE_CUDA_CHECK(err);
  std::memset(p, 0, bytes);
  return Buffer(p, bytes, [](void* q) { cudaFreeHost(q); });
}

void CudaBackend::do_upload(const Tensor& dst, const void* host) {
  // From pageable memory the call returns once the bytes are staged, so the caller may reuse them.
  MOESERVE_CUDA_CHECK(cudaMemcpyAsync(dst.data, host, dst.n_bytes(), cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::do_download(void* host, const Tensor& src) {
  MOESERVE_CUDA_CHECK(cudaMemcpyAsync(host, src.data, src.n_bytes(), cudaMemcpyDeviceToHost, stream_));
  MOESERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

uint64_t CudaBackend::upload_async(const Tensor& dst, const void* host) {
  if (measuring()) return 0;
  MOESERVE_CUDA_CHECK(cudaEventRecord(fork_, stream_));
  MOESERVE_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, fork_, 0));
  MOESERVE_CUDA_CHECK(cudaMemcpyAsync(dst.data, host, dst.n_bytes(), cudaMemcpyHostToDevice, copy_stream_));
  const uint64_t ticket = ++n_uploads_;
  MOESERVE_CUDA_CHECK(cudaEventRecord(uploaded_[ticket % kUploadEvents], copy_stream_));
  return ticket;
}

void CudaBackend::wait_upload(uint64_t ticket) {
  if (measuring() || ticket == 0) return;
  MOESERVE_CUDA_CHECK(cudaStreamWaitEvent(stream_, uploaded_[ticket % kUploadEvents], 0));
}

void CudaBackend::download_async(void* host, const Tensor& src) {
  if (measuring()) return;
  MOESERVE_CUDA_CHECK(cudaMemcpyAsync(host, src.data, src.n_bytes(), cudaMemcpyDeviceToHost, stream_));
  MOESERVE_CUDA_CHECK(cudaEventRecord(downloaded_, stream_));
}

void CudaBackend::sync_downloads() { MOESERVE_CUDA_CHECK(cudaEventSynchronize(downloaded_)); }

// ---- the step's batch ------------------------------------------------------------------------

bool CudaBackend::batch_matches(const BatchInfo& b) const {
  if (!batch_valid_ || size_t(b.n_tokens) != staged_pos_.size() || size_t(b.n_runs) != staged_runs_.size()) return false;
  const size_t n = size_t(b.n_tokens);
  if (n && (std::memcmp(b.pos, staged_pos_.data(), n * sizeof(int32_t)) != 0 ||
            std::memcmp(b.seq, staged_seq_.data(), n * sizeof(int32_t)) != 0)) {
    return false;
  }
  return b.n_runs == 0 || std::memcmp(b.runs, staged_runs_.data(), size_t(b.n_runs) * sizeof(SeqRun)) == 0;
}

void CudaBackend::stage_batch(const BatchInfo& b) {
  const size_t n = size_t(b.n_tokens), n_runs = size_t(b.n_runs);
  if (n_runs > n) fail("internal: batch has more runs (", n_runs, ") than tokens (", n, ")");
  if (n > batch_capacity_) {
    // Recorded graphs hold the old buffer's address: they go with it.
    MOESERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    clear_graphs();
    if (batch_device_) MOESERVE_CUDA_CHECK(cudaFree(batch_device_));
    if (batch_host_) MOESERVE_CUDA_CHECK(cudaFreeHost(batch_host_));
    batch_device_ = batch_host_ = nullptr;
    batch_capacity_ = std::max(kInitialBatchCapacity, n);
    MOESERVE_CUDA_CHECK(cudaMalloc(&batch_device_, batch_bytes(batch_capacity_)));
    MOESERVE_CUDA_CHECK(cudaMallocHost(&batch_host_, batch_bytes(batch_capacity_)));
  } else {
    // The previous copy must have read the pinned staging before it is overwritten.
    MOESERVE_CUDA_CHECK(cudaEventSynchronize(batch_copied_));
  }
  char* h = static_cast<char*>(batch_host_);
  if (n) {
    std::memcpy(h, b.pos, n * sizeof(int32_t));
    std::memcpy(h + batch_capacity_ * sizeof(int32_t), b.seq, n * sizeof(int32_t));
  }
  if (n_runs) std::memcpy(h + 2 * batch_capacity_ * sizeof(int32_t), b.runs, n_runs * sizeof(SeqRun));
  // Copies of the used parts, ordered on the stream before the step's kernels.
  char* d = static_cast<char*>(batch_device_);
  const size_t seq_at = batch_capacity_ * sizeof(int32_t), runs_at = 2 * seq_at;
  if (n) {
    MOESERVE_CUDA_CHECK(cudaMemcpyAsync(d, h, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
    MOESERVE_CUDA_CHECK(cudaMemcpyAsync(d + seq_at, h + seq_at, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  }
  if (n_runs) {
    MOESERVE_CUDA_CHECK(cudaMemcpyAsync(d + runs_at, h + runs_at, n_runs * sizeof(SeqRun), cudaMemcpyHostToDevice, stream_));
  }
  MOESERVE_CUDA_CHECK(cudaEventRecord(batch_copied_, stream_));
  staged_pos_.assign(b.pos, b.pos + n);
  staged_seq_.assign(b.seq, b.seq + n);
  staged_runs_.assign(b.runs, b.runs + n_runs);
  batch_valid_ = true;
}

DeviceBatch CudaBackend::device_batch(const BatchInfo& b) {
  if (!batch_matches(b)) {
    if (recording_) fail("internal: an op of a recorded step uses a batch other than the step's");
    stage_batch(b);
  }
  const char* d = static_cast<const char*>(batch_device_);
  return DeviceBatch{reinterpret_cast<const int32_t*>(d), reinterpret_cast<const int32_t*>(d + batch_capacity_ * sizeof(int32_t)),
                     reinterpret_cast<const SeqRun*>(d + 2 * batch_capacity_ * sizeof(int32_t))};
}

// ---- recorded steps ------------------------------------------------------------------------

void CudaBackend::clear_graphs() {
  for (auto& [key, exec] : graphs_) MOESERVE_CUDA_CHECK(cudaGraphExecDestroy(exec));
  graphs_.clear();
}

void CudaBackend::op_begin(const char* op) {
  if (profiler_) profiler_->begin(op);
}

void CudaBackend::op_end(const char*) {
  if (profiler_) profiler_->end();
}

void CudaBackend::run_step(const BatchInfo& batch, uint64_t graph_key, const std::function<void()>& issue) {
  MOESERVE_CUDA_CHECK(cudaSetDevice(device_));
  stage_batch(batch);
  if (graph_key == 0 || profiler_) {
    issue();
    return;
  }
  // Recorded kernels hold the workspace's address: if it moved (an op outside a planned step
  // needed more), record again.
  if (workspace() != graph_workspace_) clear_graphs();
  if (auto it = graphs_.find(graph_key); it != graphs_.end()) {
    // The ops run host-side only (shape checks, the caller's results such as the logits tensor)
    // in measuring mode, which launches nothing; the recorded kernels do the work.
    begin_measure();
    try {
      issue();
    } catch (...) {
      end_measure();
      throw;
    }
    end_measure();
    MOESERVE_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
    return;
  }
  cudaGraph_t graph = nullptr;
  MOESERVE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  recording_ = true;
  try {
    issue();
  } catch (...) {
    recording_ = false;
    cudaStreamEndCapture(stream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  recording_ = false;
  MOESERVE_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  MOESERVE_CUDA_CHECK(err);
  graphs_.emplace(graph_key, exec);
  graph_workspace_ = workspace();
  MOESERVE_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
}

// ---- weight-side ops ----------------------------------------------------------------------

void CudaBackend::do_matmul(const Tensor& dst, const Tensor& w, const Tensor& x) {
  check_weight_type("matmul", w.type);
  if (skip(matmul_workspace_bytes(dst, w, x))) return;
  if (profiler_) {
    profiler_->label("matmul", matmul_label(w, x));
  }
  cuda::matmul(stream_, dst, w, x, workspace());
}

void CudaBackend::do_matmuls(const Tensor& x, std::span<const MatmulProduct> products) {
  for (const MatmulProduct& p : products) check_weight_type("matmul", p.w.type);
  if (skip(matmuls_workspace_bytes(x, products))) return;
  if (profiler_) {
    std::string shapes;
    for (const MatmulProduct& p : products) {
      shapes += str_cat(shapes.empty() ? " " : " + ", type_traits(p.w.type).name, " ", p.w.ne[0], "x", p.w.ne[1]);
    }
    profiler_->label("matmuls", str_cat("matmuls", shapes, " n=", x.ne[1]));
  }
  cuda::matmuls(stream_, x, products, workspace());
}

// One or two columns on the 8-bit path: the product kernels take the norm themselves; else the
// norm into scratch, then matmuls.
void CudaBackend::do_norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                                  std::span<const MatmulProduct> products) {
  if (!q8_norm_matvecs_usable(x, products)) return Backend::do_norm_matmuls(x, weight, eps, scratch, products);
  if (skip()) return;
  if (profiler_) {
    std::string shapes;
    for (const MatmulProduct& p : products) {
      shapes += str_cat(shapes.empty() ? " " : " + ", type_traits(p.w.type).name, " ", p.w.ne[0], "x", p.w.ne[1]);
    }
    profiler_->label("norm_matmuls", str_cat("norm_matmuls", shapes, " n=", x.ne[1]));
  }
  cuda::q8_norm_matvecs(stream_, x, weight, eps, products);
  MOESERVE_CUDA_CHECK_LAUNCH();
}

// One or two columns on the 8-bit path: the gate applied as the product kernel quantizes x; else
// mul_sigmoid, then the matmul.
void CudaBackend::do_gated_matmul(const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate) {
  if (!q8_gated_matvec_usable(w, x, gate)) return Backend::do_gated_matmul(dst, w, x, gate);
  if (skip()) return;
  if (profiler_) {
    profiler_->label("gated_matmul", str_cat("gated_matmul ", type_traits(w.type).name, " ", w.ne[0], "x", w.ne[1],
                                             " n=", x.ne[2]));
  }
  cuda::q8_gated_matvec(stream_, dst, w, x, gate);
  MOESERVE_CUDA_CHECK_LAUNCH();
}

void CudaBackend::do_matmul_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                                   const Tensor& scratch) {
  if (!matmul_swiglu_fused(gate, up, x)) return Backend::do_matmul_swiglu(dst, gate, up, x, scratch);
  if (skip(matmul_workspace_bytes(dst, gate, x))) return;
  if (profiler_) {
    profiler_->label("matmul_swiglu", str_cat("matmul_swiglu ", type_traits(gate.type).name, " ", gate.ne[0], "x",
                                              gate.ne[1], " x2 n=", x.ne[1]));
  }
  cuda::matmul_swiglu(stream_, dst, gate, up, x, workspace());
}

void CudaBackend::do_get_rows(const Tensor& dst, const Tensor& src, const Tensor& ids) {
  check_weight_type("get_rows", src.type);
  if (skip()) return;
  cuda::get_rows(stream_, dst, src, ids);
}

void CudaBackend::do_moe_experts(const Tensor& dst, const Tensor& x, const ExpertWeights& experts, const Tensor& ids,
                                 const Tensor& weights) {
  for (const Tensor* t : {&experts.gate, &experts.up, &experts.down}) check_weight_type("moe_experts", t->type);
  if (skip(moe_experts_workspace_bytes(dst, x, experts, ids))) return;
  if (profiler_) {
    std::string label = moe_experts_label(experts, x);
    // The split backend's share of a layer whose experts stay in RAM: read over the bus.
    cudaPointerAttributes where{};
    if (cudaPointerGetAttributes(&where, experts.gate.data) == cudaSuccess && where.type == cudaMemoryTypeHost) {
      label += str_cat(" k=", ids.ne[0], " read from host memory");
    }
    profiler_->label("moe_experts", label);
  }
  cuda::moe_experts(stream_, dst, x, experts, ids, weights, workspace());
}

}  // namespace cuda
}  // namespace moeserve
