// Routed experts of a decode step (up to 8 tokens) on the 8-bit activation path (cuda_matvec.h,
// mmvq.cuh). Four launches, all sized from shapes (expert ids and weights stay on the device):
//   1. quantize the tokens' activations (none where a token's input fits in shared memory: each
//      gate/up block quantizes its token's column itself);
//   2. per (row f, slot j, token t) one warp: gate_e[f] . x_t and up_e[f] . x_t from the same
//      activation loads, h = silu(gate) * up;
//   3. quantize h (n * k columns of n_ff);
//   4. per (4 output rows, token) one block: its warps share out the k slots, each slot's 4 down
//      rows against h_j, scaled by the router weight; the slots' sums are added in slot order, so
//      results repeat bit for bit (no atomics).
// An id outside [0, n_expert) contributes nothing (h = 0, the slot is skipped). Every launch is
// PDL (pdl.cuh); the expert kernels wait before their first row, which depends on the ids.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_matvec.h"
#include "backend/cuda/mmvq.cuh"
#include "core/error.h"

namespace moeserve::cuda {

namespace {

using mmvq::ActQ8;

struct Experts {
  const uint8_t* data;
  size_t nb1, nb2;
};
Experts experts_of(const Tensor& t) { return {static_cast<const uint8_t*>(t.data), t.nb[1], t.nb[2]}; }

__device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }

// grid (ceil(n_ff / kWarps), k, n).
template <GgmlType T, int V>
__global__ void __launch_bounds__(mmvq::kThreads)
    q8_gate_up(Experts gate, Experts up, int64_t nblk, int tile_blk, int64_t n_embd, int64_t n_ff, int32_t n_expert,
               ActQ8 ax, const float* x, int64_t x_stride, int x_smem, const int32_t* ids, int k, float* h) {
  extern __shared__ __align__(16) uint8_t smem[];
  mmvq::load_table<T>(smem);
  pdl_wait();  // before the ids
  pdl_trigger();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t f = int64_t(blockIdx.x) * mmvq::kWarps + warp, fc = f < n_ff ? f : n_ff - 1;
  const int64_t t = blockIdx.z, p = t * k + blockIdx.y;
  // Token t's activations: quantized here into shared memory (x given) or by an earlier launch.
  const int8_t* xq = ax.qs + t * n_embd;
  const float2* xd = ax.ds + t * (n_embd / 32);
  if (x) {
    int8_t* qs = reinterpret_cast<int8_t*>(smem + mmvq::table_bytes<T>());
    float2* ds = reinterpret_cast<float2*>(smem + mmvq::table_bytes<T>() + n_embd);
    mmvq::quantize_to_smem(x + t * x_stride, 0, n_embd, 1, qs, ds);
    xq = qs;
    xd = ds;
  }
  const int32_t e = ids[p];
  const bool valid = e >= 0 && e < n_expert;
  const int32_t ec = valid ? e : 0;
  const int tile_bytes = tile_blk * Dq<T>::kBytes;
  uint8_t* sm = smem + mmvq::table_bytes<T>() + x_smem + warp * 2 * tile_bytes;
  auto rows_of = [&](int, const uint8_t* (&rows)[2]) {
    rows[0] = gate.data + size_t(ec) * gate.nb2 + size_t(fc) * gate.nb1;
    rows[1] = up.data + size_t(ec) * up.nb2 + size_t(fc) * up.nb1;
  };
  auto act_of = [&](int, const int8_t*& aq, const float2*& ads) {
    aq = xq;
    ads = xd;
  };
  auto done = [&](int, float (&acc)[2][1]) {
    const float g = mmvq::sum32(acc[0][0]), u = mmvq::sum32(acc[1][0]);
    if (lane == 0 && f < n_ff) h[p * n_ff + f] = valid ? silu(g) * u : 0.0f;
  };
  __syncthreads();
  mmvq::warp_passes<T, 2, 1, V>(1, nblk, tile_blk, n_embd, sm, smem, lane, rows_of, act_of, done, [] {});
}

constexpr int kDownRows = 4;  // output rows per block

// grid (ceil(n_embd / kDownRows), n), 32 * n_warps threads; warp w takes slots [w * spw, (w+1) * spw).
template <GgmlType T, int V>
__global__ void __launch_bounds__(mmvq::kThreads)
    q8_down(Experts down, int64_t nblk, int tile_blk, int64_t n_embd, int64_t n_ff, int32_t n_expert, ActQ8 ah,
            const int32_t* ids, const float* weights, int k, int spw, float* dst, int64_t d_stride) {
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float part[mmvq::kWarps][kDownRows];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  const int64_t i0 = int64_t(blockIdx.x) * kDownRows, t = blockIdx.y;
  const int j0 = warp * spw, n_pass = max(0, min(k, j0 + spw) - j0);
  const int tile_bytes = tile_blk * Dq<T>::kBytes;
  uint8_t* sm = smem + mmvq::table_bytes<T>() + warp * kDownRows * tile_bytes;
  float sum[kDownRows] = {};
  auto rows_of = [&](int pass, const uint8_t* (&rows)[kDownRows]) {
    const int32_t e = ids[t * k + j0 + pass];
    const int32_t ec = e >= 0 && e < n_expert ? e : 0;
#pragma unroll
    for (int r = 0; r < kDownRows; ++r) {
      const int64_t i = i0 + r < n_embd ? i0 + r : n_embd - 1;
      rows[r] = down.data + size_t(ec) * down.nb2 + size_t(i) * down.nb1;
    }
  };
  auto act_of = [&](int pass, const int8_t*& aq, const float2*& ads) {
    const int64_t p = t * k + j0 + pass;
    aq = ah.qs + p * n_ff;
    ads = ah.ds + p * (n_ff / 32);
  };
  auto done = [&](int pass, float (&acc)[kDownRows][1]) {
    const int64_t p = t * k + j0 + pass;
    const int32_t e = ids[p];
    if (e < 0 || e >= n_expert) return;
    const float wt = weights[p];
#pragma unroll
    for (int r = 0; r < kDownRows; ++r) sum[r] = fmaf(wt, mmvq::sum32(acc[r][0]), sum[r]);
  };
  mmvq::load_table<T>(smem);
  pdl_wait();
  pdl_trigger();
  __syncthreads();
  mmvq::warp_passes<T, kDownRows, 1, V>(n_pass, nblk, tile_blk, n_ff, sm, smem, lane, rows_of, act_of, done, [] {});
  if (lane < kDownRows) {
    float v = sum[0];
#pragma unroll
    for (int r = 1; r < kDownRows; ++r) v = lane == r ? sum[r] : v;
    part[warp][lane] = v;
  }
  __syncthreads();
  if (threadIdx.x < kDownRows && i0 + threadIdx.x < n_embd) {
    float s = 0.0f;
    for (int w = 0; w < n_warps; ++w) s += part[w][threadIdx.x];
    dst[t * d_stride + i0 + threadIdx.x] = s;
  }
}

bool q8_types(const ExpertWeights& e) {
  return mmvq::is_q8_type(e.gate.type) && e.up.type == e.gate.type && mmvq::is_q8_type(e.down.type);
}

}  // namespace

