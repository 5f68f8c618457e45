#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/kernels.h"

namespace moeserve::cpu {
namespace {

float dot_f32_scalar(int64_t n, const float* a, const float* b) {
  // Four partial sums: the same association the SIMD versions use, and faster than one chain.
  float s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) s[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void axpy_f32_scalar(int64_t n, float a, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void scale_f32_scalar(int64_t n, float a, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] *= a;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

Isa detect_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  // F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports has no "f16c".
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) {
    return Isa::avx512;
  }
  if (avx2) return Isa::avx2;
#endif
  return Isa::scalar;
}

const char* grid_lookup_name(GridLookup lookup) {
  return lookup == GridLookup::gathers ? "gathers" : "inserts";
}

GridLookup preferred_grid_lookup() {
  // MOESERVE_CPU_GRID_LOOKUP=inserts|gathers overrides the choice (to measure both on one machine).
  if (const char* env = std::getenv("MOESERVE_CPU_GRID_LOOKUP")) {
    if (std::strcmp(env, "inserts") == 0) return GridLookup::inserts;
    if (std::strcmp(env, "gathers") == 0) return GridLookup::gathers;
    static const bool warned = [env] {
      std::fprintf(stderr, "moeserve: MOESERVE_CPU_GRID_LOOKUP=%s is neither inserts nor gathers; ignored\n", env);
      return true;
    }();
    (void)warned;
  }
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_is("intel")) return GridLookup::gathers;
#endif
  return GridLookup::inserts;
}

Kernels make_kernels(Isa isa, GridLookup lookup) {
  Kernels k;
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    const size_t slot = size_t(t->type);
    if (slot >= kTypeSlots) continue;
    k.vec_dot[slot] = t->vec_dot;
    k.quantize[slot] = t->quantize;
    k.dequantize[slot] = t->dequantize;
  }
  k.dot_f32 = dot_f32_scalar;
  k.axpy_f32 = axpy_f32_scalar;
  k.scale_f32 = scale_f32_scalar;
  k.isa = Isa::scalar;
#if defined(__x86_64__)
  // AVX-512 machines run the AVX2 kernels where no AVX-512 one measured faster.
  if (isa == Isa::avx2 || isa == Isa::avx512) {
    install_avx2_kernels(k);
    install_avx2_k_kernels(k);
    install_avx2_iq_kernels(k);
    install_avx2_iq_more_kernels(k);
    install_avx2_legacy_kernels(k);
    k.isa = Isa::avx2;
  }
  if (isa == Isa::avx512) {
    install_avx512_kernels(k);
    install_avx512_iq_kernels(k, lookup);
    k.isa = Isa::avx512;
    k.grid_lookup = lookup;
  }
#endif
  return k;
}

}  // namespace moeserve::cpu
