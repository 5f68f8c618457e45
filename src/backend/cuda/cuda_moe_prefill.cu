// Routed experts for many tokens (cuda_prefill.h): the (token, slot) pairs are grouped by expert
// on the device, then each expert's weights are read once per tile of its gathered tokens:
//   moe_plan        one block: counts, prefix sums, two tile tables and the per-expert pair lists;
//   columns_to_f16  the tokens' activations as f16 (what the tiles multiply);
//   gate_up         silu(gate . x) * (up . x), both halves in one tile, stored as f16 (the down
//                   product's input: the same rounding the tiles would apply to it);
//   down            router weight * (down . h), one f32 row per pair;
//   moe_sum         per token, the k slots' rows summed in slot order (deterministic).
// Each expert's tokens go to tiles of one kind, chosen by how many it has:
// * up to kGroupMaxPairs: 16-column group tiles (moe_group_tiles.cuh), where decoding the
//   weights, not the multiply, is the work (a 512-token prompt over 512 experts, top-10: ~10
//   tokens each);
// * more: 64-column pipelined tensor-core tiles (mm_tiles.cuh), where the multiply pays
//   (long prompts), where both wide kernels fit the GPU's shared memory.
// A pair's sorted position may vary between runs (atomics), but each column's products do not
// depend on where it sits in a tile, so results repeat bit for bit.
#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_prefill.h"
#include "backend/cuda/mm_kernels.cuh"
#include "backend/cuda/mm_tiles.cuh"
#include "backend/cuda/moe_group_tiles.cuh"
#include "core/error.h"

