// Routed-expert FFN on CUDA (Backend::moe_experts): dst[t] = sum_j w[j,t] * down_e(silu(gate_e x_t) *
// up_e x_t), e = ids[j,t]. Expert ids and router weights stay on the device; every grid is sized
// from shapes alone, so the host never waits and a decode step can be captured as a graph.
//
// Few tokens: per (token, slot) one pass over the gate and up rows together, then one block per
// output row for the k down products, summed in a fixed order (deterministic, no atomics).
// Many tokens: moe_prefill (cuda_moe_prefill.cu) groups the (token, slot) pairs by expert on the
// device and runs pipelined tensor-core tiles per expert over its gathered tokens.
// F32 experts (test models) always take the few-token kernels, in groups of tokens, to stay F32.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_matmul.h"
#include "backend/cuda/cuda_matvec.h"
#include "backend/cuda/cuda_prefill.h"
#include "backend/cuda/mm_kernels.cuh"
#include "core/error.h"

namespace moeserve::cuda {

namespace {

constexpr int64_t kMaxDecodeTokens = 8;
constexpr int kWarps = 4;

struct ExpertMat {
  const uint8_t* data;
  size_t nb1, nb2;
};

__host__ __device__ inline const uint8_t* expert_row(const ExpertMat& m, int32_t e, int64_t r) {
  return m.data + size_t(e) * m.nb2 + size_t(r) * m.nb1;
}

ExpertMat mat_of(const Tensor& t) { return {static_cast<const uint8_t*>(t.data), t.nb[1], t.nb[2]}; }

// ---- few tokens ---------------------------------------------------------------------------------------
constexpr int kFfRowsPerWarp = 1;  // gate_up: row f of both matrices shares each x chunk
constexpr int kDownThreads = 128;  // down: one block per output row

// h[p * n_ff + f] = silu(gate_e[f] . x_t) * (up_e[f] . x_t), p = t * k + j.
// grid (n_ff / (kWarps * kFfRowsPerWarp), k, n).
template <GgmlType T>
__global__ void __launch_bounds__(32 * kWarps)
    moe_gate_up_vec(ExpertMat gate, ExpertMat up, int64_t n_embd, int64_t n_ff, int32_t n_expert, const float* x,
                    int64_t x_stride, bool x_aligned, const int32_t* ids, int k, float* h) {
  constexpr int R = kFfRowsPerWarp;
  const int lane = threadIdx.x % 32;
  const int64_t f0 = (int64_t(blockIdx.x) * kWarps + threadIdx.x / 32) * R;
  if (f0 >= n_ff) return;
  const int64_t t = blockIdx.z;
  const int64_t p = t * k + blockIdx.y;
  const int32_t e = ids[p];
  if (e < 0 || e >= n_expert) {  // no such expert: contributes nothing
    if (lane < R && f0 + lane < n_ff) h[p * n_ff + f0 + lane] = 0.0f;
    return;
  }
  const uint8_t* rows[2 * R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t f = min(f0 + r, n_ff - 1);
    rows[2 * r] = expert_row(gate, e, f);
    rows[2 * r + 1] = expert_row(up, e, f);
  }
  float acc[2 * R][1];
#pragma unroll
  for (int r = 0; r < 2 * R; ++r) acc[r][0] = 0.0f;
  lane_dot<T, 1, 2 * R>(rows, n_embd, x + t * x_stride, 0, x_aligned, acc, lane);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float g = warp_sum(acc[2 * r][0]), u = warp_sum(acc[2 * r + 1][0]);
    if (lane == 0 && f0 + r < n_ff) h[p * n_ff + f0 + r] = silu_f(g) * u;
  }
}

// dst[t][i] = sum_j w[t,j] * (down_e[i] . h[t * k + j]). grid (n_embd, n), kDownThreads threads.
// The threads of a block share out all (slot, chunk) pairs of row i, so the k experts' rows are
// read in parallel (a decode step has only n_embd rows: one warp per row would leave most of the
// GPU idle); the order of the sums is fixed, so results repeat bit for bit.
template <GgmlType T>
__global__ void __launch_bounds__(kDownThreads)
    moe_down_vec(ExpertMat down, int64_t n_embd, int64_t n_ff, int32_t n_expert, const float* h, bool h_aligned,
                 const int32_t* ids, const float* weights, int k, float* dst, int64_t d_stride) {
  const int64_t i = blockIdx.x, t = blockIdx.y;
  const int64_t n_chunks = (n_ff + 7) / 8, tasks = int64_t(k) * n_chunks;
  float acc = 0.0f;
#pragma unroll 4
  for (int64_t task = threadIdx.x; task < tasks; task += kDownThreads) {
    const int j = int(task / n_chunks);
    const int64_t c = task % n_chunks, p = t * k + j;
    const int32_t e = ids[p];
    if (e < 0 || e >= n_expert) continue;
    const uint8_t* rows[1] = {expert_row(down, e, i)};
    float part[1][1] = {{0.0f}};
    dot_chunk<T, 1, 1>(rows, c, n_ff, h + p * n_ff, 0, h_aligned, part);
    acc = fmaf(weights[p], part[0][0], acc);
  }
  __shared__ float warp_acc[kDownThreads / 32];
  acc = warp_sum(acc);
  if (threadIdx.x % 32 == 0) warp_acc[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (int w = 0; w < kDownThreads / 32; ++w) s += warp_acc[w];
    dst[t * d_stride + i] = s;
  }
}

int64_t float_stride(const Tensor& t, const char* what) {
  if (t.nb[1] % sizeof(float) != 0) fail("internal: cuda moe ", what, " row stride is not a multiple of 4");
  return int64_t(t.nb[1] / sizeof(float));
}

}  // namespace

