// Attention over the KV cache, read in its stored format (F32, F16, BF16, Q8_0, Q4_0; K and V
// independent). The kernels, chosen per step:
// * decode-sized steps (few tokens) with head dims 64/128/256: the context split into ranges
//   handled by separate blocks and merged here; flash with 16-bit or block-format K takes the
//   scores on tensor cores (cuda_attention_decode_tc.cu), the rest cuda_attention_decode.cu;
// * flash prefill of 16-bit or block-format caches: tensor cores, cuda_attention_mma.cu;
// * everything else (F32 caches, flash off, other head dims): the CUDA-core kernel below. A block
//   serves one token, one KV head and up to 8 of the query heads sharing it (GQA: each K/V row is
//   read once for all of them), walking its cells in tiles with an online softmax across tiles.
// The number of ranges depends only on the cache size and the token count, never on positions,
// so a recorded step replays at any length (blocks past a token's position exit at once). Flash:
// the query is first rounded to K's dot type (Q8_0 for the block formats, F16/BF16 for those) as
// the reference's flash path does; without flash it stays F32.
#include "backend/cuda/cuda_attention.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_formats.h"
#include "backend/cuda/cuda_profile.h"
#include "core/error.h"

#include <algorithm>

namespace moeserve::cuda {
namespace {

using attn::AttnArgs;
using attn::block_range;
using attn::BlockRange;
using attn::kMaxHeadsPerBlock;
using attn::kMaxPartialRows;
using attn::round_query;

constexpr int kWarps = 4;
constexpr int kTile = 128;  // cells per tile (scores in shared memory)
constexpr int kMinCellsPerSplit = 128;
constexpr int kSplitMaxTokens = 64;    // larger steps have enough blocks without splitting

// Tiles of kTile cells, three phases each: (A) warps take cells, lanes the dims, and store each
// head's score in shared memory (no loop-carried dependency, so the loads of many cells are in
// flight at once); (B) per head the tile's maximum, the rescale of what came before and the
// weights p; (C) threads take output dims and sum p * V over the tile (V rows read coalesced,
// p broadcast from shared memory).
template <int EPL, int GT>
__global__ void __launch_bounds__(32 * kWarps) attention_kernel(AttnArgs a) {
  constexpr int kDimsPerThread = 256 / (32 * kWarps);  // output dims per thread (dv <= 256)
  __shared__ float sc[GT][kTile];
  __shared__ float run_max[GT], run_sum[GT], rescale[GT];
  pdl_wait();
  pdl_trigger();
  BlockRange r;
  if (!block_range(a, GT, r)) return;
  const int split = r.split, t = r.t, kvh = r.kvh, g0 = r.g0, ng = r.ng, c_begin = r.c_begin, c_end = r.c_end;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  float qr[GT][EPL];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    const float* qp = g < ng ? reinterpret_cast<const float*>(row_ptr(a.q, kvh * a.group + g0 + g, t)) : nullptr;
#pragma unroll
    for (int j = 0; j < EPL; ++j) {
      const int i = j * 32 + lane;
      const float x = qp && i < a.dk ? qp[i] : 0.0f;
      qr[g][j] = a.round_q && j * 32 < a.dk ? round_query(a.kf, x) : x;
    }
  }
  if (threadIdx.x < GT) {
    run_max[threadIdx.x] = -INFINITY;
    run_sum[threadIdx.x] = 0;
  }
  float acc[GT][kDimsPerThread];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
#pragma unroll
    for (int e = 0; e < kDimsPerThread; ++e) acc[g][e] = 0;
  }
  const char *k_base = r.k_base, *v_base = r.v_base;

