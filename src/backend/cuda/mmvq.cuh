// Decode-side weight products with 8-bit activations (quants.md §4): the activation columns are
// quantized once per product to blocks of 32 int8 values with a scale d and s = d * sum(q), and
// every 32-weight group of a row is decoded to 32 int8 values with two scales (one per half of 16)
// and a min coefficient, so a group's dot product is 8 integer dp4a plus one float expression:
//   d_a * (d0 * sum_{0..15} w q_a + d1 * sum_{16..31} w q_a) + m * s_a.
// Memory side: each warp copies the raw bytes of R rows (a tile of whole blocks, 16-byte aligned)
// into shared memory with 16-byte streaming loads, issues the next tile's loads, then decodes the
// current tile from shared memory: every DRAM sector is read by one wide load, and the bytes of
// several KB per warp are in flight while the previous tile is being decoded. Grid lookups of the
// i-quants come from a copy of the table in shared memory (random 8-byte reads from a 4 KB table
// cost ~20 L1 wavefronts per warp, a few in shared memory).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"
#include "backend/cuda/dequant.cuh"
#include "backend/cuda/pdl.cuh"

namespace moeserve::cuda::mmvq {

constexpr int kWarps = 8;  // per block of the matvec and expert kernels
constexpr int kThreads = 32 * kWarps;

// 8-bit activations of n columns of k values (k a multiple of 32): column c's quants at qs + c * k,
// its per-32 (d, d * sum q) at ds + c * k / 32.
struct ActQ8 {
  const int8_t* qs;
  const float2* ds;
};

inline size_t align256(size_t v) { return (v + 255) & ~size_t(255); }
inline size_t act_bytes(int64_t k, int64_t n) { return align256(size_t(k * n)) + align256(size_t(k / 32 * n) * 8); }
inline ActQ8 act_at(void* ws, int64_t k, int64_t n) {
  char* p = static_cast<char*>(ws);
  return {reinterpret_cast<const int8_t*>(p), reinterpret_cast<const float2*>(p + align256(size_t(k * n)))};
}

__device__ __forceinline__ float sum32(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---- per type: tile size and 32-weight group decoding ------------------------------------------------
struct W32 {
  int q[8];       // 32 int8 weights, 4 per int, in element order
  float d0, d1;   // scales of elements 0..15 and 16..31
  float m;        // times the activation block's s = d_a * sum q_a (mins and offsets)
};

template <GgmlType T>
struct Mv;  // kNB: blocks per staged tile (kNB * block bytes a multiple of 16); kTable: grid bytes;
            // kMin: whether W32::m can be nonzero

// The signs of 8 grid values from their 7 stored bits s7 (the eighth makes the count of negative
// values even): a 1 in each byte of lo (values 0..3) and hi (values 4..7) to negate. Bit i of a
// 7-bit value times 0x00204081 lands at i + 7m (m = 0..3), so bits 0..3 reach bits 0, 8, 16, 24 and
// no two partial products meet; the parity lands at bit 24 of hi.
struct Signs8 {
  uint32_t lo, hi;
};
__device__ __forceinline__ Signs8 signs8(uint32_t s7) {
  return {(s7 * 0x00204081u) & 0x01010101u, (((s7 >> 4) * 0x00204081u) | (uint32_t(__popc(s7)) << 24)) & 0x01010101u};
}
// Negates the bytes of g that have a 1 in `ones`. Grid bytes are never 0, so the two's complement
// (~g + 1) of a byte never carries into the next one.
__device__ __forceinline__ int negate_bytes(uint32_t g, uint32_t ones) { return int((g ^ (ones * 0xFFu)) + ones); }

template <>
struct Mv<GgmlType::Q8_0> {
  static constexpr int kNB = 64, kTable = 0;
  static constexpr bool kMin = false;
  __device__ static W32 decode(const uint8_t* b, int, const void*) {
    W32 w;
    w.d0 = w.d1 = h2f(ld16(b));
    w.m = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) w.q[i] = int(ld32_2(b + 2 + 4 * i));
    return w;
  }
  // The same from fewer loads: a 34-byte block's quants start 2-byte aligned, so eight 4-byte
  // words are read from the aligned word at or below them (nine where they straddle, then one
  // funnel shift each) instead of sixteen 2-byte loads. The ninth word is read only when needed:
  // past the last block of a tile it may lie past the end of shared memory. The words take more
  // registers while in flight (decode_group).
  __device__ static W32 decode_words(const uint8_t* b) {
    W32 w;
    w.d0 = w.d1 = h2f(ld16(b));
    w.m = 0.0f;
    const uintptr_t at = reinterpret_cast<uintptr_t>(b + 2);
    const uint32_t* u = reinterpret_cast<const uint32_t*>(at & ~uintptr_t(3));
    const uint32_t shift = uint32_t(at & 3) * 8;  // 0 or 16
    uint32_t lo = u[0];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t hi = i < 7 || shift ? u[i + 1] : 0u;
      w.q[i] = int(__funnelshift_r(lo, hi, shift));
      lo = hi;
    }
    return w;
  }
};
template <>
struct Mv<GgmlType::Q4_0> {
  static constexpr int kNB = 64, kTable = 0;
  static constexpr bool kMin = true;
  __device__ static W32 decode(const uint8_t* b, int, const void*) {
    W32 w;
    const float d = h2f(ld16(b));
    w.d0 = w.d1 = d;
    w.m = -8.0f * d;  // (q - 8) d: the offset goes with the activation sum
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t u = ld32_2(b + 2 + 4 * i);
      w.q[i] = int(u & 0x0F0F0F0Fu);
      w.q[4 + i] = int((u >> 4) & 0x0F0F0F0Fu);
    }
    return w;
  }
};
template <>
struct Mv<GgmlType::Q4_K> {
  static constexpr int kNB = 8, kTable = 0;
  static constexpr bool kMin = true;
  __device__ static W32 decode(const uint8_t* b, int g, const void*) {
    W32 w;
    const ScaleMinD sm = q4k_sm(b + 4, g);
    w.d0 = w.d1 = h2f(ld16(b)) * float(sm.scale);
    w.m = -h2f(ld16(b + 2)) * float(sm.min);
    const uint8_t* qs = b + 16 + 32 * (g / 2);
    const int shift = 4 * (g % 2);
#pragma unroll
    for (int i = 0; i < 8; ++i) w.q[i] = int((ld32_2(qs + 4 * i) >> shift) & 0x0F0F0F0Fu);
    return w;
  }
};
template <>
struct Mv<GgmlType::Q5_K> {
  static constexpr int kNB = 8, kTable = 0;
  static constexpr bool kMin = true;
  __device__ static W32 decode(const uint8_t* b, int g, const void*) {
    W32 w;
    const ScaleMinD sm = q4k_sm(b + 4, g);
    w.d0 = w.d1 = h2f(ld16(b)) * float(sm.scale);
    w.m = -h2f(ld16(b + 2)) * float(sm.min);
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + 48 + 32 * (g / 2);
    const int shift = 4 * (g % 2);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      w.q[i] = int(((ld32_2(qs + 4 * i) >> shift) & 0x0F0F0F0Fu) | (((ld32_2(qh + 4 * i) >> g) & 0x01010101u) << 4));
    }
    return w;
  }
};
template <>
struct Mv<GgmlType::Q6_K> {
  static constexpr int kNB = 8, kTable = 0;
  static constexpr bool kMin = false;
  __device__ static W32 decode(const uint8_t* b, int g, const void*) {
    W32 w;
    const float d = h2f(ld16(b + 208));
    w.d0 = d * float(int8_t(b[192 + 2 * g]));
    w.d1 = d * float(int8_t(b[193 + 2 * g]));
    w.m = 0.0f;
    const int c = g / 4, kk = g % 4;
    const uint8_t* ql = b + 64 * c + 32 * (kk % 2);
    const uint8_t* qh = b + 128 + 32 * c;
    const int ls = 4 * (kk / 2), hs = 2 * kk;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t v = ((ld32_2(ql + 4 * i) >> ls) & 0x0F0F0F0Fu) | (((ld32_2(qh + 4 * i) >> hs) & 0x03030303u) << 4);
      // v - 32 per byte (v in 0..63): flip bit 5, then extend it into bits 6-7.
      const uint32_t t = v ^ 0x20202020u;
      w.q[i] = int(t | (((t >> 5) & 0x01010101u) * 0xC0u));
    }
    return w;
  }
};
template <>
struct Mv<GgmlType::IQ2_XXS> {
  static constexpr int kNB = 16, kTable = 256 * 8;
  static constexpr bool kMin = false;
  __device__ static W32 decode(const uint8_t* b, int g, const void* tab) {
    const uint64_t* grid = static_cast<const uint64_t*>(tab);
    W32 w;
    const uint8_t* q = b + 2 + 8 * g;
    const uint32_t aux = ld32_2(q + 4);
    w.d0 = w.d1 = h2f(ld16(b)) * 0.125f * float(2 * (aux >> 28) + 1);  // the same bits as scaling last
    w.m = 0.0f;
    const uint32_t idx = ld32_2(q);
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint64_t e = grid[(idx >> (8 * l)) & 0xFF];
      const Signs8 s = signs8((aux >> (7 * l)) & 127u);
      w.q[2 * l] = negate_bytes(uint32_t(e), s.lo);
      w.q[2 * l + 1] = negate_bytes(uint32_t(e >> 32), s.hi);
    }
    return w;
  }
};
template <>
struct Mv<GgmlType::IQ2_XS> {
  static constexpr int kNB = 16, kTable = 512 * 8;
  static constexpr bool kMin = false;
  __device__ static W32 decode(const uint8_t* b, int g, const void* tab) {
    const uint64_t* grid = static_cast<const uint64_t*>(tab);
    W32 w;
    const float d = h2f(ld16(b)) * 0.125f;  // scaling by 1/8 first gives the same bits
    const uint32_t sc = b[66 + g];
    w.d0 = d * float(2 * (sc & 0xF) + 1);
    w.d1 = d * float(2 * (sc >> 4) + 1);
    w.m = 0.0f;
    const uint8_t* q = b + 2 + 8 * g;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t two = ld32_2(q + 4 * h);
#pragma unroll
      for (int l = 0; l < 2; ++l) {
        const uint32_t v = (two >> (16 * l)) & 0xFFFF;
        const uint64_t e = grid[v & 511];
        const Signs8 s = signs8(v >> 9);
        w.q[4 * h + 2 * l] = negate_bytes(uint32_t(e), s.lo);
        w.q[4 * h + 2 * l + 1] = negate_bytes(uint32_t(e >> 32), s.hi);
      }
    }
    return w;
  }
};
template <>
struct Mv<GgmlType::IQ3_XXS> {
  static constexpr int kNB = 16, kTable = 256 * 4;
  static constexpr bool kMin = false;
  __device__ static W32 decode(const uint8_t* b, int g, const void* tab) {
    const uint32_t* grid = static_cast<const uint32_t*>(tab);
    W32 w;
    const uint8_t* qs = b + 2;
    const uint32_t aux = ld32_2(qs + 64 + 4 * g);
    w.d0 = w.d1 = h2f(ld16(b)) * 0.25f * float(2 * (aux >> 28) + 1);  // the same bits as scaling last
    w.m = 0.0f;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t idx = ld32_2(qs + 8 * g + 4 * h);
#pragma unroll
      for (int l2 = 0; l2 < 2; ++l2) {
        const int l = 2 * h + l2;
        const Signs8 s = signs8((aux >> (7 * l)) & 127u);
        w.q[2 * l] = negate_bytes(grid[(idx >> (16 * l2)) & 0xFF], s.lo);
        w.q[2 * l + 1] = negate_bytes(grid[(idx >> (16 * l2 + 8)) & 0xFF], s.hi);
      }
    }
    return w;
  }
};

