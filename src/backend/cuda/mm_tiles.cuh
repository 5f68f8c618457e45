// Tensor-core tiles for prefill products (dense weights x many columns, routed experts x their
// gathered tokens), software-pipelined:
// * the weight rows' raw bytes (any quantized type) go global -> shared with cp.async, one
//   "macro step" ahead (64 elements, or one 256-element super-block for the k- and i-quants);
// * each 64-wide k-step dequantizes its slice from shared memory into an f16 tile (the chunk
//   decoders of dequant.cuh, exact; one f16 rounding), while the next step's bytes are in flight;
// * activations are f16 columns prepared once per product (zero-padded to a multiple of 64), and
//   go to double-buffered shared tiles with cp.async;
// * mma.sync m16n8k16 (f16 in, f32 accumulate) from ldmatrix fragments.
// A block computes BM weight rows (per part; P = 2 parts share the columns: the experts' gate and
// up rows) x BN columns, with WM x WN warps.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/dequant.cuh"

namespace moeserve::cuda {

// ---- PTX wrappers -------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// 16 bytes global -> shared; only the first `src_bytes` (1..16) are read, the rest zero-filled.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p))
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(p))
               : "memory");
}

// d += a * b: a 16x16 (row-major), b 16x8 (k x n, "col"), f16 inputs, f32 accumulators.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// ---- shapes -----------------------------------------------------------------------------------------
inline constexpr int kStepK = 64;           // elements per k-step (one f16 tile)
inline constexpr int kLdH = kStepK + 8;     // f16 tile row pitch: 144 bytes, ldmatrix rows hit distinct banks

inline constexpr int64_t round_up64(int64_t v) { return (v + kStepK - 1) / kStepK * kStepK; }

template <int BM, int BN, int WM, int WN>
struct TileCfg {
  static constexpr int kBM = BM, kBN = BN, kWM = WM, kWN = WN;
  static constexpr int kThreads = 32 * WM * WN;
  static constexpr int kFm = BM / WM / 16;  // m16 fragments per warp (per part)
  static constexpr int kFn = BN / WN / 8;   // n8 fragments per warp
  static_assert(kFm >= 1 && kFn >= 1 && BM % (16 * WM) == 0 && BN % (8 * WN) == 0);
  static_assert(kFn == 1 || kFn % 2 == 0);
};

// Raw weight bytes per row and macro step: whole blocks, at least one k-step.
template <GgmlType T>
struct RawSpan {
  using D = Dq<T>;
  static constexpr int kElems = D::kQk > kStepK ? D::kQk : kStepK;  // elements per macro step
  static constexpr int kSub = kElems / kStepK;                        // k-steps per macro step
  static constexpr int kSpan = kElems / D::kQk * D::kBytes;          // bytes of one row per macro step
  // The span starts anywhere in a 16-byte granule; the copy takes whole granules.
  static constexpr int kRowBytes = 16 * ((kSpan + 30) / 16);
  static_assert(kElems % kStepK == 0 && kElems % D::kQk == 0);
};

// Dynamic shared memory of one block: two raw stages, the f16 weight tile, two f16 column tiles.
template <GgmlType T, int P, class Cfg>
constexpr size_t tile_smem_bytes() {
  return size_t(2 * P * Cfg::kBM * RawSpan<T>::kRowBytes) + size_t(P * Cfg::kBM * kLdH * 2) +
         size_t(2 * Cfg::kBN * kLdH * 2);
}

