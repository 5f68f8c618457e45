// Routed experts over small groups of tokens (up to 16 per tile: a 512-token prompt over 512
// experts, top-10, gives each expert ~10): the product is bound by reading and decoding the
// weights once, not by the multiply, so the work is laid out around the decode:
// * each warp owns 16 * FM rows per part (P parts: the gate and up rows share the columns) over
//   the whole k, and stages its rows' raw bytes (any quantized type) global -> shared with
//   cp.async, one macro step ahead, in its own buffers (no block-wide barrier after the decode
//   tables are filled); the row pitch puts the 8 rows one load touches in distinct banks;
// * a lane decodes the weights it multiplies straight into its mma.sync m16n8k16 A fragments,
//   with no f16 weight tile in shared memory: lane (g, t) of a k32 step decodes the 8 elements
//   8t..8t+7 of rows g and g + 8 (of each 16-row fragment), and reads the same 8 elements of its
//   column g (one 16-byte load) for B, reused by all 2 * P * FM fragments: a k-permutation
//   inside each 32-element step, the same for weights and activations, so the sums are unchanged;
// * the grid i-quants (IQ2_XXS, IQ2_XS, IQ3_XXS) decode as mm_tiles.cuh's FastDq (the same f16
//   values: d * s * (+-m) rounded once), but with shared memory kept for the grid bytes only
//   (the sign masks come from the sign bits by arithmetic, the scales from a 16-entry table),
//   since shared-memory bandwidth, not arithmetic, bounds this loop. Other types decode with
//   the chunk decoders of dequant.cuh, rounded to f16 once (as the tensor-core tiles do).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/dequant.cuh"
#include "backend/cuda/mm_tiles.cuh"

