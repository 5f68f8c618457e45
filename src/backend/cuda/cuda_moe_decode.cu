// Routed experts of a decode step (up to 8 tokens) on the 8-bit activation path (cuda_matvec.h,
// mmvq.cuh). Two launches where a token's input fits in shared memory, all sized from shapes
// (expert ids and weights stay on the device):
//   (0. quantize the tokens' activations, only where a token's input does not fit: otherwise each
//      gate/up block quantizes its token's column itself, while its first weight loads are in flight);
//   1. per (32 rows f, slot j, token t) one block of 8 warps, two rows per warp in each of two
//      pipelined passes: gate_e[f] . x_t and up_e[f] . x_t from the same activation loads,
//      h = silu(gate) * up; the block's 32 values of h are one quantization block, so h leaves the
//      kernel quantized;
//   2. per (4 output rows, token) one block: it copies the token's k quantized h columns into shared
//      memory while its first weight loads are in flight; its warps share out the k slots, each
//      slot's 4 down rows against h_j, scaled by the router weight; the slots' sums are added in slot
//      order, so results repeat bit for bit (no atomics). With a MoeSharedAdd, the sum goes into the
//      residual with the shared expert's gated output instead (moe_shared_add's arithmetic).
// An id outside [0, n_expert) contributes nothing (h = 0, the slot is skipped). Every launch is
// PDL (pdl.cuh); the gate/up kernel waits before its first row, which depends on the ids; the down
// kernel reads the ids and its first rows before it waits (the ids are older than gate/up's input),
// and gate/up asks for those rows in L2 ahead of it.
#include <algorithm>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_matvec.h"
#include "backend/cuda/mmvq.cuh"
#include "backend/cuda/moe_shared_sum.cuh"
#include "core/env_switch.h"
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

// Asks for bytes [p, p + n) in L2 (16-byte aligned, n a multiple of 16), without waiting (sm_90).
__device__ __forceinline__ void prefetch_l2(const void* p, uint32_t n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(n) : "memory");
#endif
}

// Rows of h per block: one quantization block. 8 warps of two passes, not 16 warps of one: at ~120
// registers a thread one block of 16 warps fills an SM's register file, so the 160 blocks of a
// token (16 row blocks x 10 slots) ran as 1.2 waves on 132 SMs; two blocks of 8 warps fit an SM.
// (Blocks of 4 warps, two per quantization block sharing h in a cluster, spread the 160 blocks'
// work more evenly over the SMs but were slower: each block's own table copy and quantization of x
// take twice as long with half the warps.)
constexpr int kGuRows = 32;
constexpr int kGuWarps = 8;
constexpr int kGuPasses = kGuRows / (2 * kGuWarps);

