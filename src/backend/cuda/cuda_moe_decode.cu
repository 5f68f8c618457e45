// Routed experts of a decode step (up to 8 tokens) on the 8-bit activation path (cuda_matvec.h,
// mmvq.cuh). Two launches where a token's input fits in shared memory, all sized from shapes
// (expert ids and weights stay on the device):
//   (0. quantize the tokens' activations, only where a token's input does not fit: otherwise each
//      gate/up block quantizes its token's column itself, while its first weight loads are in flight);
//   1. per (32 rows f, slot j, token t) one block of 16 warps, two rows per warp in one pass:
//      gate_e[f] . x_t and up_e[f] . x_t from the same activation loads, h = silu(gate) * up; the
//      block's 32 values of h are one quantization block, so h leaves the kernel quantized;
//   2. per (4 output rows, token) one block: it copies the token's k quantized h columns into shared
//      memory while its first weight loads are in flight; its warps share out the k slots, each
//      slot's 4 down rows against h_j, scaled by the router weight; the slots' sums are added in slot
//      order, so results repeat bit for bit (no atomics).
// An id outside [0, n_expert) contributes nothing (h = 0, the slot is skipped). Every launch is
// PDL (pdl.cuh); the expert kernels wait before their first row, which depends on the ids.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_matvec.h"
#include "backend/cuda/mmvq.cuh"
#include "backend/cuda/moe_decode.cuh"
#include "core/error.h"

