// Attention over the KV cache, read in its stored format (F32, F16, BF16, Q8_0, Q4_0; K and V
// independent). A block serves one token, one KV head and up to 8 of the query heads sharing it
// (GQA: each K/V row is read once for all of them); its 4 warps take the cells of its range in
// turn, a lane per 32nd element, with an online softmax per head, then merge in shared memory.
// Decode-sized steps (few tokens) split the context into ranges handled by separate blocks and
// merged by a second kernel; the number of ranges depends only on the cache size and the token
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

template <int EPL, int GT>
__global__ void __launch_bounds__(32 * kWarps) attention_kernel(AttnArgs a) {
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

  float m[GT], l[GT], acc[GT][EPL];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    m[g] = -INFINITY;
    l[g] = 0;
#pragma unroll
    for (int j = 0; j < EPL; ++j) acc[g][j] = 0;
  }
  const char* k_base = a.k.data + int64_t(seq) * a.k.nb[2] + kvh * a.k_head_bytes;
  const char* v_base = a.v.data + int64_t(seq) * a.v.nb[2] + kvh * a.v_head_bytes;
  for (int c = c_begin + warp; c < c_end; c += kWarps) {
    const char* kr = k_base + int64_t(c) * a.k.nb[1];
    const char* vr = v_base + int64_t(c) * a.v.nb[1];
    float kx[EPL], vx[EPL];
#pragma unroll
    for (int j = 0; j < EPL; ++j) {
      const int i = j * 32 + lane;
      kx[j] = i < a.dk ? load_elem(a.kf, kr, i) : 0.0f;
      vx[j] = i < a.dv ? load_elem(a.vf, vr, i) : 0.0f;
    }
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      float d = 0;
#pragma unroll
      for (int j = 0; j < EPL; ++j) d += qr[g][j] * kx[j];
      const float s = warp_sum(d) * a.scale;
      const float m_new = fmaxf(m[g], s);
      const float corr = expf(m[g] - m_new), p = expf(s - m_new);
      l[g] = l[g] * corr + p;
#pragma unroll
      for (int j = 0; j < EPL; ++j) acc[g][j] = acc[g][j] * corr + p * vx[j];
      m[g] = m_new;
    }
  }

  // Merge the warps' partial softmaxes.
  __shared__ float sm_m[kWarps][GT], sm_l[kWarps][GT];
  __shared__ float sm_acc[kWarps][GT][EPL * 32];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    if (lane == 0) {
      sm_m[warp][g] = m[g];
      sm_l[warp][g] = l[g];
    }
#pragma unroll
    for (int j = 0; j < EPL; ++j) sm_acc[warp][g][j * 32 + lane] = acc[g][j];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < ng * a.dv; idx += blockDim.x) {
    const int g = idx / a.dv, d = idx % a.dv;
    float mx = -INFINITY;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w][g]);
    float sum = 0, out = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (sm_l[w][g] == 0.0f) continue;  // a warp that saw no cell
      const float f = expf(sm_m[w][g] - mx);
      sum += sm_l[w][g] * f;
      out += sm_acc[w][g][d] * f;
    }
    const int h = kvh * a.group + g0 + g;
    if (!a.partials) {
      reinterpret_cast<float*>(row_ptr(a.dst, h, t))[d] = out / sum;
    } else {
      float* p = a.partials + ((int64_t(t) * a.n_head + h) * a.n_splits + split) * (2 + a.dv);
      if (d == 0) {
        p[0] = mx;
        p[1] = sum;
      }
      p[2 + d] = out;
    }
  }
}

