// kv_store: row t of src goes to cache cell (pos[t], seq[t]) in the cache's format (F32, F16,
// BF16, Q8_0, Q4_0; K and V caches are stored independently, each in its own type). Any other
// cache type is an error, never a silent detour through the CPU.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_formats.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

// Block per token; element formats a thread per element, block formats a warp per 32-block.
__global__ void kv_store_kernel(View cache, View src, DeviceBatch batch, Fmt fmt) {
  const int64_t t = blockIdx.x, width = src.ne[0];
  const float* x = reinterpret_cast<const float*>(row_ptr(src, t));
  char* dst = row_ptr(cache, batch.pos[t], batch.seq[t]);
  if (fmt == Fmt::q8_0 || fmt == Fmt::q4_0) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    for (int64_t b = warp; b < width / kQK; b += n_warps) {
      const float v = x[b * kQK + lane];
      if (fmt == Fmt::q8_0) quantize_block_q8_0(v, dst + b * kQ8Bytes, lane);
      else quantize_block_q4_0(v, dst + b * kQ4Bytes, lane);
    }
    return;
  }
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    switch (fmt) {
      case Fmt::f32: reinterpret_cast<float*>(dst)[i] = x[i]; break;
      case Fmt::f16: reinterpret_cast<__half*>(dst)[i] = __float2half_rn(x[i]); break;
      default: reinterpret_cast<__nv_bfloat16*>(dst)[i] = __float2bfloat16_rn(x[i]); break;
    }
  }
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
  kv_store_kernel<<<unsigned(batch.n_tokens), 128, 0, stream_>>>(view_of(cache), view_of(src), db, fmt);
  MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