namespace moeserve::cuda {

namespace {

struct ExpertMat {
  const uint8_t* data;
  size_t nb1, nb2;
  const uint8_t* end;  // past the last byte of the last expert's last row
};

ExpertMat mat_of(const Tensor& t) {
  const auto* d = static_cast<const uint8_t*>(t.data);
  return {d, t.nb[1], t.nb[2], d + size_t(t.ne[2] - 1) * t.nb[2] + size_t(t.ne[1] - 1) * t.nb[1] + row_bytes(t.type, t.ne[0])};
}

// A tile table: slot s covers tile_cols[s] pairs from sorted position pos[s] of expert[s].
struct Tiles {
  int32_t* expert;
  int32_t* pos;
  int32_t* cols;
  int32_t* count;  // [1] used slots
};

// Workspace, P = n * k pairs.
struct Plan {
  int32_t* counts;  // [E]
  int32_t* cursor;  // [E]  next free sorted position of expert e while filling
  int32_t* sorted;  // [P]  pair index at each sorted position (grouped by expert)
  int32_t* inv;     // [P]  sorted position of each pair, -1 for an invalid id
  Tiles group;      // 16-column tiles of the experts with few pairs
  Tiles wide;       // 64-column tiles of the others
  __half* xh;       // [n, round_up64(n_embd)]
  __half* hh;       // [P, round_up64(n_ff)]
  float* y;         // [P, n_embd]
};

using GateUpWide = TileCfg<64, 64, 4, 2>;  // per part (gate, up): 64 rows; 8 warps
using DownWide = TileCfg<128, 64, 4, 2>;
constexpr int kWideCols = 64;
constexpr int kPlanThreads = 1024;

// Experts with at most this many pairs take group tiles. On the H100 a 64-column tile of a
// Qwen3-Coder-Next expert costs about two 16-column group tiles (docs/perf.md), so up to 16 pairs
// the group tile wins and from ~32 on the wide one; 24 keeps batches of 2,048+ tokens (~40 pairs
// per expert) on the wide tiles.
constexpr int32_t kGroupMaxPairs = 24;

int64_t tile_slots(int64_t pairs, int64_t n_expert, int bn) {
  return (pairs + bn - 1) / bn + std::min<int64_t>(n_expert, pairs);
}

size_t align_up(size_t v) { return (v + 255) & ~size_t(255); }

Plan make_plan(void* ws, int64_t n, int64_t k, int64_t n_expert, int64_t n_ff, int64_t n_embd, size_t* total) {
  const int64_t pairs = n * k;
  char* p = static_cast<char*>(ws);
  size_t off = 0;
  auto take = [&](size_t bytes) {
    char* r = p ? p + off : nullptr;
    off += align_up(bytes);
    return r;
  };
  auto ints = [&](int64_t count) { return reinterpret_cast<int32_t*>(take(sizeof(int32_t) * size_t(count))); };
  auto tiles = [&](int64_t slots) { return Tiles{ints(slots), ints(slots), ints(slots), ints(1)}; };
  Plan plan{};
  plan.counts = ints(n_expert);
  plan.cursor = ints(n_expert);
  plan.sorted = ints(pairs);
  plan.inv = ints(pairs);
  plan.group = tiles(tile_slots(pairs, n_expert, kGroupCols));
  plan.wide = tiles(tile_slots(pairs, n_expert, kWideCols));
  plan.xh = reinterpret_cast<__half*>(take(sizeof(__half) * size_t(n * round_up64(n_embd))));
  plan.hh = reinterpret_cast<__half*>(take(sizeof(__half) * size_t(pairs * round_up64(n_ff))));
  plan.y = reinterpret_cast<float*>(take(sizeof(float) * size_t(pairs * n_embd)));
  if (total) *total = off;
  return plan;
}

// One block: pairs per expert, their prefix sums (each thread scans a run of experts, then a
// block-wide scan of the runs' totals places them), the two tile tables (experts with at most
// group_max pairs in 16-column tiles, the others in 64-column ones), then the sorted pair lists.
__global__ void __launch_bounds__(kPlanThreads)
    moe_plan(const int32_t* ids, int64_t pairs, int32_t n_expert, int32_t group_max, Plan plan) {
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  for (int32_t e = tid; e < n_expert; e += kPlanThreads) plan.counts[e] = 0;
  __syncthreads();
  for (int64_t p = tid; p < pairs; p += kPlanThreads) {
    const int32_t id = ids[p];
    if (id >= 0 && id < n_expert) atomicAdd(&plan.counts[id], 1);
  }
  __syncthreads();
  auto tiles_of = [&](int32_t c, bool wide) {
    return c > group_max ? (wide ? (c + kWideCols - 1) / kWideCols : 0) : (wide ? 0 : (c + kGroupCols - 1) / kGroupCols);
  };
  const int32_t per = (n_expert + kPlanThreads - 1) / kPlanThreads;
  const int32_t e0 = min(n_expert, tid * per), e1 = min(n_expert, e0 + per);
  // Running sums: [0] pairs, [1] group tiles, [2] wide tiles.
  int32_t sum[3] = {0, 0, 0};
  for (int32_t e = e0; e < e1; ++e) {
    const int32_t c = __ldcg(plan.counts + e);
    sum[0] += c;
    sum[1] += tiles_of(c, false);
    sum[2] += tiles_of(c, true);
  }
  int32_t inc[3] = {sum[0], sum[1], sum[2]};
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
#pragma unroll
    for (int v = 0; v < 3; ++v) {
      const int32_t up = __shfl_up_sync(0xffffffffu, inc[v], o);
      if (lane >= o) inc[v] += up;
    }
  }
  __shared__ int32_t warp_sum[3][kPlanThreads / 32];
  if (lane == 31) {
#pragma unroll
    for (int v = 0; v < 3; ++v) warp_sum[v][warp] = inc[v];
  }
  __syncthreads();
  if (warp == 0) {
    static_assert(kPlanThreads / 32 == 32);
#pragma unroll
    for (int v = 0; v < 3; ++v) {
      int32_t a = warp_sum[v][lane];
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int32_t up = __shfl_up_sync(0xffffffffu, a, o);
        if (lane >= o) a += up;
      }
      warp_sum[v][lane] = a;
    }
  }
  __syncthreads();
  int32_t at[3];
#pragma unroll
  for (int v = 0; v < 3; ++v) at[v] = inc[v] - sum[v] + (warp > 0 ? warp_sum[v][warp - 1] : 0);
  for (int32_t e = e0; e < e1; ++e) {
    const int32_t c = __ldcg(plan.counts + e);
    plan.cursor[e] = at[0];
    const bool wide = c > group_max;
    const Tiles& tt = wide ? plan.wide : plan.group;
    const int bn = wide ? kWideCols : kGroupCols;
    int32_t& tile = at[wide ? 2 : 1];
    for (int32_t i = 0; i * bn < c; ++i, ++tile) {
      tt.expert[tile] = e;
      tt.pos[tile] = at[0] + i * bn;
      tt.cols[tile] = min(bn, c - i * bn);
    }
    at[0] += c;
  }
  if (tid == kPlanThreads - 1) {
    *plan.group.count = at[1];
    *plan.wide.count = at[2];
  }
  __syncthreads();
  for (int64_t p = tid; p < pairs; p += kPlanThreads) {
    const int32_t id = ids[p];
    if (id >= 0 && id < n_expert) {
      const int32_t at_p = atomicAdd(&plan.cursor[id], 1);
      plan.sorted[at_p] = int32_t(p);
      plan.inv[p] = at_p;
    } else {
      plan.inv[p] = -1;  // no such expert: contributes nothing
    }
  }
}

