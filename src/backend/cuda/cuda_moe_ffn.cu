// The MoE block of a decode step (Backend::moe_ffn) in three PDL launches instead of the chain's
// eight (add_rms_norm, router products, moe_route, two expert launches, shared gate/up, shared down,
// moe_shared_add), for up to kQ8MaxCols tokens:
//   1. router: per 8 weight rows (router rows, then the shared expert's gate row) one block; each
//      block forms r = h + y and m = rms_norm(r) * norm of the tokens in shared memory (the rows
//      are short: recomputing them per block is cheaper than a launch), block 0 stores m, every
//      warp one row's dot products. The last block to finish (a counter, reset by that block so a
//      replayed graph finds it at 0) routes the tokens (route_token, as moe_route does);
//   2. gate/up: the routed experts' blocks of cuda_moe_decode.cu (gate_up_rows) plus, as one more
//      slot of the same grid, the shared expert's gate/up rows (Q8_0, its own code path): h of
//      both leaves quantized;
//   3. down: the routed slots' down rows as in cuda_moe_decode.cu (down_rows, summed in the same
//      order) plus one more warp for the shared expert's down rows; the block's threads then write
//      h = r + (routed + shared * sigmoid(gate)), the chain's expression.
// h is read by 1 and 3 and written by 3 only, so no block of 1 sees another's update.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_matvec.h"
#include "backend/cuda/moe_decode.cuh"
#include "backend/cuda/moe_route.cuh"
#include "core/error.h"

namespace moeserve::cuda {

namespace {

using mmvq::ActQ8;
using namespace moe_decode;

// The shared expert's weight type and staging width on this path.
constexpr GgmlType kSharedType = GgmlType::Q8_0;
constexpr int kSharedVec = 16;

// Blocks of kernel 1 that have finished, per device; the last one puts it back to 0.
__device__ unsigned g_router_done = 0;

constexpr int kRtWarps = 8;               // router block: one weight row per warp
constexpr size_t kMaxRouterSmem = 96 * 1024;  // the tokens' normalized rows

struct RouterArgs {
  const float* h;
  const float* y;
  int64_t h_stride, y_stride;
  const float* norm;
  float eps;
  int64_t n_embd;
  int n;
  const float* router;  // F32 rows, 16-byte aligned
  int64_t r_stride;
  int n_expert;
  const float* gate_w;  // the shared expert's gate row or null
  float* m;
  int64_t m_stride;
  float* logits;
  int64_t l_stride;
  float* gate;
  int64_t g_stride;
  int32_t* ids;
  float* weights;  // ids and weights: k per token, contiguous
  int k;
  bool normalize;
};

// The sum of squares of row x (shared memory, d values) added up in the order of add_rms_norm's
// kernel (cuda_ops_norm.cu: a warp per row up to 256 values, else 256 or, past 512 values, 512
// threads each summing a stride of the row, then block_sum), so that m equals the chain's bit for
// bit and the experts see the same quantized activations. A 256-thread block; the value is
// returned to thread 0.
__device__ __forceinline__ float add_rms_norm_ss(const float* x, int64_t d, float* red) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (d <= 256) {
    float ss = 0.0f;
    if (warp == 0) {
      for (int e = 0; e < 8; ++e) {
        const int64_t i = lane + 32 * e;
        const float v = i < d ? x[i] : 0.0f;
        ss += v * v;
      }
      ss = warp_sum(ss);
    }
    return ss;
  }
  const int threads = d <= 512 ? 256 : 512;  // virtual thread t + 256 runs in thread t
  float s0 = 0.0f, s1 = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += threads) s0 += x[i] * x[i];
  if (threads == 512) {
    for (int64_t i = threadIdx.x + 256; i < d; i += threads) s1 += x[i] * x[i];
  }
  s0 = warp_sum(s0);
  s1 = warp_sum(s1);
  __syncthreads();  // red may still be read for the previous row
  if (lane == 0) {
    red[warp] = s0;
    red[warp + kRtWarps] = s1;
  }
  __syncthreads();
  const float v = lane < threads / 32 ? red[lane] : 0.0f;
  return warp_sum(v);
}

