// Flash attention for decode-sized steps on tensor cores: the scores with K of Q8_0/Q4_0 (integer
// products of K's bytes with the query quantized to Q8_0, mma m16n8k32 s8) or F16/BF16 (mma
// m16n8k16, the query rounded to K's type), and p·V for V of any cache type (mma m16n8k8 tf32).
// Block per (range, KV head or tile of 8 of its query heads, token), kWarps warps; the block's K/V
// rows go global -> shared with cp.async, tiles of kCells cells, double buffered. In a tile each
// warp takes 16 cells: S^T (16 cells x 8 heads) = K_tile Q^T is one chain of mma, K straight from
// shared memory as the A operand (a Q8_0 block is exactly one k = 32 step, so its integer sum
// meets the two scales in float: the reference's Q8_0 dot); the heads' online softmax runs on
// the score fragments (cells across lanes, a few shuffles), the weights P go through shared
// memory (transposed: cells x heads), and O^T (dims x heads) += V^T P^T runs as tf32 mma with V
// converted from shared memory straight into A fragments.
// Numerics: the integer path rounds exactly as the reference's block dot (float sum of scaled
// integer block sums, in another order); 16-bit K products are exact in the f32 accumulators.
// p·V: every V element of Q8_0, Q4_0, F16 and BF16 is exact in tf32 (Q8_0/Q4_0 as their
// integers: the block scale goes with P); the weight (P times V's block scale) is split into two
// tf32 parts, hi + lo, so it carries 2^-22 of relative error; F32 V is split the same way (three
// products: hi·hi, hi·lo, lo·hi). The result stays within a few f32 ulps of the CUDA-core sums.
#include "backend/cuda/cp_async.cuh"
#include "backend/cuda/cuda_attention.cuh"

