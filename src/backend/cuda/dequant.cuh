// Device dequantization of every weight type with a CPU dot product (quants.md §1-3), in chunks of
// 8 consecutive elements: a chunk never straddles a block or a sub-block scale, so one call reads
// one block header and a few quant bytes. The value formulas (and their float operation order)
// follow the host dequantizers in src/quant/, so a device chunk equals the host's floats exactly.
// The lookup tables are __device__ copies of the generated grid_data.h (one source of truth).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "core/fp16.h"
#include "core/ggml_type.h"
#include "quant/grid_data.h"

namespace moeserve::cuda {

template <typename T, size_t N>
struct alignas(16) DeviceTable {  // 16-byte aligned: copied to shared memory in 16-byte loads
  T v[N];
};

template <typename T, size_t N, size_t... I>
constexpr DeviceTable<T, N> table_from(const T (&a)[N], std::index_sequence<I...>) {
  return {{a[I]...}};
}
template <typename T, size_t N>
constexpr DeviceTable<T, N> table_from(const T (&a)[N]) {
  return table_from(a, std::make_index_sequence<N>{});
}

// Internal linkage: each .cu that includes this (no device linking) holds its own copy.
static __device__ const DeviceTable<uint64_t, 256> d_iq2xxs_grid = table_from(grid_data::iq2xxs_grid);
static __device__ const DeviceTable<uint64_t, 512> d_iq2xs_grid = table_from(grid_data::iq2xs_grid);
static __device__ const DeviceTable<uint64_t, 1024> d_iq2s_grid = table_from(grid_data::iq2s_grid);
static __device__ const DeviceTable<uint32_t, 256> d_iq3xxs_grid = table_from(grid_data::iq3xxs_grid);
static __device__ const DeviceTable<uint32_t, 512> d_iq3s_grid = table_from(grid_data::iq3s_grid);
static __device__ const DeviceTable<uint64_t, 2048> d_iq1s_grid = table_from(grid_data::iq1s_grid);
static __device__ const DeviceTable<uint8_t, 128> d_ksigns_iq2xs = table_from(grid_data::ksigns_iq2xs);
static __device__ const DeviceTable<int8_t, 16> d_kvalues_iq4nl = table_from(grid_data::kvalues_iq4nl);
static __device__ const DeviceTable<int8_t, 16> d_kvalues_fp4 = table_from(grid_data::kvalues_fp4);

#ifdef __CUDACC__
#define MOESERVE_UNROLL _Pragma("unroll")
#else
#define MOESERVE_UNROLL
#endif

// The chunk functions also compile for the host, reading the host tables, so a host test can hold
// them against the reference dequantizers without a GPU.
#ifdef __CUDA_ARCH__
#define MOESERVE_GRID(name) d_##name.v
#else
#define MOESERVE_GRID(name) grid_data::name
#endif

__host__ __device__ __forceinline__ float h2f(uint16_t h) {
#ifdef __CUDA_ARCH__
  return __half2float(__ushort_as_half(h));
#else
  return fp16_to_fp32(h);
#endif
}
__host__ __device__ __forceinline__ float bits_to_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  return f32_from_bits(u);
#endif
}
__host__ __device__ __forceinline__ uint16_t ld16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }
__host__ __device__ __forceinline__ uint32_t ld32_2(const uint8_t* p) {  // 2-byte aligned u32
  return uint32_t(ld16(p)) | (uint32_t(ld16(p + 2)) << 16);
}

// Per type: kQk elements and kBytes bytes per block, kChunks = kQk / 8, and
// chunk(block, j, v) writing elements 8j..8j+7 of the block. Plain float types use a "block" of
// 8 elements; their rows need not be a multiple of 8 (`valid` counts the real elements).
template <GgmlType T>
struct Dq;

template <>
struct Dq<GgmlType::F32> {
  static constexpr int kQk = 8, kBytes = 32;
  static constexpr bool kPlain = true;
  __host__ __device__ static void chunk(const uint8_t* b, int, float* v, int valid = 8) {
    const float* p = reinterpret_cast<const float*>(b);
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = i < valid ? p[i] : 0.0f;
  }
};
template <>
struct Dq<GgmlType::F16> {
  static constexpr int kQk = 8, kBytes = 16;
  static constexpr bool kPlain = true;
  __host__ __device__ static void chunk(const uint8_t* b, int, float* v, int valid = 8) {
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = i < valid ? h2f(ld16(b + 2 * i)) : 0.0f;
  }
};
template <>
struct Dq<GgmlType::BF16> {
  static constexpr int kQk = 8, kBytes = 16;
  static constexpr bool kPlain = true;
  __host__ __device__ static void chunk(const uint8_t* b, int, float* v, int valid = 8) {
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = i < valid ? bits_to_float(uint32_t(ld16(b + 2 * i)) << 16) : 0.0f;
  }
};