template <int EPL>
__global__ void __launch_bounds__(32 * kRtWarps) moe_ffn_router(RouterArgs a) {
  extern __shared__ __align__(16) float xs[];  // n rows of n_embd
  __shared__ float scale[kQ8MaxCols];
  __shared__ float red[2 * kRtWarps];
  __shared__ bool last;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t row = int64_t(blockIdx.x) * kRtWarps + warp;
  const float* w = row < a.n_expert ? a.router + row * a.r_stride : row == a.n_expert ? a.gate_w : nullptr;
  // Weights do not depend on earlier kernels: their lines head for L2 while the predecessor ends.
  if (w) {
    for (int64_t j = 32 * lane; j < a.n_embd; j += 32 * 32) asm volatile("prefetch.global.L2 [%0];" ::"l"(w + j));
  }
  pdl_wait();
  pdl_trigger();
  const int64_t d = a.n_embd, total = d * a.n;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t c = i / d, j = i - c * d;
    xs[i] = a.h[c * a.h_stride + j] + a.y[c * a.y_stride + j];
  }
  __syncthreads();
  for (int c = 0; c < a.n; ++c) {
    const float ss = add_rms_norm_ss(xs + c * d, d, red);
    if (threadIdx.x == 0) scale[c] = 1.0f / sqrtf(ss / float(d) + a.eps);
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t c = i / d, j = i - c * d;
    const float v = xs[i] * scale[c] * a.norm[j];
    xs[i] = v;
    if (blockIdx.x == 0) a.m[c * a.m_stride + j] = v;
  }
  __syncthreads();
  if (w) {
    float acc[kQ8MaxCols] = {};
    for (int64_t j = 4 * lane; j < d; j += 128) {
      const float4 wv = __ldg(reinterpret_cast<const float4*>(w + j));
#pragma unroll
      for (int c = 0; c < kQ8MaxCols; ++c) {
        if (c < a.n) {
          const float4 xv = *reinterpret_cast<const float4*>(xs + c * d + j);
          acc[c] += wv.x * xv.x + wv.y * xv.y + wv.z * xv.z + wv.w * xv.w;
        }
      }
    }
#pragma unroll
    for (int c = 0; c < kQ8MaxCols; ++c) {
      if (c < a.n) {
        const float v = warp_sum(acc[c]);
        if (lane == 0) {
          if (row < a.n_expert) {
            a.logits[c * a.l_stride + row] = v;
          } else {
            a.gate[c * a.g_stride] = v;
          }
        }
      }
    }
  }
  // The logits reach the last block: every writer fences before the block counts itself done.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&g_router_done, 1u) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  if (threadIdx.x == 0) g_router_done = 0;
  __threadfence();
  if (warp < a.n) {
    route_token<EPL>(a.ids + warp * a.k, a.weights + warp * a.k, a.logits + warp * a.l_stride, a.n_expert, a.k,
                     a.normalize, lane);
  }
}

template <int EPL>
void launch_router(cudaStream_t stream, const RouterArgs& a, size_t smem) {
  if constexpr (EPL < kRouteMaxPerLane) {
    if (32 * EPL < a.n_expert) return launch_router<EPL * 2>(stream, a, smem);
  }
  mmvq::allow_smem(moe_ffn_router<EPL>, smem);
  const int64_t rows = a.n_expert + (a.gate_w ? 1 : 0);
  launch_pdl(moe_ffn_router<EPL>, unsigned((rows + kRtWarps - 1) / kRtWarps), 32 * kRtWarps, smem, stream, a);
}

// grid (max(n_ff, n_ff_sh) / kGuRows, k + shared, n), 32 * kGuWarps threads. Slot y < k: routed
// expert ids[t * k + y] (gate_up_rows, h to hq / hd as cuda_moe_decode.cu's q8_gate_up); slot k:
// the shared expert, h to sq / sd (column t). Each block quantizes its token's m into shared memory.
template <GgmlType T, int V>
__global__ void __launch_bounds__(32 * kGuWarps)
    moe_ffn_gate_up(Experts gate, Experts up, int64_t nblk, int tile_blk, int64_t n_embd, int64_t n_ff,
                    int32_t n_expert, Experts sgate, Experts sup, int tile_blk_s, int64_t n_ff_sh, const float* m,
                    int64_t m_stride, int x_smem, const int32_t* ids, int k, int8_t* hq, float2* hd, int8_t* sq,
                    float2* sd) {
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float hs[kGuRows];
  mmvq::load_table<T>(smem);
  pdl_wait();  // before m and the ids
  pdl_trigger();
  const int64_t f0 = int64_t(blockIdx.x) * kGuRows, t = blockIdx.z;
  const bool shared = int(blockIdx.y) == k;
  if (f0 >= (shared ? n_ff_sh : n_ff)) return;
  int8_t* qs = reinterpret_cast<int8_t*>(smem + mmvq::table_bytes<T>());
  float2* ds = reinterpret_cast<float2*>(smem + mmvq::table_bytes<T>() + n_embd);
  uint8_t* tiles = smem + mmvq::table_bytes<T>() + x_smem;
  auto ready = [&] {
    mmvq::quantize_to_smem(m + t * m_stride, 0, n_embd, 1, qs, ds);
    __syncthreads();
  };
  if (shared) {
    gate_up_rows<kSharedType, kSharedVec>(sgate, sup, 0, true, f0, n_embd / 32, tile_blk_s, n_embd, qs, ds, tiles,
                                          nullptr, hs, sq + t * n_ff_sh + f0, sd + t * (n_ff_sh / 32) + f0 / 32, ready);
  } else {
    const int64_t p = t * k + blockIdx.y;
    const int32_t e = ids[p];
    const bool valid = e >= 0 && e < n_expert;
    gate_up_rows<T, V>(gate, up, valid ? e : 0, valid, f0, nblk, tile_blk, n_embd, qs, ds, tiles, smem, hs,
                       hq + p * n_ff + f0, hd + p * (n_ff / 32) + f0 / 32, ready);
  }
}

