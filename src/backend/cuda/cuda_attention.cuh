// What the attention kernels share: their arguments, the query's rounding to K's dot type, and
// the launchers of the kernels that live in their own files (cuda_ops_attention.cu chooses).
#pragma once

#include "backend/cuda/cuda_common.cuh"

namespace moeserve::cuda::attn {

constexpr int kMaxHeadsPerBlock = 8;   // query heads of one KV head per CUDA-core block
constexpr int kMaxPartialRows = 1024;  // tokens x ranges when the context is split

struct AttnArgs {
  View dst, q, k, v;
  DeviceBatch batch;
  Fmt kf, vf;
  int dk, dv, group, head_tiles, n_head, n_tokens;
  int64_t k_head_bytes, v_head_bytes;
  float scale;
  bool round_q;
  int chunk, n_splits;
  float* partials;  // [n_tokens][n_head][n_splits][2 + dv] (max, sum, acc); null: write dst
};

// What one block of the CUDA-core kernels attends, grid (ranges, KV heads x head tiles, tokens):
// query heads [g0, g0 + ng) of KV head kvh for token t, cells [c_begin, c_end) of its sequence,
// whose K and V rows of that head start at k_base / v_base.
struct BlockRange {
  int split, t, kvh, g0, ng, c_begin, c_end;
  const char* k_base;
  const char* v_base;
};

// False for a range that starts past the token's position (nothing to attend).
__device__ __forceinline__ bool block_range(const AttnArgs& a, int gt, BlockRange& r) {
  r.split = blockIdx.x;
  r.t = blockIdx.z;
  r.kvh = blockIdx.y / a.head_tiles;
  r.g0 = (blockIdx.y % a.head_tiles) * gt;
  r.ng = min(gt, a.group - r.g0);
  const int pos = a.batch.pos[r.t], seq = a.batch.seq[r.t];
  r.c_begin = r.split * a.chunk;
  if (r.c_begin > pos) return false;
  r.c_end = min(r.c_begin + a.chunk, pos + 1);
  r.k_base = a.k.data + int64_t(seq) * a.k.nb[2] + r.kvh * a.k_head_bytes;
  r.v_base = a.v.data + int64_t(seq) * a.v.nb[2] + r.kvh * a.v_head_bytes;
  return true;
}

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

// Decode-sized steps, head dims 64/128/256 (dk == dv): grid (ranges, KV heads x head tiles,
// tokens), `gt` query heads per block. K/V rows reach shared memory through cp.async in pieces
// of `copy_width` bytes: 16, 8 or 4, what decode_copy_width finds (0: the rows are not 4-byte
// aligned, which the engine's caches never are; the CUDA-core kernel serves them).
void launch_attention_decode(const AttnArgs& a, dim3 grid, int gt, int copy_width, cudaStream_t stream);
int decode_copy_width(const AttnArgs& a);

// Flash prefill on tensor cores: K and V of F16, BF16, Q8_0 or Q4_0, dk == dv of 64, 128 or 256,
// a GQA group of at most 64 heads.
bool mma_supported(const AttnArgs& a);
void launch_attention_mma(const AttnArgs& a, cudaStream_t stream);

}  // namespace moeserve::cuda::attn