namespace moeserve::cuda::attn {
namespace {

constexpr int kWarps = 4;
constexpr int kCells = kDecodeTcCells;  // cells per tile: 16 per warp
constexpr int kStages = 2;
constexpr int kHeads = kDecodeTcHeads;  // the mma's n: query heads of the block

static_assert(kCells == 16 * kWarps, "a warp takes 16 cells of a tile");
static_assert(kStages == 2, "the prologue fills the first stage only (the second holds the quantized query)");

// Shared row pitch of K: rows a multiple of 128 bytes apart would put the 8 rows an A fragment
// reads in the same banks.
__host__ __device__ __forceinline__ int k_pitch(int64_t k_head_bytes) {
  return int(k_head_bytes) + (k_head_bytes % 128 == 0 ? 16 : 0);
}

// Shared row pitch of V: 32 bytes past a multiple of 128, so the four rows (cells t, t + 4, ...)
// whose dims a row group of lanes reads fall in different banks.
__host__ __device__ __forceinline__ int v_pitch(int64_t v_head_bytes) {
  return int(v_head_bytes) + int((32 - v_head_bytes % 128 + 128) % 128);
}

// Four bytes from a 2-byte aligned address (Q8_0/Q4_0 blocks are 34/18 bytes).
__device__ __forceinline__ uint32_t ld_u32_a2(const char* p) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return uint32_t(h[0]) | (uint32_t(h[1]) << 16);
}

// An int32 of magnitude below 2^22 as float, exactly (integer add and float add, no I2F).
__device__ __forceinline__ float small_int_as_float(int x) { return __int_as_float(0x4B400000 + x) - 12582912.0f; }

__device__ __forceinline__ uint32_t pack_s8(int a, int b, int c, int d) {
  return uint32_t(a & 0xFF) | (uint32_t(b & 0xFF) << 8) | (uint32_t(c & 0xFF) << 16) | (uint32_t(d & 0xFF) << 24);
}

__device__ __forceinline__ uint32_t pack_16(bool bf, float x, float y) {
  if (bf) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  const __half2 h = __floats2half2_rn(x, y);
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ void mma_s8(int (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_16(bool bf, float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if (bf) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], float a0, float a1, float a2, float a3, float b0, float b1) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(__float_as_uint(a0)), "r"(__float_as_uint(a1)), "r"(__float_as_uint(a2)), "r"(__float_as_uint(a3)),
        "r"(__float_as_uint(b0)), "r"(__float_as_uint(b1)));
}

// x rounded to tf32 (10 stored mantissa bits), as a float.
__device__ __forceinline__ float tf32_rn(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return __uint_as_float(r);
}

// Dims 32b + 4j .. 32b + 4j + 3 of a shared V row of format VF as floats (the integers of a
// Q8_0/Q4_0 block; their scale is v_scale): exact, and exact in tf32 except for F32. Shared V
// rows start 16-byte aligned (v_pitch).
template <Fmt VF>
__device__ __forceinline__ void v_quad(const char* row, int b, int j, float (&x)[4]) {
  if constexpr (VF == Fmt::f32) {
    const float4 v = *reinterpret_cast<const float4*>(row + 4 * (32 * b + 4 * j));
    x[0] = v.x;
    x[1] = v.y;
    x[2] = v.z;
    x[3] = v.w;
  } else if constexpr (VF == Fmt::f16 || VF == Fmt::bf16) {
    const uint2 v = *reinterpret_cast<const uint2*>(row + 2 * (32 * b + 4 * j));
    if constexpr (VF == Fmt::f16) {
      const float2 lo = __half22float2(*reinterpret_cast<const __half2*>(&v.x));
      const float2 hi = __half22float2(*reinterpret_cast<const __half2*>(&v.y));
      x[0] = lo.x;
      x[1] = lo.y;
      x[2] = hi.x;
      x[3] = hi.y;
    } else {  // bf16: the upper half of a float
      x[0] = __uint_as_float(v.x << 16);
      x[1] = __uint_as_float(v.x & 0xFFFF0000u);
      x[2] = __uint_as_float(v.y << 16);
      x[3] = __uint_as_float(v.y & 0xFFFF0000u);
    }
  } else if constexpr (VF == Fmt::q8_0) {
    // 34-byte blocks in 4-byte aligned rows: the quads of odd blocks are 4-byte aligned, those of
    // even blocks 2-byte. Signed bytes biased by 128 (xor) for byte_as_float.
    const char* p = row + b * kQ8Bytes + 2 + 4 * j;
    if (b % 2 == 1) {
      const uint32_t w = *reinterpret_cast<const uint32_t*>(p) ^ 0x80808080u;
#pragma unroll
      for (int e = 0; e < 4; ++e) x[e] = byte_as_float(w, e) - 8388736.0f;
    } else {
      const uint16_t* qs = reinterpret_cast<const uint16_t*>(p);
      const uint32_t w0 = uint32_t(qs[0]) ^ 0x8080u, w1 = uint32_t(qs[1]) ^ 0x8080u;
      x[0] = byte_as_float(w0, 0) - 8388736.0f;
      x[1] = byte_as_float(w0, 1) - 8388736.0f;
      x[2] = byte_as_float(w1, 0) - 8388736.0f;
      x[3] = byte_as_float(w1, 1) - 8388736.0f;
    }
  } else {  // q4_0: element i < 16 is the low nibble of byte i, i >= 16 the high nibble of byte i - 16
    const uint16_t* qs = reinterpret_cast<const uint16_t*>(row + b * kQ4Bytes + 2 + 4 * (j % 4));
    const int shift = j < 4 ? 0 : 4;
    const uint32_t w0 = (uint32_t(qs[0]) >> shift) & 0x0F0Fu, w1 = (uint32_t(qs[1]) >> shift) & 0x0F0Fu;
    x[0] = byte_as_float(w0, 0) - 8388616.0f;
    x[1] = byte_as_float(w0, 1) - 8388616.0f;
    x[2] = byte_as_float(w1, 0) - 8388616.0f;
    x[3] = byte_as_float(w1, 1) - 8388616.0f;
  }
}

// The scale of block b of a shared V row (1 for the unblocked formats).
template <Fmt VF>
__device__ __forceinline__ float v_scale(const char* row, int b) {
  if constexpr (VF == Fmt::q8_0) return half_at(row + b * kQ8Bytes);
  else if constexpr (VF == Fmt::q4_0) return half_at(row + b * kQ4Bytes);
  else return 1.0f;
}

// The kCells rows of a tile, `row_bytes` each (global rows `stride` apart from cell `first`), into
// shared rows `pitch` apart, in pieces of W bytes: the block's threads take the tile's (row,
// piece) pairs in turn, so every lane copies (a warp per row left most lanes idle on rows of a
// few pieces, and paid the row's address arithmetic for each). Rows past cell `last` are filled
// with zeros (no source bytes): finite, and their weights are 0.
template <int W>
__device__ __forceinline__ void copy_rows_w(char* dst, int pitch, const char* base, int64_t stride, int row_bytes,
                                            int first, int last) {
  constexpr int kThreads = 32 * kWarps;
  const int per_row = row_bytes / W;
  const int dr = kThreads / per_row, dc = kThreads - dr * per_row;  // the step in rows and pieces
  int r = int(threadIdx.x) / per_row, c = int(threadIdx.x) - r * per_row;
  const int lim = last - first;  // rows past it are zero-filled
  const char* src = base + int64_t(first + r) * stride + c * W;
  uint32_t d = smem_u32(dst) + r * pitch + c * W;
  const int64_t src_step = int64_t(dr) * stride + dc * W, src_wrap = stride - int64_t(per_row) * W;
  const int d_step = dr * pitch + dc * W, d_wrap = pitch - per_row * W;
  for (; r < kCells; r += dr) {
    const bool in = r <= lim;
    const char* from = in ? src : base;
    const uint32_t bytes = in ? W : 0;
    if constexpr (W == 16) {
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(from), "r"(bytes) : "memory");
    } else {
      asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(d), "l"(from), "n"(W), "r"(bytes)
                   : "memory");
    }
    src += src_step;
    d += d_step;
    c += dc;
    if (c >= per_row) {
      c -= per_row;
      ++r;
      src += src_wrap;
      d += d_wrap;
    }
  }
}

