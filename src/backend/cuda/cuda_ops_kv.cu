// kv_store: row t of src goes to cache cell (pos[t], seq[t]) in the cache's format (F32, F16,
// BF16, Q8_0, Q4_0; K and V caches are stored independently, each in its own type). Any other
// cache type is an error, never a silent detour through the CPU.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_formats.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

// Block per token.
__global__ void kv_store_kernel(View cache, View src, DeviceBatch batch, Fmt fmt) {
  pdl_wait();
  pdl_trigger();
  const int64_t t = blockIdx.x;
  const float* x = reinterpret_cast<const float*>(row_ptr(src, t));
  store_row_block(fmt, row_ptr(cache, batch.pos[t], batch.seq[t]), src.ne[0], [&](int64_t i) { return x[i]; });
}

}  // namespace

Fmt kv_format(GgmlType type, const char* which) {
  const std::optional<Fmt> f = format_of(type);
  if (!f) {
    fail("CUDA backend: ", which, " cache type ", type_name(type),
         " is not supported on the GPU (use F32, F16, BF16, Q8_0 or Q4_0)");
  }
  return *f;
}

void CudaBackend::do_kv_store(const Tensor& cache, const Tensor& src, const BatchInfo& batch) {
  const Fmt fmt = kv_format(cache.type, "KV");
  if (skip()) return;
  if (batch.n_tokens == 0) return;
  const DeviceBatch db = device_batch(batch);
  launch_pdl(kv_store_kernel, unsigned(batch.n_tokens), 128, 0, stream_, view_of(cache), view_of(src), db, fmt);
}

}  // namespace moeserve::cuda
