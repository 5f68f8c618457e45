// Flash attention for decode-sized steps with the scores on tensor cores: K of Q8_0/Q4_0 (integer
// products of K's bytes with the query quantized to Q8_0, mma m16n8k32 s8) or F16/BF16 (mma
// m16n8k16, the query rounded to K's type), V of any cache type on CUDA cores.
// Block per (range, KV head or tile of 8 of its query heads, token), kWarps warps; the block's K/V
// rows go global -> shared with cp.async, tiles of kCells cells, double buffered. In a tile each
// warp takes 16 cells: S^T (16 cells x 8 heads) = K_tile Q^T is one chain of mma, K straight from
// shared memory as the A operand (a Q8_0 block is exactly one k = 32 step, so its integer sum
// meets the two scales in float: the reference's Q8_0 dot); the heads' online softmax runs on
// the score fragments (cells across lanes, a few shuffles), the weights go through shared memory
// and each lane adds p * V for its EP dims of all 8 heads (64 independent FMA chains).
// Numerics: the integer path rounds exactly as the reference's block dot (float sum of scaled
// integer block sums, in another order); 16-bit K products are exact in the f32 accumulators.
#include "backend/cuda/cuda_attention.cuh"

namespace moeserve::cuda::attn {
namespace {

constexpr int kWarps = 4;
constexpr int kCells = kDecodeTcCells;  // cells per tile: 16 per warp
constexpr int kStages = 2;
constexpr int kHeads = kDecodeTcHeads;  // the mma's n: query heads of the block

static_assert(kCells == 16 * kWarps, "a warp takes 16 cells of a tile");

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// Shared row pitch of K: rows a multiple of 128 bytes apart would put the 8 rows an A fragment
// reads in the same banks.
__host__ __device__ __forceinline__ int k_pitch(int64_t k_head_bytes) {
  return int(k_head_bytes) + (k_head_bytes % 128 == 0 ? 16 : 0);
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

// kCells rows of `row_bytes` (global rows `stride` apart, row r taken from cell min(first + r,
// last), so a tile past the range repeats a valid row) into shared rows `pitch` apart, pieces of
// W bytes: a warp per row, lanes along it.
template <int W>
__device__ __forceinline__ void copy_rows_w(char* dst, int pitch, const char* base, int64_t stride, int row_bytes,
                                            int first, int last) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int r = warp; r < kCells; r += kWarps) {
    const char* src = base + int64_t(min(first + r, last)) * stride;
    const uint32_t d = smem_u32(dst + r * pitch);
    for (int c = lane * W; c < row_bytes; c += 32 * W) {
      if constexpr (W == 16) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d + c), "l"(src + c) : "memory");
      } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(d + c), "l"(src + c), "n"(W) : "memory");
      }
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
// is a template argument so that the loads of several cells' V rows are scheduled together.
// Copies in pieces of `width` bytes (decode_copy_width). At most 168 registers: three blocks per
// SM for the widest heads.
template <int EP, bool INT8, Fmt VF>
__global__ void __launch_bounds__(32 * kWarps, 3) attention_decode_tc_kernel(AttnArgs a, int width) {
  constexpr int NB = EP;  // 32-element blocks of a head row
  constexpr int dv = 32 * EP;
  extern __shared__ __align__(16) char stages[];
  __shared__ __align__(16) float sm_p[kWarps][16][kHeads];
  __shared__ __align__(16) float sm_corr[kWarps][kHeads];
  __shared__ float sm_m[kWarps][kHeads], sm_l[kWarps][kHeads];
  pdl_wait();
  pdl_trigger();
  BlockRange r;
  if (!block_range(a, kHeads, r)) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;  // fragment row group (cell, or head in B) and column pair
  const int kp = k_pitch(a.k_head_bytes), vp = int(a.v_head_bytes);
  const int stage_bytes = kCells * (kp + vp);
  const int n_tiles = (r.c_end - r.c_begin + kCells - 1) / kCells;
  auto issue = [&](int tile) {
    char* st = stages + (tile % kStages) * stage_bytes;
    const int first = r.c_begin + tile * kCells;
    copy_rows(width, st, kp, r.k_base, a.k.nb[1], int(a.k_head_bytes), first, r.c_end - 1);
    copy_rows(width, st + kCells * kp, vp, r.v_base, a.v.nb[1], vp, first, r.c_end - 1);
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < n_tiles) issue(s);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  }

  // The B fragments (Q^T, dims x heads): this lane holds head g of the tile (zeros past ng).
  const float* qp = g < r.ng ? reinterpret_cast<const float*>(row_ptr(a.q, r.kvh * a.group + r.g0 + g, r.t)) : nullptr;
  const bool bf = a.kf == Fmt::bf16;
  uint32_t qb[INT8 ? 2 * NB : 4 * NB];
  float dq[2 * NB];  // INT8: the query scales of heads 2t and 2t + 1, per block
  if constexpr (INT8) {
    // Dims 4t..4t+3 and 16+4t..16+4t+3 of each block: the lanes of a row group cover it, so the
    // block's maximum is theirs; quantized as round_query does.
#pragma unroll
    for (int bl = 0; bl < NB; ++bl) {
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
      qb[2 * bl] = pack_s8(qi[0], qi[1], qi[2], qi[3]);
      qb[2 * bl + 1] = pack_s8(qi[4], qi[5], qi[6], qi[7]);
      const float ds = round_f16(d);
      dq[2 * bl] = __shfl_sync(0xffffffffu, ds, (2 * t) * 4);
      dq[2 * bl + 1] = __shfl_sync(0xffffffffu, ds, (2 * t + 1) * 4);
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

  // Running state: maxima and (partial, this lane's cells) sums of heads 2t and 2t + 1; the
  // output dims [lane * EP, lane * EP + EP) of all 8 heads.
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0, l1 = 0;
  float acc[kHeads][EP];
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
#pragma unroll
    for (int e = 0; e < EP; ++e) acc[h][e] = 0;
  }
  for (int it = 0; it < n_tiles; ++it) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 2) : "memory");
    __syncthreads();  // tile `it` is visible to all; the buffer of tile it - 1 is free
    if (it + kStages - 1 < n_tiles) issue(it + kStages - 1);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
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
    if (g == 0) *reinterpret_cast<float2*>(&sm_corr[warp][2 * t]) = make_float2(cr0, cr1);
    __syncwarp();

    // p * V: this lane's dims of every head.
    {
      const float4 ca = *reinterpret_cast<const float4*>(&sm_corr[warp][0]);
      const float4 cb = *reinterpret_cast<const float4*>(&sm_corr[warp][4]);
      const float corr[kHeads] = {ca.x, ca.y, ca.z, ca.w, cb.x, cb.y, cb.z, cb.w};
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
#pragma unroll
        for (int e = 0; e < EP; ++e) acc[h][e] *= corr[h];
      }
    }
