// Routed-expert FFN on CUDA (Backend::moe_experts): dst[t] = sum_j w[j,t] * down_e(silu(gate_e x_t) *
// up_e x_t), e = ids[j,t]. Expert ids and router weights stay on the device; every grid is sized
// from shapes alone, so the host never waits and a decode step can be captured as a graph.
//
// Few tokens: per (token, slot) one pass over the gate and up rows together, then one block per
// output row for the k down products, summed in a fixed order (deterministic, no atomics).
// Many tokens: the (token, slot) pairs are grouped by expert on the device (counts, prefix sums,
// stable per-expert lists), then tensor-core tiles run per expert over its gathered tokens; each
// pair's down output is written to its own row and the final sum per token goes in slot order.
// F32 experts (test models) always take the few-token kernels, in groups of tokens, to stay F32.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_matmul.h"
#include "backend/cuda/cuda_matvec.h"
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

// ---- many tokens: grouping --------------------------------------------------------------------------
// Workspace layout (all int32 unless noted), P = n * k pairs, S = tile slots:
struct Plan {
  int32_t* counts;      // [E]
  int32_t* offsets;     // [E]   first sorted position of expert e
  int32_t* sorted;      // [P]   pair index at each sorted position (per expert, in pair order)
  int32_t* inv;         // [P]   sorted position of each pair, -1 for an invalid id
  int32_t* tile_expert; // [S]
  int32_t* tile_pos;    // [S]   first sorted position of the tile
  int32_t* tile_count;  // [1]   used slots
  float* h;             // [P, n_ff]
  float* y;             // [P, n_embd]
};

constexpr int kGroupThreads = 256;
constexpr int kTileN = 32;  // ~10 tokens per expert in a 512-token prefill of 512 experts, top-10

int64_t tile_slots(int64_t pairs, int64_t n_expert) {
  return (pairs + kTileN - 1) / kTileN + std::min<int64_t>(n_expert, pairs);
}

size_t align_up(size_t v) { return (v + 255) & ~size_t(255); }

Plan make_plan(void* ws, int64_t pairs, int64_t n_expert, int64_t n_ff, int64_t n_embd, size_t* total) {
  const int64_t slots = tile_slots(pairs, n_expert);
  char* p = static_cast<char*>(ws);
  size_t off = 0;
  auto take = [&](size_t bytes) {
    char* r = p ? p + off : nullptr;
    off += align_up(bytes);
    return r;
  };
  Plan plan{};
  plan.counts = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * size_t(n_expert)));
  plan.offsets = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * size_t(n_expert)));
  plan.sorted = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * size_t(pairs)));
  plan.inv = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * size_t(pairs)));
  plan.tile_expert = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * size_t(slots)));
  plan.tile_pos = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * size_t(slots)));
  plan.tile_count = reinterpret_cast<int32_t*>(take(sizeof(int32_t)));
  plan.h = reinterpret_cast<float*>(take(sizeof(float) * size_t(pairs * n_ff)));
  plan.y = reinterpret_cast<float*>(take(sizeof(float) * size_t(pairs * n_embd)));
  if (total) *total = off;
  return plan;
}

// One block per expert: how many pairs route to it.
__global__ void moe_count(const int32_t* ids, int64_t pairs, int32_t* counts) {
  const int32_t e = blockIdx.x;
  int c = 0;
  for (int64_t p = threadIdx.x; p < pairs; p += blockDim.x) c += ids[p] == e;
  __shared__ int warp_c[kGroupThreads / 32];
  c = __reduce_add_sync(0xffffffffu, c);
  if (threadIdx.x % 32 == 0) warp_c[threadIdx.x / 32] = c;
  __syncthreads();
  if (threadIdx.x == 0) {
    int s = 0;
    for (int w = 0; w < kGroupThreads / 32; ++w) s += warp_c[w];
    counts[e] = s;
  }
}

