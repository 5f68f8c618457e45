// Flash attention for prefill-sized steps on tensor cores (mma.sync m16n8k16, 16-bit inputs, f32
// accumulators), online softmax per query row.
// A block takes kBM query rows of one KV head: the rows are (token, head) pairs, the heads of a
// GQA group side by side, so each K/V tile in shared memory serves every head of the group.
// Per K/V tile of kBN cells: the block dequantizes K and V into shared memory (f16; BF16 caches
// stay bf16, so their values are exact), each warp computes its 16 rows' scores S = Q K^T from
// ldmatrix fragments, masks cells past each row's position or of another sequence, rescales its
// running output, and adds P V with P taken straight from the score registers.
// Numerics against the reference's flash path: Q is rounded to K's dot type as there (then held
// in f16, or bf16 for a BF16 K); products of 16-bit values are exact in the f32 accumulators;
// the softmax weights P are rounded to V's 16-bit type before P V (the row sums use the rounded
// weights), and Q8_0/Q4_0 elements are rounded to f16 once dequantized: a few units of the
// 16-bit type's rounding in the output (see test_cuda_attention.cpp).
// The tokens of a block may belong to several sequences: the block walks each one's cells in turn
// with the rows of the other sequences masked.
#include "backend/cuda/cp_async.cuh"
#include "backend/cuda/cuda_attention.cuh"