struct Residual {
  float* h;
  const float* y;
  int64_t h_stride, y_stride;
  const float* gate;  // sigmoid(gate[t]) scales the shared expert; null: no gate
  int64_t g_stride;
};

// grid (ceil(n_embd / kDownRows), n), 32 * (n_warps + shared) threads: warps < n_warps take the
// routed slots as cuda_moe_decode.cu's q8_down (spw each), warp n_warps the shared expert's down
// rows against its h (column t of sq / sd).
template <GgmlType T, int V>
__global__ void __launch_bounds__(32 * (mmvq::kWarps + 1))
    moe_ffn_down(Experts down, int64_t nblk, int tile_blk, int64_t n_embd, int64_t n_ff, int32_t n_expert, ActQ8 ah,
                 int h_smem, const int32_t* ids, const float* weights, int k, int spw, int n_warps, Experts sdown,
                 int tile_blk_s, int64_t n_ff_sh, ActQ8 as, Residual res) {
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ float part[mmvq::kWarps + 1][kDownRows];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const bool shared = blockDim.x / 32 > n_warps;
  const int64_t i0 = int64_t(blockIdx.x) * kDownRows, t = blockIdx.y;
  const int tile_bytes = tile_blk * Dq<T>::kBytes;
  uint8_t* sm = smem + mmvq::table_bytes<T>() + h_smem + warp * kDownRows * tile_bytes;
  const int8_t* hq = ah.qs + t * k * n_ff;
  const float2* hd = ah.ds + t * k * (n_ff / 32);
  const int8_t* shq = as.qs + t * n_ff_sh;
  const float2* shd = as.ds + t * (n_ff_sh / 32);
  float sum[kDownRows] = {};
  auto ready = [&] {
    if (h_smem) h_to_smem(hq, hd, smem + mmvq::table_bytes<T>(), n_ff, k);
    __syncthreads();
  };
  mmvq::load_table<T>(smem);
  pdl_wait();
  pdl_trigger();
  if (warp < n_warps) {
    const int j0 = warp * spw, n_pass = max(0, min(k, j0 + spw) - j0);
    down_rows<T, V>(down, nblk, tile_blk, n_embd, n_ff, n_expert, hq, hd, ids + t * k, weights + t * k, j0, n_pass, i0,
                    sm, smem, sum, ready);
  } else {
    down_rows<kSharedType, kSharedVec>(sdown, n_ff_sh / 32, tile_blk_s, n_embd, n_ff_sh, 1, shq, shd, nullptr, nullptr,
                                       0, 1, i0, sm, nullptr, sum, ready);
  }
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
    if (shared) {
      float sh = part[n_warps][threadIdx.x];
      if (res.gate) sh *= sigmoid_f(res.gate[t * res.g_stride]);
      s = s + sh;
    }
    const int64_t i = i0 + threadIdx.x;
    float* hp = res.h + t * res.h_stride + i;
    *hp = (*hp + res.y[t * res.y_stride + i]) + s;
  }
}

int64_t floats(const Tensor& t) { return int64_t(t.nb[1] / sizeof(float)); }
bool float_rows(const Tensor& t) { return t.nb[1] % sizeof(float) == 0; }
bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data) % 16 == 0 && t.nb[1] % 16 == 0; }
bool has(const Tensor& t) { return t.data != nullptr; }

