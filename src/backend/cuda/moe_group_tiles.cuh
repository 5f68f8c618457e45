// Routed experts over small groups of tokens (up to 16 per tile: a 512-token prompt over 512
// experts, top-10, gives each expert ~10): the product is bound by reading and decoding the
// weights once, not by the multiply, so the work is laid out around the decode:
// * each warp owns 16 * FM rows per part (P parts: the gate and up rows share the columns) over
//   the whole k, and stages its rows' raw bytes (any quantized type) global -> shared with
//   cp.async, kStages macro steps deep, in its own buffers (no block-wide barrier after the
//   decode tables are filled);
// * a lane decodes the weights it multiplies straight into its mma.sync m16n8k16 A fragments,
//   with no f16 weight tile in shared memory: lane (g, t) of a k32 step decodes the 8 elements
//   8t..8t+7 of rows g and g + 8, and reads the same 8 elements of its column g (one 16-byte
//   load) for B. A k-permutation inside each 32-element step, the same for weights and
//   activations, so the sums are unchanged;
// * the grid i-quants (IQ2_XXS, IQ2_XS, IQ3_XXS) decode to f16 s * (+-m), exact (at most 11
//   significant bits), from f16 magnitude tables: one f16x2 multiply and one sign flip per pair;
//   their block scale d multiplies each block's f32 partial sums. Other types decode with the
//   chunk decoders of dequant.cuh, rounded to f16 once (as the tensor-core tiles do).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/dequant.cuh"
#include "backend/cuda/mm_tiles.cuh"