// The grid table of type T (device copy from dequant.cuh), or null.
template <GgmlType T>
__device__ __forceinline__ const void* table_src() {
  if constexpr (T == GgmlType::IQ2_XXS) return d_iq2xxs_grid.v;
  if constexpr (T == GgmlType::IQ2_XS) return d_iq2xs_grid.v;
  if constexpr (T == GgmlType::IQ3_XXS) return d_iq3xxs_grid.v;
  return nullptr;
}

// dst[i] = src[i] for i < n by the whole block, in rounds of kPer elements per thread whose loads
// are all issued before their stores: the compiler may not move a load above a store through a
// generic pointer, so a plain copy loop waits one memory round trip per element.
template <int kPer, typename U>
__device__ __forceinline__ void block_copy(U* dst, const U* src, int64_t n) {
  for (int64_t base = 0; base < n; base += int64_t(kPer) * blockDim.x) {
    U v[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t j = base + threadIdx.x + int64_t(i) * blockDim.x;
      if (j < n) v[i] = src[j];
    }
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int64_t j = base + threadIdx.x + int64_t(i) * blockDim.x;
      if (j < n) dst[j] = v[i];
    }
  }
}

// Copies T's grid table into shared memory at dst (16-byte aligned; whole block; the caller syncs):
// one round in blocks of 64 threads or more.
template <GgmlType T>
__device__ __forceinline__ void load_table(void* dst) {
  if constexpr (Mv<T>::kTable > 0) {
    static_assert(Mv<T>::kTable % 16 == 0);
    constexpr int kN = Mv<T>::kTable / 16;
    block_copy<(kN + 63) / 64>(static_cast<uint4*>(dst), static_cast<const uint4*>(table_src<T>()), kN);
  }
}