// The same in pieces of `width` = 16, 8 or 4 bytes (uniform over the grid).
__device__ __forceinline__ void copy_rows(int width, char* dst, int pitch, const char* base, int64_t stride,
                                          int row_bytes, int first, int last) {
  if (width == 16) copy_rows_w<16>(dst, pitch, base, stride, row_bytes, first, last);
  else if (width == 8) copy_rows_w<8>(dst, pitch, base, stride, row_bytes, first, last);
  else copy_rows_w<4>(dst, pitch, base, stride, row_bytes, first, last);
}

// INT8: K of Q8_0 or Q4_0 (integer mma); otherwise F16 or BF16. dk == dv == 32 * EP. V's format
// is a template argument: its conversion into A fragments is straight-line code.
// Copies in pieces of `width` bytes (decode_copy_width). At most 168 registers: three blocks per
// SM for the widest heads.
template <int EP, bool INT8, Fmt VF>
__global__ void __launch_bounds__(32 * kWarps, 3) attention_decode_tc_kernel(AttnArgs a, int width) {
  constexpr int NB = EP;  // 32-element blocks of a head row
  constexpr int dv = 32 * EP;
  extern __shared__ __align__(16) char stages[];
  __shared__ __align__(16) float sm_p[kWarps][16][kHeads];  // a warp's weights, cells x heads
  __shared__ float sm_m[kWarps][kHeads], sm_l[kWarps][kHeads];
  pdl_wait();
  pdl_trigger();
  BlockRange r;
  if (!block_range(a, kHeads, r)) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;  // fragment row group (cell, or head in B) and column pair
  const int kp = k_pitch(a.k_head_bytes), vp = v_pitch(a.v_head_bytes);
  const int stage_bytes = kCells * (kp + vp);
  const int n_tiles = (r.c_end - r.c_begin + kCells - 1) / kCells;
  auto issue = [&](int tile) {
    char* st = stages + (tile % kStages) * stage_bytes;
    const int first = r.c_begin + tile * kCells;
    copy_rows(width, st, kp, r.k_base, a.k.nb[1], int(a.k_head_bytes), first, r.c_end - 1);
    copy_rows(width, st + kCells * kp, vp, r.v_base, a.v.nb[1], int(a.v_head_bytes), first, r.c_end - 1);
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < n_tiles) issue(s);
    cp_async_commit();
  }

  // The B fragments (Q^T, dims x heads): this lane holds head g of the tile (zeros past ng).
  const float* qp = g < r.ng ? reinterpret_cast<const float*>(row_ptr(a.q, r.kvh * a.group + r.g0 + g, r.t)) : nullptr;
  const bool bf = a.kf == Fmt::bf16;
  uint32_t qb[INT8 ? 2 * NB : 4 * NB];
  float dq[2 * NB];  // INT8: the query scales of heads 2t and 2t + 1, per block
  if constexpr (INT8) {
    // The query quantized once per block: warp w takes 32-blocks w, w + kWarps, ..., a lane dims
    // 4t..4t+3 and 16+4t..16+4t+3 of head g (the lanes of a row group cover a block, so its
    // maximum is theirs; quantized as round_query does). The packed quads and the f16-rounded
    // scales go to the second stage buffer, which no tile fills before the loop's first barrier;
    // every lane then reads its fragments: the quads of head g, the scales of heads 2t, 2t + 1.
    uint2* sq = reinterpret_cast<uint2*>(stages + stage_bytes);  // [NB][kHeads][4]
    float* sd = reinterpret_cast<float*>(sq + NB * kHeads * 4);  // [NB][kHeads]
    for (int bl = warp; bl < NB; bl += kWarps) {
      float x[8];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        x[i] = qp ? qp[bl * 32 + 4 * t + i] : 0.0f;
        x[4 + i] = qp ? qp[bl * 32 + 16 + 4 * t + i] : 0.0f;
      }
      float amax = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(x[i]));
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
      const float d = __fdiv_rn(amax, 127.0f);
      const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
      int qi[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) qi[i] = int(roundf(__fmul_rn(x[i], id)));
      sq[(bl * kHeads + g) * 4 + t] =
          make_uint2(pack_s8(qi[0], qi[1], qi[2], qi[3]), pack_s8(qi[4], qi[5], qi[6], qi[7]));
      if (t == 0) sd[bl * kHeads + g] = round_f16(d);
    }
    __syncthreads();