  for (int c0 = c_begin; c0 < c_end; c0 += kTile) {
    const int len = min(kTile, c_end - c0);
    // (A) scores.
    for (int j = warp; j < len; j += kWarps) {
      const char* kr = k_base + int64_t(c0 + j) * a.k.nb[1];
      float kx[EPL];
#pragma unroll
      for (int e = 0; e < EPL; ++e) {
        const int i = e * 32 + lane;
        kx[e] = i < a.dk ? load_elem(a.kf, kr, i) : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < GT; ++g) {
        float d = 0;
#pragma unroll
        for (int e = 0; e < EPL; ++e) d += qr[g][e] * kx[e];
        d = warp_sum(d);
        if (lane == 0) sc[g][j] = d * a.scale;
      }
    }
    __syncthreads();
    // (B) softmax bookkeeping, a warp per head.
    for (int g = warp; g < ng; g += kWarps) {
      float mx = -INFINITY;
      for (int j = lane; j < len; j += 32) mx = fmaxf(mx, sc[g][j]);
      mx = warp_max(mx);
      const float m_old = run_max[g], m_new = fmaxf(m_old, mx);
      float sum = 0;
      for (int j = lane; j < len; j += 32) sum += (sc[g][j] = expf(sc[g][j] - m_new));
      sum = warp_sum(sum);
      __syncwarp();
      if (lane == 0) {
        const float corr = expf(m_old - m_new);  // 0 for the first tile (m_old = -inf)
        rescale[g] = corr;
        run_sum[g] = run_sum[g] * corr + sum;
        run_max[g] = m_new;
      }
    }
    __syncthreads();
    // (C) p * V.
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      const float corr = g < ng ? rescale[g] : 0.0f;
#pragma unroll
      for (int e = 0; e < kDimsPerThread; ++e) acc[g][e] *= corr;
    }
    for (int j = 0; j < len; ++j) {
      const char* vr = v_base + int64_t(c0 + j) * a.v.nb[1];
      float vx[kDimsPerThread];
#pragma unroll
      for (int e = 0; e < kDimsPerThread; ++e) {
        const int d = e * 32 * kWarps + threadIdx.x;
        vx[e] = d < a.dv ? load_elem(a.vf, vr, d) : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < GT; ++g) {
        const float p = sc[g][j];
#pragma unroll
        for (int e = 0; e < kDimsPerThread; ++e) acc[g][e] += p * vx[e];
      }
    }
    __syncthreads();  // sc is rewritten by the next tile
  }

#pragma unroll
  for (int g = 0; g < GT; ++g) {
    if (g >= ng) continue;
    const int h = kvh * a.group + g0 + g;
    float* p = a.partials ? a.partials + ((int64_t(t) * a.n_head + h) * a.n_splits + split) * (2 + a.dv) : nullptr;
    if (p && threadIdx.x == 0) {
      p[0] = run_max[g];
      p[1] = run_sum[g];
    }
#pragma unroll
    for (int e = 0; e < kDimsPerThread; ++e) {
      const int d = e * 32 * kWarps + threadIdx.x;
      if (d >= a.dv) continue;
      if (p) {
        p[2 + d] = acc[g][e];
      } else {
        reinterpret_cast<float*>(row_ptr(a.dst, h, t))[d] = acc[g][e] / run_sum[g];
      }
    }
  }
}

// Merges the ranges a token used: block per (head, token, 32 output dims), so a decode step's
// merge spreads over many SMs. Every block weighs all ranges (their maxima and sums are a few
// floats each; the weights live in a fixed-size shared array: the plan never makes more than
// kMaxPartialRows ranges); warps take ranges, lanes the block's dims, and the warps' sums meet in
// shared memory.
constexpr int kMergeWarps = 8;