template <GgmlType T>
constexpr int table_bytes() {
  return (Mv<T>::kTable + 15) / 16 * 16;
}

// Staging granularity: V-byte loads (16 where rows allow it; 4 or 2 for rows such as the 148-byte
// IQ2_XS expert down rows), with tiles of kNB * V / 16 blocks so a lane's registers stay bounded.
template <GgmlType T, int V>
constexpr int tile_nb() {
  return Mv<T>::kNB * V / 16 > 0 ? Mv<T>::kNB * V / 16 : 1;
}

// Blocks per staged tile for rows of nblk blocks.
template <GgmlType T, int V>
int tile_blocks(int64_t nblk) {
  return int(nblk < tile_nb<T, V>() ? nblk : tile_nb<T, V>());
}

// ---- staging: R rows' tiles, global -> registers -> shared memory ------------------------------------
template <int V>
struct Unit;
template <>
struct Unit<16> {
  using type = uint4;
  __device__ static type load(const void* p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
  }
};
template <>
struct Unit<4> {
  using type = uint32_t;
  __device__ static type load(const void* p) {
    uint32_t v;
    asm("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
  }
};
template <>
struct Unit<2> {
  using type = uint16_t;
  __device__ static type load(const void* p) {
    uint16_t v;
    asm("ld.global.nc.L1::no_allocate.u16 %0, [%1];" : "=h"(v) : "l"(p));
    return v;
  }
};

template <GgmlType T, int R, int V>
struct Stager {
  static constexpr int kTile = tile_nb<T, V>() * Dq<T>::kBytes;
  static constexpr int kSegs = (kTile / V + 31) / 32;  // loads per lane per row
  static_assert(kTile % V == 0);
  typename Unit<V>::type buf[R][kSegs];