// grid (n_ff / kGuRows, k, n), 32 * kGuWarps threads; in pass p warp w takes rows
// f0 + w + kGuWarps * (2p + r), r = 0, 1 (the four weight rows' loads in flight together, the next
// pass's loads issued before this pass is decoded).
// h of (token t, slot j) goes to hq + (t * k + j) * n_ff, its scales to hd + (t * k + j) * n_ff / 32.
// down_bytes > 0: each block also asks for its share of expert e's down rows in L2 (below).
template <GgmlType T, int V>
__global__ void __launch_bounds__(32 * kGuWarps, 2)
    q8_gate_up(Experts gate, Experts up, int64_t nblk, int tile_blk, int64_t n_embd, int64_t n_ff, int32_t n_expert,
               ActQ8 ax, const float* x, int64_t x_stride, int x_smem, const int32_t* ids, int k, int8_t* hq,
               float2* hd, Experts down, size_t down_bytes) {
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float hs[kGuRows];
  mmvq::load_table<T>(smem);
  pdl_wait();  // before the ids
  pdl_trigger();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t f0 = int64_t(blockIdx.x) * kGuRows;
  const int64_t t = blockIdx.z, p = t * k + blockIdx.y;
  const int32_t e = ids[p];
  const bool valid = e >= 0 && e < n_expert;
  const int32_t ec = valid ? e : 0;
  // The down kernel's rows of this expert, cut into one piece per block of the slot: fetched into
  // L2 now, they are there when that kernel starts (these blocks are bound by their instructions
  // and latencies, DRAM has room).
  if (down_bytes > 0 && valid && threadIdx.x == 0) {
    const size_t piece = (down_bytes / gridDim.x + 15) & ~size_t(15);
    const uintptr_t base = reinterpret_cast<uintptr_t>(down.data + size_t(e) * down.nb2);
    const uintptr_t lo = (base + size_t(blockIdx.x) * piece + 15) & ~uintptr_t(15);
    const uintptr_t hi = std::min(base + size_t(blockIdx.x + 1) * piece, base + down_bytes) & ~uintptr_t(15);
    if (hi > lo) prefetch_l2(reinterpret_cast<const void*>(lo), uint32_t(hi - lo));
  }
  // Token t's activations: quantized here into shared memory (x given) or by an earlier launch.
  const int8_t* xq = ax.qs + t * n_embd;
  const float2* xd = ax.ds + t * (n_embd / 32);
  int8_t* qs = reinterpret_cast<int8_t*>(smem + mmvq::table_bytes<T>());
  float2* ds = reinterpret_cast<float2*>(smem + mmvq::table_bytes<T>() + n_embd);
  if (x) {
    xq = qs;
    xd = ds;
  }
  const int tile_bytes = tile_blk * Dq<T>::kBytes;
  uint8_t* sm = smem + mmvq::table_bytes<T>() + x_smem + warp * 4 * tile_bytes;
  auto rows_of = [&](int pass, const uint8_t* (&rows)[4]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t f = f0 + warp + kGuWarps * (2 * pass + r);
      rows[2 * r] = gate.data + size_t(ec) * gate.nb2 + size_t(f) * gate.nb1;
      rows[2 * r + 1] = up.data + size_t(ec) * up.nb2 + size_t(f) * up.nb1;
    }
  };
  auto act_of = [&](int, const int8_t*& aq, const float2*& ads) {
    aq = xq;
    ads = xd;
  };
  auto done = [&](int pass, float (&acc)[4][1]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float g = mmvq::sum32(acc[2 * r][0]), u = mmvq::sum32(acc[2 * r + 1][0]);
      if (lane == 0) hs[warp + kGuWarps * (2 * pass + r)] = valid ? silu(g) * u : 0.0f;
    }
  };
  // Every warp gets here once its first weight tile is on the way.
  auto ready = [&] {
    if (x) mmvq::quantize_to_smem(x + t * x_stride, 0, n_embd, 1, qs, ds);
    __syncthreads();
  };
  mmvq::warp_passes<T, 4, 1, V>(kGuPasses, nblk, tile_blk, n_embd, sm, smem, lane, rows_of, act_of, done, ready);
  __syncthreads();
  if (warp == 0) mmvq::quantize_block32(hs[lane], hq + p * n_ff + f0, hd + p * (n_ff / 32) + f0 / 32);
}

constexpr int kDownRows = 4;  // output rows per block

// The down kernel's MoeSharedAdd, strides in floats; h null: dst = the routed sum.
struct SharedAddArgs {
  float* h;
  const float* shared;
  const float* gate;
  int64_t h_stride, shared_stride, gate_stride;
};

// Bytes of shared memory for the k quantized h columns of one token (quants, then scales).
size_t h_smem_bytes(int64_t n_ff, int64_t k) {
  return (size_t(k * n_ff) + 15) / 16 * 16 + (size_t(k * n_ff / 32) * 8 + 15) / 16 * 16;
}