namespace moeserve::cuda::attn {
namespace {

constexpr int kWarps = 4;
constexpr int kBM = 16 * kWarps;  // query rows per block
constexpr int kBN = 64;           // cells per K/V tile

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// d += a * b (a 16x16 row-major, b 16x8 k x n), f16 (BF = false) or bf16 inputs.
template <bool BF>
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (BF) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats as a 16-bit pair (x in the low half), and the value a float takes in that type.
template <bool BF>
__device__ __forceinline__ uint32_t pack2(float x, float y) {
  if constexpr (BF) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}
template <bool BF>
__device__ __forceinline__ float round16(float x) {
  return BF ? round_bf16(x) : round_f16(x);
}

// Elements [e0, e0 + 8) of a row (e0 a multiple of 8) as 16-bit values, one 16-byte store:
// F16/BF16 rows are copied (the staged rows are 16-byte aligned), Q8_0/Q4_0 dequantized to f16
// (their blocks are 2-byte aligned: 16-bit loads).
__device__ __forceinline__ void load8(Fmt f, const char* row, int e0, uint16_t* dst) {
  if (f == Fmt::f16 || f == Fmt::bf16) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(row + 2 * e0);
    return;
  }
  const bool q8 = f == Fmt::q8_0;
  const char* b = row + (e0 / kQK) * (q8 ? kQ8Bytes : kQ4Bytes);
  const float d = half_at(b);
  const int j0 = e0 % kQK;
  const uint16_t* qs = reinterpret_cast<const uint16_t*>(b + 2 + (q8 ? j0 : j0 % 16));
  const int shift = j0 < 16 ? 0 : 4;
  uint32_t out[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const uint32_t w = qs[e];
    float x, y;
    if (q8) {
      x = float(int8_t(w & 0xFF));
      y = float(int8_t(w >> 8));
    } else {
      x = float(int((w >> shift) & 0xF) - 8);
      y = float(int((w >> (8 + shift)) & 0xF) - 8);
    }
    out[e] = pack2<false>(x * d, y * d);
  }
  *reinterpret_cast<uint4*>(dst) = make_uint4(out[0], out[1], out[2], out[3]);
}

// Copies kBN rows of `row_bytes` (global rows `stride` apart; row r is cell min(c0 + r, last), so
// cells past the range repeat a valid row and masked cells hold finite values) into consecutive
// shared rows, in cp.async pieces of W = 16 or 4 bytes.
template <int W>
__device__ __forceinline__ void stage_rows(char* dst, const char* base, int64_t stride, int row_bytes, int c0, int last) {
  const int per_row = row_bytes / W;
  for (int i = threadIdx.x; i < kBN * per_row; i += 32 * kWarps) {
    const int r = i / per_row, c = i % per_row;
    const char* src = base + int64_t(min(c0 + r, last)) * stride + c * W;
    cp_async<W>(dst + r * row_bytes + c * W, src);
  }
  cp_async_commit();
}

// The staged rows of a tile, dequantized into a tile of pitch P 16-bit elements.
template <int D, int P>
__device__ __forceinline__ void fill_tile(Fmt f, uint16_t* tile, const char* raw, int row_bytes) {
  constexpr int kChunks = D / 8;
#pragma unroll 4
  for (int i = threadIdx.x; i < kBN * kChunks; i += 32 * kWarps) {
    const int r = i / kChunks, e0 = (i % kChunks) * 8;
    load8(f, raw + r * row_bytes, e0, tile + r * P + e0);
  }
}

// Grid: (token tiles, KV heads). K/V bytes of the next tile are in flight (cp.async, raw) while
// the warps compute on the current one; each tile is dequantized from its staged bytes into the
// 16-bit tiles the mma reads.
template <bool KB, bool VB, int D, int W>
__global__ void __launch_bounds__(32 * kWarps) attention_mma_kernel(AttnArgs a) {
  constexpr int P = D + 8;  // tile pitch: rows an odd number of 16-byte units apart (ldmatrix)
  constexpr int kNt = D / 8;
  extern __shared__ __align__(16) uint16_t smem[];
  uint16_t* qs = smem;
  uint16_t* ks = qs + kBM * P;
  uint16_t* vs = ks + kBN * P;
  char* raw_k = reinterpret_cast<char*>(vs + kBN * P);
  const int kb = int(a.k_head_bytes), vb = int(a.v_head_bytes);
  char* raw_v = raw_k + kBN * kb;
  __shared__ int row_pos[kBM], row_seq[kBM], list_seq[kBM], list_end[kBM];
  __shared__ int n_list;
  pdl_wait();
  pdl_trigger();
  const int group = a.group, tokens = kBM / group;
  const int t0 = blockIdx.x * tokens, kvh = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  for (int r = threadIdx.x; r < kBM; r += blockDim.x) {
    const int tl = r / group, t = t0 + tl;
    const bool ok = tl < tokens && t < a.n_tokens;
    row_pos[r] = ok ? a.batch.pos[t] : -1;
    row_seq[r] = ok ? a.batch.seq[t] : -1;
  }
  // Q rounded to K's dot type: a warp per row, all of the row's loads in flight at once.
  for (int r = warp; r < kBM; r += kWarps) {
    const int tl = r / group, t = t0 + tl;
    float x[D / 32];
    if (tl < tokens && t < a.n_tokens) {  // warp-uniform
      const float* qp = reinterpret_cast<const float*>(row_ptr(a.q, kvh * group + r % group, t));
#pragma unroll
      for (int b = 0; b < D / 32; ++b) x[b] = qp[b * 32 + lane];
#pragma unroll
      for (int b = 0; b < D / 32; ++b) x[b] = round_query(a.kf, x[b]);
    } else {
#pragma unroll
      for (int b = 0; b < D / 32; ++b) x[b] = 0;
    }
#pragma unroll
    for (int b = 0; b < D / 32; ++b) {
      qs[r * P + b * 32 + lane] =
          KB ? __bfloat16_as_ushort(__float2bfloat16_rn(x[b])) : __half_as_ushort(__float2half_rn(x[b]));
    }
  }
  __syncthreads();
  // The sequences of the block's tokens and the end of the cells each needs.
  if (threadIdx.x == 0) {
    int n = 0;
    for (int tl = 0; tl < tokens; ++tl) {
      const int s = row_seq[tl * group], end = row_pos[tl * group] + 1;
      if (s < 0) break;
      int j = 0;
      while (j < n && list_seq[j] != s) ++j;
      if (j == n) {
        list_seq[n] = s;
        list_end[n++] = end;
      } else {
        list_end[j] = max(list_end[j], end);
      }
    }
    n_list = n;
  }
  __syncthreads();
  const int n_seqs = n_list;

  const int r0 = warp * 16, gq = lane >> 2, tq = lane & 3;
  const int rpos[2] = {row_pos[r0 + gq], row_pos[r0 + gq + 8]};
  const int rseq[2] = {row_seq[r0 + gq], row_seq[r0 + gq + 8]};
  float o[kNt][4];
#pragma unroll
  for (int n = 0; n < kNt; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[n][e] = 0;
  }
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0, 0};
  const uint16_t* q_frag = qs + (r0 + (lane & 7) + 8 * ((lane >> 3) & 1)) * P + 8 * (lane >> 4);
  const uint16_t* k_frag = ks + (8 * (lane >> 4) + (lane & 7)) * P + 8 * ((lane >> 3) & 1);
  const uint16_t* v_frag = vs + ((lane & 7) + 8 * ((lane >> 3) & 1)) * P + 8 * (lane >> 4);