  // Bytes [off, off + V * nseg) of each row.
  __device__ __forceinline__ void load(const uint8_t* const (&rows)[R], int64_t off, int nseg, int lane) {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int s = 0; s < kSegs; ++s) {
        const int seg = lane + 32 * s;
        if (seg < nseg) buf[r][s] = Unit<V>::load(rows[r] + off + V * seg);
      }
  }
  __device__ __forceinline__ void store(uint8_t* sm, int tile_bytes, int nseg, int lane) const {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int s = 0; s < kSegs; ++s) {
        const int seg = lane + 32 * s;
        if (seg < nseg) *reinterpret_cast<typename Unit<V>::type*>(sm + r * tile_bytes + V * seg) = buf[r][s];
      }
  }
};

// acc[r][c] += (this lane's groups of) the staged tile's R rows . activation columns c. The tile
// holds n_blocks blocks per row (row r at sm + r * tile_bytes), starting at group g0 of the row;
// column c's activations at aq + c * a_stride / ads + c * a_stride / 32.
// The activations of group gi of each column: 32 int8 values and (d, d * sum q).
template <int NC>
__device__ __forceinline__ void group_act(const int8_t* aq, const float2* ads, int64_t a_stride, int64_t gi,
                                          int (&a)[NC][8], float2 (&ds)[NC]) {
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const int4* p = reinterpret_cast<const int4*>(aq + c * a_stride + 32 * gi);
    const int4 lo = p[0], hi = p[1];  // global or shared memory (quantize_to_smem)
    a[c][0] = lo.x, a[c][1] = lo.y, a[c][2] = lo.z, a[c][3] = lo.w;
    a[c][4] = hi.x, a[c][5] = hi.y, a[c][6] = hi.z, a[c][7] = hi.w;
    ds[c] = ads[c * (a_stride / 32) + gi];
  }
}