// ---- group tiles (moe_group_tiles.cuh) ----------------------------------------------------------------
// What one warp of a group-tile block computes, grid (group slots, row blocks of kGroupWarps
// warps x rm rows): rows [r0, r0 + rm) of expert e for the slot's n_cols pairs from pos0.
struct GroupWarp {
  int warp, lane;
  int64_t r0;
  int32_t e, pos0, n_cols;
};

// Fills the block's grid table (when the type has one), then the warp's part; false when the
// slot is unused or the warp's rows start past n_rows (nothing to do).
template <GgmlType T>
__device__ __forceinline__ bool group_warp(unsigned char* smem, const Plan& plan, int rm, int64_t n_rows, GroupWarp& g) {
  const int slot = blockIdx.x;
  if (slot >= *plan.group.count) return false;  // the whole block: before the barrier
  if constexpr (GridDq<T>::kOn) GridDq<T>::fill(smem, threadIdx.x, blockDim.x);
  __syncthreads();
  g.warp = threadIdx.x / 32;
  g.lane = threadIdx.x % 32;
  g.r0 = (int64_t(blockIdx.y) * kGroupWarps + g.warp) * rm;
  if (g.r0 >= n_rows) return false;
  g.e = plan.group.expert[slot];
  g.pos0 = plan.group.pos[slot];
  g.n_cols = plan.group.cols[slot];
  return true;
}

// grid (group slots, ceil(n_ffp / rows per block)): hh[pos][f] = f16(silu(gate_e[f] . x_t) *
// (up_e[f] . x_t)), rows f in [n_ff, n_ffp) zero.
template <GgmlType T>
__global__ void __launch_bounds__(32 * kGroupWarps)
    moe_gate_up_groups(ExpertMat gate, ExpertMat up, int64_t row_len, int64_t n_embd, int64_t n_ff, int64_t n_ffp,
                       int64_t kp, int k, Plan plan) {
  constexpr int RM = 16 * GroupSpan<T>::template kFm<2>;
  extern __shared__ __align__(16) unsigned char smem[];
  GroupWarp g;
  if (!group_warp<T>(smem, plan, RM, n_ffp, g)) return;
  const int warp = g.warp, lane = g.lane;
  const int64_t r0 = g.r0;
  const int32_t e = g.e, pos0 = g.pos0, n_cols = g.n_cols;
  const __half* col[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int c = 8 * j + lane / 4;
    col[j] = c < n_cols ? plan.xh + int64_t(plan.sorted[pos0 + c] / k) * kp : nullptr;
  }
  unsigned char* raw = smem + GridDq<T>::kTableBytes + size_t(warp) * group_warp_raw_bytes<T, 2>();
  const int n_live = int(max(int64_t(0), min(int64_t(RM), n_ff - r0)));
  group_rows_product<T, 2>(
      raw, smem, gate.data + size_t(e) * gate.nb2 + size_t(r0) * gate.nb1,
      up.data + size_t(e) * up.nb2 + size_t(r0) * up.nb1, gate.end, up.end, int64_t(gate.nb1), n_live, row_len, n_embd,
      col, [&](int r, int c, const float* v) {
        if (c < n_cols && r0 + r < n_ffp) plan.hh[int64_t(pos0 + c) * n_ffp + r0 + r] = __float2half_rn(silu_f(v[0]) * v[1]);
      });
}