// The whole-k product of one tile. rows: P * BM weight row pointers in shared memory (null: past
// the end, zeros), each row_len bytes of k elements; cols: BN f16 column pointers in shared
// memory (null: no column; zeros), each zero-padded to round_up64(k). On return the caller gets
// epi(r, c, v) for every r < BM, c < BN, with v[p] the product of part p's row r and column c.
// Starts with a barrier, so the caller may fill rows/cols right before.
template <GgmlType T, int P, class Cfg, class Epi>
__device__ __forceinline__ void tile_gemm(unsigned char* smem, const uint8_t* const* rows, const __half* const* cols,
                                          int64_t row_len, int64_t k, Epi&& epi) {
  using D = Dq<T>;
  using R = RawSpan<T>;
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN, NT = Cfg::kThreads, AR = P * BM;
  constexpr int FM = Cfg::kFm, FN = Cfg::kFn;
  // Buffers picked by arithmetic (a run-time index into an array of pointers would go to local memory).
  auto stage = [&](int64_t i) { return smem + (i & 1) * (AR * R::kRowBytes); };
  __half* a_tile = reinterpret_cast<__half*>(smem + 2 * AR * R::kRowBytes);
  auto b_tile = [&](int64_t i) { return a_tile + AR * kLdH + (i & 1) * (BN * kLdH); };
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / Cfg::kWN, wn = warp % Cfg::kWN;

  __syncthreads();  // rows / cols filled by the caller
  // Columns that do not exist stay zero in both buffers (never copied into).
  for (int idx = tid; idx < BN * (kStepK / 8); idx += NT) {
    const int j = idx / (kStepK / 8), g = idx % (kStepK / 8);
    if (!cols[j]) {
      *reinterpret_cast<uint4*>(b_tile(0) + j * kLdH + 8 * g) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(b_tile(1) + j * kLdH + 8 * g) = make_uint4(0, 0, 0, 0);
    }
  }

  const int64_t n_steps = (k + kStepK - 1) / kStepK;
  const int64_t n_macro = (n_steps + R::kSub - 1) / R::kSub;

  auto issue_raw = [&](int64_t ms, unsigned char* st) {
    constexpr int G = R::kRowBytes / 16;
    for (int idx = tid; idx < AR * G; idx += NT) {
      const int r = idx / G, g = idx % G;
      const uint8_t* row = rows[r];
      if (!row) continue;
      const uint8_t* first = reinterpret_cast<const uint8_t*>(
          reinterpret_cast<uintptr_t>(row + ms * R::kSpan) & ~uintptr_t(15));
      const uint8_t* src = first + 16 * g;
      const int64_t left = row + row_len - src;  // bytes of the row from this granule on
      if (left > 0) cp_async16(st + r * R::kRowBytes + 16 * g, src, left >= 16 ? 16 : int(left));
    }
  };
  auto issue_b = [&](int64_t kt, __half* bt) {
    for (int idx = tid; idx < BN * (kStepK / 8); idx += NT) {
      const int j = idx / (kStepK / 8), g = idx % (kStepK / 8);
      const __half* col = cols[j];
      if (col) cp_async16(bt + j * kLdH + 8 * g, col + kt * kStepK + 8 * g, 16);
    }
  };
  // k-step kt of macro step ms (sub-step sub) from its raw stage into the f16 weight tile.
  auto dequant = [&](const unsigned char* st, int64_t ms, int sub) {
    constexpr int kChunksPerBlock = D::kQk / 8;
    for (int idx = tid; idx < AR * (kStepK / 8); idx += NT) {
      const int r = idx / (kStepK / 8), ch = idx % (kStepK / 8);
      const int lc = sub * (kStepK / 8) + ch;                // chunk within the macro step
      const int64_t c = ms * (R::kElems / 8) + lc;             // chunk within the row
      float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      const uint8_t* row = rows[r];
      if (row && 8 * c < k) {
        const int off = int(reinterpret_cast<uintptr_t>(row + ms * R::kSpan) & 15);
        const uint8_t* b = st + r * R::kRowBytes + off + (lc / kChunksPerBlock) * D::kBytes;
        if constexpr (D::kPlain) {
          D::chunk(b, 0, v, k - 8 * c < 8 ? int(k - 8 * c) : 8);
        } else {
          D::chunk(b, lc % kChunksPerBlock, v);
        }
      }
      __align__(16) __half2 h[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
      *reinterpret_cast<uint4*>(a_tile + r * kLdH + 8 * ch) = *reinterpret_cast<const uint4*>(h);
    }
  };

  float acc[P][FM][FN][4];
#pragma unroll
  for (int p = 0; p < P; ++p)
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < FN; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[p][i][j][q] = 0.0f;

  issue_raw(0, stage(0));
  issue_b(0, b_tile(0));
  cp_async_commit();
  cp_async_commit();
  // Two commit groups per k-step: (next columns [+ next raw stage when a macro step is one
  // k-step]) then (next raw stage when it is several). wait_group 1 leaves only the newest group
  // in flight, so a raw stage fetched at sub-step 0 of a long macro step overlaps all its sub-steps.
  for (int64_t kt = 0; kt < n_steps; ++kt) {
    cp_async_wait<1>();
    __syncthreads();  // this step's operands landed everywhere; every warp is done with the last step
    const int64_t ms = kt / R::kSub;
    const int sub = int(kt % R::kSub);
    const bool raw_next = sub == 0 && ms + 1 < n_macro;
    if (kt + 1 < n_steps) issue_b(kt + 1, b_tile(kt + 1));
    if (R::kSub == 1 && raw_next) issue_raw(ms + 1, stage(ms + 1));
    cp_async_commit();
    if (R::kSub > 1 && raw_next) issue_raw(ms + 1, stage(ms + 1));
    cp_async_commit();
    dequant(stage(ms), ms, sub);
    __syncthreads();
    const __half* bt = b_tile(kt);
#pragma unroll
    for (int kk = 0; kk < kStepK; kk += 16) {
      uint32_t bf[FN][2];
      if constexpr (FN == 1) {
        ldmatrix_x2(bf[0], bt + (wn * 8 + lane % 8) * kLdH + kk + ((lane / 8) % 2) * 8);
      } else {
#pragma unroll
        for (int jj = 0; jj < FN / 2; ++jj) {
          uint32_t r4[4];
          ldmatrix_x4(r4, bt + (wn * FN * 8 + jj * 16 + (lane / 16) * 8 + lane % 8) * kLdH + kk + ((lane / 8) % 2) * 8);
          bf[2 * jj][0] = r4[0];
          bf[2 * jj][1] = r4[1];
          bf[2 * jj + 1][0] = r4[2];
          bf[2 * jj + 1][1] = r4[3];
        }
      }
#pragma unroll
      for (int p = 0; p < P; ++p) {
#pragma unroll
        for (int i = 0; i < FM; ++i) {
          uint32_t af[4];
          ldmatrix_x4(af, a_tile + (p * BM + wm * FM * 16 + i * 16 + lane % 16) * kLdH + kk + (lane / 16) * 8);
#pragma unroll
          for (int j = 0; j < FN; ++j) mma_16816(acc[p][i][j], af, bf[j]);
        }
      }
    }
  }
  cp_async_wait<0>();

  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        float v[P];
#pragma unroll
        for (int p = 0; p < P; ++p) v[p] = acc[p][i][j][q];
        epi(wm * FM * 16 + i * 16 + g + (q >= 2 ? 8 : 0), wn * FN * 8 + j * 8 + 2 * t + (q & 1), v);
      }
}

}  // namespace moeserve::cuda