size_t q8_moe_workspace_bytes(const Tensor& x, const ExpertWeights& experts, const Tensor& ids) {
  const int64_t n = x.ne[1], k = ids.ne[0], n_embd = x.ne[0], n_ff = experts.gate.ne[1];
  if (n < 1 || n > kQ8MaxCols || !q8_types(experts) || n_embd % 32 != 0 || n_ff % 32 != 0) return 0;
  return mmvq::align256(sizeof(float) * size_t(n * k * n_ff)) + mmvq::act_bytes(n_embd, n) +
         mmvq::act_bytes(n_ff, n * k);
}

bool q8_moe_usable(const Tensor& x, const ExpertWeights& experts) {
  const int64_t n = x.ne[1];
  return n >= 1 && n <= kQ8MaxCols && q8_types(experts) && x.ne[0] % 32 == 0 && experts.gate.ne[1] % 32 == 0 &&
         mmvq::row_vec(experts.gate) > 0 && mmvq::row_vec(experts.up) > 0 && mmvq::row_vec(experts.down) > 0;
}

namespace {

// f(integral_constant<V>) for the staging width v (16, 4 or 2).
template <typename F>
void with_vec(int v, F&& f) {
  if (v == 16) return f(std::integral_constant<int, 16>{});
  if (v == 4) return f(std::integral_constant<int, 4>{});
  f(std::integral_constant<int, 2>{});
}

}  // namespace