// One block: exclusive prefix sums of counts and of tiles per expert; tile slot table.
__global__ void moe_scan(const int32_t* counts, int32_t n_expert, int32_t* offsets, int32_t* tile_expert,
                         int32_t* tile_pos, int32_t* tile_count) {
  __shared__ int32_t run_pos, run_tiles;
  if (threadIdx.x == 0) run_pos = run_tiles = 0;
  __syncthreads();
  // Chunks of blockDim experts: a block-wide scan per chunk, carried over in run_pos/run_tiles.
  __shared__ int32_t sc[kGroupThreads], st[kGroupThreads];
  for (int32_t base = 0; base < n_expert; base += blockDim.x) {
    const int32_t e = base + threadIdx.x;
    const int32_t c = e < n_expert ? counts[e] : 0;
    const int32_t nt = (c + kTileN - 1) / kTileN;
    sc[threadIdx.x] = c;
    st[threadIdx.x] = nt;
    __syncthreads();
    for (int o = 1; o < int(blockDim.x); o <<= 1) {  // Hillis-Steele inclusive scan
      const int32_t a = threadIdx.x >= unsigned(o) ? sc[threadIdx.x - o] : 0;
      const int32_t b = threadIdx.x >= unsigned(o) ? st[threadIdx.x - o] : 0;
      __syncthreads();
      sc[threadIdx.x] += a;
      st[threadIdx.x] += b;
      __syncthreads();
    }
    const int32_t pos = run_pos + sc[threadIdx.x] - c, t0 = run_tiles + st[threadIdx.x] - nt;
    if (e < n_expert) {
      offsets[e] = pos;
      for (int32_t i = 0; i < nt; ++i) {
        tile_expert[t0 + i] = e;
        tile_pos[t0 + i] = pos + i * kTileN;
      }
    }
    __syncthreads();
    if (threadIdx.x == blockDim.x - 1) {
      run_pos += sc[threadIdx.x];
      run_tiles += st[threadIdx.x];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) *tile_count = run_tiles;
}

// One block per expert: its pairs in pair order go to sorted[offsets[e]...]; inv maps back.
// Block 0 also marks pairs with invalid ids (they contribute nothing).
__global__ void moe_fill(const int32_t* ids, int64_t pairs, int32_t n_expert, const int32_t* offsets,
                         int32_t* sorted, int32_t* inv) {
  const int32_t e = blockIdx.x;
  __shared__ int32_t warp_c[kGroupThreads / 32];
  __shared__ int32_t base;
  if (threadIdx.x == 0) base = offsets[e];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t p0 = 0; p0 < pairs; p0 += blockDim.x) {
    const int64_t p = p0 + threadIdx.x;
    const int32_t id = p < pairs ? ids[p] : -1;
    if (e == 0 && p < pairs && (id < 0 || id >= n_expert)) inv[p] = -1;
    const bool mine = id == e;
    const unsigned ball = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_c[warp] = __popc(ball);
    __syncthreads();
    int32_t before = base;
    for (int w = 0; w < warp; ++w) before += warp_c[w];
    if (mine) {
      const int32_t pos = before + __popc(ball & ((1u << lane) - 1));
      sorted[pos] = int32_t(p);
      inv[p] = pos;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 0; w < kGroupThreads / 32; ++w) base += warp_c[w];
    }
    __syncthreads();
  }
}

