// moe_route: per token, softmax over the experts, the k largest (ties: lower index first), their
// probabilities, optionally divided by their sum clamped below at 6.103515625e-5. A warp per token;
// experts are picked by logit, which orders them as the probabilities do.
#include <climits>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

constexpr int kWarps = 4;

__global__ void moe_route_kernel(int32_t* ids, float* weights, View logits, int k, int64_t n_tokens, bool normalize) {
  extern __shared__ unsigned char smem[];
  pdl_wait();
  pdl_trigger();
  const int n_expert = int(logits.ne[0]), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = int64_t(blockIdx.x) * kWarps + warp;
  if (t >= n_tokens) return;
  float* l = reinterpret_cast<float*>(smem) + warp * n_expert;
  unsigned char* taken = smem + sizeof(float) * kWarps * n_expert + warp * n_expert;
  const float* row = reinterpret_cast<const float*>(row_ptr(logits, t));
  float mx = -INFINITY;
  for (int e = lane; e < n_expert; e += 32) {
    l[e] = row[e];
    taken[e] = 0;
    mx = fmaxf(mx, l[e]);
  }
  mx = warp_max(mx);
  float sum = 0;
  for (int e = lane; e < n_expert; e += 32) sum += expf(l[e] - mx);
  sum = warp_sum(sum);
  __syncwarp();
  float chosen = 0;
  for (int j = 0; j < k; ++j) {
    float bv = -INFINITY;
    int be = INT_MAX;
    for (int e = lane; e < n_expert; e += 32) {
      if (!taken[e] && (be == INT_MAX || l[e] > bv)) {
        bv = l[e];
        be = e;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oe = __shfl_xor_sync(0xffffffffu, be, o);
      if (oe != INT_MAX && (be == INT_MAX || ov > bv || (ov == bv && oe < be))) {
        bv = ov;
        be = oe;
      }
    }
    const float p = expf(bv - mx) / sum;
    chosen += p;
    if (lane == 0) {
      ids[t * k + j] = be;
      weights[t * k + j] = p;
      taken[be] = 1;
    }
    __syncwarp();
  }
  if (normalize) {
    const float denom = fmaxf(chosen, 6.103515625e-5f);
    for (int j = lane; j < k; j += 32) weights[t * k + j] /= denom;
  }
}

}  // namespace

void CudaBackend::do_moe_route(const Tensor& ids, const Tensor& weights, const Tensor& logits, bool normalize) {
  if (skip()) return;
  const int64_t n = logits.ne[1];
  if (n == 0) return;
  const size_t smem = size_t(kWarps) * size_t(logits.ne[0]) * (sizeof(float) + 1);
  if (smem > 48 * 1024) fail("CUDA backend: moe_route supports at most ", 48 * 1024 / (kWarps * 5), " experts");
  launch_pdl(moe_route_kernel, unsigned((n + kWarps - 1) / kWarps), 32 * kWarps, smem, stream_, ids.as<int32_t>(),
             weights.as<float>(), view_of(logits), int(ids.ne[0]), n, normalize);
}

}  // namespace moeserve::cuda