namespace moeserve::cuda {

namespace {

using mmvq::ActQ8;
using namespace moe_decode;

// grid (n_ff / kGuRows, k, n), 32 * kGuWarps threads (gate_up_rows).
// h of (token t, slot j) goes to hq + (t * k + j) * n_ff, its scales to hd + (t * k + j) * n_ff / 32.
template <GgmlType T, int V>
__global__ void __launch_bounds__(32 * kGuWarps)
    q8_gate_up(Experts gate, Experts up, int64_t nblk, int tile_blk, int64_t n_embd, int64_t n_ff, int32_t n_expert,
               ActQ8 ax, const float* x, int64_t x_stride, int x_smem, const int32_t* ids, int k, int8_t* hq,
               float2* hd) {
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float hs[kGuRows];
  mmvq::load_table<T>(smem);
  pdl_wait();  // before the ids
  pdl_trigger();
  const int64_t f0 = int64_t(blockIdx.x) * kGuRows;
  const int64_t t = blockIdx.z, p = t * k + blockIdx.y;
  const int32_t e = ids[p];
  const bool valid = e >= 0 && e < n_expert;
  // Token t's activations: quantized here into shared memory (x given) or by an earlier launch.
  const int8_t* xq = ax.qs + t * n_embd;
  const float2* xd = ax.ds + t * (n_embd / 32);
  int8_t* qs = reinterpret_cast<int8_t*>(smem + mmvq::table_bytes<T>());
  float2* ds = reinterpret_cast<float2*>(smem + mmvq::table_bytes<T>() + n_embd);
  if (x) {
    xq = qs;
    xd = ds;
  }
  auto ready = [&] {
    if (x) mmvq::quantize_to_smem(x + t * x_stride, 0, n_embd, 1, qs, ds);
    __syncthreads();
  };
  gate_up_rows<T, V>(gate, up, valid ? e : 0, valid, f0, nblk, tile_blk, n_embd, xq, xd,
                     smem + mmvq::table_bytes<T>() + x_smem, smem, hs, hq + p * n_ff + f0,
                     hd + p * (n_ff / 32) + f0 / 32, ready);
}

// grid (ceil(n_embd / kDownRows), n), 32 * n_warps threads; warp w takes slots [w * spw, (w+1) * spw)
// (down_rows); the slots' sums are added in warp order. h_smem (h_smem_bytes or 0): the token's h
// columns are read from a copy in shared memory.
template <GgmlType T, int V>
__global__ void __launch_bounds__(mmvq::kThreads)
    q8_down(Experts down, int64_t nblk, int tile_blk, int64_t n_embd, int64_t n_ff, int32_t n_expert, ActQ8 ah,
            int h_smem, const int32_t* ids, const float* weights, int k, int spw, float* dst, int64_t d_stride) {
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float part[mmvq::kWarps][kDownRows];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  const int64_t i0 = int64_t(blockIdx.x) * kDownRows, t = blockIdx.y;
  const int j0 = warp * spw, n_pass = max(0, min(k, j0 + spw) - j0);
  const int tile_bytes = tile_blk * Dq<T>::kBytes;
  uint8_t* sm = smem + mmvq::table_bytes<T>() + h_smem + warp * kDownRows * tile_bytes;
  const int8_t* hq = ah.qs + t * k * n_ff;
  const float2* hd = ah.ds + t * k * (n_ff / 32);
  float sum[kDownRows] = {};
  // Every warp gets here once its first weight tiles are on the way (each warp has a slot).
  auto ready = [&] {
    if (h_smem) h_to_smem(hq, hd, smem + mmvq::table_bytes<T>(), n_ff, k);
    __syncthreads();
  };
  mmvq::load_table<T>(smem);
  pdl_wait();
  pdl_trigger();
  down_rows<T, V>(down, nblk, tile_blk, n_embd, n_ff, n_expert, hq, hd, ids + t * k, weights + t * k, j0, n_pass, i0,
                  sm, smem, sum, ready);
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
  // At least the float h of the general decode kernels, which take over where rows are not
  // aligned for these (q8_moe_usable).
  return std::max(mmvq::act_bytes(n_embd, n) + mmvq::act_bytes(n_ff, n * k), sizeof(float) * size_t(n * k * n_ff));
}

bool q8_moe_usable(const Tensor& x, const ExpertWeights& experts) {
  const int64_t n = x.ne[1];
  return n >= 1 && n <= kQ8MaxCols && q8_types(experts) && x.ne[0] % 32 == 0 && experts.gate.ne[1] % 32 == 0 &&
         mmvq::row_vec(experts.gate) > 0 && mmvq::row_vec(experts.up) > 0 && mmvq::row_vec(experts.down) > 0;
}


void q8_moe_experts(cudaStream_t stream, const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                    const Tensor& ids, const Tensor& weights, void* workspace) {
  const int64_t n = x.ne[1], k = ids.ne[0], n_embd = x.ne[0], n_ff = experts.gate.ne[1];
  const int32_t n_expert = int32_t(experts.gate.ne[2]);
  if (dst.nb[1] % sizeof(float) != 0) fail("internal: cuda moe dst row stride is not a multiple of 4");
  char* ax_ws = static_cast<char*>(workspace);
  const ActQ8 ah = mmvq::act_at(ax_ws + mmvq::act_bytes(n_embd, n), n_ff, n * k);
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
                          size_t(kGuWarps * 4) * size_t(tile_blk * Dq<T>::kBytes);
      mmvq::allow_smem(q8_gate_up<T, V>, smem);
      const dim3 grid(unsigned(n_ff / kGuRows), unsigned(k), unsigned(n));
      launch_pdl(q8_gate_up<T, V>, grid, 32 * kGuWarps, smem, stream, experts_of(experts.gate),
                 experts_of(experts.up), nblk, tile_blk, n_embd, n_ff, n_expert, ax, x_data, x_stride, x_smem_used, id,
                 int(k), const_cast<int8_t*>(ah.qs), const_cast<float2*>(ah.ds));
    });
  });
  MOESERVE_CUDA_CHECK_LAUNCH();
  // A token's k columns of h fit each down block's shared memory next to the weight tiles.
  const size_t h_smem = h_smem_bytes(n_ff, k) <= 24 * 1024 ? h_smem_bytes(n_ff, k) : 0;
  ok = ok && mmvq::dispatch_q8(experts.down.type, [&]<GgmlType T>() {
    with_vec(mmvq::row_vec(experts.down), [&](auto vc) {
      constexpr int V = decltype(vc)::value;
      const int64_t nblk = n_ff / Dq<T>::kQk;
      const int tile_blk = mmvq::tile_blocks<T, V>(nblk);
      // Slots per warp so that the warps carry equal shares (10 slots: 5 warps of 2).
      const int spw = int((k + mmvq::kWarps - 1) / mmvq::kWarps);
      const int n_warps = int((k + spw - 1) / spw);
      const size_t smem = size_t(mmvq::table_bytes<T>()) + h_smem +
                          size_t(n_warps * kDownRows) * size_t(tile_blk * Dq<T>::kBytes);
      mmvq::allow_smem(q8_down<T, V>, smem);
      const dim3 grid(unsigned((n_embd + kDownRows - 1) / kDownRows), unsigned(n));
      launch_pdl(q8_down<T, V>, grid, 32 * n_warps, smem, stream, experts_of(experts.down), nblk, tile_blk, n_embd,
                 n_ff, n_expert, ah, int(h_smem), id, weights.as<const float>(), int(k), spw, dst.as<float>(),
                 int64_t(dst.nb[1] / sizeof(float)));
    });
  });
  MOESERVE_CUDA_CHECK_LAUNCH();
  if (!ok) {
    fail("internal: cuda q8 moe has no kernel for ", type_name(experts.gate.type), "/", type_name(experts.down.type));
  }
}

}  // namespace moeserve::cuda