// The shared expert's matrices on this path: the one type, whole 16-byte staging.
bool shared_usable(const MoeFfnWeights& w) {
  for (const Tensor* t : {&w.shared_gate, &w.shared_up, &w.shared_down}) {
    if (t->type != kSharedType || mmvq::row_vec(*t) != kSharedVec) return false;
  }
  return w.shared_gate.ne[1] % kGuRows == 0;
}

size_t x_smem_bytes(int64_t n_embd) { return (mmvq::smem_act_bytes(n_embd, 1) + 15) / 16 * 16; }

// Tile blocks of the shared expert's gate/up rows: no more bytes than the routed tiles, so its
// blocks leave the kernel's shared memory (and occupancy) as the routed ones set it.
int shared_gate_up_tile(int64_t n_embd, int routed_tile_bytes) {
  const int nb = mmvq::tile_blocks<kSharedType, kSharedVec>(n_embd / 32);
  const int fit = std::max(8, routed_tile_bytes / Dq<kSharedType>::kBytes / 8 * 8);  // 8 blocks: 272 = 17 * 16 bytes
  return std::min(nb, fit);
}

}  // namespace

size_t moe_ffn_workspace_bytes(const Tensor& h, const Tensor& y, const MoeFfnWeights& w, const MoeFfnScratch& s) {
  const int64_t n = h.ne[1], n_embd = h.ne[0], k = w.n_expert_used, n_ff = w.experts.gate.ne[1];
  const bool shared = has(w.shared_gate);
  if (n < 1 || n > kQ8MaxCols || !q8_moe_usable(s.m, w.experts)) return 0;
  if (x_smem_bytes(n_embd) > 24 * 1024 || size_t(n * n_embd) * sizeof(float) > kMaxRouterSmem) return 0;
  if (w.router.type != GgmlType::F32 || !aligned16(w.router) || w.router.ne[1] > 32 * kRouteMaxPerLane) return 0;
  if (has(w.shared_inp) && (w.shared_inp.type != GgmlType::F32 || !aligned16(w.shared_inp))) return 0;
  if (shared && !shared_usable(w)) return 0;
  for (const Tensor* t : {&h, &y, &s.m, &s.logits, &s.gate}) {
    if (has(*t) && !float_rows(*t)) return 0;
  }
  if (!s.ids.is_contiguous() || !s.weights.is_contiguous()) return 0;
  const int64_t n_ff_sh = shared ? w.shared_gate.ne[1] : 0;
  return mmvq::act_bytes(n_ff, n * k) + (shared ? mmvq::act_bytes(n_ff_sh, n) : 0);
}