#pragma unroll
    for (int bl = 0; bl < NB; ++bl) {
      const uint2 v = sq[(bl * kHeads + g) * 4 + t];
      qb[2 * bl] = v.x;
      qb[2 * bl + 1] = v.y;
      dq[2 * bl] = sd[bl * kHeads + 2 * t];
      dq[2 * bl + 1] = sd[bl * kHeads + 2 * t + 1];
    }
  } else {
    // Per 16-dim step: dims 2t, 2t+1 and 8+2t, 8+2t+1, rounded to K's type.
#pragma unroll
    for (int s = 0; s < 2 * NB; ++s) {
      const int i = s * 16 + 2 * t;
      qb[2 * s] = pack_16(bf, qp ? qp[i] : 0.0f, qp ? qp[i + 1] : 0.0f);
      qb[2 * s + 1] = pack_16(bf, qp ? qp[i + 8] : 0.0f, qp ? qp[i + 9] : 0.0f);
    }
  }

  // Running state: maxima and (partial, this lane's cells) sums of heads 2t and 2t + 1; O^T as
  // C fragments, two m-tiles of 16 dims per 32-dim block b of V: acc[b][j] holds heads 2t, 2t + 1
  // (c0, c1 and c2, c3) of dims 32b + 4g + 2j (rows g) and 32b + 4g + 2j + 1 (rows g + 8), so a
  // lane's dims of a block are 4 consecutive ones, 4g .. 4g + 3, and an m-tile lies in one block.
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0, l1 = 0;
  float acc[NB][2][4];