// acc[c] += the decoded group w . the activations of column c (kMin: with the w.m term).
template <int NC, bool kMin>
__device__ __forceinline__ void group_dot(const W32& w, const int (&a)[NC][8], const float2 (&ds)[NC],
                                          float (&acc)[NC]) {
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    int s0 = 0, s1 = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      s0 = __dp4a(w.q[i], a[c][i], s0);
      s1 = __dp4a(w.q[4 + i], a[c][4 + i], s1);
    }
    const float v = ds[c].x * (w.d0 * float(s0) + w.d1 * float(s1));
    acc[c] += kMin ? v + w.m * ds[c].y : v;
  }
}

// Group g of the block at b as decoded for a tile_dot of R rows and NC columns: the one-column
// products (two rows, one column) read Q8_0 quants as words; kernels that hold more rows or
// columns at once keep the two-byte loads, whose registers they need (with the words the routed
// experts' Q8_0 gate/up kernel spilled and the many-column products lost occupancy).
template <GgmlType T, int R, int NC>
__device__ __forceinline__ W32 decode_group(const uint8_t* b, int g, const void* tab) {
  if constexpr (T == GgmlType::Q8_0 && R * NC <= 2) {
    return Mv<T>::decode_words(b);
  } else {
    return Mv<T>::decode(b, g, tab);
  }
}