namespace moeserve::cuda {

// ---- grid i-quants -------------------------------------------------------------------------------------
// Table layout: the grid (kGridBytes), then the 16 scales s = (2 ls + 1) * inv as f16x2 pairs
// (s, -1024 s).
template <GgmlType T>
struct GridDq {
  static constexpr bool kOn = false;
  static constexpr int kTableBytes = 0;
};

// The f16x2 sign masks of the four pairs of 8 values from their sign bits x (bit i: value i):
// x * 0x40008000 puts bit 0 at bit 15 and bit 1 at bit 31 (the two partial products do not overlap).
__device__ __forceinline__ uint4 sign_masks(uint32_t x) {
  constexpr uint32_t kSpread = 0x40008000u, kKeep = 0x80008000u;
  return make_uint4((x * kSpread) & kKeep, ((x >> 2) * kSpread) & kKeep, ((x >> 4) * kSpread) & kKeep,
                    ((x >> 6) * kSpread) & kKeep);
}
// The 8 sign bits from the 7 stored ones (even parity), as ksigns_iq2xs.
__device__ __forceinline__ uint32_t signs_of7(uint32_t s7) { return s7 | ((__popc(s7) & 1u) << 7); }

// 8 values d * s * (+-m) from the magnitude bytes of w0 (values 0-3) and w1 (4-7), as grid8_f16
// (mm_tiles.cuh): the bits 0x6400 | m are 1024 + m; one fma with (s, -1024 s) gives m * s exactly.
__device__ __forceinline__ uint4 grid8_scaled(uint32_t w0, uint32_t w1, uint2 s_off, uint32_t d2, const uint4& sg) {
  const __half2 s2 = bits_h2(s_off.x), off2 = bits_h2(s_off.y), dd = bits_h2(d2);
  auto pair = [&](uint32_t w, uint32_t sel, uint32_t sign) {
    const __half2 ms = __hfma2(bits_h2(__byte_perm(w, 0x64646464u, sel)), s2, off2);
    return h2_bits(__hmul2(bits_h2(h2_bits(ms) ^ sign), dd));
  };
  return make_uint4(pair(w0, 0x4140, sg.x), pair(w0, 0x4342, sg.y), pair(w1, 0x4140, sg.z), pair(w1, 0x4342, sg.w));
}

template <int kGridBytes>
struct GridTable {
  static constexpr int kScales = kGridBytes, kTableBytes = kGridBytes + 16 * 8;
  __device__ static void fill(unsigned char* t, const void* grid, float inv, int tid, int nt) {
    for (int i = tid; i < kGridBytes / 4; i += nt) reinterpret_cast<uint32_t*>(t)[i] = static_cast<const uint32_t*>(grid)[i];
    for (int i = tid; i < 16; i += nt) {
      const __half s = __float2half_rn(float(2 * i + 1) * inv);  // exact: 5 significant bits
      reinterpret_cast<uint2*>(t + kScales)[i] =
          make_uint2(h2_bits(__half2half2(s)), h2_bits(__half2half2(__hmul(s, __float2half_rn(-1024.0f)))));
    }
  }
  __device__ static uint2 scale(const unsigned char* t, uint32_t ls) { return reinterpret_cast<const uint2*>(t + kScales)[ls]; }
};

template <>
struct GridDq<GgmlType::IQ2_XS> : GridTable<512 * 8> {
  static constexpr bool kOn = true;
  __device__ static void fill(unsigned char* t, int tid, int nt) { GridTable::fill(t, d_iq2xs_grid.v, 0.125f, tid, nt); }
  __device__ static uint4 decode(const uint8_t* b, int j, const unsigned char* t, uint32_t d2) {  // as Dq<IQ2_XS>
    const int ib = j / 4, l = j % 4;
    const uint32_t q = ld16(b + 2 + 2 * j);
    const uint32_t ls = (b[66 + ib] >> (4 * (l / 2))) & 0xF;
    const uint2 e = reinterpret_cast<const uint2*>(t)[q & 511];
    return grid8_scaled(e.x, e.y, scale(t, ls), d2, sign_masks(signs_of7(q >> 9)));
  }
};
template <>
struct GridDq<GgmlType::IQ2_XXS> : GridTable<256 * 8> {
  static constexpr bool kOn = true;
  __device__ static void fill(unsigned char* t, int tid, int nt) { GridTable::fill(t, d_iq2xxs_grid.v, 0.125f, tid, nt); }
  __device__ static uint4 decode(const uint8_t* b, int j, const unsigned char* t, uint32_t d2) {  // as Dq<IQ2_XXS>
    const int ib = j / 4, l = j % 4;
    const uint8_t* g = b + 2 + 8 * ib;
    const uint32_t aux = ld32_2(g + 4);
    const uint2 e = reinterpret_cast<const uint2*>(t)[g[l]];
    return grid8_scaled(e.x, e.y, scale(t, aux >> 28), d2, sign_masks(signs_of7((aux >> (7 * l)) & 127)));
  }
};
template <>
struct GridDq<GgmlType::IQ3_XXS> : GridTable<256 * 4> {
  static constexpr bool kOn = true;
  __device__ static void fill(unsigned char* t, int tid, int nt) { GridTable::fill(t, d_iq3xxs_grid.v, 0.25f, tid, nt); }
  __device__ static uint4 decode(const uint8_t* b, int j, const unsigned char* t, uint32_t d2) {  // as Dq<IQ3_XXS>
    const int ib = j / 4, l = j % 4;
    const uint8_t* qs = b + 2;
    const uint32_t aux = ld32_2(qs + 64 + 4 * ib);
    const uint32_t* grid = reinterpret_cast<const uint32_t*>(t);
    return grid8_scaled(grid[qs[8 * ib + 2 * l]], grid[qs[8 * ib + 2 * l + 1]], scale(t, aux >> 28), d2,
                        sign_masks(signs_of7((aux >> (7 * l)) & 127)));
  }
};

// ---- the warp product ---------------------------------------------------------------------------------
inline constexpr int kGroupCols = 16;  // columns of a small-group tile: two n8 fragments
inline constexpr int kGroupWarps = 4;  // per block

template <GgmlType T>
struct GroupSpan {
  using R = RawSpan<T>;
  // Row pitch of a stage: an odd number of 16-byte granules, so the rows g = 0..7 that one load
  // instruction touches start in distinct 4-bank groups.
  static constexpr int kPitch = (R::kRowBytes / 16) % 2 ? R::kRowBytes : R::kRowBytes + 16;
  // 16-row fragments per warp and part: 64 rows per warp in all (each B fragment feeds
  // 2 * P * FM mma), half that for the widest blocks (K-quants, plain f16) to bound shared memory.
  template <int P>
  static constexpr int kFm = (R::kRowBytes > 128 ? 2 : 4) / P;
  static_assert(!GridDq<T>::kOn || R::kElems == Dq<T>::kQk, "a macro step of a grid type is one block (one d)");
};

// Shared memory of one block of kGroupWarps warps with P parts: decode tables, two raw stages per warp.
template <GgmlType T, int P>
constexpr size_t group_smem_bytes() {
  using S = GroupSpan<T>;
  return size_t(GridDq<T>::kTableBytes) + size_t(kGroupWarps) * 2 * (P * S::template kFm<P> * 16) * S::kPitch;
}
template <GgmlType T, int P>
constexpr size_t group_warp_raw_bytes() {
  using S = GroupSpan<T>;
  return size_t(2) * (P * S::template kFm<P> * 16) * S::kPitch;
}

// One warp: rows r < n_live (at most 16 * FM) of each part p, starting at base0 / base1 with row
// stride nb1, each row_len bytes of k elements (end0 / end1: the ends of the tensors; copies never
// read past them) times the lane's two columns col[0], col[1] (column 8 j + g of the tile, f16,
// zero-padded to a multiple of 64; null: zeros). raw: the warp's stages; table: the block's
// GridDq table (filled and synced by the caller). Calls epi(r, c, v) for every r < 16 * FM and
// tile column c < 16 the lane holds, v[p] the product of part p's row r and column c.
template <GgmlType T, int P, class Epi>
__device__ __forceinline__ void group_rows_product(unsigned char* raw, const unsigned char* table, const uint8_t* base0,
                                                   const uint8_t* base1, const uint8_t* end0, const uint8_t* end1,
                                                   int64_t nb1, int n_live, int64_t row_len, int64_t k,
                                                   const __half* const (&col)[2], Epi&& epi) {
  using D = Dq<T>;
  using R = RawSpan<T>;
  using G = GridDq<T>;
  constexpr int FM = GroupSpan<T>::template kFm<P>, PITCH = GroupSpan<T>::kPitch;
  constexpr int RM = FM * 16, AR = P * RM, kSub = R::kElems / 32, kStage = AR * PITCH;
  constexpr int kChunksPerBlock = D::kQk / 8;
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int64_t n_macro = (k + R::kElems - 1) / R::kElems;
  auto row_of = [&](int r) {  // raw row r: part r / RM, row r % RM
    return (P == 1 || r < RM ? base0 : base1) + int64_t(r % RM) * nb1;
  };

  auto issue_raw = [&](int64_t ms, unsigned char* st) {
    constexpr int GR = R::kRowBytes / 16;
    for (int idx = lane; idx < AR * GR; idx += 32) {
      const int r = idx / GR, gr = idx % GR;
      if (r % RM >= n_live) continue;
      const uint8_t* row = row_of(r);
      const uint8_t* src =
          reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(row + ms * R::kSpan) & ~uintptr_t(15)) + 16 * gr;
      const int64_t left = row + row_len - src;  // bytes of the row from this granule on
      if (left <= 0) continue;
      unsigned char* dst = st + r * PITCH + 16 * gr;
      if (src + 16 <= (P == 1 || r < RM ? end0 : end1)) {
        cp_async<16>(dst, src);
      } else {  // the tensor's last bytes
        for (int i = 0; i < left; ++i) dst[i] = src[i];
      }
    }
  };
  auto load_b = [&](int64_t kb, uint4 (&b)[2]) {  // the lane's 8 elements at kb + 8 t of both columns
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      b[j] = col[j] && kb < k ? __ldg(reinterpret_cast<const uint4*>(col[j] + kb + 8 * t)) : make_uint4(0, 0, 0, 0);
    }
  };

  float acc[P][FM][2][4];