#pragma unroll
  for (int b = 0; b < NB; ++b) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[b][j][e] = 0;
    }
  }
  for (int it = 0; it < n_tiles; ++it) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile `it` is visible to all; the buffer of tile it - 1 is free
    if (it + kStages - 1 < n_tiles) issue(it + kStages - 1);
    cp_async_commit();
    const int c0 = r.c_begin + it * kCells + warp * 16;  // this warp's first cell
    if (c0 >= r.c_end) continue;                          // warp-uniform
    const char* kw = stages + (it % kStages) * stage_bytes + warp * 16 * kp;
    const char* vw = stages + (it % kStages) * stage_bytes + kCells * kp + warp * 16 * vp;

    // Scores of cells g and g + 8, heads 2t and 2t + 1 (the C fragment).
    float s[4] = {0, 0, 0, 0};
    if constexpr (INT8) {
      const bool q4 = a.kf == Fmt::q4_0;
      const int bb = q4 ? kQ4Bytes : kQ8Bytes;
#pragma unroll
      for (int bl = 0; bl < NB; ++bl) {
        const char* b0 = kw + g * kp + bl * bb;
        const char* b1 = b0 + 8 * kp;
        uint32_t af[4];
        if (q4) {  // element j < 16: low nibble of byte j; j >= 16: high nibble of byte j - 16
          const uint32_t w0 = ld_u32_a2(b0 + 2 + 4 * t), w1 = ld_u32_a2(b1 + 2 + 4 * t);
          af[0] = __vsub4(w0 & 0x0F0F0F0Fu, 0x08080808u);
          af[1] = __vsub4(w1 & 0x0F0F0F0Fu, 0x08080808u);
          af[2] = __vsub4((w0 >> 4) & 0x0F0F0F0Fu, 0x08080808u);
          af[3] = __vsub4((w1 >> 4) & 0x0F0F0F0Fu, 0x08080808u);
        } else {
          af[0] = ld_u32_a2(b0 + 2 + 4 * t);
          af[1] = ld_u32_a2(b1 + 2 + 4 * t);
          af[2] = ld_u32_a2(b0 + 18 + 4 * t);
          af[3] = ld_u32_a2(b1 + 18 + 4 * t);
        }
        int ci[4] = {0, 0, 0, 0};
        mma_s8(ci, af, qb[2 * bl], qb[2 * bl + 1]);
        const float d0 = half_at(b0), d1 = half_at(b1);
        s[0] += small_int_as_float(ci[0]) * (d0 * dq[2 * bl]);
        s[1] += small_int_as_float(ci[1]) * (d0 * dq[2 * bl + 1]);
        s[2] += small_int_as_float(ci[2]) * (d1 * dq[2 * bl]);
        s[3] += small_int_as_float(ci[3]) * (d1 * dq[2 * bl + 1]);
      }
    } else {
#pragma unroll
      for (int st = 0; st < 2 * NB; ++st) {
        const char* p0 = kw + g * kp + st * 32 + 4 * t;
        const uint32_t af[4] = {*reinterpret_cast<const uint32_t*>(p0),
                                *reinterpret_cast<const uint32_t*>(p0 + 8 * kp),
                                *reinterpret_cast<const uint32_t*>(p0 + 16),
                                *reinterpret_cast<const uint32_t*>(p0 + 8 * kp + 16)};
        mma_16(bf, s, af, qb[2 * st], qb[2 * st + 1]);
      }
    }

    // Online softmax of the 16 cells (cells past the range masked; cell c0 is in it, so the
    // new maxima are finite).
    const bool in0 = c0 + g < r.c_end, in1 = c0 + g + 8 < r.c_end;
    const float s0 = in0 ? s[0] * a.scale : -INFINITY, s1 = in0 ? s[1] * a.scale : -INFINITY;
    const float s2 = in1 ? s[2] * a.scale : -INFINITY, s3 = in1 ? s[3] * a.scale : -INFINITY;
    float mx0 = fmaxf(s0, s2), mx1 = fmaxf(s1, s3);
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o));
    }
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    const float cr0 = expf(m0 - mn0), cr1 = expf(m1 - mn1);  // 0 on the first step (m = -inf)
    m0 = mn0;
    m1 = mn1;
    const float p0 = expf(s0 - mn0), p1 = expf(s1 - mn1), p2 = expf(s2 - mn0), p3 = expf(s3 - mn1);
    l0 = l0 * cr0 + p0 + p2;
    l1 = l1 * cr1 + p1 + p3;
    __syncwarp();  // the previous step's weights are read
    *reinterpret_cast<float2*>(&sm_p[warp][g][2 * t]) = make_float2(p0, p1);
    *reinterpret_cast<float2*>(&sm_p[warp][g + 8][2 * t]) = make_float2(p2, p3);
    // The accumulators' columns are this lane's heads 2t and 2t + 1: rescaled in place, and only
    // when a maximum of the warp moved (past the first tiles it rarely does).
    if (__any_sync(0xffffffffu, cr0 != 1.0f || cr1 != 1.0f)) {
#pragma unroll
      for (int b = 0; b < NB; ++b) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          acc[b][j][0] *= cr0;
          acc[b][j][1] *= cr1;
          acc[b][j][2] *= cr0;
          acc[b][j][3] *= cr1;
        }
      }
    }
    __syncwarp();

    // p·V: O^T (dims x heads) += V^T (dims x 16 cells) P^T (16 cells x heads), two k = 8 steps.
    // B fragments: head g of cells t + 4i (i = 0..3: step i / 2, rows t and t + 4). A fragments:
    // this lane's 4 dims of each block in those cells; for Q8_0/Q4_0 V the block's scale goes
    // with P (it varies over k, the cells, but not over an m-tile's rows).
    {
      float pc[4];
      const char* vr[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        pc[i] = sm_p[warp][t + 4 * i][g];
        vr[i] = vw + (t + 4 * i) * vp;
      }
#pragma unroll
      for (int b = 0; b < NB; ++b) {
        float x[4][4], hi[4], lo[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          v_quad<VF>(vr[i], b, g, x[i]);
          const float w = pc[i] * v_scale<VF>(vr[i], b);
          hi[i] = tf32_rn(w);
          lo[i] = tf32_rn(w - hi[i]);
        }
#pragma unroll
        for (int j = 0; j < 2; ++j) {
#pragma unroll
          for (int k = 0; k < 2; ++k) {
            const float a0 = x[2 * k][2 * j], a1 = x[2 * k][2 * j + 1];
            const float a2 = x[2 * k + 1][2 * j], a3 = x[2 * k + 1][2 * j + 1];
            if constexpr (VF == Fmt::f32) {
              const float h0 = tf32_rn(a0), h1 = tf32_rn(a1), h2 = tf32_rn(a2), h3 = tf32_rn(a3);
              mma_tf32(acc[b][j], h0, h1, h2, h3, hi[2 * k], hi[2 * k + 1]);
              mma_tf32(acc[b][j], h0, h1, h2, h3, lo[2 * k], lo[2 * k + 1]);
              mma_tf32(acc[b][j], tf32_rn(a0 - h0), tf32_rn(a1 - h1), tf32_rn(a2 - h2), tf32_rn(a3 - h3),
                       hi[2 * k], hi[2 * k + 1]);
            } else {
              mma_tf32(acc[b][j], a0, a1, a2, a3, hi[2 * k], hi[2 * k + 1]);
              mma_tf32(acc[b][j], a0, a1, a2, a3, lo[2 * k], lo[2 * k + 1]);
            }
          }
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the stages are reused below for the warps' accumulators

  // The warps' states meet in shared memory.
#pragma unroll
  for (int o = 4; o < 32; o <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, o);
    l1 += __shfl_xor_sync(0xffffffffu, l1, o);
  }
  if (g == 0) {
    sm_m[warp][2 * t] = m0;
    sm_m[warp][2 * t + 1] = m1;
    sm_l[warp][2 * t] = l0;
    sm_l[warp][2 * t + 1] = l1;
  }
  float* sm_acc = reinterpret_cast<float*>(stages);  // [kWarps][kHeads][dv]
  float* h0 = sm_acc + (warp * kHeads + 2 * t) * dv;
  float* h1 = h0 + dv;
#pragma unroll
  for (int b = 0; b < NB; ++b) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int d = 32 * b + 4 * g + 2 * j;
      *reinterpret_cast<float2*>(h0 + d) = make_float2(acc[b][j][0], acc[b][j][2]);
      *reinterpret_cast<float2*>(h1 + d) = make_float2(acc[b][j][1], acc[b][j][3]);
    }
  }
  __syncthreads();
  write_block_state<kWarps, kHeads, dv>(a, r, sm_m, sm_l, sm_acc);
}

