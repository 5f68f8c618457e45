// Attention for decode-sized steps: the context is split into ranges handled by separate blocks
// (merged afterwards), each block walking its range with several cells in flight per warp.
// Block per (range, KV head or head tile, token), kWarps warps. K and V rows of kStageCells cells
// go global -> shared with cp.async, kStages tiles in flight, so the block never waits on a
// dependent global load (a decode step is a stream over the whole cache: at 32K cells and q8_0
// that is ~36 MB per layer, read once for all the query heads of a KV head).
// Compute from shared memory: a lane owns EP contiguous dims of K and V (EP = head dim / 32); a
// warp takes CB cells at a time, forms the GT x CB partial dot products and sums them over the
// warp with a reduce-scatter (each shuffle halves the values in flight: 31 shuffles for 32 sums
// instead of 160), then runs the online softmax and p * V with its own running state; the warps'
// states merge at the end.
#include "backend/cuda/cp_async.cuh"
#include "backend/cuda/cuda_attention.cuh"

namespace moeserve::cuda::attn {
namespace {

constexpr int kWarps = 4;
constexpr int kStageCells = 32;  // cells per shared-memory tile (a multiple of kWarps * CB)
constexpr int kStages = 3;

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

// Copies `rows` rows of `row_bytes` (global rows `stride` apart, row r taken from row
// min(first + r, last) so a tile past the range repeats a valid row) into consecutive shared
// rows, in pieces of W = 16, 8 or 4 bytes (cp.async).
template <int W>
__device__ __forceinline__ void copy_rows(char* dst, const char* base, int64_t stride, int row_bytes, int first,
                                          int last) {
  constexpr int w = W;
  const int per_row = row_bytes / w;
  for (int i = threadIdx.x; i < kStageCells * per_row; i += 32 * kWarps) {
    const int r = i / per_row, c = i % per_row;
    const char* src = base + int64_t(min(first + r, last)) * stride + c * w;
    char* d = dst + r * row_bytes + c * w;
    cp_async<W>(d, src);
  }
}

template <int W>
__device__ __forceinline__ void issue_tile(const AttnArgs& a, char* stage, const char* k_base, const char* v_base,
                                           int first, int last) {
  copy_rows<W>(stage, k_base, a.k.nb[1], int(a.k_head_bytes), first, last);
  copy_rows<W>(stage + kStageCells * a.k_head_bytes, v_base, a.v.nb[1], int(a.v_head_bytes), first, last);
}

template <int EP, int GT, int W>
__global__ void __launch_bounds__(32 * kWarps) attention_decode_kernel(AttnArgs a) {
  constexpr int CB = GT * 8 <= 32 ? 8 : 32 / GT;  // cells per step of a warp
  constexpr int N = GT * CB;                      // dot products per step
  constexpr int kShift = 5 - log2_of(N);          // lane of dot product i: i << kShift
  static_assert(kStageCells % (kWarps * CB) == 0, "a tile is whole steps of the block");
  extern __shared__ __align__(16) char stages[];
  __shared__ float sm_m[kWarps][GT], sm_l[kWarps][GT];
  pdl_wait();
  pdl_trigger();
  BlockRange r;
  if (!block_range(a, GT, r)) return;
  const int t = r.t, kvh = r.kvh, g0 = r.g0, ng = r.ng, c_begin = r.c_begin, c_end = r.c_end;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int stage_bytes = kStageCells * int(a.k_head_bytes + a.v_head_bytes);
  const char *k_base = r.k_base, *v_base = r.v_base;
  const int n_tiles = (c_end - c_begin + kStageCells - 1) / kStageCells;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < n_tiles) issue_tile<W>(a, stages + s * stage_bytes, k_base, v_base, c_begin + s * kStageCells, c_end - 1);
    cp_async_commit();
  }

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
  const int my = lane >> kShift, my_g = my / CB, my_c = my % CB;