void q8_moe_experts(cudaStream_t stream, const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                    const Tensor& ids, const Tensor& weights, void* workspace) {
  const int64_t n = x.ne[1], k = ids.ne[0], n_embd = x.ne[0], n_ff = experts.gate.ne[1];
  const int32_t n_expert = int32_t(experts.gate.ne[2]);
  if (dst.nb[1] % sizeof(float) != 0) fail("internal: cuda moe dst row stride is not a multiple of 4");
  char* ws = static_cast<char*>(workspace);
  float* h = reinterpret_cast<float*>(ws);
  char* ax_ws = ws + mmvq::align256(sizeof(float) * size_t(n * k * n_ff));
  char* ah_ws = ax_ws + mmvq::act_bytes(n_embd, n);
  // A token's input fits each gate/up block's shared memory: no launch of its own for it.
  const size_t x_smem = (mmvq::smem_act_bytes(n_embd, 1) + 15) / 16 * 16;
  const bool x_in_block = x_smem <= 24 * 1024;
  const ActQ8 ax = x_in_block ? ActQ8{nullptr, nullptr} : mmvq::quantize_columns(stream, x, n_embd, n, ax_ws);
  const float* x_data = x_in_block ? x.as<const float>() : nullptr;
  const int64_t x_stride = int64_t(x.nb[1] / sizeof(float));
  const int x_smem_used = x_in_block ? int(x_smem) : 0;
  const auto* id = ids.as<const int32_t>();
  const int v_gu = std::min(mmvq::row_vec(experts.gate), mmvq::row_vec(experts.up));
  bool ok = mmvq::dispatch_q8(experts.gate.type, [&]<GgmlType T>() {
    with_vec(v_gu, [&](auto vc) {
      constexpr int V = decltype(vc)::value;
      const int64_t nblk = n_embd / Dq<T>::kQk;
      const int tile_blk = mmvq::tile_blocks<T, V>(nblk);
      const size_t smem = size_t(mmvq::table_bytes<T>()) + size_t(x_smem_used) +
                          size_t(mmvq::kWarps * 2) * size_t(tile_blk * Dq<T>::kBytes);
      mmvq::allow_smem(q8_gate_up<T, V>, smem);
      const dim3 grid(unsigned((n_ff + mmvq::kWarps - 1) / mmvq::kWarps), unsigned(k), unsigned(n));
      launch_pdl(q8_gate_up<T, V>, grid, mmvq::kThreads, smem, stream, experts_of(experts.gate), experts_of(experts.up),
                 nblk, tile_blk, n_embd, n_ff, n_expert, ax, x_data, x_stride, x_smem_used, id, int(k), h);
    });
  });
  MOESERVE_CUDA_CHECK_LAUNCH();
  const Tensor th = Tensor::contiguous(GgmlType::F32, {n_ff, n * k, 1, 1}, h, dst.device);
  const ActQ8 ah = mmvq::quantize_columns(stream, th, n_ff, n * k, ah_ws);
  ok = ok && mmvq::dispatch_q8(experts.down.type, [&]<GgmlType T>() {
    with_vec(mmvq::row_vec(experts.down), [&](auto vc) {
      constexpr int V = decltype(vc)::value;
      const int64_t nblk = n_ff / Dq<T>::kQk;
      const int tile_blk = mmvq::tile_blocks<T, V>(nblk);
      // Slots per warp so that the warps carry equal shares (10 slots: 5 warps of 2).
      const int spw = int((k + mmvq::kWarps - 1) / mmvq::kWarps);
      const int n_warps = int((k + spw - 1) / spw);
      const size_t smem =
          size_t(mmvq::table_bytes<T>()) + size_t(n_warps * kDownRows) * size_t(tile_blk * Dq<T>::kBytes);
      mmvq::allow_smem(q8_down<T, V>, smem);
      const dim3 grid(unsigned((n_embd + kDownRows - 1) / kDownRows), unsigned(n));
      launch_pdl(q8_down<T, V>, grid, 32 * n_warps, smem, stream, experts_of(experts.down), nblk, tile_blk, n_embd,
                 n_ff, n_expert, ah, id, weights.as<const float>(), int(k), spw, dst.as<float>(),
                 int64_t(dst.nb[1] / sizeof(float)));
    });
  });
  MOESERVE_CUDA_CHECK_LAUNCH();
  if (!ok) {
    fail("internal: cuda q8 moe has no kernel for ", type_name(experts.gate.type), "/", type_name(experts.down.type));
  }
}

}  // namespace moeserve::cuda