using Kernel = void (*)(AttnArgs, int);

template <int EP, bool INT8>
Kernel kernel_v(Fmt vf) {
  switch (vf) {
    case Fmt::f32: return attention_decode_tc_kernel<EP, INT8, Fmt::f32>;
    case Fmt::f16: return attention_decode_tc_kernel<EP, INT8, Fmt::f16>;
    case Fmt::bf16: return attention_decode_tc_kernel<EP, INT8, Fmt::bf16>;
    case Fmt::q8_0: return attention_decode_tc_kernel<EP, INT8, Fmt::q8_0>;
    default: return attention_decode_tc_kernel<EP, INT8, Fmt::q4_0>;
  }
}

template <int EP>
Kernel kernel_kind(const AttnArgs& a) {
  return a.kf == Fmt::q8_0 || a.kf == Fmt::q4_0 ? kernel_v<EP, true>(a.vf) : kernel_v<EP, false>(a.vf);
}

// The kernel for the step, asked for its shared memory: all of it it needs, and the largest
// carveout (several blocks per SM only fit there).
Kernel prepared_kernel(const AttnArgs& a) {
  const Kernel k = a.dk == 64 ? kernel_kind<2>(a) : a.dk == 128 ? kernel_kind<4>(a) : kernel_kind<8>(a);
  MOESERVE_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(decode_tc_smem(a))));
  MOESERVE_CUDA_CHECK(
      cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout, int(cudaSharedmemCarveoutMaxShared)));
  return k;
}

}  // namespace

bool decode_tc_supported(const AttnArgs& a) {
  return a.round_q && a.dk == a.dv && (a.dk == 64 || a.dk == 128 || a.dk == 256) &&
         (a.kf == Fmt::q8_0 || a.kf == Fmt::q4_0 || a.kf == Fmt::f16 || a.kf == Fmt::bf16);
}

size_t decode_tc_smem(const AttnArgs& a) {
  const size_t stage_bytes = size_t(kCells) * size_t(k_pitch(a.k_head_bytes) + v_pitch(a.v_head_bytes));
  return std::max(kStages * stage_bytes, size_t(kWarps) * kHeads * size_t(a.dv) * sizeof(float));
}

int decode_tc_blocks_per_sm(const AttnArgs& a) {
  int n = 0;
  MOESERVE_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, prepared_kernel(a), 32 * kWarps, decode_tc_smem(a)));
  return std::max(n, 1);
}

void launch_attention_decode_tc(const AttnArgs& a, dim3 grid, int copy_width, cudaStream_t stream) {
  launch_pdl(prepared_kernel(a), grid, 32 * kWarps, decode_tc_smem(a), stream, a, copy_width);
}

}  // namespace moeserve::cuda::attn
