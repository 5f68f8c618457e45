// The per-block pieces of the decode-side routed-expert kernels (cuda_moe_decode.cu), shared with
// the fused MoE block (cuda_moe_ffn.cu): a gate/up block's 32 rows of h, and a warp's share of the
// down products of one output block. Both run mmvq::warp_passes on 8-bit activations.
#pragma once

#include <cstdint>
#include <type_traits>

#include "backend/cuda/mmvq.cuh"

namespace moeserve::cuda::moe_decode {

struct Experts {
  const uint8_t* data;
  size_t nb1, nb2;
};
inline Experts experts_of(const Tensor& t) { return {static_cast<const uint8_t*>(t.data), t.nb[1], t.nb[2]}; }

__device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }

constexpr int kGuWarps = 16;   // warps per gate/up block
constexpr int kGuRows = 32;    // rows of h per block: one quantization block
constexpr int kDownRows = 4;   // output rows per down block

// Bytes of shared memory for the k quantized h columns of one token (quants, then scales).
inline size_t h_smem_bytes(int64_t n_ff, int64_t k) {
  return (size_t(k * n_ff) + 15) / 16 * 16 + (size_t(k * n_ff / 32) * 8 + 15) / 16 * 16;
}

// One gate/up block (32 * kGuWarps threads): rows f0 .. f0 + 31 of expert e's gate and up against
// one token's activations (xq, xd), h = silu(gate) * up (0 where !valid), quantized as one block of
// 32 into hq / hd. Warp w takes rows f0 + w and f0 + w + kGuWarps in one pass (the four weight rows'
// loads in flight together). tiles: kGuWarps * 4 tiles of the block's shared memory; tab: T's grid
// table; hs: 32 floats of shared memory. ready() (every thread, once): runs when each warp's first
// weight tile is on the way; it makes the activations readable and syncs the block.
template <GgmlType T, int V, typename Ready>
__device__ __forceinline__ void gate_up_rows(Experts gate, Experts up, int32_t e, bool valid, int64_t f0, int64_t nblk,
                                             int tile_blk, int64_t n_embd, const int8_t* xq, const float2* xd,
                                             uint8_t* tiles, const void* tab, float* hs, int8_t* hq, float2* hd,
                                             Ready ready) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  uint8_t* sm = tiles + warp * 4 * tile_blk * Dq<T>::kBytes;
  auto rows_of = [&](int, const uint8_t* (&rows)[4]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t f = f0 + warp + kGuWarps * r;
      rows[2 * r] = gate.data + size_t(e) * gate.nb2 + size_t(f) * gate.nb1;
      rows[2 * r + 1] = up.data + size_t(e) * up.nb2 + size_t(f) * up.nb1;
    }
  };
  auto act_of = [&](int, const int8_t*& aq, const float2*& ads) {
    aq = xq;
    ads = xd;
  };
  auto done = [&](int, float (&acc)[4][1]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float g = mmvq::sum32(acc[2 * r][0]), u = mmvq::sum32(acc[2 * r + 1][0]);
      if (lane == 0) hs[warp + kGuWarps * r] = valid ? silu(g) * u : 0.0f;
    }
  };
  mmvq::warp_passes<T, 4, 1, V>(1, nblk, tile_blk, n_embd, sm, tab, lane, rows_of, act_of, done, ready);
  __syncthreads();
  if (warp == 0) mmvq::quantize_block32(hs[lane], hq, hd);
}

// One warp's share of a down block: rows i0 .. i0 + kDownRows - 1 of the experts of slots
// j0 .. j0 + n_pass - 1 against the token's h columns (column j at hq + j * n_ff, scales at
// hd + j * n_ff / 32), each scaled by its router weight and added to sum. ids / weights: the
// token's k slots; ids null: one slot, expert 0 with weight 1 (a single matrix). An id outside
// [0, n_expert) is skipped. hq / hd are read after ready(), which may point them elsewhere (a
// copy in shared memory); sm: the warp's kDownRows tiles.
template <GgmlType T, int V, typename Ready>
__device__ __forceinline__ void down_rows(Experts down, int64_t nblk, int tile_blk, int64_t n_embd, int64_t n_ff,
                                          int32_t n_expert, const int8_t*& hq, const float2*& hd, const int32_t* ids,
                                          const float* weights, int j0, int n_pass, int64_t i0, uint8_t* sm,
                                          const void* tab, float (&sum)[kDownRows], Ready ready) {
  const int lane = threadIdx.x % 32;
  auto expert = [&](int pass) { return ids ? ids[j0 + pass] : 0; };
  auto rows_of = [&](int pass, const uint8_t* (&rows)[kDownRows]) {
    const int32_t e = expert(pass);
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
    const int32_t e = expert(pass);
    if (e < 0 || e >= n_expert) return;
    const float wt = ids ? weights[j0 + pass] : 1.0f;
#pragma unroll
    for (int r = 0; r < kDownRows; ++r) sum[r] = fmaf(wt, mmvq::sum32(acc[r][0]), sum[r]);
  };
  mmvq::warp_passes<T, kDownRows, 1, V>(n_pass, nblk, tile_blk, n_ff, sm, tab, lane, rows_of, act_of, done, ready);
}

// Copies the token's k quantized h columns into shared memory (sq: h_smem_bytes(n_ff, k)) by the
// whole block and points hq / hd there.
__device__ __forceinline__ void h_to_smem(const int8_t*& hq, const float2*& hd, uint8_t* sq, int64_t n_ff, int64_t k) {
  int8_t* q = reinterpret_cast<int8_t*>(sq);
  float2* d = reinterpret_cast<float2*>(sq + (size_t(k * n_ff) + 15) / 16 * 16);
  const int64_t n16 = k * n_ff / 16, nd = k * (n_ff / 32);
  for (int64_t i = threadIdx.x; i < n16; i += blockDim.x) reinterpret_cast<int4*>(q)[i] = reinterpret_cast<const int4*>(hq)[i];
  for (int64_t i = threadIdx.x; i < nd; i += blockDim.x) d[i] = hd[i];
  hq = q;
  hd = d;
}

// f(integral_constant<V>) for the staging width v (16, 4 or 2).
template <typename F>
void with_vec(int v, F&& f) {
  if (v == 16) return f(std::integral_constant<int, 16>{});
  if (v == 4) return f(std::integral_constant<int, 4>{});
  f(std::integral_constant<int, 2>{});
}

}  // namespace moeserve::cuda::moe_decode