// grid (group slots, ceil(n_embd / rows per block)): y[pos][i] = w[pair] * (down_e[i] . h[pos]).
template <GgmlType T>
__global__ void __launch_bounds__(32 * kGroupWarps)
    moe_down_groups(ExpertMat down, int64_t row_len, int64_t n_embd, int64_t n_ff, int64_t n_ffp,
                    const float* weights, Plan plan) {
  constexpr int RM = 16 * GroupSpan<T>::template kFm<1>;
  extern __shared__ __align__(16) unsigned char smem[];
  GroupWarp g;
  if (!group_warp<T>(smem, plan, RM, n_embd, g)) return;
  const int warp = g.warp, lane = g.lane;
  const int64_t r0 = g.r0;
  const int32_t e = g.e, pos0 = g.pos0, n_cols = g.n_cols;
  const __half* col[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int c = 8 * j + lane / 4;
    col[j] = c < n_cols ? plan.hh + int64_t(pos0 + c) * n_ffp : nullptr;
  }
  unsigned char* raw = smem + GridDq<T>::kTableBytes + size_t(warp) * group_warp_raw_bytes<T, 1>();
  const int n_live = int(min(int64_t(RM), n_embd - r0));
  const uint8_t* base = down.data + size_t(e) * down.nb2 + size_t(r0) * down.nb1;
  group_rows_product<T, 1>(raw, smem, base, base, down.end, down.end, int64_t(down.nb1), n_live, row_len, n_ff,
                                    col, [&](int r, int c, const float* v) {
                                      if (c < n_cols && r < n_live) {
                                        plan.y[int64_t(pos0 + c) * n_embd + r0 + r] =
                                            weights[plan.sorted[pos0 + c]] * v[0];
                                      }
                                    });
}

// ---- wide tiles (mm_tiles.cuh) ------------------------------------------------------------------------
// grid (slots, n_ffp / 64): hh[pos][f] = f16(silu(gate_e[f] . x_t) * (up_e[f] . x_t)), rows
// f in [n_ff, n_ffp) zero.
template <GgmlType T, class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads)
    moe_gate_up_tiles(ExpertMat gate, ExpertMat up, int64_t row_len, int64_t n_embd, int64_t n_ff, int64_t n_ffp,
                      int64_t kp, int k, Plan plan) {
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ const uint8_t* rows[2 * BM];
  __shared__ const __half* cols[BN];
  const int slot = blockIdx.x;
  if (slot >= *plan.wide.count) return;
  const int32_t e = plan.wide.expert[slot], pos0 = plan.wide.pos[slot], n_cols = plan.wide.cols[slot];
  const int64_t m0 = int64_t(blockIdx.y) * BM;
  for (int r = threadIdx.x; r < 2 * BM; r += Cfg::kThreads) {
    const int64_t f = m0 + r % BM;
    const bool g = r < BM;
    rows[r] = f < n_ff ? (g ? gate.data : up.data) + size_t(e) * (g ? gate.nb2 : up.nb2) + size_t(f) * (g ? gate.nb1 : up.nb1)
                       : nullptr;
  }
  for (int j = threadIdx.x; j < BN; j += Cfg::kThreads) {
    cols[j] = j < n_cols ? plan.xh + int64_t(plan.sorted[pos0 + j] / k) * kp : nullptr;
  }
  const uint8_t* const ends[2] = {gate.end, up.end};
  tile_gemm<T, 2, Cfg>(smem, rows, ends, cols, row_len, n_embd, [&](int r, int c, const float* v) {
    if (c < n_cols) plan.hh[int64_t(pos0 + c) * n_ffp + m0 + r] = __float2half_rn(silu_f(v[0]) * v[1]);
  });
}

// grid (slots, ceil(n_embd / BM)): y[pos][i] = w[pair] * (down_e[i] . h[pos]).
template <GgmlType T, class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads)
    moe_down_tiles(ExpertMat down, int64_t row_len, int64_t n_embd, int64_t n_ff, int64_t n_ffp,
                   const float* weights, Plan plan) {
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ const uint8_t* rows[BM];
  __shared__ const __half* cols[BN];
  __shared__ float col_w[BN];
  const int slot = blockIdx.x;
  if (slot >= *plan.wide.count) return;
  const int32_t e = plan.wide.expert[slot], pos0 = plan.wide.pos[slot], n_cols = plan.wide.cols[slot];
  const int64_t m0 = int64_t(blockIdx.y) * BM;
  for (int r = threadIdx.x; r < BM; r += Cfg::kThreads) {
    rows[r] = m0 + r < n_embd ? down.data + size_t(e) * down.nb2 + size_t(m0 + r) * down.nb1 : nullptr;
  }
  for (int j = threadIdx.x; j < BN; j += Cfg::kThreads) {
    cols[j] = j < n_cols ? plan.hh + int64_t(pos0 + j) * n_ffp : nullptr;
    col_w[j] = j < n_cols ? weights[plan.sorted[pos0 + j]] : 0.0f;
  }
  const uint8_t* const ends[1] = {down.end};
  tile_gemm<T, 1, Cfg>(smem, rows, ends, cols, row_len, n_ff, [&](int r, int c, const float* v) {
    if (c < n_cols && m0 + r < n_embd) plan.y[int64_t(pos0 + c) * n_embd + m0 + r] = col_w[c] * v[0];
  });
}