__global__ void __launch_bounds__(32 * kMergeWarps) attention_merge_kernel(View dst, const float* partials,
                                                                          DeviceBatch batch, int n_head,
                                                                          int n_splits, int chunk, int dv) {
  __shared__ float weight[kMaxPartialRows];
  __shared__ float red[32];
  __shared__ float part[kMergeWarps][32];
  pdl_wait();
  pdl_trigger();
  const int h = blockIdx.x, t = blockIdx.y, d = blockIdx.z * 32 + threadIdx.x % 32;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n_used = min(n_splits, batch.pos[t] / chunk + 1);
  const int64_t stride = 2 + dv;
  const float* p = partials + (int64_t(t) * n_head + h) * n_splits * stride;
  float mx = -INFINITY;
  for (int s = threadIdx.x; s < n_used; s += blockDim.x) mx = fmaxf(mx, p[s * stride]);
  mx = warp_max(mx);
  if (lane == 0) red[warp] = mx;
  __syncthreads();
  mx = -INFINITY;
  for (int w = 0; w < kMergeWarps; ++w) mx = fmaxf(mx, red[w]);
  float sum = 0;
  for (int s = threadIdx.x; s < n_used; s += blockDim.x) {
    weight[s] = expf(p[s * stride] - mx);
    sum += p[s * stride + 1] * weight[s];
  }
  sum = block_sum(sum);  // its barriers also publish weight[]
  float acc = 0;
  if (d < dv) {
#pragma unroll 4
    for (int s = warp; s < n_used; s += kMergeWarps) acc += p[s * stride + 2 + d] * weight[s];
  }
  part[warp][lane] = acc;
  __syncthreads();
  if (warp == 0 && d < dv) {
    float o = 0;
    for (int w = 0; w < kMergeWarps; ++w) o += part[w][lane];
    reinterpret_cast<float*>(row_ptr(dst, h, t))[d] = o / sum;
  }
}

struct Plan {
  int chunk, n_splits;
};

// Depends on the cache size and the token count only (recorded steps replay at any position).
Plan plan_splits(int64_t n_ctx, int64_t n_tokens) {
  if (n_tokens > kSplitMaxTokens || n_ctx <= kMinCellsPerSplit) return {int(n_ctx), 1};
  const int64_t wanted = std::min<int64_t>((n_ctx + kMinCellsPerSplit - 1) / kMinCellsPerSplit,
                                           std::max<int64_t>(1, kMaxPartialRows / n_tokens));
  const int64_t chunk = (n_ctx + wanted - 1) / wanted;
  return {int(chunk), int((n_ctx + chunk - 1) / chunk)};
}

constexpr int kDecMinCells = 64;

// The decode kernels' ranges: about `blocks` blocks over the step (each block a KV head or head
// tile of one token), at least kDecMinCells cells each, a multiple of `granule` cells. Depends on
// the cache size, the token count and the device only.
Plan plan_decode(int64_t n_ctx, int64_t n_tokens, int64_t head_blocks, int64_t blocks, int64_t granule) {
  const int64_t per_token = std::max<int64_t>(1, blocks / (head_blocks * n_tokens));
  const int64_t wanted = std::max<int64_t>(
      1, std::min({(n_ctx + kDecMinCells - 1) / kDecMinCells, per_token, int64_t(kMaxPartialRows) / n_tokens}));
  const int64_t chunk = ((n_ctx + wanted - 1) / wanted + granule - 1) / granule * granule;
  return {int(chunk), int((n_ctx + chunk - 1) / chunk)};
}

template <int EPL>
void launch_epl(const AttnArgs& a, dim3 grid, cudaStream_t stream, int gt) {
  switch (gt) {
    case 1: launch_pdl(attention_kernel<EPL, 1>, grid, 32 * kWarps, 0, stream, a); break;
    case 2: launch_pdl(attention_kernel<EPL, 2>, grid, 32 * kWarps, 0, stream, a); break;
    case 4: launch_pdl(attention_kernel<EPL, 4>, grid, 32 * kWarps, 0, stream, a); break;
    default: launch_pdl(attention_kernel<EPL, kMaxHeadsPerBlock>, grid, 32 * kWarps, 0, stream, a); break;
  }
}

}  // namespace