#pragma unroll 4
    for (int c = 0; c < 16; ++c) {
      float vx[EP];
      load_lane<EP>(VF, vw + c * vp, lane, vx);
      const float4 pa = *reinterpret_cast<const float4*>(&sm_p[warp][c][0]);
      const float4 pb = *reinterpret_cast<const float4*>(&sm_p[warp][c][4]);
      const float p[kHeads] = {pa.x, pa.y, pa.z, pa.w, pb.x, pb.y, pb.z, pb.w};
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
#pragma unroll
        for (int e = 0; e < EP; ++e) acc[h][e] += p[h] * vx[e];
      }
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  __syncthreads();  // the stages are reused below for the warps' accumulators

  // The warps' states meet in shared memory; threads then take (head, dim) pairs.
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
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
#pragma unroll
    for (int e = 0; e < EP; ++e) sm_acc[(warp * kHeads + h) * dv + lane * EP + e] = acc[h][e];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < r.ng * dv; i += blockDim.x) {
    const int hh = i / dv, dd = i % dv;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w][hh]);
    float l = 0, o = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float wt = sm_m[w][hh] == -INFINITY ? 0.0f : expf(sm_m[w][hh] - mx);
      l += sm_l[w][hh] * wt;
      o += sm_acc[(w * kHeads + hh) * dv + dd] * wt;
    }
    const int h = r.kvh * a.group + r.g0 + hh;
    if (a.partials) {
      float* pp = a.partials + ((int64_t(r.t) * a.n_head + h) * a.n_splits + r.split) * (2 + dv);
      if (dd == 0) {
        pp[0] = mx;
        pp[1] = l;
      }
      pp[2 + dd] = o;
    } else {
      reinterpret_cast<float*>(row_ptr(a.dst, h, r.t))[dd] = o / l;
    }
  }
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
  const size_t stage_bytes = size_t(kCells) * size_t(k_pitch(a.k_head_bytes) + a.v_head_bytes);
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