// dst[t][i] = sum over slots j (in order) of y[inv[t * k + j]][i]. grid (ceil(n_embd / 256), n).
__global__ void moe_sum(const float* y, const int32_t* inv, int k, int64_t n_embd, float* dst, int64_t d_stride) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_embd) return;
  const int64_t t = blockIdx.y;
  float acc = 0.0f;
  for (int j = 0; j < k; ++j) {
    const int32_t pos = inv[t * k + j];
    if (pos >= 0) acc += y[int64_t(pos) * n_embd + i];
  }
  dst[t * d_stride + i] = acc;
}

template <GgmlType T, class Cfg>
void launch_gate_up(cudaStream_t stream, const ExpertWeights& ex, int64_t n_embd, int64_t n_ff, int64_t slots, int k,
                    const Plan& plan) {
  constexpr size_t smem = tile_smem_bytes<T, 2, Cfg>();
  raise_tile_smem(moe_gate_up_tiles<T, Cfg>, smem);
  static_assert(Cfg::kBM == kStepK, "the m-tiles cover round_up64(n_ff) exactly, padding rows included");
  const int64_t n_ffp = round_up64(n_ff);
  const dim3 grid(unsigned(slots), unsigned(n_ffp / Cfg::kBM));
  moe_gate_up_tiles<T, Cfg><<<grid, Cfg::kThreads, smem, stream>>>(mat_of(ex.gate), mat_of(ex.up),
                                                                    int64_t(row_bytes(T, n_embd)), n_embd, n_ff, n_ffp,
                                                                    round_up64(n_embd), k, plan);
}

template <GgmlType T, class Cfg>
void launch_down(cudaStream_t stream, const ExpertWeights& ex, int64_t n_embd, int64_t n_ff, int64_t slots,
                 const float* weights, const Plan& plan) {
  constexpr size_t smem = tile_smem_bytes<T, 1, Cfg>();
  raise_tile_smem(moe_down_tiles<T, Cfg>, smem);
  const dim3 grid(unsigned(slots), unsigned((n_embd + Cfg::kBM - 1) / Cfg::kBM));
  moe_down_tiles<T, Cfg><<<grid, Cfg::kThreads, smem, stream>>>(mat_of(ex.down), int64_t(row_bytes(T, n_ff)), n_embd,
                                                                 n_ff, round_up64(n_ff), weights, plan);
}

template <GgmlType T>
void launch_gate_up_groups(cudaStream_t stream, const ExpertWeights& ex, int64_t n_embd, int64_t n_ff, int64_t slots,
                           int k, const Plan& plan) {
  constexpr size_t smem = group_smem_bytes<T, 2>();
  raise_tile_smem(moe_gate_up_groups<T>, smem);
  const int64_t n_ffp = round_up64(n_ff), rows = kGroupWarps * 16 * GroupSpan<T>::template kFm<2>;
  const dim3 grid(unsigned(slots), unsigned((n_ffp + rows - 1) / rows));
  moe_gate_up_groups<T><<<grid, 32 * kGroupWarps, smem, stream>>>(mat_of(ex.gate), mat_of(ex.up),
                                                                  int64_t(row_bytes(T, n_embd)), n_embd, n_ff, n_ffp,
                                                                  round_up64(n_embd), k, plan);
}

template <GgmlType T>
void launch_down_groups(cudaStream_t stream, const ExpertWeights& ex, int64_t n_embd, int64_t n_ff, int64_t slots,
                        const float* weights, const Plan& plan) {
  constexpr size_t smem = group_smem_bytes<T, 1>();
  raise_tile_smem(moe_down_groups<T>, smem);
  const int64_t rows = kGroupWarps * 16 * GroupSpan<T>::template kFm<1>;
  const dim3 grid(unsigned(slots), unsigned((n_embd + rows - 1) / rows));
  moe_down_groups<T><<<grid, 32 * kGroupWarps, smem, stream>>>(mat_of(ex.down), int64_t(row_bytes(T, n_ff)), n_embd,
                                                               n_ff, round_up64(n_ff), weights, plan);
}