#pragma unroll
  for (int p = 0; p < P; ++p)
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[p][i][j][q] = 0.0f;

  issue_raw(0, raw);
  cp_async_commit();
  uint4 b_next[2];
  load_b(0, b_next);
  for (int64_t ms = 0; ms < n_macro; ++ms) {
    unsigned char* st = raw + (ms & 1) * kStage;
    if (ms + 1 < n_macro) issue_raw(ms + 1, raw + ((ms + 1) & 1) * kStage);
    cp_async_commit();
    cp_async_wait<1>();
    __syncwarp();  // every lane's copies of this stage landed
    // Per row fragment (p, i, half h): its bytes in the stage, whether it exists, its block's d.
    const unsigned char* rb[P][FM][2];
    bool live[P][FM][2];
    uint32_t d2[G::kOn ? P : 1][G::kOn ? FM : 1][2];
#pragma unroll
    for (int p = 0; p < P; ++p)
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int rr = i * 16 + g + 8 * h, r = p * RM + rr;
          live[p][i][h] = rr < n_live;
          rb[p][i][h] = st + r * PITCH + int(reinterpret_cast<uintptr_t>(row_of(r) + ms * R::kSpan) & 15);
          if constexpr (G::kOn) d2[p][i][h] = live[p][i][h] ? ld16(rb[p][i][h]) * 0x10001u : 0u;
        }
