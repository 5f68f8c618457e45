// A kernel timeline of any CUDA run, graph replays included: a CUPTI injection library. Loaded by
// the CUDA driver at initialization when CUDA_INJECTION64_PATH names it; writes one line per
// kernel to $KERNEL_TRACE_OUT (default kernel_trace.txt):
//   start_ns end_ns stream graph_id graph_node grid_x grid_y grid_z block_x mangled_name
// Start is when the kernel's first block began (under programmatic dependent launch, often long
// before the kernel it waits for ends), end when its last block ended. critical_path.py reads it.
#include <cupti.h>

#include <cstdio>
#include <cstdlib>

namespace {

FILE* out = nullptr;
constexpr size_t kBufferBytes = 16u << 20;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = kBufferBytes;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* rec = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
    std::fprintf(out, "%llu %llu %u %u %llu %d %d %d %d %s\n", static_cast<unsigned long long>(k->start),
                 static_cast<unsigned long long>(k->end), k->streamId, k->graphId,
                 static_cast<unsigned long long>(k->graphNodeId), k->gridX, k->gridY, k->gridZ, k->blockX, k->name);
  }
  std::free(buffer);
}

void flush_at_exit() {
  cuptiActivityFlushAll(1);
  std::fclose(out);
}

}  // namespace

extern "C" int InitializeInjection() {
  const char* path = std::getenv("KERNEL_TRACE_OUT");
  out = std::fopen(path ? path : "kernel_trace.txt", "w");
  if (!out) {
    std::fprintf(stderr, "kernel_trace: cannot write %s\n", path ? path : "kernel_trace.txt");
    return 0;
  }
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "kernel_trace: CUPTI activity tracing is not available\n");
    return 0;
  }
  std::atexit(flush_at_exit);
  return 1;
}