template <GgmlType T, int R, int NC>
__device__ __forceinline__ void tile_dot(const uint8_t* sm, int tile_bytes, int n_blocks, int64_t g0, const int8_t* aq,
                                         const float2* ads, int64_t a_stride, const void* tab, float (&acc)[R][NC],
                                         int lane) {
  constexpr int G = Dq<T>::kQk / 32;
  const int n_groups = n_blocks * G;
  if constexpr (R % 2 == 0) {
    // Short rows (at most 16 groups: 512-weight rows such as the experts' down rows): one lane per
    // group would leave half the warp idle, so each half of the warp takes every other row (lane
    // l < 16: rows 0, 2, ..., lane 16 + l: rows 1, 3, ..., both group l); a lane's other rows get
    // nothing, and the warp's sum over lanes adds the halves.
    if (n_groups <= 16) {
      const int half = lane / 16, gi = lane % 16;
      float part[R / 2][NC];
#pragma unroll
      for (int i = 0; i < R / 2; ++i)
#pragma unroll
        for (int c = 0; c < NC; ++c) part[i][c] = 0.0f;
      if (gi < n_groups) {
        const int blk = gi / G, g = gi % G;
        int a[NC][8];
        float2 ds[NC];
        group_act<NC>(aq, ads, a_stride, g0 + gi, a, ds);
#pragma unroll
        for (int i = 0; i < R / 2; ++i) {
          const W32 w = decode_group<T, R, NC>(sm + (2 * i + half) * tile_bytes + blk * Dq<T>::kBytes, g, tab);
          group_dot<NC, Mv<T>::kMin>(w, a, ds, part[i]);
        }
      }
#pragma unroll
      for (int i = 0; i < R / 2; ++i)
#pragma unroll
        for (int c = 0; c < NC; ++c) {
          acc[2 * i][c] += half ? 0.0f : part[i][c];
          acc[2 * i + 1][c] += half ? part[i][c] : 0.0f;
        }
      return;
    }
  }
#pragma unroll 2
  for (int gi = lane; gi < n_groups; gi += 32) {
    const int blk = gi / G, g = gi % G;
    int a[NC][8];
    float2 ds[NC];
    group_act<NC>(aq, ads, a_stride, g0 + gi, a, ds);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const W32 w = decode_group<T, R, NC>(sm + r * tile_bytes + blk * Dq<T>::kBytes, g, tab);
      group_dot<NC, Mv<T>::kMin>(w, a, ds, acc[r]);
    }
  }
}

// One warp: passes p = 0..n_pass-1, each the product of R rows (rows_of(p, rows)) with NC
// activation columns (act_of(p, aq, ads)); done(p, acc) receives this lane's partial sums of each
// pass. The tiles of consecutive passes form one pipeline: the next tile's loads are issued before
// the current one is decoded. `sm`: this warp's R * tile_bytes of shared memory. ready() runs once
// the first tile's loads are issued and before anything else is read (a kernel whose rows do not
// depend on earlier kernels waits for them there: its first weight bytes are already on the way).
template <GgmlType T, int R, int NC, int V, typename RowsOf, typename ActOf, typename Done, typename Ready>
__device__ __forceinline__ void warp_passes(int n_pass, int64_t nblk, int tile_blk, int64_t a_stride, uint8_t* sm,
                                            const void* tab, int lane, RowsOf rows_of, ActOf act_of, Done done,
                                            Ready ready) {
  constexpr int kB = Dq<T>::kBytes, G = Dq<T>::kQk / 32;
  const int tile_bytes = tile_blk * kB;
  const int n_tiles = int((nblk + tile_blk - 1) / tile_blk);
  const int n_iter = n_pass * n_tiles;
  Stager<T, R, V> st;
  const uint8_t* rows[R];
  auto blocks_of = [&](int tile) {
    const int64_t left = nblk - int64_t(tile) * tile_blk;
    return int(left < tile_blk ? left : tile_blk);
  };
  if (n_iter > 0) {
    rows_of(0, rows);
    st.load(rows, 0, blocks_of(0) * kB / V, lane);
  }
  ready();
  float acc[R][NC];
  for (int it = 0; it < n_iter; ++it) {
    const int pass = it / n_tiles, tile = it % n_tiles;
    const int nb = blocks_of(tile);
    if (tile == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c = 0; c < NC; ++c) acc[r][c] = 0.0f;
    }
    __syncwarp();
    st.store(sm, tile_bytes, nb * kB / V, lane);
    __syncwarp();
    if (it + 1 < n_iter) {
      const int np = (it + 1) / n_tiles, nt = (it + 1) % n_tiles;
      if (nt == 0) rows_of(np, rows);
      st.load(rows, int64_t(nt) * tile_bytes, blocks_of(nt) * kB / V, lane);
    }
    const int8_t* aq;
    const float2* ads;
    act_of(pass, aq, ads);
    tile_dot<T, R, NC>(sm, tile_bytes, nb, int64_t(tile) * tile_blk * G, aq, ads, a_stride, tab, acc, lane);
    if (tile == n_tiles - 1) done(pass, acc);
  }
}