int64_t float_stride(const Tensor& t, const char* what) {
  if (t.nb[1] % sizeof(float) != 0) fail("internal: cuda moe ", what, " row stride is not a multiple of 4");
  return int64_t(t.nb[1] / sizeof(float));
}

}  // namespace

size_t moe_prefill_workspace_bytes(const Tensor& x, const ExpertWeights& experts, const Tensor& ids) {
  size_t total = 0;
  make_plan(nullptr, x.ne[1], ids.ne[0], experts.gate.ne[2], experts.gate.ne[1], x.ne[0], &total);
  return total;
}

void moe_prefill(cudaStream_t stream, const Tensor& dst, const Tensor& x, const ExpertWeights& experts,
                 const Tensor& ids, const Tensor& weights, void* workspace) {
  const int64_t n = x.ne[1], k = ids.ne[0], n_embd = x.ne[0], n_ff = experts.gate.ne[1];
  const int64_t n_expert = experts.gate.ne[2], pairs = n * k;
  if (n == 0) return;
  // Wide tiles where both wide kernels fit the GPU's shared memory (those of the largest blocks,
  // Q5_K and Q6_K, do not on some GPUs); the group tiles always fit.
  bool wide = pairs > kGroupMaxPairs;
  if (wide) {
    dispatch_type(experts.gate.type, [&]<GgmlType T>() {
      if constexpr (T != GgmlType::F32) {
        wide = wide && tile_smem_fits(moe_gate_up_tiles<T, GateUpWide>, tile_smem_bytes<T, 2, GateUpWide>());
      }
    });
    dispatch_type(experts.down.type, [&]<GgmlType T>() {
      if constexpr (T != GgmlType::F32) {
        wide = wide && tile_smem_fits(moe_down_tiles<T, DownWide>, tile_smem_bytes<T, 1, DownWide>());
      }
    });
  }
  const int32_t group_max = wide ? kGroupMaxPairs : INT32_MAX;
  const Plan plan = make_plan(workspace, n, k, n_expert, n_ff, n_embd, nullptr);
  moe_plan<<<1, kPlanThreads, 0, stream>>>(ids.as<const int32_t>(), pairs, int32_t(n_expert), group_max, plan);
  MOESERVE_CUDA_CHECK_LAUNCH();
  columns_to_f16(stream, x.as<const float>(), float_stride(x, "x"), n_embd, n, round_up64(n_embd), plan.xh);
  // Grids sized for the worst case of each table; unused slots return at once.
  const int64_t group_slots = tile_slots(pairs, n_expert, kGroupCols);
  const int64_t wide_slots = wide ? tile_slots(pairs, n_expert, kWideCols) : 0;
  const float* w = weights.as<const float>();
  bool ok_gu = false, ok_d = false;
  dispatch_type(experts.gate.type, [&]<GgmlType T>() {
    if constexpr (T != GgmlType::F32) {
      launch_gate_up_groups<T>(stream, experts, n_embd, n_ff, group_slots, int(k), plan);
      MOESERVE_CUDA_CHECK_LAUNCH();
      if (wide_slots) launch_gate_up<T, GateUpWide>(stream, experts, n_embd, n_ff, wide_slots, int(k), plan);
      ok_gu = true;
    }
  });
  MOESERVE_CUDA_CHECK_LAUNCH();
  dispatch_type(experts.down.type, [&]<GgmlType T>() {
    if constexpr (T != GgmlType::F32) {
      launch_down_groups<T>(stream, experts, n_embd, n_ff, group_slots, w, plan);
      MOESERVE_CUDA_CHECK_LAUNCH();
      if (wide_slots) launch_down<T, DownWide>(stream, experts, n_embd, n_ff, wide_slots, w, plan);
      ok_d = true;
    }
  });
  MOESERVE_CUDA_CHECK_LAUNCH();
  if (!ok_gu || !ok_d) {
    fail("internal: cuda moe_prefill has no kernel for ", type_name(experts.gate.type), "/",
         type_name(experts.down.type));
  }
  const dim3 grid(unsigned((n_embd + 255) / 256), unsigned(n));
  moe_sum<<<grid, 256, 0, stream>>>(plan.y, plan.inv, int(k), n_embd, dst.as<float>(), float_stride(dst, "dst"));
  MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
