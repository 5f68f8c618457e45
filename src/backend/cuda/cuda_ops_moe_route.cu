// moe_route: a warp per token (route_token, moe_route.cuh).
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/moe_route.cuh"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxPerLane = kRouteMaxPerLane;

template <int EPL>
__global__ void moe_route_kernel(int32_t* ids, float* weights, View logits, int k, int64_t n_tokens, bool normalize) {
  pdl_wait();
  pdl_trigger();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = int64_t(blockIdx.x) * kWarps + warp;
  if (t >= n_tokens) return;
  route_token<EPL>(ids + t * k, weights + t * k, reinterpret_cast<const float*>(row_ptr(logits, t)), int(logits.ne[0]), k,
                   normalize, lane);
}

template <int EPL>
void launch_route(cudaStream_t stream, const Tensor& ids, const Tensor& weights, const Tensor& logits, bool normalize) {
  const int64_t n = logits.ne[1];
  if constexpr (EPL < kMaxPerLane) {
    if (32 * EPL < logits.ne[0]) return launch_route<EPL * 2>(stream, ids, weights, logits, normalize);
  }
  launch_pdl(moe_route_kernel<EPL>, unsigned((n + kWarps - 1) / kWarps), 32 * kWarps, 0, stream, ids.as<int32_t>(),
             weights.as<float>(), view_of(logits), int(ids.ne[0]), n, normalize);
}

}  // namespace

void CudaBackend::do_moe_route(const Tensor& ids, const Tensor& weights, const Tensor& logits, bool normalize) {
  if (logits.ne[0] > 32 * kMaxPerLane) fail("CUDA backend: moe_route supports at most ", 32 * kMaxPerLane, " experts");
  if (skip()) return;
  if (logits.ne[1] == 0 || ids.ne[0] == 0) return;
  launch_route<1>(stream_, ids, weights, logits, normalize);
}

}  // namespace moeserve::cuda