inline bool is_q8_type(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::IQ2_XXS:
    case GgmlType::IQ2_XS:
    case GgmlType::IQ3_XXS:
      return true;
    default:
      return false;
  }
}

template <typename F>
bool dispatch_q8(GgmlType t, F&& f) {
  switch (t) {
#define MOESERVE_MV_CASE(name)                 \
  case GgmlType::name:                         \
    f.template operator()<GgmlType::name>();   \
    return true;
    MOESERVE_MV_CASE(Q8_0)
    MOESERVE_MV_CASE(Q4_0)
    MOESERVE_MV_CASE(Q4_K)
    MOESERVE_MV_CASE(Q5_K)
    MOESERVE_MV_CASE(Q6_K)
    MOESERVE_MV_CASE(IQ2_XXS)
    MOESERVE_MV_CASE(IQ2_XS)
    MOESERVE_MV_CASE(IQ3_XXS)
#undef MOESERVE_MV_CASE
    default:
      return false;
  }
}

// ---- host side ----------------------------------------------------------------------------------------
// One block of 32 activations, value i in lane i of a whole warp: d = max|x| / 127, q = round(x / d)
// (as the CPU's Q8_0 activations), s = d * sum q; lane i stores q[i], lane 0 stores (d, s).
__device__ __forceinline__ void quantize_block32(float v, int8_t* q, float2* ds) {
  const int lane = threadIdx.x % 32;
  float amax = fabsf(v);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const int qi = max(-127, min(127, int(roundf(v * id))));
  q[lane] = int8_t(qi);
  const int sum = __reduce_add_sync(0xffffffffu, qi);
  if (lane == 0) *ds = make_float2(d, d * float(sum));
}

// Quantizes column c of x (k values from x + c * x_stride) per 32 values (quantize_block32). One
// warp per block of 32.
static __global__ void __launch_bounds__(256) quantize_act(const float* x, int64_t x_stride, int64_t k, int64_t n, int8_t* qs,
                                                    float2* ds) {
  pdl_wait();
  pdl_trigger();
  const int64_t gpc = k / 32, gid = int64_t(blockIdx.x) * 8 + threadIdx.x / 32;
  if (gid >= gpc * n) return;
  const int64_t c = gid / gpc, g = gid % gpc;
  quantize_block32(x[c * x_stride + 32 * g + threadIdx.x % 32], qs + c * k + 32 * g, ds + gid);
}

// Shared-memory bytes of n columns of k activations quantized by quantize_to_smem: the quants,
// then the per-32 (d, s) pairs.
inline size_t smem_act_bytes(int64_t k, int64_t n) { return size_t(k * n) + size_t(k / 32 * n) * 8; }

// scale[c] = 1 / sqrt(mean(x_c^2) + eps) for the n <= kMaxCols columns of k values, bit for bit as
// the rms_norm op (cuda_ops_norm.cu) computes it: its kernel sums the squares in vt threads (32
// for rows up to 256 values, 256 up to 512, else 512), each over every vt-th value in order, then
// per warp and across the warps by the same shuffle trees; the block's threads stand in for its
// vt. Whole block; returns synced.
template <int kMaxCols>
__device__ __forceinline__ void rms_scales(const float* x, int64_t x_stride, int64_t k, int n, float eps,
                                           float* scale) {
  __shared__ float part[kMaxCols][16];
  const int vt = k <= 256 ? 32 : k <= 512 ? 256 : 512;
  const int lane = threadIdx.x % 32;
  for (int c = 0; c < n; ++c) {
    const float* col = x + c * x_stride;
    for (int v0 = int(threadIdx.x) - lane; v0 < vt; v0 += int(blockDim.x)) {  // warp-uniform
      float ss = 0.0f;
      for (int64_t i = v0 + lane; i < k; i += vt) ss += col[i] * col[i];
      ss = sum32(ss);
      if (lane == 0) part[c][v0 / 32] = ss;
    }
  }
  __syncthreads();
  if (int(threadIdx.x) < 32 * n) {
    const int c = int(threadIdx.x) / 32;
    const float ss = sum32(lane < vt / 32 ? part[c][lane] : 0.0f);
    if (lane == 0) scale[c] = 1.0f / sqrtf(ss / float(k) + eps);
  }
  __syncthreads();
}