namespace {

bool f32_experts(const ExpertWeights& e) { return e.gate.type == GgmlType::F32 || e.down.type == GgmlType::F32; }

}  // namespace

size_t moe_experts_workspace_bytes(const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                                   const Tensor& ids) {
  (void)dst;
  const int64_t n = x.ne[1], k = ids.ne[0], n_ff = experts.gate.ne[1];
  if (const size_t q8 = q8_moe_workspace_bytes(x, experts, ids)) return q8;  // cuda_moe_decode.cu
  if (n <= kMaxDecodeTokens || f32_experts(experts)) {
    return sizeof(float) * size_t(std::min<int64_t>(n, kMaxDecodeTokens) * k * n_ff);
  }
  return moe_prefill_workspace_bytes(x, experts, ids);
}

void moe_experts(cudaStream_t stream, const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                 const Tensor& ids, const Tensor& weights, void* workspace) {
  const int64_t n = x.ne[1], k = ids.ne[0], n_embd = x.ne[0], n_ff = experts.gate.ne[1];
  if (n > kMaxDecodeTokens && f32_experts(experts)) {
    // F32 experts keep F32 products (the tensor-core tiles round to f16): the decode kernels over
    // groups of tokens.
    for (int64_t j = 0; j < n; j += kMaxDecodeTokens) {
      const int64_t c = std::min<int64_t>(kMaxDecodeTokens, n - j);
      auto cols = [&](const Tensor& t) { return t.view({t.ne[0], c, 1, 1}, t.nb, size_t(j) * t.nb[1]); };
      moe_experts(stream, cols(dst), cols(x), experts, cols(ids), cols(weights), workspace);
    }
    return;
  }
  const int32_t n_expert = int32_t(experts.gate.ne[2]);
  if (n == 0) return;
  if (n <= kMaxDecodeTokens && q8_moe_usable(x, experts)) return q8_moe_experts(stream, dst, x, experts, ids, weights, workspace);
  const ExpertMat gate = mat_of(experts.gate), up = mat_of(experts.up), down = mat_of(experts.down);
  const int64_t x_stride = float_stride(x, "x"), d_stride = float_stride(dst, "dst");
  const auto* id = ids.as<const int32_t>();
  const auto* wt = weights.as<const float>();
  if (!supports_weight_type(experts.gate.type) || !supports_weight_type(experts.down.type)) {
    fail("internal: cuda moe_experts has no kernel for ", type_name(experts.gate.type), "/",
         type_name(experts.down.type));
  }
  if (experts.gate.type != experts.up.type) {
    fail("internal: cuda moe_experts: gate ", type_name(experts.gate.type), " and up ", type_name(experts.up.type),
         " differ");
  }
  bool ok_gu = false, ok_d = false;  // always set: the types were checked above
  if (n <= kMaxDecodeTokens) {
    float* h = static_cast<float*>(workspace);
    ok_gu = dispatch_type(experts.gate.type, [&]<GgmlType T>() {
      const int64_t per_block = kWarps * kFfRowsPerWarp;
      const dim3 grid(unsigned((n_ff + per_block - 1) / per_block), unsigned(k), unsigned(n));
      const bool aligned = reinterpret_cast<uintptr_t>(x.data) % 16 == 0 && x_stride % 4 == 0;
      moe_gate_up_vec<T><<<grid, 32 * kWarps, 0, stream>>>(gate, up, n_embd, n_ff, n_expert, x.as<const float>(),
                                                          x_stride, aligned, id, int(k), h);
    });
    MOESERVE_CUDA_CHECK_LAUNCH();
    ok_d = dispatch_type(experts.down.type, [&]<GgmlType T>() {
      const dim3 grid{unsigned(n_embd), unsigned(n)};
      const bool h_aligned = reinterpret_cast<uintptr_t>(h) % 16 == 0 && n_ff % 4 == 0;
      moe_down_vec<T><<<grid, kDownThreads, 0, stream>>>(down, n_embd, n_ff, n_expert, h, h_aligned, id, wt,
                                                        int(k), dst.as<float>(), d_stride);
    });
    MOESERVE_CUDA_CHECK_LAUNCH();
  } else {
    moe_prefill(stream, dst, x, experts, ids, weights, workspace);
    ok_gu = ok_d = true;
  }
  if (!ok_gu || !ok_d) {
    fail("internal: cuda moe_experts has no kernel for ", type_name(experts.gate.type), "/",
         type_name(experts.down.type));
  }
}

}  // namespace moeserve::cuda