// ---- many tokens: tensor-core tiles per expert ------------------------------------------------------
// grid (ceil(n_ff / 64), slots). Columns: the tile's pairs (sorted positions pos0..); h rows by
// sorted position.
template <GgmlType TG, GgmlType TU>
__global__ void __launch_bounds__(kGemmThreads)
    moe_gate_up_gemm(ExpertMat gate, ExpertMat up, int64_t n_embd, int64_t n_ff, const float* x, int64_t x_stride,
                     bool x_aligned, int k, const int32_t* counts, Plan plan) {
  const int slot = blockIdx.y;
  if (slot >= *plan.tile_count) return;
  const int32_t e = plan.tile_expert[slot], pos0 = plan.tile_pos[slot];
  const int32_t n_cols = min(kTileN, plan.offsets[e] + counts[e] - pos0);
  // The f32 output tile reuses the operand memory after the products (more blocks per SM).
  constexpr size_t kOperands = sizeof(__half) * (2 * kTileM + kTileN) * kLdA;
  static_assert(sizeof(float) * kTileN * kLdC <= kOperands);
  __shared__ __align__(128) unsigned char smem[kOperands];
  __half* a_gate = reinterpret_cast<__half*>(smem);
  __half* a_up = a_gate + kTileM * kLdA;
  __half* b_tile = a_up + kTileM * kLdA;
  float* c_tile = reinterpret_cast<float*>(smem);
  __shared__ const float* cols[kTileN];
  for (int j = threadIdx.x; j < kTileN; j += kGemmThreads) {
    cols[j] = j < n_cols ? x + int64_t(plan.sorted[pos0 + j] / k) * x_stride : nullptr;
  }
  const int64_t m0 = int64_t(blockIdx.x) * kTileM;
  const int warp = threadIdx.x / 32;
  Acc<kTileN> acc_g, acc_u;
  zero_acc(acc_g);
  zero_acc(acc_u);
  const uint8_t* g0 = expert_row(gate, e, 0);
  const uint8_t* u0 = expert_row(up, e, 0);
  for (int64_t k0 = 0; k0 < n_embd; k0 += kTileK) {
    __syncthreads();
    load_a_tile<TG>(a_gate, g0, gate.nb1, n_ff, n_embd, m0, k0);
    load_a_tile<TU>(a_up, u0, up.nb1, n_ff, n_embd, m0, k0);
    load_b_tile<kTileN>(b_tile, cols, n_embd, k0, x_aligned);
    __syncthreads();
    mma_tile(a_gate, b_tile, acc_g, warp);
    mma_tile(a_up, b_tile, acc_u, warp);
  }
  __syncthreads();  // every warp is done reading the operands that c_tile overwrites
  // Gate and up accumulators share one fragment layout: combine element-wise in registers.
#pragma unroll
  for (int i = 0; i < TileShape<kTileN>::kFm; ++i)
#pragma unroll
    for (int j = 0; j < TileShape<kTileN>::kFn; ++j)
#pragma unroll
      for (int q = 0; q < acc_g.f[i][j].num_elements; ++q) {
        acc_g.f[i][j].x[q] = silu_f(acc_g.f[i][j].x[q]) * acc_u.f[i][j].x[q];
      }
  store_c(c_tile, acc_g, warp);
  __syncthreads();
  for (int idx = threadIdx.x; idx < kTileM * kTileN; idx += kGemmThreads) {
    const int j = idx / kTileM, r = idx % kTileM;
    if (j < n_cols && m0 + r < n_ff) plan.h[int64_t(pos0 + j) * n_ff + m0 + r] = c_tile[j * kLdC + r];
  }
}

