// Attention over the KV cache, read in its stored format (F32, F16, BF16, Q8_0, Q4_0; K and V
// independent). A block serves one token, one KV head and up to 8 of the query heads sharing it
// (GQA: each K/V row is read once for all of them), walking its range of cells in tiles with an
// online softmax across tiles.
// Decode-sized steps (few tokens) split the context into ranges handled by separate blocks and
// merged by a second kernel (head dims 64/128/256: a decode kernel with several cells in flight
// per warp, see attention_decode_kernel); the number of ranges depends only on the cache size and the token
// count, never on positions, so a recorded step replays at any length (blocks past a token's
// position exit at once). Flash: the query is first rounded to K's dot type (Q8_0 for the block
// formats, F16/BF16 for those) as the reference's flash path does; without flash it stays F32.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_formats.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kTile = 128;  // cells per tile (scores in shared memory)
constexpr int kMaxHeadsPerBlock = 8;  // query heads of one KV head per block
constexpr int kMinCellsPerSplit = 128;
constexpr int kMaxPartialRows = 1024;  // tokens x splits when splitting
constexpr int kSplitMaxTokens = 64;    // larger steps have enough blocks without splitting

struct AttnArgs {
  View dst, q, k, v;
  DeviceBatch batch;
  Fmt kf, vf;
  int dk, dv, group, head_tiles, n_head;
  int64_t k_head_bytes, v_head_bytes;
  float scale;
  bool round_q;
  int chunk, n_splits;
  float* partials;  // [n_tokens][n_head][n_splits][2 + dv] (max, sum, acc); null: write dst
};

// The query element as the reference's flash path sees it after converting q to K's dot type.
// For the block formats the whole warp holds one 32-block (lane = element).
__device__ __forceinline__ float round_query(Fmt kf, float x) {
  switch (kf) {
    case Fmt::q8_0:
    case Fmt::q4_0: {
      const float amax = warp_max(fabsf(x));
      const float d = __fdiv_rn(amax, 127.0f);
      const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
      return roundf(__fmul_rn(x, id)) * round_f16(d);
    }
    case Fmt::f16: return round_f16(x);
    case Fmt::bf16: return round_bf16(x);
    default: return x;
  }
}

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
  const int split = blockIdx.x, t = blockIdx.z;
  const int kvh = blockIdx.y / a.head_tiles, g0 = (blockIdx.y % a.head_tiles) * GT;
  const int ng = min(GT, a.group - g0);
  const int pos = a.batch.pos[t], seq = a.batch.seq[t];
  const int c_begin = split * a.chunk;
  if (c_begin > pos) return;
  const int c_end = min(c_begin + a.chunk, pos + 1);
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
  const char* k_base = a.k.data + int64_t(seq) * a.k.nb[2] + kvh * a.k_head_bytes;
  const char* v_base = a.v.data + int64_t(seq) * a.v.nb[2] + kvh * a.v_head_bytes;

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

// Merges the ranges a token used: block per (head, token). The range weights live in a
// fixed-size shared array (the plan never makes more than kMaxPartialRows ranges); warps take
// ranges, lanes output dims (dv <= 256), and the warps' sums meet in shared memory.
constexpr int kMergeWarps = 16;