  for (int it = 0; it < n_tiles; ++it) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile `it` is visible to all; the buffer of tile it - 1 is free
    const int next = it + kStages - 1;
    if (next < n_tiles) {
      issue_tile<W>(a, stages + (next % kStages) * stage_bytes, k_base, v_base, c_begin + next * kStageCells,
                    c_end - 1);
    }
    cp_async_commit();
    const char* ks = stages + (it % kStages) * stage_bytes;
    const char* vs = ks + kStageCells * a.k_head_bytes;
    const int tile0 = c_begin + it * kStageCells;
    for (int j0 = warp * CB; j0 < kStageCells; j0 += kWarps * CB) {
      if (tile0 + j0 >= c_end) break;  // warp-uniform
      float d[N];
      {
        float kx[CB][EP];
#pragma unroll
        for (int c = 0; c < CB; ++c) load_lane<EP>(a.kf, ks + (j0 + c) * a.k_head_bytes, lane, kx[c]);
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
      for (int c = 0; c < CB; ++c) load_lane<EP>(a.vf, vs + (j0 + c) * a.v_head_bytes, lane, vx[c]);
      float score = reduce_scatter<N>(d, lane) * a.scale;
      if (tile0 + j0 + my_c >= c_end || my_g >= ng) score = -INFINITY;
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
  }
  cp_async_wait<0>();
  __syncthreads();  // the stages are reused below for the warps' accumulators

  // The warps' states meet in shared memory.
  constexpr int dv = 32 * EP;
  float* sm_acc = reinterpret_cast<float*>(stages);  // [kWarps][GT][dv]
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    if (lane == 0) {
      sm_m[warp][g] = m_run[g];
      sm_l[warp][g] = l_run[g];
    }
#pragma unroll
    for (int e = 0; e < EP; ++e) sm_acc[(warp * GT + g) * dv + lane * EP + e] = acc[g][e];
  }
  __syncthreads();
  write_block_state<kWarps, GT, dv>(a, r, sm_m, sm_l, sm_acc);
}

template <int EP, int GT, int W>
void launch_one(const AttnArgs& a, dim3 grid, cudaStream_t stream) {
  // The stages, at least the warps' accumulators of the final merge.
  const size_t stage_bytes = size_t(kStageCells) * size_t(a.k_head_bytes + a.v_head_bytes);
  const size_t smem = std::max(kStages * stage_bytes, size_t(kWarps) * GT * 32 * EP * sizeof(float));
  if (smem > 48 * 1024) {  // past the default, a kernel has to ask (per device, so every time)
    MOESERVE_CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel<EP, GT, W>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  }
  // The planned two blocks per SM only fit with the largest shared-memory carveout.
  MOESERVE_CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel<EP, GT, W>,
                                           cudaFuncAttributePreferredSharedMemoryCarveout,
                                           int(cudaSharedmemCarveoutMaxShared)));
  launch_pdl(attention_decode_kernel<EP, GT, W>, grid, 32 * kWarps, smem, stream, a);
}

template <int EP, int GT>
void launch_width(const AttnArgs& a, dim3 grid, int width, cudaStream_t stream) {
  switch (width) {
    case 16: launch_one<EP, GT, 16>(a, grid, stream); break;
    case 8: launch_one<EP, GT, 8>(a, grid, stream); break;
    default: launch_one<EP, GT, 4>(a, grid, stream); break;
  }
}

template <int EP>
void launch_heads(const AttnArgs& a, dim3 grid, int gt, int width, cudaStream_t stream) {
  switch (gt) {
    case 1: launch_width<EP, 1>(a, grid, width, stream); break;
    case 2: launch_width<EP, 2>(a, grid, width, stream); break;
    case 4: launch_width<EP, 4>(a, grid, width, stream); break;
    default: launch_width<EP, kMaxHeadsPerBlock>(a, grid, width, stream); break;
  }
}

}  // namespace

int decode_copy_width(const AttnArgs& a) {
  // Every address a piece starts at: the caches' bases, their row and sequence strides, the
  // head offsets and the shared rows (head rows are packed back to back).
  const uint64_t bits = reinterpret_cast<uint64_t>(a.k.data) | reinterpret_cast<uint64_t>(a.v.data) |
                        uint64_t(a.k.nb[1]) | uint64_t(a.k.nb[2]) | uint64_t(a.v.nb[1]) | uint64_t(a.v.nb[2]) |
                        uint64_t(a.k_head_bytes) | uint64_t(a.v_head_bytes);
  for (int w : {16, 8, 4}) {
    if ((bits & uint64_t(w - 1)) == 0) return w;
  }
  return 0;
}

void launch_attention_decode(const AttnArgs& a, dim3 grid, int gt, int copy_width, cudaStream_t stream) {
  if (a.dk == 64) launch_heads<2>(a, grid, gt, copy_width, stream);
  else if (a.dk == 128) launch_heads<4>(a, grid, gt, copy_width, stream);
  else launch_heads<8>(a, grid, gt, copy_width, stream);
}

}  // namespace moeserve::cuda::attn