void moe_ffn_decode(cudaStream_t stream, const Tensor& h, const Tensor& y, const Tensor& norm, float eps,
                    const MoeFfnWeights& w, const MoeFfnScratch& s, void* workspace) {
  const int64_t n = h.ne[1], n_embd = h.ne[0], k = w.n_expert_used, n_ff = w.experts.gate.ne[1];
  const int32_t n_expert = int32_t(w.experts.gate.ne[2]);
  const bool shared = has(w.shared_gate), gated = shared && has(w.shared_inp);
  const int64_t n_ff_sh = shared ? w.shared_gate.ne[1] : 0;
  char* ws = static_cast<char*>(workspace);
  const ActQ8 ah = mmvq::act_at(ws, n_ff, n * k);
  const ActQ8 as = shared ? mmvq::act_at(ws + mmvq::act_bytes(n_ff, n * k), n_ff_sh, n) : ActQ8{nullptr, nullptr};

  // 1. residual, norm, router (and the shared gate), routing.
  RouterArgs ra{};
  ra.h = h.as<const float>();
  ra.y = y.as<const float>();
  ra.h_stride = floats(h);
  ra.y_stride = floats(y);
  ra.norm = norm.as<const float>();
  ra.eps = eps;
  ra.n_embd = n_embd;
  ra.n = int(n);
  ra.router = w.router.as<const float>();
  ra.r_stride = floats(w.router);
  ra.n_expert = int(w.router.ne[1]);
  ra.gate_w = gated ? w.shared_inp.as<const float>() : nullptr;
  ra.m = s.m.as<float>();
  ra.m_stride = floats(s.m);
  ra.logits = s.logits.as<float>();
  ra.l_stride = floats(s.logits);
  ra.gate = gated ? s.gate.as<float>() : nullptr;
  ra.g_stride = gated ? floats(s.gate) : 0;
  ra.ids = s.ids.as<int32_t>();
  ra.weights = s.weights.as<float>();
  ra.k = int(k);
  ra.normalize = w.normalize;
  launch_router<1>(stream, ra, size_t(n * n_embd) * sizeof(float));

  // 2. gate/up of the routed experts and the shared one.
  const int x_smem = int(x_smem_bytes(n_embd));
  const int v_gu = std::min(mmvq::row_vec(w.experts.gate), mmvq::row_vec(w.experts.up));
  bool ok = mmvq::dispatch_q8(w.experts.gate.type, [&]<GgmlType T>() {
    with_vec(v_gu, [&](auto vc) {
      constexpr int V = decltype(vc)::value;
      const int64_t nblk = n_embd / Dq<T>::kQk;
      const int tile_blk = mmvq::tile_blocks<T, V>(nblk);
      const int tile_blk_s = shared_gate_up_tile(n_embd, tile_blk * Dq<T>::kBytes);
      const size_t tiles = size_t(kGuWarps * 4) * size_t(std::max(tile_blk * Dq<T>::kBytes,
                                                                   shared ? tile_blk_s * Dq<kSharedType>::kBytes : 0));
      const size_t smem = size_t(mmvq::table_bytes<T>()) + size_t(x_smem) + tiles;
      mmvq::allow_smem(moe_ffn_gate_up<T, V>, smem);
      const dim3 grid(unsigned(std::max(n_ff, n_ff_sh) / kGuRows), unsigned(k + (shared ? 1 : 0)), unsigned(n));
      launch_pdl(moe_ffn_gate_up<T, V>, grid, 32 * kGuWarps, smem, stream, experts_of(w.experts.gate),
                 experts_of(w.experts.up), nblk, tile_blk, n_embd, n_ff, n_expert,
                 shared ? experts_of(w.shared_gate) : Experts{}, shared ? experts_of(w.shared_up) : Experts{},
                 tile_blk_s, n_ff_sh, s.m.as<const float>(), floats(s.m), x_smem, s.ids.as<const int32_t>(), int(k),
                 const_cast<int8_t*>(ah.qs), const_cast<float2*>(ah.ds), const_cast<int8_t*>(as.qs),
                 const_cast<float2*>(as.ds));
    });
  });

  // 3. down products, the shared expert's gate, the residual.
  const size_t h_smem = h_smem_bytes(n_ff, k) <= 24 * 1024 ? h_smem_bytes(n_ff, k) : 0;
  const Residual res{h.as<float>(), y.as<const float>(), floats(h), floats(y), gated ? s.gate.as<const float>() : nullptr,
                     gated ? floats(s.gate) : 0};
  ok = ok && mmvq::dispatch_q8(w.experts.down.type, [&]<GgmlType T>() {
    with_vec(mmvq::row_vec(w.experts.down), [&](auto vc) {
      constexpr int V = decltype(vc)::value;
      const int64_t nblk = n_ff / Dq<T>::kQk;
      const int tile_blk = mmvq::tile_blocks<T, V>(nblk);
      const int tile_blk_s = shared ? mmvq::tile_blocks<kSharedType, kSharedVec>(n_ff_sh / 32) : 1;
      const int spw = int((k + mmvq::kWarps - 1) / mmvq::kWarps);
      const int n_warps = int((k + spw - 1) / spw);
      const size_t tile = size_t(kDownRows) * size_t(std::max(tile_blk * Dq<T>::kBytes,
                                                              shared ? tile_blk_s * Dq<kSharedType>::kBytes : 0));
      const size_t smem = size_t(mmvq::table_bytes<T>()) + h_smem + size_t(n_warps + (shared ? 1 : 0)) * tile;
      mmvq::allow_smem(moe_ffn_down<T, V>, smem);
      const dim3 grid(unsigned((n_embd + kDownRows - 1) / kDownRows), unsigned(n));
      launch_pdl(moe_ffn_down<T, V>, grid, 32 * (n_warps + (shared ? 1 : 0)), smem, stream, experts_of(w.experts.down),
                 nblk, tile_blk, n_embd, n_ff, n_expert, ah, int(h_smem), s.ids.as<const int32_t>(),
                 s.weights.as<const float>(), int(k), spw, n_warps, shared ? experts_of(w.shared_down) : Experts{},
                 tile_blk_s, n_ff_sh, as, res);
    });
  });
  if (!ok) {
    fail("internal: cuda moe_ffn has no kernel for ", type_name(w.experts.gate.type), "/",
         type_name(w.experts.down.type));
  }
}

}  // namespace moeserve::cuda