  // Tiles in order: each listed sequence's cells [0, end) in steps of kBN.
  const auto stage = [&](int li, int c0) {
    const int s = list_seq[li], last = list_end[li] - 1;
    stage_rows<W>(raw_k, a.k.data + int64_t(s) * a.k.nb[2] + kvh * a.k_head_bytes, a.k.nb[1], kb, c0, last);
    stage_rows<W>(raw_v, a.v.data + int64_t(s) * a.v.nb[2] + kvh * a.v_head_bytes, a.v.nb[1], vb, c0, last);
  };
  int li = 0, c0 = 0;
  if (n_seqs > 0) stage(0, 0);
  while (li < n_seqs) {
    cp_async_wait<0>();
    __syncthreads();  // the staged bytes are visible; the previous tile's 16-bit tiles are consumed
    fill_tile<D, P>(a.kf, ks, raw_k, kb);
    fill_tile<D, P>(a.vf, vs, raw_v, vb);
    __syncthreads();  // the 16-bit tiles are ready, the staging buffer is free
    int next_li = li, next_c0 = c0 + kBN;
    if (next_c0 >= list_end[li]) {
      ++next_li;
      next_c0 = 0;
    }
    if (next_li < n_seqs) stage(next_li, next_c0);

    const int s = list_seq[li];
    const bool active = (rseq[0] == s && rpos[0] >= c0) || (rseq[1] == s && rpos[1] >= c0);
    if (__any_sync(0xffffffffu, active)) {
      float sc[kBN / 8][4];
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) sc[j][e] = 0;
      }
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t af[4];
        ldmatrix_x4(af, q_frag + kk * 16);
#pragma unroll
        for (int j = 0; j < kBN / 8; j += 2) {
          uint32_t bf[4];
          ldmatrix_x4(bf, k_frag + j * 8 * P + kk * 16);
          mma<KB>(sc[j], af, bf[0], bf[1]);
          mma<KB>(sc[j + 1], af, bf[2], bf[3]);
        }
      }
      // Scale and mask (past the row's position, or another sequence); the tile's row maxima (a
      // row's values sit in the 4 lanes of a quad).
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = e >> 1, cell = c0 + 8 * j + 2 * tq + (e & 1);
          const float v = rseq[i] == s && cell <= rpos[i] ? sc[j][e] * a.scale : -INFINITY;
          sc[j][e] = v;
          mx[i] = fmaxf(mx[i], v);
        }
      }
      float corr[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        const float m_new = fmaxf(m_run[i], mx[i]);
        corr[i] = m_new == -INFINITY ? 1.0f : expf(m_run[i] - m_new);  // 0 while nothing came before
        m_run[i] = m_new;
        l_run[i] *= corr[i];
      }
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = e >> 1;
          const float p = sc[j][e] == -INFINITY ? 0.0f : round16<VB>(expf(sc[j][e] - m_run[i]));
          sc[j][e] = p;
          l_run[i] += p;
        }
      }