// grid (ceil(n_embd / 64), slots): y[pos] = w[pair] * down_e . h[pos].
template <GgmlType TD>
__global__ void __launch_bounds__(kGemmThreads)
    moe_down_gemm(ExpertMat down, int64_t n_embd, int64_t n_ff, const float* weights, const int32_t* counts,
                  bool h_aligned, Plan plan) {
  const int slot = blockIdx.y;
  if (slot >= *plan.tile_count) return;
  const int32_t e = plan.tile_expert[slot], pos0 = plan.tile_pos[slot];
  const int32_t n_cols = min(kTileN, plan.offsets[e] + counts[e] - pos0);
  constexpr size_t kOperands = sizeof(__half) * (kTileM + kTileN) * kLdA;
  static_assert(sizeof(float) * kTileN * kLdC <= kOperands);
  __shared__ __align__(128) unsigned char smem[kOperands];
  __half* a_tile = reinterpret_cast<__half*>(smem);
  __half* b_tile = a_tile + kTileM * kLdA;
  float* c_tile = reinterpret_cast<float*>(smem);
  __shared__ const float* cols[kTileN];
  __shared__ float col_w[kTileN];
  for (int j = threadIdx.x; j < kTileN; j += kGemmThreads) {
    cols[j] = j < n_cols ? plan.h + int64_t(pos0 + j) * n_ff : nullptr;
    col_w[j] = j < n_cols ? weights[plan.sorted[pos0 + j]] : 0.0f;
  }
  const int64_t m0 = int64_t(blockIdx.x) * kTileM;
  tile_product<TD, kTileN>(a_tile, b_tile, c_tile, cols, expert_row(down, e, 0), down.nb1, n_embd, n_ff, m0,
                           h_aligned);
  for (int idx = threadIdx.x; idx < kTileM * kTileN; idx += kGemmThreads) {
    const int j = idx / kTileM, r = idx % kTileM;
    if (j < n_cols && m0 + r < n_embd) plan.y[int64_t(pos0 + j) * n_embd + m0 + r] = col_w[j] * c_tile[j * kLdC + r];
  }
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
  const int64_t n = x.ne[1], k = ids.ne[0], n_ff = experts.gate.ne[1], n_embd = x.ne[0];
  if (const size_t q8 = q8_moe_workspace_bytes(x, experts, ids)) return q8;  // cuda_moe_decode.cu
  if (n <= kMaxDecodeTokens || f32_experts(experts)) {
    return sizeof(float) * size_t(std::min<int64_t>(n, kMaxDecodeTokens) * k * n_ff);
  }
  size_t total = 0;
  make_plan(nullptr, n * k, experts.gate.ne[2], n_ff, n_embd, &total);
  return total;
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
    const int64_t pairs = n * k, slots = tile_slots(pairs, n_expert);
    const Plan plan = make_plan(workspace, pairs, n_expert, n_ff, n_embd, nullptr);
    moe_count<<<n_expert, kGroupThreads, 0, stream>>>(id, pairs, plan.counts);
    MOESERVE_CUDA_CHECK_LAUNCH();
    moe_scan<<<1, kGroupThreads, 0, stream>>>(plan.counts, n_expert, plan.offsets, plan.tile_expert, plan.tile_pos,
                                              plan.tile_count);
    MOESERVE_CUDA_CHECK_LAUNCH();
    moe_fill<<<n_expert, kGroupThreads, 0, stream>>>(id, pairs, n_expert, plan.offsets, plan.sorted, plan.inv);
    MOESERVE_CUDA_CHECK_LAUNCH();
    ok_gu = dispatch_type(experts.gate.type, [&]<GgmlType T>() {
      const dim3 grid(unsigned((n_ff + kTileM - 1) / kTileM), unsigned(slots));
      const bool aligned = reinterpret_cast<uintptr_t>(x.data) % 16 == 0 && x_stride % 4 == 0;
      moe_gate_up_gemm<T, T><<<grid, kGemmThreads, 0, stream>>>(gate, up, n_embd, n_ff, x.as<const float>(), x_stride,
                                                               aligned, int(k), plan.counts, plan);
    });
    MOESERVE_CUDA_CHECK_LAUNCH();
    ok_d = dispatch_type(experts.down.type, [&]<GgmlType T>() {
      const dim3 grid(unsigned((n_embd + kTileM - 1) / kTileM), unsigned(slots));
      const bool aligned = reinterpret_cast<uintptr_t>(plan.h) % 16 == 0 && n_ff % 4 == 0;
      moe_down_gemm<T><<<grid, kGemmThreads, 0, stream>>>(down, n_embd, n_ff, wt, plan.counts, aligned, plan);
    });
    MOESERVE_CUDA_CHECK_LAUNCH();
    const dim3 grid(unsigned((n_embd + 255) / 256), unsigned(n));
    moe_sum<<<grid, 256, 0, stream>>>(plan.y, plan.inv, int(k), n_embd, dst.as<float>(), d_stride);
    MOESERVE_CUDA_CHECK_LAUNCH();
  }
  if (!ok_gu || !ok_d) {
    fail("internal: cuda moe_experts has no kernel for ", type_name(experts.gate.type), "/",
         type_name(experts.down.type));
  }
}

}  // namespace moeserve::cuda