// ---- legacy 32-element blocks ---------------------------------------------------------------------
// Element e < 16 sits in the low nibble of qs[e], element e >= 16 in the high nibble of qs[e - 16].
__host__ __device__ __forceinline__ int nib32(const uint8_t* qs, int e) { return e < 16 ? qs[e] & 0xF : qs[e - 16] >> 4; }

template <>
struct Dq<GgmlType::Q4_0> {
  static constexpr int kQk = 32, kBytes = 18;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b));
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = float(nib32(b + 2, 8 * j + i) - 8) * d;
  }
};
template <>
struct Dq<GgmlType::Q4_1> {
  static constexpr int kQk = 32, kBytes = 20;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = float(nib32(b + 4, 8 * j + i)) * d + m;
  }
};
template <>
struct Dq<GgmlType::Q5_0> {
  static constexpr int kQk = 32, kBytes = 22;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b));
    const uint32_t qh = ld32_2(b + 2);
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) {
      const int e = 8 * j + i;
      v[i] = float((nib32(b + 6, e) | int(((qh >> e) & 1) << 4)) - 16) * d;
    }
  }
};
template <>
struct Dq<GgmlType::Q5_1> {
  static constexpr int kQk = 32, kBytes = 24;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
    const uint32_t qh = ld32_2(b + 4);
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) {
      const int e = 8 * j + i;
      v[i] = float(nib32(b + 8, e) | int(((qh >> e) & 1) << 4)) * d + m;
    }
  }
};
template <>
struct Dq<GgmlType::Q8_0> {
  static constexpr int kQk = 32, kBytes = 34;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b));
    const int8_t* q = reinterpret_cast<const int8_t*>(b + 2 + 8 * j);
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = float(q[i]) * d;
  }
};
template <>
struct Dq<GgmlType::IQ4_NL> {
  static constexpr int kQk = 32, kBytes = 18;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b));
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = d * float(MOESERVE_GRID(kvalues_iq4nl)[nib32(b + 2, 8 * j + i)]);
  }
};
template <>
struct Dq<GgmlType::MXFP4> {
  static constexpr int kQk = 32, kBytes = 17;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const uint8_t e = b[0];  // 2^(e - 128), subnormal for e < 2 (as the host's e8m0_half)
    const float d = bits_to_float(e < 2 ? 0x00200000u << e : uint32_t(e - 1) << 23);
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = float(MOESERVE_GRID(kvalues_fp4)[nib32(b + 1, 8 * j + i)]) * d;
  }
};

// ---- k-quants (256-element super-blocks) ----------------------------------------------------------
struct ScaleMinD {
  int scale, min;
};
__host__ __device__ __forceinline__ ScaleMinD q4k_sm(const uint8_t* s, int j) {
  if (j < 4) return {s[j] & 63, s[j + 4] & 63};
  return {(s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)};
}