#pragma unroll
      for (int n = 0; n < kNt; ++n) {
        o[n][0] *= corr[0];
        o[n][1] *= corr[0];
        o[n][2] *= corr[1];
        o[n][3] *= corr[1];
      }
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        const uint32_t pa[4] = {pack2<VB>(sc[2 * kk][0], sc[2 * kk][1]), pack2<VB>(sc[2 * kk][2], sc[2 * kk][3]),
                                pack2<VB>(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                                pack2<VB>(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
        for (int n = 0; n < kNt; n += 2) {
          uint32_t bf[4];
          ldmatrix_x4_trans(bf, v_frag + kk * 16 * P + n * 8);
          mma<VB>(o[n], pa, bf[0], bf[1]);
          mma<VB>(o[n + 1], pa, bf[2], bf[3]);
        }
      }
    }
    li = next_li;
    c0 = next_c0;
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l_run[i] += __shfl_xor_sync(0xffffffffu, l_run[i], 1);
    l_run[i] += __shfl_xor_sync(0xffffffffu, l_run[i], 2);
    const int r = r0 + gq + 8 * i;
    if (rseq[i] < 0) continue;
    float* out = reinterpret_cast<float*>(row_ptr(a.dst, kvh * group + r % group, t0 + r / group));
#pragma unroll
    for (int n = 0; n < kNt; ++n) {
      out[8 * n + 2 * tq] = o[n][2 * i] / l_run[i];
      out[8 * n + 2 * tq + 1] = o[n][2 * i + 1] / l_run[i];
    }
  }
}

template <bool KB, bool VB, int D, int W>
void launch(const AttnArgs& a, cudaStream_t stream) {
  const size_t smem =
      size_t(kBM + 2 * kBN) * (D + 8) * sizeof(uint16_t) + size_t(kBN) * size_t(a.k_head_bytes + a.v_head_bytes);
  if (smem > 48 * 1024) {  // past the default, a kernel has to ask (per device, so every time)
    MOESERVE_CUDA_CHECK(cudaFuncSetAttribute(attention_mma_kernel<KB, VB, D, W>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  }
  const int tokens = kBM / a.group;
  const dim3 grid(unsigned((a.n_tokens + tokens - 1) / tokens), unsigned(a.n_head / a.group));
  launch_pdl(attention_mma_kernel<KB, VB, D, W>, grid, 32 * kWarps, smem, stream, a);
}

template <bool KB, bool VB, int W>
void launch_dim(const AttnArgs& a, cudaStream_t stream) {
  if (a.dk == 64) launch<KB, VB, 64, W>(a, stream);
  else if (a.dk == 128) launch<KB, VB, 128, W>(a, stream);
  else launch<KB, VB, 256, W>(a, stream);
}

template <int W>
void launch_types(const AttnArgs& a, cudaStream_t stream) {
  const bool kb = a.kf == Fmt::bf16, vb = a.vf == Fmt::bf16;
  if (kb && vb) launch_dim<true, true, W>(a, stream);
  else if (kb) launch_dim<true, false, W>(a, stream);
  else if (vb) launch_dim<false, true, W>(a, stream);
  else launch_dim<false, false, W>(a, stream);
}

// The cp.async piece every staged row allows: the caches' bases, row and sequence strides and
// head offsets are multiples of it (0: not even 4 bytes).
int stage_width(const AttnArgs& a) {
  const uint64_t bits = reinterpret_cast<uint64_t>(a.k.data) | reinterpret_cast<uint64_t>(a.v.data) |
                        uint64_t(a.k.nb[1]) | uint64_t(a.k.nb[2]) | uint64_t(a.v.nb[1]) | uint64_t(a.v.nb[2]) |
                        uint64_t(a.k_head_bytes) | uint64_t(a.v_head_bytes);
  return (bits & 15u) == 0 ? 16 : (bits & 3u) == 0 ? 4 : 0;
}

}  // namespace

bool mma_supported(const AttnArgs& a) {
  // F32 caches keep the CUDA-core kernels: their products stay in f32, as the full-precision
  // format asks.
  return a.round_q && a.dk == a.dv && (a.dk == 64 || a.dk == 128 || a.dk == 256) && a.group <= kBM &&
         a.kf != Fmt::f32 && a.vf != Fmt::f32 && stage_width(a) != 0;
}

void launch_attention_mma(const AttnArgs& a, cudaStream_t stream) {
  if (stage_width(a) == 16) launch_types<16>(a, stream);
  else launch_types<4>(a, stream);
}

}  // namespace moeserve::cuda::attn