__global__ void __launch_bounds__(32 * kMergeWarps) attention_merge_kernel(View dst, const float* partials,
                                                                          DeviceBatch batch, int n_head,
                                                                          int n_splits, int chunk, int dv) {
  __shared__ float weight[kMaxPartialRows];
  __shared__ float red[32];
  __shared__ float part[kMergeWarps][256];
  pdl_wait();
  pdl_trigger();
  const int h = blockIdx.x, t = blockIdx.y;
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
  float acc[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = 0;
#pragma unroll 4
  for (int s = warp; s < n_used; s += kMergeWarps) {
    const float w = weight[s];
    const float* ps = p + s * stride + 2;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int d = e * 32 + lane;
      if (d < dv) acc[e] += ps[d] * w;
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) part[warp][e * 32 + lane] = acc[e];
  __syncthreads();
  float* out = reinterpret_cast<float*>(row_ptr(dst, h, t));
  for (int d = threadIdx.x; d < dv; d += blockDim.x) {
    float a = 0;
    for (int w = 0; w < kMergeWarps; ++w) a += part[w][d];
    out[d] = a / sum;
  }
}

// ---- decode: many ranges, several cells in flight per warp ---------------------------------
// Block per (range, KV head or head tile, token), kDecWarps warps. A lane owns EP contiguous dims
// of K and V (EP = head dim / 32); a warp takes CB cells at a time: it loads their K rows, forms
// the GT x CB partial dot products, and sums them over the warp with a reduce-scatter (each
// shuffle halves the values in flight: 31 shuffles for 32 sums instead of 160), then runs the
// online softmax and p * V with its own running state; the warps' states merge at the end.
constexpr int kDecWarps = 4;
constexpr int kDecMinCells = 64;

// Dims [lane * EP, lane * EP + EP) of a row of format f (EP divides 32, so one block's scale).
template <int EP>
__device__ __forceinline__ void load_lane(Fmt f, const char* row, int lane, float (&out)[EP]) {
  const int i0 = lane * EP;
  switch (f) {
    case Fmt::f32:
#pragma unroll
      for (int e = 0; e < EP; ++e) out[e] = reinterpret_cast<const float*>(row)[i0 + e];
      break;
    case Fmt::f16:
#pragma unroll
      for (int e = 0; e < EP; ++e) out[e] = __half2float(reinterpret_cast<const __half*>(row)[i0 + e]);
      break;
    case Fmt::bf16:
#pragma unroll
      for (int e = 0; e < EP; ++e) out[e] = __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(row)[i0 + e]);
      break;
    case Fmt::q8_0: {
      const char* b = row + (i0 / kQK) * kQ8Bytes;
      const float d = half_at(b);
      const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2) + i0 % kQK;
#pragma unroll
      for (int e = 0; e < EP; ++e) out[e] = float(qs[e]) * d;
      break;
    }
    case Fmt::q4_0: {
      const char* b = row + (i0 / kQK) * kQ4Bytes;
      const float d = half_at(b);
      const int j0 = i0 % kQK;
      const uint8_t* qs = reinterpret_cast<const uint8_t*>(b + 2) + j0 % 16;
      const int shift = j0 < 16 ? 0 : 4;
#pragma unroll
      for (int e = 0; e < EP; ++e) out[e] = float(int((qs[e] >> shift) & 0xF) - 8) * d;
      break;
    }
  }
}