template <>
struct Dq<GgmlType::Q2_K> {  // scales[16] qs[64] d dmin
  static constexpr int kQk = 256, kBytes = 84;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b + 80)), dmin = h2f(ld16(b + 82));
    const int e0 = 8 * j;
    const uint8_t sc = b[e0 / 16];
    const uint8_t* qs = b + 16 + 32 * (e0 / 128) + e0 % 32;
    const int shift = 2 * ((e0 / 32) % 4);
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = d * float(sc & 0xF) * float((qs[i] >> shift) & 3) - dmin * float(sc >> 4);
  }
};
template <>
struct Dq<GgmlType::Q3_K> {  // hmask[32] qs[64] scales[12] d
  static constexpr int kQk = 256, kBytes = 110;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b + 108));
    const int e0 = 8 * j, s = e0 / 16;
    const uint8_t* sc = b + 96;
    const int low = s < 8 ? sc[s] & 0xF : sc[s - 8] >> 4;
    const int high = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    const float dl = d * float((low | (high << 4)) - 32);
    const uint8_t* qs = b + 32 + 32 * (e0 / 128) + e0 % 32;
    const int shift = 2 * ((e0 / 32) % 4);
    const uint8_t hbit = uint8_t(1 << (e0 / 32));
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) {
      const int l = e0 % 32 + i;
      v[i] = dl * float(((qs[i] >> shift) & 3) - (b[l] & hbit ? 0 : 4));
    }
  }
};
template <>
struct Dq<GgmlType::Q4_K> {  // d dmin scales[12] qs[128]
  static constexpr int kQk = 256, kBytes = 144;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
    const int e0 = 8 * j;
    const ScaleMinD sm = q4k_sm(b + 4, e0 / 32);
    const float dl = d * float(sm.scale), ml = dmin * float(sm.min);
    const uint8_t* qs = b + 16 + 32 * (e0 / 64) + e0 % 32;
    const int shift = 4 * ((e0 / 32) % 2);
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = dl * float((qs[i] >> shift) & 0xF) - ml;
  }
};
template <>
struct Dq<GgmlType::Q5_K> {  // d dmin scales[12] qh[32] qs[128]
  static constexpr int kQk = 256, kBytes = 176;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
    const int e0 = 8 * j;
    const ScaleMinD sm = q4k_sm(b + 4, e0 / 32);
    const float dl = d * float(sm.scale), ml = dmin * float(sm.min);
    const uint8_t* qh = b + 16 + e0 % 32;
    const uint8_t* qs = b + 48 + 32 * (e0 / 64) + e0 % 32;
    const int shift = 4 * ((e0 / 32) % 2), hs = e0 / 32;
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = dl * float(((qs[i] >> shift) & 0xF) + ((qh[i] >> hs) & 1) * 16) - ml;
  }
};
template <>
struct Dq<GgmlType::Q6_K> {  // ql[128] qh[64] scales[16] d
  static constexpr int kQk = 256, kBytes = 210;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const float d = h2f(ld16(b + 208));
    const int e0 = 8 * j, c = e0 / 128, k = (e0 / 32) % 4, l0 = e0 % 32;
    const float ds = d * float(int8_t(b[192 + e0 / 16]));
    const uint8_t* ql = b + 64 * c + l0 + 32 * (k % 2);
    const uint8_t* qh = b + 128 + 32 * c + l0;
    const int ls = 4 * (k / 2), hs = 2 * k;
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = ds * float((((ql[i] >> ls) & 0xF) | (((qh[i] >> hs) & 3) << 4)) - 32);
  }
};

// ---- i-quants ---------------------------------------------------------------------------------------
// value = d * scale * frac * signed grid magnitude, in the host's order (quant/i_quants.cpp).
__host__ __device__ __forceinline__ void put_grid8(float* v, uint64_t entry, uint8_t signs, float dl) {
MOESERVE_UNROLL
  for (int i = 0; i < 8; ++i) {
    const int m = int((entry >> (8 * i)) & 0xFF);
    v[i] = dl * float(signs & (1 << i) ? -m : m);
  }
}
__host__ __device__ __forceinline__ void put_grid4(float* v, uint32_t entry, uint8_t signs, float dl) {
MOESERVE_UNROLL
  for (int i = 0; i < 4; ++i) {
    const int m = int((entry >> (8 * i)) & 0xFF);
    v[i] = dl * float(signs & (1 << i) ? -m : m);
  }
}
__host__ __device__ __forceinline__ void put_iq1(float* v, uint64_t entry, int delta_sign, float dl) {
MOESERVE_UNROLL
  for (int i = 0; i < 8; ++i) v[i] = dl * float(8 * int(int8_t(uint8_t(entry >> (8 * i)))) + delta_sign);
}