// Merges the ranges a token used: block per (head, token), thread per output element.
__global__ void attention_merge_kernel(View dst, const float* partials, DeviceBatch batch, int n_head, int n_splits,
                                       int chunk, int dv) {
  extern __shared__ float weight[];  // [n_splits]
  const int h = blockIdx.x, t = blockIdx.y;
  const int n_used = batch.pos[t] / chunk + 1;
  const int64_t stride = 2 + dv;
  const float* p = partials + (int64_t(t) * n_head + h) * n_splits * stride;
  float mx = -INFINITY;
  for (int s = threadIdx.x; s < n_used; s += blockDim.x) mx = fmaxf(mx, p[s * stride]);
  __shared__ float red[32];
  mx = warp_max(mx);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = mx;
  __syncthreads();
  mx = -INFINITY;
  for (int w = 0; w < int(blockDim.x / 32); ++w) mx = fmaxf(mx, red[w]);
  float sum = 0;
  for (int s = threadIdx.x; s < n_used; s += blockDim.x) {
    weight[s] = expf(p[s * stride] - mx);
    sum += p[s * stride + 1] * weight[s];
  }
  sum = block_sum(sum);  // its barriers also publish weight[]
  float* out = reinterpret_cast<float*>(row_ptr(dst, h, t));
  for (int d = threadIdx.x; d < dv; d += blockDim.x) {
    float acc = 0;
    for (int s = 0; s < n_used; ++s) acc += p[s * stride + 2 + d] * weight[s];
    out[d] = acc / sum;
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

template <int EPL>
void launch_epl(const AttnArgs& a, dim3 grid, cudaStream_t stream, int gt) {
  switch (gt) {
    case 1: attention_kernel<EPL, 1><<<grid, 32 * kWarps, 0, stream>>>(a); break;
    case 2: attention_kernel<EPL, 2><<<grid, 32 * kWarps, 0, stream>>>(a); break;
    case 4: attention_kernel<EPL, 4><<<grid, 32 * kWarps, 0, stream>>>(a); break;
    default: attention_kernel<EPL, kMaxHeadsPerBlock><<<grid, 32 * kWarps, 0, stream>>>(a); break;
  }
}

}  // namespace

void CudaBackend::do_attention(const Tensor& dst, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                               const BatchInfo& batch, const AttentionParams& params) {
  const Fmt kf = kv_format(k_cache.type, "K"), vf = kv_format(v_cache.type, "V");
  const int64_t dk = q.ne[0], dv = dst.ne[0], n_head = q.ne[1], n_tokens = q.ne[2];
  if (dk > 256 || dv > 256) fail("CUDA backend: attention supports head dims up to 256, got ", dk, "/", dv);
  const Plan plan = plan_splits(k_cache.ne[1], n_tokens);
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
  const int64_t n_head_kv = k_cache.ne[0] / dk;
  a.group = int(n_head / n_head_kv);
  const int gt = a.group >= kMaxHeadsPerBlock ? kMaxHeadsPerBlock : a.group >= 4 ? 4 : a.group >= 2 ? 2 : 1;
  a.head_tiles = (a.group + gt - 1) / gt;
  a.k_head_bytes = int64_t(row_bytes(k_cache.type, dk));
  a.v_head_bytes = int64_t(row_bytes(v_cache.type, dv));
  a.scale = params.scale;
  a.round_q = params.flash;
  a.chunk = plan.chunk;
  a.n_splits = plan.n_splits;
  a.partials = plan.n_splits > 1 ? static_cast<float*>(workspace()) : nullptr;

  const dim3 grid(unsigned(plan.n_splits), unsigned(n_head_kv * a.head_tiles), unsigned(n_tokens));
  const int64_t widest = std::max(dk, dv);
  if (widest <= 32) launch_epl<1>(a, grid, stream_, gt);
  else if (widest <= 64) launch_epl<2>(a, grid, stream_, gt);
  else if (widest <= 128) launch_epl<4>(a, grid, stream_, gt);
  else launch_epl<8>(a, grid, stream_, gt);
  MOESERVE_CUDA_CHECK_LAUNCH();
  if (plan.n_splits > 1) {
    attention_merge_kernel<<<dim3(unsigned(n_head), unsigned(n_tokens)), 256, sizeof(float) * size_t(plan.n_splits),
                             stream_>>>(view_of(dst), a.partials, db, int(n_head), plan.n_splits, plan.chunk, int(dv));
    MOESERVE_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace moeserve::cuda