#pragma unroll
    for (int sub = 0; sub < kSub; ++sub) {
      const int64_t kb = ms * R::kElems + 32 * sub;
      const uint4 b[2] = {b_next[0], b_next[1]};
      load_b(sub + 1 < kSub ? kb + 32 : (ms + 1) * R::kElems, b_next);
      if (kb >= k) continue;  // past k (plain types): the weights are zero
      const int lc = 4 * sub + t;                   // chunk within the macro step
      const int64_t c = ms * (R::kElems / 8) + lc;  // chunk within the row
#pragma unroll
      for (int p = 0; p < P; ++p)
#pragma unroll
        for (int i = 0; i < FM; ++i) {
          uint4 a[2];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const bool ok = live[p][i][h] && 8 * c < k;
            const uint8_t* blk = rb[p][i][h] + (lc / kChunksPerBlock) * D::kBytes;
            if constexpr (G::kOn) {
              a[h] = ok ? G::decode(blk, lc % kChunksPerBlock, table, d2[p][i][h]) : make_uint4(0, 0, 0, 0);
            } else {
              float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
              if (ok) {
                if constexpr (D::kPlain) {
                  D::chunk(blk, 0, v, k - 8 * c < 8 ? int(k - 8 * c) : 8);
                } else {
                  D::chunk(blk, lc % kChunksPerBlock, v);
                }
              }
              __align__(16) __half2 hv[4];
#pragma unroll
              for (int e = 0; e < 4; ++e) hv[e] = __floats2half2_rn(v[2 * e], v[2 * e + 1]);
              a[h] = *reinterpret_cast<const uint4*>(hv);
            }
          }
          const uint32_t a0[4] = {a[0].x, a[1].x, a[0].y, a[1].y}, a1[4] = {a[0].z, a[1].z, a[0].w, a[1].w};
#pragma unroll
          for (int j = 0; j < 2; ++j) {
            const uint32_t b0[2] = {b[j].x, b[j].y}, b1[2] = {b[j].z, b[j].w};
            mma_16816(acc[p][i][j], a0, b0);
            mma_16816(acc[p][i][j], a1, b1);
          }
        }
    }
    __syncwarp();  // every lane is done with this stage before it is refilled
  }
  cp_async_wait<0>();

#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        float v[P];
#pragma unroll
        for (int p = 0; p < P; ++p) v[p] = acc[p][i][j][q];
        epi(i * 16 + g + (q >= 2 ? 8 : 0), j * 8 + 2 * t + (q & 1), v);
      }
}

}  // namespace moeserve::cuda