namespace moeserve::cuda {

// ---- grid i-quants: s * (+-m) as f16, d apart --------------------------------------------------------
// Table layout: f16 magnitudes per grid entry, then the 128 sign masks (f16x2 sign bits of four
// pairs, as fill_sign_masks), then the 16 scales s = (2 ls + 1) * inv as f16x2.
template <GgmlType T>
struct GridF16 {
  static constexpr bool kOn = false;
  static constexpr int kTableBytes = 0;
};

__device__ __forceinline__ uint32_t mag_pair(uint32_t bytes2) {  // two grid bytes -> f16x2
  return h2_bits(__floats2half2_rn(float(bytes2 & 0xFF), float((bytes2 >> 8) & 0xFF)));
}

template <int kEntries, int kEntryBytes>
struct GridTableLayout {
  static constexpr int kMag = kEntries * kEntryBytes * 2;  // f16 per grid byte
  static constexpr int kSigns = kMag, kScales = kSigns + 128 * 16, kTableBytes = kScales + 16 * 4;
  __device__ static void fill_common(unsigned char* t, float inv, int tid, int nt) {
    fill_sign_masks(t + kSigns, tid, nt);
    for (int i = tid; i < 16; i += nt) {
      reinterpret_cast<uint32_t*>(t + kScales)[i] = h2_bits(__half2half2(__float2half_rn(float(2 * i + 1) * inv)));
    }
  }
  // f16x2 pair i of 4: (m s) ^ sign, exact.
  __device__ static uint4 apply(const uint4& m, uint32_t s2, const uint4& sg) {
    const __half2 s = bits_h2(s2);
    return make_uint4(h2_bits(__hmul2(bits_h2(m.x), s)) ^ sg.x, h2_bits(__hmul2(bits_h2(m.y), s)) ^ sg.y,
                      h2_bits(__hmul2(bits_h2(m.z), s)) ^ sg.z, h2_bits(__hmul2(bits_h2(m.w), s)) ^ sg.w);
  }
};

template <>
struct GridF16<GgmlType::IQ2_XS> : GridTableLayout<512, 8> {
  static constexpr bool kOn = true;
  __device__ static void fill(unsigned char* t, int tid, int nt) {
    for (int i = tid; i < 512 * 4; i += nt) {
      reinterpret_cast<uint32_t*>(t)[i] = mag_pair(uint32_t(d_iq2xs_grid.v[i / 4] >> (16 * (i % 4))));
    }
    fill_common(t, 0.125f, tid, nt);
  }
  __device__ static float scale(const uint8_t* b) { return h2f(ld16(b)); }
  __device__ static uint4 decode(const uint8_t* b, int j, const unsigned char* t) {  // as Dq<IQ2_XS>, d apart
    const int ib = j / 4, l = j % 4;
    const uint16_t q = ld16(b + 2 + 2 * j);
    const int ls = (b[66 + ib] >> (4 * (l / 2))) & 0xF;
    return apply(reinterpret_cast<const uint4*>(t)[q & 511], reinterpret_cast<const uint32_t*>(t + kScales)[ls],
                 reinterpret_cast<const uint4*>(t + kSigns)[q >> 9]);
  }
};
template <>
struct GridF16<GgmlType::IQ2_XXS> : GridTableLayout<256, 8> {
  static constexpr bool kOn = true;
  __device__ static void fill(unsigned char* t, int tid, int nt) {
    for (int i = tid; i < 256 * 4; i += nt) {
      reinterpret_cast<uint32_t*>(t)[i] = mag_pair(uint32_t(d_iq2xxs_grid.v[i / 4] >> (16 * (i % 4))));
    }
    fill_common(t, 0.125f, tid, nt);
  }
  __device__ static float scale(const uint8_t* b) { return h2f(ld16(b)); }
  __device__ static uint4 decode(const uint8_t* b, int j, const unsigned char* t) {  // as Dq<IQ2_XXS>, d apart
    const int ib = j / 4, l = j % 4;
    const uint8_t* g = b + 2 + 8 * ib;
    const uint32_t aux = ld32_2(g + 4);
    return apply(reinterpret_cast<const uint4*>(t)[g[l]], reinterpret_cast<const uint32_t*>(t + kScales)[aux >> 28],
                 reinterpret_cast<const uint4*>(t + kSigns)[(aux >> (7 * l)) & 127]);
  }
};
template <>
struct GridF16<GgmlType::IQ3_XXS> : GridTableLayout<256, 4> {
  static constexpr bool kOn = true;
  __device__ static void fill(unsigned char* t, int tid, int nt) {
    for (int i = tid; i < 256 * 2; i += nt) {
      reinterpret_cast<uint32_t*>(t)[i] = mag_pair(d_iq3xxs_grid.v[i / 2] >> (16 * (i % 2)));
    }
    fill_common(t, 0.25f, tid, nt);
  }
  __device__ static float scale(const uint8_t* b) { return h2f(ld16(b)); }
  __device__ static uint4 decode(const uint8_t* b, int j, const unsigned char* t) {  // as Dq<IQ3_XXS>, d apart
    const int ib = j / 4, l = j % 4;
    const uint8_t* qs = b + 2;
    const uint32_t aux = ld32_2(qs + 64 + 4 * ib);
    const uint2 lo = reinterpret_cast<const uint2*>(t)[qs[8 * ib + 2 * l]];
    const uint2 hi = reinterpret_cast<const uint2*>(t)[qs[8 * ib + 2 * l + 1]];
    return apply(make_uint4(lo.x, lo.y, hi.x, hi.y), reinterpret_cast<const uint32_t*>(t + kScales)[aux >> 28],
                 reinterpret_cast<const uint4*>(t + kSigns)[(aux >> (7 * l)) & 127]);
  }
};

// ---- the warp product ---------------------------------------------------------------------------------
inline constexpr int kGroupCols = 16;  // columns of a small-group tile: two n8 fragments
inline constexpr int kGroupWarps = 4;  // per block

template <GgmlType T>
struct GroupSpan {
  using R = RawSpan<T>;
  // Raw stages in flight per warp: three, two for the widest blocks (K-quants) to bound shared memory.
  static constexpr int kStages = R::kRowBytes > 128 ? 2 : 3;
  static_assert(!GridF16<T>::kOn || R::kElems == Dq<T>::kQk, "a macro step of a grid type is one block (one d)");
};

// Shared memory of one block of kGroupWarps warps with P * FM * 16 rows each.
template <GgmlType T, int P, int FM>
constexpr size_t group_smem_bytes() {
  return size_t(GridF16<T>::kTableBytes) +
         size_t(kGroupWarps) * GroupSpan<T>::kStages * (P * FM * 16) * RawSpan<T>::kRowBytes;
}

// One warp: rows r < n_live (at most 16 * FM) of each part p, starting at base0 / base1 with row
// stride nb1, each row_len bytes of k elements (end0 / end1: the ends of the tensors; copies never
// read past them) times the lane's two columns col[0], col[1] (column 8 j + g of the tile, f16,
// zero-padded to a multiple of 64; null: zeros). raw: the warp's stages; table: the block's
// GridF16 table (filled and synced by the caller). Calls epi(r, c, v) for every r < 16 * FM and
// tile column c < 16 the lane holds, v[p] the product of part p's row r and column c.
template <GgmlType T, int P, int FM, class Epi>
__device__ __forceinline__ void group_rows_product(unsigned char* raw, const unsigned char* table, const uint8_t* base0,
                                                   const uint8_t* base1, const uint8_t* end0, const uint8_t* end1,
                                                   int64_t nb1, int n_live, int64_t row_len, int64_t k,
                                                   const __half* const (&col)[2], Epi&& epi) {
  using D = Dq<T>;
  using R = RawSpan<T>;
  using G = GridF16<T>;
  constexpr int S = GroupSpan<T>::kStages, RM = FM * 16, AR = P * RM, kSub = R::kElems / 32;
  constexpr int kChunksPerBlock = D::kQk / 8;
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int64_t n_macro = (k + R::kElems - 1) / R::kElems;
  auto row_of = [&](int r) {  // raw row r: part r / RM, row r % RM
    return (P == 1 || r < RM ? base0 : base1) + int64_t(r % RM) * nb1;
  };

  auto issue_raw = [&](int64_t ms, int slot) {
    constexpr int GR = R::kRowBytes / 16;
    unsigned char* st = raw + slot * (AR * R::kRowBytes);
    for (int idx = lane; idx < AR * GR; idx += 32) {
      const int r = idx / GR, gr = idx % GR;
      if (r % RM >= n_live) continue;
      const uint8_t* row = row_of(r);
      const uint8_t* src =
          reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(row + ms * R::kSpan) & ~uintptr_t(15)) + 16 * gr;
      const int64_t left = row + row_len - src;  // bytes of the row from this granule on
      if (left <= 0) continue;
      unsigned char* dst = st + r * R::kRowBytes + 16 * gr;
      if (src + 16 <= (P == 1 || r < RM ? end0 : end1)) {
        cp_async16(dst, src);
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
  float part[G::kOn ? P : 1][G::kOn ? FM : 1][2][4];  // one block's sums (grid types: d apart)
#pragma unroll
  for (int p = 0; p < P; ++p)
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[p][i][j][q] = 0.0f;

#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (s < n_macro) issue_raw(s, s);
    cp_async_commit();
  }
  uint4 b_next[2];
  load_b(0, b_next);
  int slot = 0;
  for (int64_t ms = 0; ms < n_macro; ++ms) {
    if (ms + S - 1 < n_macro) issue_raw(ms + S - 1, (slot + S - 1) % S);
    cp_async_commit();
    cp_async_wait<S - 1>();
    __syncwarp();  // every lane's copies of this stage landed
    const unsigned char* st = raw + slot * (AR * R::kRowBytes);
    // Per row fragment (p, i, half h): its bytes in the stage and whether it exists.
    const unsigned char* rb[P][FM][2];
    bool live[P][FM][2];
    float d[G::kOn ? P : 1][G::kOn ? FM : 1][2];
#pragma unroll
    for (int p = 0; p < P; ++p)
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int rr = i * 16 + g + 8 * h, r = p * RM + rr;
          live[p][i][h] = rr < n_live;
          rb[p][i][h] = st + r * R::kRowBytes + int(reinterpret_cast<uintptr_t>(row_of(r) + ms * R::kSpan) & 15);
          if constexpr (G::kOn) d[p][i][h] = live[p][i][h] ? G::scale(rb[p][i][h]) : 0.0f;  // dead: 0, not garbage
        }
    if constexpr (G::kOn) {
#pragma unroll
      for (int p = 0; p < P; ++p)
#pragma unroll
        for (int i = 0; i < FM; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) part[p][i][j][q] = 0.0f;
    }
#pragma unroll
    for (int sub = 0; sub < kSub; ++sub) {
      const int64_t kb = ms * R::kElems + 32 * sub;
      const uint4 b[2] = {b_next[0], b_next[1]};
      load_b(sub + 1 < kSub ? kb + 32 : (ms + 1) * R::kElems, b_next);
      if (kb >= k) continue;  // past k (plain types): the weights are zero
      const int lc = 4 * sub + t;                // chunk within the macro step
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
              a[h] = ok ? G::decode(blk, lc % kChunksPerBlock, table) : make_uint4(0, 0, 0, 0);
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
            if constexpr (G::kOn) {
              mma_16816(part[p][i][j], a0, b0);
              mma_16816(part[p][i][j], a1, b1);
            } else {
              mma_16816(acc[p][i][j], a0, b0);
              mma_16816(acc[p][i][j], a1, b1);
            }
          }
        }
    }
    if constexpr (G::kOn) {
#pragma unroll
      for (int p = 0; p < P; ++p)
#pragma unroll
        for (int i = 0; i < FM; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[p][i][j][q] = fmaf(d[p][i][q / 2], part[p][i][j][q], acc[p][i][j][q]);
    }
    __syncwarp();  // every lane is done with this stage before it is refilled
    slot = slot + 1 == S ? 0 : slot + 1;
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