template <>
struct Dq<GgmlType::IQ2_XXS> {  // d, qs[32] u16: per 32: 4 grid bytes + u32 (4x7 sign bits, 4-bit scale)
  static constexpr int kQk = 256, kBytes = 66;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const int ib = j / 4, l = j % 4;
    const uint8_t* g = b + 2 + 8 * ib;
    const uint32_t aux = ld32_2(g + 4);
    const float dl = h2f(ld16(b)) * float(2 * (aux >> 28) + 1) * 0.125f;
    put_grid8(v, MOESERVE_GRID(iq2xxs_grid)[g[l]], MOESERVE_GRID(ksigns_iq2xs)[(aux >> (7 * l)) & 127], dl);
  }
};
template <>
struct Dq<GgmlType::IQ2_XS> {  // d, qs[32] u16 (9-bit grid, 7-bit sign index), scales[8]
  static constexpr int kQk = 256, kBytes = 74;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const int ib = j / 4, l = j % 4;
    const uint16_t q = ld16(b + 2 + 2 * j);
    const int ls = (b[66 + ib] >> (4 * (l / 2))) & 0xF;
    const float dl = h2f(ld16(b)) * float(2 * ls + 1) * 0.125f;
    put_grid8(v, MOESERVE_GRID(iq2xs_grid)[q & 511], MOESERVE_GRID(ksigns_iq2xs)[q >> 9], dl);
  }
};
template <>
struct Dq<GgmlType::IQ2_S> {  // d, qs[64] (32 grid low bytes, 32 sign masks), qh[8], scales[8]
  static constexpr int kQk = 256, kBytes = 82;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const int ib = j / 4, l = j % 4;
    const uint8_t* qs = b + 2;
    const int idx = qs[j] | ((b[66 + ib] << (8 - 2 * l)) & 0x300);
    const int ls = (b[74 + ib] >> (4 * (l / 2))) & 0xF;
    const float dl = h2f(ld16(b)) * float(2 * ls + 1) * 0.125f;
    put_grid8(v, MOESERVE_GRID(iq2s_grid)[idx], qs[32 + j], dl);
  }
};
template <>
struct Dq<GgmlType::IQ3_XXS> {  // d, qs[64] grid bytes, then 8 u32 (4x7 sign bits, 4-bit scale)
  static constexpr int kQk = 256, kBytes = 98;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const int ib = j / 4, l = j % 4;
    const uint8_t* qs = b + 2;
    const uint32_t aux = ld32_2(qs + 64 + 4 * ib);
    const float dl = h2f(ld16(b)) * float(2 * (aux >> 28) + 1) * 0.25f;
    const uint8_t signs = MOESERVE_GRID(ksigns_iq2xs)[(aux >> (7 * l)) & 127];
    put_grid4(v, MOESERVE_GRID(iq3xxs_grid)[qs[8 * ib + 2 * l]], signs, dl);
    put_grid4(v + 4, MOESERVE_GRID(iq3xxs_grid)[qs[8 * ib + 2 * l + 1]], uint8_t(signs >> 4), dl);
  }
};
template <>
struct Dq<GgmlType::IQ3_S> {  // d, qs[64], qh[8], signs[32], scales[4]
  static constexpr int kQk = 256, kBytes = 110;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const int ib = j / 4, l = j % 4;
    const uint8_t* qs = b + 2;
    const uint8_t qh = b[66 + ib];
    const int i1 = qs[8 * ib + 2 * l] | ((qh << (8 - 2 * l)) & 256);
    const int i2 = qs[8 * ib + 2 * l + 1] | ((qh << (7 - 2 * l)) & 256);
    const uint8_t signs = b[74 + j];
    const int ls = (b[106 + ib / 2] >> (4 * (ib % 2))) & 0xF;
    const float dl = h2f(ld16(b)) * float(1 + 2 * ls) * 1.0f;
    put_grid4(v, MOESERVE_GRID(iq3s_grid)[i1], signs, dl);
    put_grid4(v + 4, MOESERVE_GRID(iq3s_grid)[i2], uint8_t(signs >> 4), dl);
  }
};
template <>
struct Dq<GgmlType::IQ1_S> {  // d, qs[32], qh[8] u16 (4x3 index bits, 3-bit scale, delta sign)
  static constexpr int kQk = 256, kBytes = 50;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const int ib = j / 4, l = j % 4;
    const uint16_t h = ld16(b + 34 + 2 * ib);
    const int idx = b[2 + j] | (((h >> (3 * l)) & 7) << 8);
    const float dl = h2f(ld16(b)) * float(2 * ((h >> 12) & 7) + 1) * 0.125f;
    put_iq1(v, MOESERVE_GRID(iq1s_grid)[idx], h & 0x8000 ? -1 : 1, dl);
  }
};
template <>
struct Dq<GgmlType::IQ1_M> {  // qs[32], qh[16], scales[8] (4 u16; the fp16 d in their top nibbles)
  static constexpr int kQk = 256, kBytes = 56;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const int ib = j / 4, l = j % 4;
    const uint8_t* scb = b + 48;
    const uint16_t s0 = ld16(scb), s1 = ld16(scb + 2), s2 = ld16(scb + 4), s3 = ld16(scb + 6);
    const uint16_t d_bits = uint16_t((s0 >> 12) | ((s1 >> 8) & 0x00F0) | ((s2 >> 4) & 0x0F00) | (s3 & 0xF000));
    const uint16_t sw = ld16(scb + 2 * (ib / 2));
    const int shift = 6 * (ib % 2) + 3 * (l / 2);
    const float dl = h2f(d_bits) * float(2 * ((sw >> shift) & 7) + 1) * 0.125f;
    const uint8_t hb = b[32 + 2 * ib + l / 2];
    const uint8_t nib = l % 2 ? hb >> 4 : hb & 0xF;
    const int idx = b[4 * ib + l] | ((nib & 7) << 8);
    put_iq1(v, MOESERVE_GRID(iq1s_grid)[idx], nib & 8 ? -1 : 1, dl);
  }
};
template <>
struct Dq<GgmlType::IQ4_XS> {  // d, scales_h u16, scales_l[4], qs[128]
  static constexpr int kQk = 256, kBytes = 136;
  static constexpr bool kPlain = false;
  __host__ __device__ static void chunk(const uint8_t* b, int j, float* v, int = 8) {
    const int ib = j / 4, c = j % 4;
    const uint16_t sh = ld16(b + 2);
    const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
    const float dl = h2f(ld16(b)) * float(ls - 32) * 1.0f;
    const uint8_t* qs = b + 8 + 16 * ib + 8 * (c % 2);
    const int shift = 4 * (c / 2);
MOESERVE_UNROLL
    for (int i = 0; i < 8; ++i) v[i] = dl * float(MOESERVE_GRID(kvalues_iq4nl)[(qs[i] >> shift) & 0xF]);
  }
};