// The query dims a lane owns, rounded as round_query does (a 32-block spans 32 / EP lanes).
template <int EP>
__device__ __forceinline__ void round_query_lane(Fmt kf, float (&x)[EP]) {
  if (kf == Fmt::q8_0 || kf == Fmt::q4_0) {
    float amax = 0;
#pragma unroll
    for (int e = 0; e < EP; ++e) amax = fmaxf(amax, fabsf(x[e]));
#pragma unroll
    for (int o = 16 / EP; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float d = __fdiv_rn(amax, 127.0f);
    const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
#pragma unroll
    for (int e = 0; e < EP; ++e) x[e] = roundf(__fmul_rn(x[e], id)) * round_f16(d);
  } else if (kf == Fmt::f16) {
#pragma unroll
    for (int e = 0; e < EP; ++e) x[e] = round_f16(x[e]);
  } else if (kf == Fmt::bf16) {
#pragma unroll
    for (int e = 0; e < EP; ++e) x[e] = round_bf16(x[e]);
  }
}

constexpr int log2_of(int n) { return n <= 1 ? 0 : 1 + log2_of(n / 2); }

// One step of reduce_scatter: M values left, partner lane at xor O; lanes with bit O set keep
// the upper half. A recursion rather than a loop so every index is a constant (registers).
template <int M, int O, int N>
__device__ __forceinline__ void reduce_scatter_step(float (&v)[N], int lane) {
  if constexpr (M > 1) {
    const bool upper = (lane & O) != 0;
#pragma unroll
    for (int j = 0; j < M / 2; ++j) {
      const float send = upper ? v[j] : v[j + M / 2];
      const float keep = upper ? v[j + M / 2] : v[j];
      v[j] = keep + __shfl_xor_sync(0xffffffffu, send, O);
    }
    reduce_scatter_step<M / 2, O / 2, N>(v, lane);
  }
}

// Sums N values (a power of two <= 32) over the warp; lane l ends with the sum of value
// l >> (5 - log2 N). Each step trades half of the values with the partner lane.
template <int N>
__device__ __forceinline__ float reduce_scatter(float (&v)[N], int lane) {
  reduce_scatter_step<N, 16, N>(v, lane);
  float x = v[0];
#pragma unroll
  for (int o = 16 >> log2_of(N); o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

template <int EP, int GT>
__global__ void __launch_bounds__(32 * kDecWarps) attention_decode_kernel(AttnArgs a) {
  constexpr int CB = GT * 8 <= 32 ? 8 : 32 / GT;  // cells per step of a warp
  constexpr int N = GT * CB;                      // dot products per step
  constexpr int kShift = 5 - log2_of(N);          // lane of dot product i: i << kShift
  __shared__ float sm_m[kDecWarps][GT], sm_l[kDecWarps][GT];
  __shared__ float sm_acc[kDecWarps][GT][32 * EP];
  pdl_wait();
  pdl_trigger();
  const int split = blockIdx.x, t = blockIdx.z;
  const int kvh = blockIdx.y / a.head_tiles, g0 = (blockIdx.y % a.head_tiles) * GT;
  const int ng = min(GT, a.group - g0);
  const int pos = a.batch.pos[t], seq = a.batch.seq[t];
  const int c_begin = split * a.chunk;
  if (c_begin > pos) return;
  const int c_end = min(c_begin + a.chunk, pos + 1);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  float qr[GT][EP];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    const float* qp = g < ng ? reinterpret_cast<const float*>(row_ptr(a.q, kvh * a.group + g0 + g, t)) : nullptr;
#pragma unroll
    for (int e = 0; e < EP; ++e) qr[g][e] = qp ? qp[lane * EP + e] : 0.0f;
    if (a.round_q) round_query_lane<EP>(a.kf, qr[g]);
  }
  float m_run[GT], l_run[GT], acc[GT][EP];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    m_run[g] = -INFINITY;
    l_run[g] = 0;
#pragma unroll
    for (int e = 0; e < EP; ++e) acc[g][e] = 0;
  }
  const char* k_base = a.k.data + int64_t(seq) * a.k.nb[2] + kvh * a.k_head_bytes;
  const char* v_base = a.v.data + int64_t(seq) * a.v.nb[2] + kvh * a.v_head_bytes;
  const int my = lane >> kShift, my_g = my / CB, my_c = my % CB;

  for (int c0 = c_begin + warp * CB; c0 < c_end; c0 += kDecWarps * CB) {
    float d[N];
    {
      float kx[CB][EP];
#pragma unroll
      for (int c = 0; c < CB; ++c) {
        const int cell = min(c0 + c, c_end - 1);  // past the end: a valid row, masked below
        load_lane<EP>(a.kf, k_base + int64_t(cell) * a.k.nb[1], lane, kx[c]);
      }
#pragma unroll
      for (int g = 0; g < GT; ++g) {
#pragma unroll
        for (int c = 0; c < CB; ++c) {
          float s = 0;
#pragma unroll
          for (int e = 0; e < EP; ++e) s += qr[g][e] * kx[c][e];
          d[g * CB + c] = s;
        }
      }
    }
    float vx[CB][EP];
#pragma unroll
    for (int c = 0; c < CB; ++c) {
      const int cell = min(c0 + c, c_end - 1);
      load_lane<EP>(a.vf, v_base + int64_t(cell) * a.v.nb[1], lane, vx[c]);
    }
    float score = reduce_scatter<N>(d, lane) * a.scale;
    if (c0 + my_c >= c_end || my_g >= ng) score = -INFINITY;
    float bmax = score;
#pragma unroll
    for (int j = 0; j < log2_of(CB); ++j) bmax = fmaxf(bmax, __shfl_xor_sync(0xffffffffu, bmax, (1 << kShift) << j));
    float m_new[GT], my_m = -INFINITY;
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      m_new[g] = fmaxf(m_run[g], __shfl_sync(0xffffffffu, bmax, (g * CB) << kShift));
      if (g == my_g) my_m = m_new[g];
    }
    const float p = score == -INFINITY ? 0.0f : expf(score - my_m);
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      const float corr = m_new[g] == -INFINITY ? 1.0f : expf(m_run[g] - m_new[g]);
      m_run[g] = m_new[g];
      l_run[g] *= corr;
#pragma unroll
      for (int e = 0; e < EP; ++e) acc[g][e] *= corr;
#pragma unroll
      for (int c = 0; c < CB; ++c) {
        const float pc = __shfl_sync(0xffffffffu, p, (g * CB + c) << kShift);
        l_run[g] += pc;
#pragma unroll
        for (int e = 0; e < EP; ++e) acc[g][e] += pc * vx[c][e];
      }
    }
  }

  // The warps' states meet in shared memory; threads then take (head, dim) pairs.
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    if (lane == 0) {
      sm_m[warp][g] = m_run[g];
      sm_l[warp][g] = l_run[g];
    }
#pragma unroll
    for (int e = 0; e < EP; ++e) sm_acc[warp][g][lane * EP + e] = acc[g][e];
  }
  __syncthreads();
  const int dv = 32 * EP;
  for (int i = threadIdx.x; i < ng * dv; i += blockDim.x) {
    const int g = i / dv, dd = i % dv;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecWarps; ++w) mx = fmaxf(mx, sm_m[w][g]);
    float l = 0, o = 0;
