// The CPU backend's inner kernels, one table picked once when the backend starts: the registry's
// scalar references first, then whatever the CPU's instruction set (cpuid) lets us replace with
// SIMD versions. Ops only call through this table; no ISA check happens per call.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/ggml_type.h"

namespace moeserve::cpu {

// avx2: AVX2 + FMA + F16C. avx512: also AVX512 F, BW, VL and VNNI.
enum class Isa { scalar, avx2, avx512 };

const char* isa_name(Isa isa);
// The best level this CPU supports.
Isa detect_isa();

// How the AVX-512 grid i-quant kernels (IQ2_XXS, IQ2_XS, IQ3_XXS) load their grid entries:
// scalar loads inserted into a register, or vector gathers. Both give the same bits; which is
// faster depends on the core (docs/perf.md), so the choice is made per CPU vendor.
enum class GridLookup { inserts, gathers };
const char* grid_lookup_name(GridLookup lookup);
// Gathers on Intel, inserts elsewhere (Zen 4 gathers measured slower); the environment variable
// MOESERVE_CPU_GRID_LOOKUP (inserts or gathers) overrides it.
GridLookup preferred_grid_lookup();

inline constexpr size_t kTypeSlots = 40;  // ggml type ids are < 40

// One weight row against `ncols` (1..kMaxCols) activation rows a[0..ncols) of its vec_dot_type:
// out[c] = vec_dot(n, w, a[c]) bit for bit, with each weight block decoded once for all columns.
using VecDotColsFn = void (*)(int64_t n, const void* w, const void* const* a, int ncols, float* out);
inline constexpr int kMaxCols = 8;
// `nrows` (1..kMaxRows) weight rows, `stride` bytes apart, against one activation row:
// out[r] = vec_dot(n, w + r * stride, a) bit for bit. A decode product's rows are short (an
// expert's down row is two super-blocks) and its i-quant blocks slow to decode; several rows per
// call share the call and setup costs and interleave their independent work.
using VecDotRowsFn = void (*)(int64_t n, const void* w, size_t stride, const void* a, int nrows, float* out);
inline constexpr int kMaxRows = 4;

struct Kernels {
  Isa isa = Isa::scalar;
  GridLookup grid_lookup = GridLookup::inserts;  // of the AVX-512 i-quant kernels
  // Weight row (type t) . activation row already in t's vec_dot_type.
  std::array<VecDotFn, kTypeSlots> vec_dot{};
  // Multi-column form of vec_dot where a kernel has one (prefill, experts hit by several tokens).
  std::array<VecDotColsFn, kTypeSlots> vec_dot_cols{};
  // Multi-row form of vec_dot for one column where a kernel has one (the i-quant experts at decode).
  std::array<VecDotRowsFn, kTypeSlots> vec_dot_rows{};
  // F32 -> type, for activation types (and KV cache types).
  std::array<QuantizeRowFn, kTypeSlots> quantize{};
  // type -> F32.
  std::array<DequantizeRowFn, kTypeSlots> dequantize{};
  float (*dot_f32)(int64_t n, const float* a, const float* b) = nullptr;
  // y[i] += a * x[i]
  void (*axpy_f32)(int64_t n, float a, const float* x, float* y) = nullptr;
  // y[i] *= a
  void (*scale_f32)(int64_t n, float a, float* y) = nullptr;

  VecDotFn dot_for(GgmlType t) const { return vec_dot[size_t(t)]; }
  // out[c] = weight row w . a[c] for any number of columns, through vec_dot_cols where installed.
  void dot_cols(GgmlType t, int64_t n, const void* w, const void* const* a, int ncols, float* out) const {
    if (const VecDotColsFn f = vec_dot_cols[size_t(t)]) {
      for (int c = 0; c < ncols; c += kMaxCols) f(n, w, a + c, ncols - c < kMaxCols ? ncols - c : kMaxCols, out + c);
    } else {
      const VecDotFn f1 = vec_dot[size_t(t)];
      for (int c = 0; c < ncols; ++c) out[c] = f1(n, w, a[c]);
    }
  }
  // out[r] = weight row w + r * stride . a for any number of rows, through vec_dot_rows where installed.
  void dot_rows(GgmlType t, int64_t n, const void* w, size_t stride, const void* a, int nrows, float* out) const {
    const auto* wb = static_cast<const char*>(w);
    if (const VecDotRowsFn f = vec_dot_rows[size_t(t)]) {
      for (int r = 0; r < nrows; r += kMaxRows) {
        f(n, wb + size_t(r) * stride, stride, a, nrows - r < kMaxRows ? nrows - r : kMaxRows, out + r);
      }
    } else {
      const VecDotFn f1 = vec_dot[size_t(t)];
      for (int r = 0; r < nrows; ++r) out[r] = f1(n, wb + size_t(r) * stride, a);
    }
  }
  QuantizeRowFn quantize_for(GgmlType t) const { return quantize[size_t(t)]; }
  DequantizeRowFn dequantize_for(GgmlType t) const { return dequantize[size_t(t)]; }
};

// The table for `isa` (at most what the CPU supports: callers pass detect_isa() or lower, which
// tests use to compare every level against the scalar one).
Kernels make_kernels(Isa isa, GridLookup lookup = preferred_grid_lookup());

// Per-ISA overrides, each in its own file compiled with that ISA's target attribute.
void install_avx2_kernels(Kernels& k);
void install_avx2_k_kernels(Kernels& k);
void install_avx2_iq_kernels(Kernels& k);
void install_avx2_iq_more_kernels(Kernels& k);
void install_avx2_legacy_kernels(Kernels& k);
void install_avx512_kernels(Kernels& k);
void install_avx512_iq_kernels(Kernels& k, GridLookup lookup);

}  // namespace moeserve::cpu