// quantize_act into shared memory, by the whole block (blockDim.x a multiple of 32), values equal
// bit for bit: 8 lanes per block of 32 values, 4 values each. value(c, i) is value i of column c
// (an input, or what an op would have made of it: quantize_to_smem below reads x itself).
// qs: n * k bytes (16-byte aligned), ds: n * k / 32 pairs. The caller syncs the block before
// reading them.
template <typename Value>
__device__ __forceinline__ void quantize_values_to_smem(Value value, int64_t k, int n, int8_t* qs, float2* ds) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  const int sub = lane / 8, l8 = lane % 8;
  const int64_t gpc = k / 32, groups = gpc * n;
  for (int64_t g0 = int64_t(warp) * 4; g0 < groups; g0 += int64_t(n_warps) * 4) {  // warp-uniform
    const int64_t gid = g0 + sub;
    const bool valid = gid < groups;
    const int64_t c = valid ? gid / gpc : 0, g = valid ? gid % gpc : 0;
    float v[4], amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[i] = valid ? value(c, 32 * g + 4 * l8 + i) : 0.0f;
      amax = fmaxf(amax, fabsf(v[i]));
    }
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t packed = 0;
    int sum = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int q = max(-127, min(127, int(roundf(v[i] * id))));
      packed |= uint32_t(uint8_t(int8_t(q))) << (8 * i);
      sum += q;
    }
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (valid) {
      *reinterpret_cast<uint32_t*>(qs + c * k + 32 * g + 4 * l8) = packed;
      if (l8 == 0) ds[gid] = make_float2(d, d * float(sum));
    }
  }
}

// quantize_act of the n columns of x (k values each, x_stride floats apart) into shared memory.
__device__ __forceinline__ void quantize_to_smem(const float* x, int64_t x_stride, int64_t k, int n, int8_t* qs,
                                                 float2* ds) {
  quantize_values_to_smem([=](int64_t c, int64_t i) { return x[c * x_stride + i]; }, k, n, qs, ds);
}

inline ActQ8 quantize_columns(cudaStream_t stream, const Tensor& x, int64_t k, int64_t n, void* ws) {
  if (x.nb[1] % sizeof(float) != 0) fail("internal: cuda q8 activations: row stride is not a multiple of 4");
  const ActQ8 act = act_at(ws, k, n);
  const int64_t groups = k / 32 * n;
  launch_pdl(quantize_act, unsigned((groups + 7) / 8), 256, 0, stream, x.as<const float>(),
             int64_t(x.nb[1] / sizeof(float)), k, n, const_cast<int8_t*>(act.qs), const_cast<float2*>(act.ds));
  return act;
}

// The widest staging load (16, 4 or 2 bytes) that every row of t (dims 1 and 2) allows, 0 if none.
inline int row_vec(const Tensor& t) {
  for (int v : {16, 4, 2}) {
    if (reinterpret_cast<uintptr_t>(t.data) % v == 0 && t.nb[1] % v == 0 && t.nb[2] % v == 0 &&
        row_bytes(t.type, t.ne[0]) % v == 0) {
      return v;
    }
  }
  return 0;
}

// Kernels with more than the default 48 KB of dynamic shared memory have to ask for it.
template <typename K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024) MOESERVE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

}  // namespace moeserve::cuda::mmvq