// grid (ceil(n_embd / kDownRows), n), 32 * n_warps threads; warp w takes slots [w * spw, (w+1) * spw).
// h_smem (h_smem_bytes or 0): the token's h columns are read from a copy in shared memory.
// At most 96 registers: four blocks of the usual 5 warps (k = 10) share an SM, so the 512 blocks
// of one token's 2048 output rows run as one wave on 132 SMs.
template <GgmlType T, int V>
__global__ void __maxnreg__(96)
    q8_down(Experts down, int64_t nblk, int tile_blk, int64_t n_embd, int64_t n_ff, int32_t n_expert, ActQ8 ah,
            int h_smem, const int32_t* ids, const float* weights, int k, int spw, float* dst, int64_t d_stride,
            SharedAddArgs add) {
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float part[mmvq::kWarps][kDownRows];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  const int64_t i0 = int64_t(blockIdx.x) * kDownRows, t = blockIdx.y;
  const int j0 = warp * spw, n_pass = max(0, min(k, j0 + spw) - j0);
  const int tile_bytes = tile_blk * Dq<T>::kBytes;
  uint8_t* sm = smem + mmvq::table_bytes<T>() + h_smem + warp * kDownRows * tile_bytes;
  // The token's k columns of h: at hq + j * n_ff, scales at hd + j * n_ff / 32.
  const int8_t* hq = ah.qs + t * k * n_ff;
  const float2* hd = ah.ds + t * k * (n_ff / 32);
  int8_t* sq = reinterpret_cast<int8_t*>(smem + mmvq::table_bytes<T>());
  float2* sd = reinterpret_cast<float2*>(smem + mmvq::table_bytes<T>() + (size_t(k * n_ff) + 15) / 16 * 16);
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
    aq = hq + (j0 + pass) * n_ff;
    ads = hd + (j0 + pass) * (n_ff / 32);
  };
  auto done = [&](int pass, float (&acc)[kDownRows][1]) {
    const int64_t p = t * k + j0 + pass;
    const int32_t e = ids[p];
    if (e < 0 || e >= n_expert) return;
    const float wt = weights[p];
#pragma unroll
    for (int r = 0; r < kDownRows; ++r) sum[r] = fmaf(wt, mmvq::sum32(acc[r][0]), sum[r]);
  };
  // Every warp gets here once its first weight tiles are on the way (each warp has a slot). Those
  // tiles and the ids they come from are read before the wait: the ids come from the kernel
  // before the gate/up kernel, which waited for it before letting this one launch.
  auto ready = [&] {
    pdl_wait();
    pdl_trigger();
    if (h_smem) {  // (10 slots of 512: two 16-byte quant loads and one scale load per thread)
      mmvq::block_copy<2>(reinterpret_cast<int4*>(sq), reinterpret_cast<const int4*>(hq), k * n_ff / 16);
      mmvq::block_copy<1>(sd, hd, k * (n_ff / 32));
      hq = sq;
      hd = sd;
    }
    __syncthreads();
  };
  mmvq::load_table<T>(smem);
  mmvq::warp_passes<T, kDownRows, 1, V>(n_pass, nblk, tile_blk, n_ff, sm, smem, lane, rows_of, act_of, done, ready);
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
    const int64_t i = i0 + threadIdx.x;
    if (add.h) {
      float& out = add.h[t * add.h_stride + i];
      out = moe_shared_sum(out, s, add.shared[t * add.shared_stride + i], add.gate[t * add.gate_stride]);
    } else {
      dst[t * d_stride + i] = s;
    }
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

namespace {

bool down_prefetch() {
  static const bool on = env_switch_on("MOESERVE_DOWN_PREFETCH");
  return on;
}

// f(integral_constant<V>) for the staging width v (16, 4 or 2).
template <typename F>
void with_vec(int v, F&& f) {
  if (v == 16) return f(std::integral_constant<int, 16>{});
  if (v == 4) return f(std::integral_constant<int, 4>{});
  f(std::integral_constant<int, 2>{});
}

}  // namespace

void q8_moe_experts(cudaStream_t stream, const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                    const Tensor& ids, const Tensor& weights, void* workspace, const MoeSharedAdd* add) {
  const int64_t n = x.ne[1], k = ids.ne[0], n_embd = x.ne[0], n_ff = experts.gate.ne[1];
  const int32_t n_expert = int32_t(experts.gate.ne[2]);
  if (dst.nb[1] % sizeof(float) != 0) fail("internal: cuda moe dst row stride is not a multiple of 4");
  SharedAddArgs add_args{};
  if (add) {
    for (const Tensor* t : {&add->h, &add->shared, &add->gate}) {
      if (t->nb[1] % sizeof(float) != 0) fail("internal: cuda moe shared add row stride is not a multiple of 4");
    }
    add_args = SharedAddArgs{add->h.as<float>(), add->shared.as<const float>(), add->gate.as<const float>(),
                             int64_t(add->h.nb[1] / sizeof(float)), int64_t(add->shared.nb[1] / sizeof(float)),
                             int64_t(add->gate.nb[1] / sizeof(float))};
  }
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
  // The L2 prefetch of the down rows (sm_90): the bytes from an expert's first down row to the end
  // of its last.
  int device = 0, cc_major = 0;
  MOESERVE_CUDA_CHECK(cudaGetDevice(&device));
  MOESERVE_CUDA_CHECK(cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device));
  const size_t down_bytes = cc_major >= 9 && down_prefetch() ? size_t(experts.down.ne[1] - 1) * experts.down.nb[1] +
                                                                   row_bytes(experts.down.type, experts.down.ne[0])
                                                             : 0;
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
                 int(k), const_cast<int8_t*>(ah.qs), const_cast<float2*>(ah.ds), experts_of(experts.down),
                 down_bytes);
    });
  });
  MOESERVE_CUDA_CHECK_LAUNCH();
  if (add && add->join) MOESERVE_CUDA_CHECK(cudaStreamWaitEvent(stream, add->join, 0));
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
                 int64_t(dst.nb[1] / sizeof(float)), add_args);
    });
  });
  MOESERVE_CUDA_CHECK_LAUNCH();
  if (!ok) {
    fail("internal: cuda q8 moe has no kernel for ", type_name(experts.gate.type), "/", type_name(experts.down.type));
  }
}

}  // namespace moeserve::cuda