void CudaBackend::do_attention(const Tensor& dst, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                               const BatchInfo& batch, const AttentionParams& params) {
  const Fmt kf = kv_format(k_cache.type, "K"), vf = kv_format(v_cache.type, "V");
  const int64_t dk = q.ne[0], dv = dst.ne[0], n_head = q.ne[1], n_tokens = q.ne[2];
  if (dk > 256 || dv > 256) fail("CUDA backend: attention supports head dims up to 256, got ", dk, "/", dv);
  const int64_t n_head_kv = k_cache.ne[0] / dk;
  const int64_t group = n_head / n_head_kv;
  // Decode-sized steps with equal K and V head dims of 64, 128 or 256 take a decode kernel: the
  // tensor-core one where it serves the pair (flash), 8 query heads per block.
  const bool decode = n_tokens <= kSplitMaxTokens && dk == dv && (dk == 64 || dk == 128 || dk == 256);
  AttnArgs a{};
  a.kf = kf;
  a.vf = vf;
  a.dk = int(dk);
  a.dv = int(dv);
  a.k_head_bytes = int64_t(row_bytes(k_cache.type, dk));
  a.v_head_bytes = int64_t(row_bytes(v_cache.type, dv));
  a.round_q = params.flash;
  const bool tc = decode && attn::decode_tc_supported(a);
  const int gt = tc || group >= kMaxHeadsPerBlock ? kMaxHeadsPerBlock : group >= 4 ? 4 : group >= 2 ? 2 : 1;
  const int64_t head_tiles = (group + gt - 1) / gt;
  Plan plan = plan_splits(k_cache.ne[1], n_tokens);
  if (tc) {
    // As many blocks as fit on the SMs at once (registers and shared memory bound them): one wave.
    const int64_t per_sm = std::min(attn::decode_tc_blocks_per_sm(a), 4);
    plan = plan_decode(k_cache.ne[1], n_tokens, n_head_kv * head_tiles, per_sm * sm_count_, attn::kDecodeTcCells);
  } else if (decode) {
    plan = plan_decode(k_cache.ne[1], n_tokens, n_head_kv * head_tiles, 2 * int64_t(sm_count_), 1);
  }
  const size_t partial_bytes =
      plan.n_splits > 1 ? size_t(kMaxPartialRows) * size_t(n_head) * size_t(2 + dv) * sizeof(float) : 0;
  if (skip(partial_bytes)) return;
  if (n_tokens == 0) return;
  if (profiler_) profiler_->label("attention", str_cat("attention n=", n_tokens));  // decode apart from prefill
  const DeviceBatch db = device_batch(batch);

  a.dst = view_of(dst);
  a.q = view_of(q);
  a.k = view_of(k_cache);
  a.v = view_of(v_cache);
  a.batch = db;
  a.n_head = int(n_head);
  a.n_tokens = int(n_tokens);
  a.group = int(group);
  a.head_tiles = int(head_tiles);
  a.scale = params.scale;
  a.chunk = plan.chunk;
  a.n_splits = plan.n_splits;
  a.partials = plan.n_splits > 1 ? static_cast<float*>(workspace()) : nullptr;

  const dim3 grid(unsigned(plan.n_splits), unsigned(n_head_kv * a.head_tiles), unsigned(n_tokens));
  const int64_t widest = std::max(dk, dv);
  if (decode && attn::decode_copy_width(a) != 0) {
    if (tc) attn::launch_attention_decode_tc(a, grid, attn::decode_copy_width(a), stream_);
    else attn::launch_attention_decode(a, grid, gt, attn::decode_copy_width(a), stream_);
  } else if (n_tokens > kSplitMaxTokens && attn::mma_supported(a)) {  // prefill: never split
    attn::launch_attention_mma(a, stream_);
  } else if (widest <= 32) {
    launch_epl<1>(a, grid, stream_, gt);
  } else if (widest <= 64) {
    launch_epl<2>(a, grid, stream_, gt);
  } else if (widest <= 128) {
    launch_epl<4>(a, grid, stream_, gt);
  } else {
    launch_epl<8>(a, grid, stream_, gt);
  }
  if (plan.n_splits > 1) {
    launch_pdl(attention_merge_kernel, dim3(unsigned(n_head), unsigned(n_tokens), unsigned((dv + 31) / 32)),
               32 * kMergeWarps, 0, stream_,
               view_of(dst), a.partials, db, int(n_head), plan.n_splits, plan.chunk, int(dv));
  }
}

}  // namespace moeserve::cuda
