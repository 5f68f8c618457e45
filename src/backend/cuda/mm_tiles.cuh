// Tensor-core tiles for prefill products (dense weights x many columns, routed experts x their
// gathered tokens), software-pipelined:
// * the weight rows' raw bytes (any quantized type) go global -> shared with cp.async, one
//   "macro step" ahead (64 elements, or one 256-element super-block for the k- and i-quants);
// * each 64-wide k-step dequantizes its slice from shared memory into an f16 tile (the chunk
//   decoders of dequant.cuh, exact, then one f16 rounding; the grid i-quants straight to the same
//   f16 values), while the next step's bytes are in flight;
// * activations are f16 columns prepared once per product (zero-padded to a multiple of 64), and
//   go to double-buffered shared tiles with cp.async;
// * mma.sync m16n8k16 (f16 in, f32 accumulate) from ldmatrix fragments.
// A block computes BM weight rows (per part; P = 2 parts share the columns: the experts' gate and
// up rows) x BN columns, with WM x WN warps.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/cp_async.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dequant.cuh"

namespace moeserve::cuda {

// ---- PTX wrappers (cp.async in cp_async.cuh) --------------------------------------------------------
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

// ---- grid i-quants straight to f16 -----------------------------------------------------------------
// The usual expert types (IQ2_XXS, IQ2_XS, IQ3_XXS): value = d * s * (+-m), s = (2 ls + 1) / 8 (or
// / 4), m a grid byte below 64. In f16: the bits 0x6400 | m are 1024 + m; one fma with s and
// -1024 s gives m * s exactly (at most 11 significant bits), the sign is a bit flip, and one f16
// multiply by d rounds the exact product d * s * m once. The f32 chunk decoder computes the same
// exact product (at most 22 bits) and the tile rounds it to f16 once, so both give the same f16,
// here with two f16x2 operations per pair of values instead of an int-to-float conversion per
// value, and with the grid and sign tables in shared memory (the grid lookups are scattered).
__device__ __forceinline__ uint32_t h2_bits(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ __half2 bits_h2(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }

// 8 values from the magnitude bytes of w0 (values 0-3) and w1 (4-7); sign_bits: the f16x2 sign
// masks of the four pairs.
__device__ __forceinline__ uint4 grid8_f16(uint32_t w0, uint32_t w1, int scale_num, float scale_inv, uint16_t d_bits,
                                           const uint4& sign_bits) {
  const __half s = __float2half_rn(float(scale_num) * scale_inv);  // exact: 5 significant bits
  const __half2 s2 = __half2half2(s), off2 = __half2half2(__hmul(s, __float2half_rn(-1024.0f)));
  const __half2 d2 = __half2half2(__ushort_as_half(d_bits));
  auto pair = [&](uint32_t w, uint32_t sel, uint32_t sign) {
    const __half2 ms = __hfma2(bits_h2(__byte_perm(w, 0x64646464u, sel)), s2, off2);
    return h2_bits(__hmul2(bits_h2(h2_bits(ms) ^ sign), d2));
  };
  return make_uint4(pair(w0, 0x4140, sign_bits.x), pair(w0, 0x4342, sign_bits.y), pair(w1, 0x4140, sign_bits.z),
                    pair(w1, 0x4342, sign_bits.w));
}

// The 128 sign patterns (ksigns_iq2xs) as f16x2 sign masks of four pairs.
__device__ __forceinline__ void fill_sign_masks(unsigned char* t, int tid, int nt) {
  for (int i = tid; i < 128; i += nt) {
    const uint32_t sg = d_ksigns_iq2xs.v[i];
    uint32_t w[4];
#pragma unroll
    for (int p = 0; p < 4; ++p) w[p] = ((sg >> (2 * p)) & 1u) << 15 | ((sg >> (2 * p + 1)) & 1u) << 31;
    reinterpret_cast<uint4*>(t)[i] = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

template <GgmlType T>
struct FastDq {
  static constexpr bool kOn = false;
  static constexpr int kTableBytes = 0;
};
template <>
struct FastDq<GgmlType::IQ2_XS> {
  static constexpr bool kOn = true;
  static constexpr int kGrid = 512 * 8, kTableBytes = kGrid + 128 * 16;
  __device__ static void fill(unsigned char* t, int tid, int nt) {
    for (int i = tid; i < 512; i += nt) reinterpret_cast<uint64_t*>(t)[i] = d_iq2xs_grid.v[i];
    fill_sign_masks(t + kGrid, tid, nt);
  }
  __device__ static uint4 decode(const uint8_t* b, int j, const unsigned char* t) {  // as Dq<IQ2_XS>
    const int ib = j / 4, l = j % 4;
    const uint16_t q = ld16(b + 2 + 2 * j);
    const int ls = (b[66 + ib] >> (4 * (l / 2))) & 0xF;
    const uint64_t e = reinterpret_cast<const uint64_t*>(t)[q & 511];
    return grid8_f16(uint32_t(e), uint32_t(e >> 32), 2 * ls + 1, 0.125f, ld16(b),
                     reinterpret_cast<const uint4*>(t + kGrid)[q >> 9]);
  }
};
template <>
struct FastDq<GgmlType::IQ2_XXS> {
  static constexpr bool kOn = true;
  static constexpr int kGrid = 256 * 8, kTableBytes = kGrid + 128 * 16;
  __device__ static void fill(unsigned char* t, int tid, int nt) {
    for (int i = tid; i < 256; i += nt) reinterpret_cast<uint64_t*>(t)[i] = d_iq2xxs_grid.v[i];
    fill_sign_masks(t + kGrid, tid, nt);
  }
  __device__ static uint4 decode(const uint8_t* b, int j, const unsigned char* t) {  // as Dq<IQ2_XXS>
    const int ib = j / 4, l = j % 4;
    const uint8_t* g = b + 2 + 8 * ib;
    const uint32_t aux = ld32_2(g + 4);
    const uint64_t e = reinterpret_cast<const uint64_t*>(t)[g[l]];
    return grid8_f16(uint32_t(e), uint32_t(e >> 32), int(2 * (aux >> 28) + 1), 0.125f, ld16(b),
                     reinterpret_cast<const uint4*>(t + kGrid)[(aux >> (7 * l)) & 127]);
  }
};
template <>
struct FastDq<GgmlType::IQ3_XXS> {
  static constexpr bool kOn = true;
  static constexpr int kGrid = 256 * 4, kTableBytes = kGrid + 128 * 16;
  __device__ static void fill(unsigned char* t, int tid, int nt) {
    for (int i = tid; i < 256; i += nt) reinterpret_cast<uint32_t*>(t)[i] = d_iq3xxs_grid.v[i];
    fill_sign_masks(t + kGrid, tid, nt);
  }
  __device__ static uint4 decode(const uint8_t* b, int j, const unsigned char* t) {  // as Dq<IQ3_XXS>
    const int ib = j / 4, l = j % 4;
    const uint8_t* qs = b + 2;
    const uint32_t aux = ld32_2(qs + 64 + 4 * ib);
    const uint32_t* grid = reinterpret_cast<const uint32_t*>(t);
    return grid8_f16(grid[qs[8 * ib + 2 * l]], grid[qs[8 * ib + 2 * l + 1]], int(2 * (aux >> 28) + 1), 0.25f, ld16(b),
                     reinterpret_cast<const uint4*>(t + kGrid)[(aux >> (7 * l)) & 127]);
  }
};

// Dynamic shared memory of one block: decode tables, two raw stages, the f16 weight tile, two f16
// column tiles.
template <GgmlType T, int P, class Cfg>
constexpr size_t tile_smem_bytes() {
  return size_t(FastDq<T>::kTableBytes) + size_t(2 * P * Cfg::kBM * RawSpan<T>::kRowBytes) +
         size_t(P * Cfg::kBM * kLdH * 2) + size_t(2 * Cfg::kBN * kLdH * 2);
}

// Host side, before a launch of a tile kernel with `dynamic` bytes of dynamic shared memory on the
// current device: whether it fits (with the kernel's static shared memory; an RTX 4090 allows
// 99 KB per block, an H100 227 KB), and raising the kernel's limit to it (above 48 KB a kernel
// needs that; the attribute belongs to the device, so it is set at every launch).
template <class K>
bool tile_smem_fits(K kernel, size_t dynamic) {
  int dev = 0, optin = 0;
  MOESERVE_CUDA_CHECK(cudaGetDevice(&dev));
  MOESERVE_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  cudaFuncAttributes attr{};
  MOESERVE_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  return attr.sharedSizeBytes + dynamic <= size_t(optin);
}
template <class K>
void raise_tile_smem(K kernel, size_t dynamic) {
  MOESERVE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(dynamic)));
}

// The whole-k product of one tile. rows: P * BM weight row pointers in shared memory (null: past
// the end, zeros), each row_len bytes of k elements; end[p]: the end of part p's weight tensor
// (copies never read past it: 16-byte granules may run into the next row, never past the last);
// cols: BN f16 column pointers in shared
// memory (null: no column; zeros), each zero-padded to round_up64(k). On return the caller gets
// epi(r, c, v) for every r < BM, c < BN, with v[p] the product of part p's row r and column c.
// Starts with a barrier, so the caller may fill rows/cols right before.
template <GgmlType T, int P, class Cfg, class Epi>
__device__ __forceinline__ void tile_gemm(unsigned char* smem, const uint8_t* const* rows, const uint8_t* const (&end)[P],
                                          const __half* const* cols, int64_t row_len, int64_t k, Epi&& epi) {
  using D = Dq<T>;
  using R = RawSpan<T>;
  constexpr int BM = Cfg::kBM, BN = Cfg::kBN, NT = Cfg::kThreads, AR = P * BM;
  constexpr int FM = Cfg::kFm, FN = Cfg::kFn;
  // Buffers picked by arithmetic (a run-time index into an array of pointers would go to local memory).
  unsigned char* table = smem;
  unsigned char* stages = smem + FastDq<T>::kTableBytes;
  auto stage = [&](int64_t i) { return stages + (i & 1) * (AR * R::kRowBytes); };
  __half* a_tile = reinterpret_cast<__half*>(stages + 2 * AR * R::kRowBytes);
  auto b_tile = [&](int64_t i) { return a_tile + AR * kLdH + (i & 1) * (BN * kLdH); };
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wm = warp / Cfg::kWN, wn = warp % Cfg::kWN;

  __syncthreads();  // rows / cols filled by the caller
  if constexpr (FastDq<T>::kOn) FastDq<T>::fill(table, tid, NT);
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
      if (left <= 0) continue;
      unsigned char* dst = st + r * R::kRowBytes + 16 * g;
      if (src + 16 <= ((P == 1 || r < BM) ? end[0] : end[P - 1])) {
        cp_async<16>(dst, src);
      } else {  // the tensor's last bytes
        for (int i = 0; i < left; ++i) dst[i] = src[i];
      }
    }
  };
  auto issue_b = [&](int64_t kt, __half* bt) {
    for (int idx = tid; idx < BN * (kStepK / 8); idx += NT) {
      const int j = idx / (kStepK / 8), g = idx % (kStepK / 8);
      const __half* col = cols[j];
      if (col) cp_async<16>(bt + j * kLdH + 8 * g, col + kt * kStepK + 8 * g);
    }
  };
  // k-step kt of macro step ms (sub-step sub) from its raw stage into the f16 weight tile.
  auto dequant = [&](const unsigned char* st, int64_t ms, int sub) {
    constexpr int kChunksPerBlock = D::kQk / 8;
    for (int idx = tid; idx < AR * (kStepK / 8); idx += NT) {
      const int r = idx / (kStepK / 8), ch = idx % (kStepK / 8);
      const int lc = sub * (kStepK / 8) + ch;                // chunk within the macro step
      const int64_t c = ms * (R::kElems / 8) + lc;             // chunk within the row
      const uint8_t* row = rows[r];
      const bool live = row && 8 * c < k;
      const uint8_t* b = nullptr;
      if (live) {
        const int off = int(reinterpret_cast<uintptr_t>(row + ms * R::kSpan) & 15);
        b = st + r * R::kRowBytes + off + (lc / kChunksPerBlock) * D::kBytes;
      }
      uint4* out = reinterpret_cast<uint4*>(a_tile + r * kLdH + 8 * ch);
      if constexpr (FastDq<T>::kOn) {
        *out = live ? FastDq<T>::decode(b, lc % kChunksPerBlock, table) : make_uint4(0, 0, 0, 0);
      } else {
        float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (live) {
          if constexpr (D::kPlain) {
            D::chunk(b, 0, v, k - 8 * c < 8 ? int(k - 8 * c) : 8);
          } else {
            D::chunk(b, lc % kChunksPerBlock, v);
          }
        }
        __align__(16) __half2 h[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
        *out = *reinterpret_cast<const uint4*>(h);
      }
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
