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

// The end of a decode block: each of its W warps ran the online softmax over its share of the
// block's cells for heads [r.g0, r.g0 + r.ng) (G at most) and left its maxima and sums in sm_m /
// sm_l and its unnormalized outputs in acc ([W][G][DV] floats), all visible to the block. Writes
// the block's state: its range's partial (max, sum, output) for the merge kernel, or the output
// itself when the context is one range. The warps' weights are computed once per head (a warp
// that saw no cells has max -inf and weight 0; warp 0 always sees one).
template <int W, int G, int DV>
__device__ __forceinline__ void write_block_state(const AttnArgs& a, const BlockRange& r, const float (&sm_m)[W][G],
                                                  const float (&sm_l)[W][G], const float* acc) {
  __shared__ float wt[W][G], tot_m[G], tot_l[G];
  if (threadIdx.x < G) {
    const int g = threadIdx.x;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < W; ++w) mx = fmaxf(mx, sm_m[w][g]);
    float l = 0;
#pragma unroll
    for (int w = 0; w < W; ++w) {
      const float x = sm_m[w][g] == -INFINITY ? 0.0f : expf(sm_m[w][g] - mx);
      wt[w][g] = x;
      l += sm_l[w][g] * x;
    }
    tot_m[g] = mx;
    tot_l[g] = l;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < r.ng * DV; i += blockDim.x) {
    const int g = i / DV, dd = i % DV;
    float o = 0;
#pragma unroll
    for (int w = 0; w < W; ++w) o += acc[(w * G + g) * DV + dd] * wt[w][g];
    const int h = r.kvh * a.group + r.g0 + g;
    if (a.partials) {
      float* pp = a.partials + ((int64_t(r.t) * a.n_head + h) * a.n_splits + r.split) * (2 + DV);
      if (dd == 0) {
        pp[0] = tot_m[g];
        pp[1] = tot_l[g];
      }
      pp[2 + dd] = o;
    } else {
      reinterpret_cast<float*>(row_ptr(a.dst, h, r.t))[dd] = o / tot_l[g];
    }
  }
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

// Small integers to float without I2F (a quarter of the FMA rate): the byte b as the low
// mantissa bits of 2^23 (0x4B0000bb), less the bias. Exact.
__device__ __forceinline__ float byte_as_float(uint32_t w, int sel) {
  return __int_as_float(int(__byte_perm(w, 0x4B000000u, 0x7440u | uint32_t(sel))));
}

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
      // The lane's EP bytes start 2-byte aligned (34-byte blocks): 16-bit loads. Signed bytes
      // are biased by 128 (xor) for byte_as_float.
      const uint16_t* qs = reinterpret_cast<const uint16_t*>(b + 2 + i0 % kQK);
#pragma unroll
      for (int e = 0; e < EP / 2; ++e) {
        const uint32_t w = uint32_t(qs[e]) ^ 0x8080u;
        out[2 * e] = (byte_as_float(w, 0) - 8388736.0f) * d;
        out[2 * e + 1] = (byte_as_float(w, 1) - 8388736.0f) * d;
      }
      break;
    }
    case Fmt::q4_0: {
      const char* b = row + (i0 / kQK) * kQ4Bytes;
      const float d = half_at(b);
      const int j0 = i0 % kQK;
      const uint8_t* qs = reinterpret_cast<const uint8_t*>(b + 2) + j0 % 16;
      const int shift = j0 < 16 ? 0 : 4;
#pragma unroll
      for (int e = 0; e < EP; ++e) out[e] = (byte_as_float((qs[e] >> shift) & 0xFu, 0) - 8388616.0f) * d;
      break;
    }
  }
}

// Decode-sized steps, head dims 64/128/256 (dk == dv): grid (ranges, KV heads x head tiles,
// tokens), `gt` query heads per block. K/V rows reach shared memory through cp.async in pieces
// of `copy_width` bytes: 16, 8 or 4, what decode_copy_width finds (0: the rows are not 4-byte
// aligned, which the engine's caches never are; the CUDA-core kernel serves them).
void launch_attention_decode(const AttnArgs& a, dim3 grid, int gt, int copy_width, cudaStream_t stream);
int decode_copy_width(const AttnArgs& a);

// Flash decode with the scores and p·V on tensor cores (cuda_attention_decode_tc.cu): flash on, dk == dv of
// 64, 128 or 256, K of F16, BF16, Q8_0 or Q4_0 (V any cache type); blocks of up to 8 query heads,
// ranges a multiple of kDecodeTcCells cells. The copy width as for the kernel above.
constexpr int kDecodeTcCells = 64;
constexpr int kDecodeTcHeads = 8;
bool decode_tc_supported(const AttnArgs& a);
size_t decode_tc_smem(const AttnArgs& a);     // dynamic shared memory per block
int decode_tc_blocks_per_sm(const AttnArgs& a);  // how many fit on an SM at once
void launch_attention_decode_tc(const AttnArgs& a, dim3 grid, int copy_width, cudaStream_t stream);

// Flash prefill on tensor cores: K and V of F16, BF16, Q8_0 or Q4_0, dk == dv of 64, 128 or 256,
// a GQA group of at most 64 heads.
bool mma_supported(const AttnArgs& a);
void launch_attention_mma(const AttnArgs& a, cudaStream_t stream);

}  // namespace moeserve::cuda::attn