// Calls f.template operator()<T>() for a supported weight type; returns false for the others.
template <typename F>
bool dispatch_type(GgmlType t, F&& f) {
  switch (t) {
#define MOESERVE_DQ_CASE(name) \
  case GgmlType::name:         \
    f.template operator()<GgmlType::name>(); \
    return true;
    MOESERVE_DQ_CASE(F32)
    MOESERVE_DQ_CASE(F16)
    MOESERVE_DQ_CASE(BF16)
    MOESERVE_DQ_CASE(Q4_0)
    MOESERVE_DQ_CASE(Q4_1)
    MOESERVE_DQ_CASE(Q5_0)
    MOESERVE_DQ_CASE(Q5_1)
    MOESERVE_DQ_CASE(Q8_0)
    MOESERVE_DQ_CASE(IQ4_NL)
    MOESERVE_DQ_CASE(MXFP4)
    MOESERVE_DQ_CASE(Q2_K)
    MOESERVE_DQ_CASE(Q3_K)
    MOESERVE_DQ_CASE(Q4_K)
    MOESERVE_DQ_CASE(Q5_K)
    MOESERVE_DQ_CASE(Q6_K)
    MOESERVE_DQ_CASE(IQ2_XXS)
    MOESERVE_DQ_CASE(IQ2_XS)
    MOESERVE_DQ_CASE(IQ2_S)
    MOESERVE_DQ_CASE(IQ3_XXS)
    MOESERVE_DQ_CASE(IQ3_S)
    MOESERVE_DQ_CASE(IQ1_S)
    MOESERVE_DQ_CASE(IQ1_M)
    MOESERVE_DQ_CASE(IQ4_XS)
#undef MOESERVE_DQ_CASE
    default:
      return false;
  }
}

// Chunk c (8 elements) of a row of k elements.
template <GgmlType T>
__host__ __device__ __forceinline__ void row_chunk(const uint8_t* row, int64_t c, int64_t k, float* v) {
  using D = Dq<T>;
  constexpr int per_block = D::kQk / 8;
  if constexpr (D::kPlain) {
    const int64_t left = k - 8 * c;
    D::chunk(row + c * D::kBytes, 0, v, left < 8 ? int(left) : 8);
  } else {
    D::chunk(row + (c / per_block) * D::kBytes, int(c % per_block), v);
  }
}

}  // namespace moeserve::cuda