#pragma unroll
    for (int w = 0; w < kDecWarps; ++w) {
      const float wt = sm_m[w][g] == -INFINITY ? 0.0f : expf(sm_m[w][g] - mx);
      l += sm_l[w][g] * wt;
      o += sm_acc[w][g][dd] * wt;
    }
    const int h = kvh * a.group + g0 + g;
    if (a.partials) {
      float* pp = a.partials + ((int64_t(t) * a.n_head + h) * a.n_splits + split) * (2 + dv);
      if (dd == 0) {
        pp[0] = mx;
        pp[1] = l;
      }
      pp[2 + dd] = o;
    } else {
      reinterpret_cast<float*>(row_ptr(a.dst, h, t))[dd] = o / l;
    }
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

// The decode kernel's ranges: about two blocks per SM over the step (each block a KV head or head
// tile of one token), at least kDecMinCells cells each. Depends on the cache size, the token
// count and the device only.
Plan plan_decode(int64_t n_ctx, int64_t n_tokens, int64_t head_blocks, int sm_count) {
  const int64_t per_token = std::max<int64_t>(1, 2 * sm_count / (head_blocks * n_tokens));
  const int64_t wanted = std::max<int64_t>(
      1, std::min({(n_ctx + kDecMinCells - 1) / kDecMinCells, per_token, int64_t(kMaxPartialRows) / n_tokens}));
  const int64_t chunk = (n_ctx + wanted - 1) / wanted;
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

template <int EP>
void launch_decode(const AttnArgs& a, dim3 grid, cudaStream_t stream, int gt) {
  switch (gt) {
    case 1: launch_pdl(attention_decode_kernel<EP, 1>, grid, 32 * kDecWarps, 0, stream, a); break;
    case 2: launch_pdl(attention_decode_kernel<EP, 2>, grid, 32 * kDecWarps, 0, stream, a); break;
    case 4: launch_pdl(attention_decode_kernel<EP, 4>, grid, 32 * kDecWarps, 0, stream, a); break;
    default: launch_pdl(attention_decode_kernel<EP, kMaxHeadsPerBlock>, grid, 32 * kDecWarps, 0, stream, a); break;
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
  const int gt = group >= kMaxHeadsPerBlock ? kMaxHeadsPerBlock : group >= 4 ? 4 : group >= 2 ? 2 : 1;
  const int64_t head_tiles = (group + gt - 1) / gt;
  // Decode-sized steps with equal K and V head dims of 64, 128 or 256 take the decode kernel.
  const bool decode = n_tokens <= kSplitMaxTokens && dk == dv && (dk == 64 || dk == 128 || dk == 256);
  const Plan plan = decode ? plan_decode(k_cache.ne[1], n_tokens, n_head_kv * head_tiles, sm_count_)
                           : plan_splits(k_cache.ne[1], n_tokens);
  const size_t partial_bytes =
      plan.n_splits > 1 ? size_t(kMaxPartialRows) * size_t(n_head) * size_t(2 + dv) * sizeof(float) : 0;
  if (skip(partial_bytes)) return;
  if (n_tokens == 0) return;
  const DeviceBatch db = device_batch(batch);

  AttnArgs a{};
  a.dst = view_of(dst);
  a.q = view_of(q);
  a.k = view_of(k_cache);
  a.v = view_of(v_cache);
  a.batch = db;
  a.kf = kf;
  a.vf = vf;
  a.dk = int(dk);
  a.dv = int(dv);
  a.n_head = int(n_head);
  a.group = int(group);
  a.head_tiles = int(head_tiles);
  a.k_head_bytes = int64_t(row_bytes(k_cache.type, dk));
  a.v_head_bytes = int64_t(row_bytes(v_cache.type, dv));
  a.scale = params.scale;
  a.round_q = params.flash;
  a.chunk = plan.chunk;
  a.n_splits = plan.n_splits;
  a.partials = plan.n_splits > 1 ? static_cast<float*>(workspace()) : nullptr;

  const dim3 grid(unsigned(plan.n_splits), unsigned(n_head_kv * a.head_tiles), unsigned(n_tokens));
  const int64_t widest = std::max(dk, dv);
  if (decode) {
    if (dk == 64) launch_decode<2>(a, grid, stream_, gt);
    else if (dk == 128) launch_decode<4>(a, grid, stream_, gt);
    else launch_decode<8>(a, grid, stream_, gt);
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
    launch_pdl(attention_merge_kernel, dim3(unsigned(n_head), unsigned(n_tokens)), 32 * kMergeWarps, 0, stream_,
               view_of(dst), a.partials, db, int(n_head), plan.n_splits, plan.chunk, int(dv));
  }
}

}  // namespace moeserve::cuda
