// moe_route: per token, softmax over the experts, the k largest (ties: lower index first), their
// probabilities, optionally divided by their sum clamped below at 6.103515625e-5. A warp per token,
// the logits in registers (lane l holds experts l, l + 32, ...): each round takes the warp's largest
// by two warp reductions (the largest logit, then the lowest expert holding it) and only the
// winning lane looks for its next candidate. Experts are picked by logit, which orders them as the
// probabilities do.
#include <climits>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxPerLane = 128;  // up to 4096 experts

// An unsigned key that orders as the float does (-0 as +0, so they tie); 0 marks "none".
__device__ __forceinline__ uint32_t order_key(float v) {
  const uint32_t u = v == 0.0f ? 0u : __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key);
}

template <int EPL>
__global__ void moe_route_kernel(int32_t* ids, float* weights, View logits, int k, int64_t n_tokens, bool normalize) {
  pdl_wait();
  pdl_trigger();
  const int n_expert = int(logits.ne[0]), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = int64_t(blockIdx.x) * kWarps + warp;
  if (t >= n_tokens) return;
  const float* row = reinterpret_cast<const float*>(row_ptr(logits, t));
  float v[EPL];
  float mx = -INFINITY;
#pragma unroll
  for (int i = 0; i < EPL; ++i) {
    const int e = lane + 32 * i;
    v[i] = e < n_expert ? row[e] : -INFINITY;
    if (e < n_expert) mx = fmaxf(mx, v[i]);
  }
  mx = warp_max(mx);
  float sum = 0;
  uint32_t key[EPL];
#pragma unroll
  for (int i = 0; i < EPL; ++i) {
    const bool in = lane + 32 * i < n_expert;
    if (in) sum += expf(v[i] - mx);
    key[i] = in ? order_key(v[i]) : 0u;
  }
  sum = warp_sum(sum);
  // This lane's best untaken expert (the lowest on ties).
  uint32_t best_key = 0;
  int best_i = 0;
  auto find_best = [&] {
    best_key = 0;
    best_i = 0;
#pragma unroll
    for (int i = 0; i < EPL; ++i) {
      if (key[i] > best_key) {
        best_key = key[i];
        best_i = i;
      }
    }
  };
  find_best();
  // Slot j's id and probability live in lane j % 32 until its group of 32 slots is written.
  int32_t my_id = 0;
  float my_p = 0, chosen = 0;
  int32_t* out_ids = ids + t * k;
  float* out_w = weights + t * k;
  for (int j = 0; j < k; ++j) {
    const uint32_t kmax = __reduce_max_sync(0xffffffffu, best_key);
    const uint32_t e = __reduce_min_sync(0xffffffffu, best_key == kmax ? uint32_t(lane + 32 * best_i) : UINT_MAX);
    const float p = expf(key_value(kmax) - mx) / sum;
    chosen += p;
    if (int(e % 32) == lane) {
#pragma unroll
      for (int i = 0; i < EPL; ++i) key[i] = i == best_i ? 0u : key[i];
      find_best();
    }
    if ((j & 31) == lane) {
      my_id = int32_t(e);
      my_p = p;
    }
    if ((j & 31) == 31 && j + 1 < k) {  // a full group before the last: weights normalized below
      out_ids[j - 31 + lane] = my_id;
      out_w[j - 31 + lane] = my_p;
    }
  }
  const int last0 = (k - 1) & ~31;  // first slot of the last group
  const float denom = fmaxf(chosen, 6.103515625e-5f);
  if (last0 + lane < k) {
    out_ids[last0 + lane] = my_id;
    out_w[last0 + lane] = normalize ? my_p / denom : my_p;
  }
  if (normalize) {
    for (int j = lane; j < last0; j += 32) out_w[j] /= denom;  // this lane wrote them
  }
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
