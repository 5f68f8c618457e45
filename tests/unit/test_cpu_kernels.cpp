// Every SIMD kernel the CPU backend installs against the scalar table (the registry's reference
// conversions and dot products): quantizers and dequantizers bit for bit, dot products within
// float summation-order error, on random rows of several lengths.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/kernels.h"
#include "quant_test_util.h"

namespace moeserve::cpu {
namespace {

std::vector<float> random_row(int64_t n, std::mt19937& gen, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(gen);
  return v;
}

// Every SIMD table this CPU can run: AVX2, and AVX-512 with each grid lookup of its i-quant
// kernels (both give the same bits whichever the CPU prefers).
struct Level {
  Isa isa;
  GridLookup lookup;
  std::string name() const { return std::string(isa_name(isa)) + "/" + grid_lookup_name(lookup); }
};

std::vector<Level> simd_levels() {
  std::vector<Level> levels;
  if (detect_isa() != Isa::scalar) levels.push_back({Isa::avx2, GridLookup::inserts});
  if (detect_isa() == Isa::avx512) {
    levels.push_back({Isa::avx512, GridLookup::inserts});
    levels.push_back({Isa::avx512, GridLookup::gathers});
  }
  return levels;
}

TEST(CpuKernels, QuantizersAndDequantizersBitExact) {
  const Kernels ref = make_kernels(Isa::scalar);
  std::mt19937 gen(5);
  for (const Level& level : simd_levels()) {
    const Kernels k = make_kernels(level.isa, level.lookup);
    for (size_t slot = 0; slot < kTypeSlots; ++slot) {
      const TypeTraits* t = find_type(int32_t(slot));
      if (!t) continue;
      for (int64_t blocks : {1, 3, 8}) {
        const int64_t n = t->block_size * blocks;
        for (float scale : {1.0f, 1e-3f, 300.0f}) {
          std::vector<float> x = random_row(n, gen, scale);
          // Values on rounding boundaries: exact halves of the Q8 step of a block whose max is 127.
          if (n >= 32) {
            x[0] = 127.0f;
            for (int j = 1; j < 8; ++j) x[size_t(j)] = float(j) + 0.5f;
            x[9] = -2.5f;
          }
          const size_t bytes = row_bytes(t->type, n);
          if (k.quantize[slot] != ref.quantize[slot]) {
            std::vector<uint8_t> a(bytes), b(bytes);
            ref.quantize[slot](x.data(), a.data(), n);
            k.quantize[slot](x.data(), b.data(), n);
            EXPECT_EQ(a, b) << "quantize " << t->name << " " << level.name() << " n=" << n;
          }
          if (k.dequantize[slot] != ref.dequantize[slot] && ref.quantize[slot]) {
            std::vector<uint8_t> q(bytes);
            ref.quantize[slot](x.data(), q.data(), n);
            std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
            ref.dequantize[slot](q.data(), a.data(), n);
            k.dequantize[slot](q.data(), b.data(), n);
            EXPECT_EQ(a, b) << "dequantize " << t->name << " " << level.name();
          }
        }
      }
    }
  }
}

TEST(CpuKernels, DotProductsMatchReference) {
  const Kernels ref = make_kernels(Isa::scalar);
  std::mt19937 gen(6);
  for (const Level& level : simd_levels()) {
    const Kernels k = make_kernels(level.isa, level.lookup);
    int checked = 0;
    for (size_t slot = 0; slot < kTypeSlots; ++slot) {
      const TypeTraits* t = find_type(int32_t(slot));
      if (!t || !ref.vec_dot[slot] || k.vec_dot[slot] == ref.vec_dot[slot]) continue;
      ++checked;
      const GgmlType act = t->vec_dot_type;
      for (int64_t blocks : {1, 2, 7, 16}) {
        const int64_t n = std::max(t->block_size, type_traits(act).block_size) * blocks;
        const std::vector<float> xf = random_row(n, gen, 2.0f);
        std::vector<uint8_t> w = test::random_blocks(t->type, n, uint32_t(gen()));
        std::vector<uint8_t> x(row_bytes(act, n));
        ref.quantize[size_t(act)](xf.data(), x.data(), n);
        const float expect = ref.vec_dot[slot](n, w.data(), x.data());
        // Reordering float sums: n * 2^-24 * sum |w_i x_i|, with w dequantized for the bound.
        std::vector<float> wd(static_cast<size_t>(n));
        t->dequantize(w.data(), wd.data(), n);
        double mag = 0;
        for (int64_t e = 0; e < n; ++e) mag += std::fabs(double(wd[size_t(e)]) * xf[size_t(e)]);
        EXPECT_NEAR(k.vec_dot[slot](n, w.data(), x.data()), expect, double(n) * 6e-8 * mag * 1.1 + 1e-6)
            << t->name << " " << level.name() << " n=" << n;
      }
    }
    EXPECT_GE(checked, 8) << level.name();  // F32, F16, Q8_0, Q4_0, Q4_K, IQ2_XXS, IQ2_XS, IQ3_XXS
  }
}

// The multi-column kernels against the same table's one-column kernel: bit for bit, for every
// column count (dot_cols splits 9 columns into groups of kMaxCols and a remainder; kernels with
// fewer registers' worth of columns split further) and row length.
TEST(CpuKernels, MultiColumnDotsEqualSingleColumn) {
  std::mt19937 gen(8);
  for (const Level& level : simd_levels()) {
    const Kernels k = make_kernels(level.isa, level.lookup);
    int checked = 0;
    for (size_t slot = 0; slot < kTypeSlots; ++slot) {
      const TypeTraits* t = find_type(int32_t(slot));
      if (!t || !k.vec_dot_cols[slot]) continue;
      ++checked;
      const GgmlType act = t->vec_dot_type;
      for (int64_t blocks : {1, 3, 8}) {
        const int64_t n = std::max(t->block_size, type_traits(act).block_size) * blocks;
        const std::vector<uint8_t> w = test::random_blocks(t->type, n, uint32_t(gen()));
        constexpr int kCols = 9;
        std::vector<std::vector<uint8_t>> x(kCols, std::vector<uint8_t>(row_bytes(act, n)));
        const void* a[kCols];
        for (int c = 0; c < kCols; ++c) {
          const std::vector<float> xf = random_row(n, gen, c == 3 ? 1e-3f : 2.0f);
          k.quantize[size_t(act)](xf.data(), x[size_t(c)].data(), n);
          a[c] = x[size_t(c)].data();
        }
        for (int nc = 1; nc <= kCols; ++nc) {
          float out[kCols];
          k.dot_cols(t->type, n, w.data(), a, nc, out);
          for (int c = 0; c < nc; ++c) {
            EXPECT_EQ(out[c], k.vec_dot[slot](n, w.data(), a[c]))
                << t->name << " " << level.name() << " n=" << n << " ncols=" << nc << " column " << c;
          }
        }
      }
    }
    EXPECT_GE(checked, 14) << level.name();  // Q8_0, Q4_0, Q2_K..Q6_K, 7 i-quants
  }
}

// The multi-row kernels (one column, several weight rows a stride apart) against the same table's
// one-row kernel: bit for bit, for every row count (dot_rows splits 9 rows into groups of
// kMaxRows and a remainder), row lengths of 1, 2, 3 and 8 super-blocks (an expert's down row is
// 2) and a stride with padding between rows. Types without a multi-row kernel go through the
// one-row fallback of dot_rows, checked the same way.
TEST(CpuKernels, MultiRowDotsEqualSingleRow) {
  std::mt19937 gen(10);
  std::vector<Level> levels = simd_levels();
  levels.insert(levels.begin(), Level{Isa::scalar, GridLookup::inserts});
  for (const Level& level : levels) {
    const Kernels k = make_kernels(level.isa, level.lookup);
    int with_kernel = 0;
    for (size_t slot = 0; slot < kTypeSlots; ++slot) {
      const TypeTraits* t = find_type(int32_t(slot));
      // Quantized types only: random bits in float rows are NaNs.
      if (!t || t->block_size == 1 || !k.vec_dot[slot] || !k.quantize[size_t(t->vec_dot_type)]) continue;
      with_kernel += k.vec_dot_rows[slot] != nullptr;
      const GgmlType act = t->vec_dot_type;
      for (int64_t blocks : {1, 2, 3, 8}) {
        const int64_t n = std::max(t->block_size, type_traits(act).block_size) * blocks;
        constexpr int kRows = 9;
        const size_t stride = row_bytes(t->type, n) + 16;
        std::vector<uint8_t> w(stride * kRows, 0xA5);
        for (int r = 0; r < kRows; ++r) {
          const std::vector<uint8_t> row = test::random_blocks(t->type, n, uint32_t(gen()));
          std::copy(row.begin(), row.end(), w.begin() + std::ptrdiff_t(stride * size_t(r)));
        }
        std::vector<uint8_t> x(row_bytes(act, n));
        const std::vector<float> xf = random_row(n, gen, 2.0f);
        k.quantize[size_t(act)](xf.data(), x.data(), n);
        for (int nr = 1; nr <= kRows; ++nr) {
          float out[kRows];
          k.dot_rows(t->type, n, w.data(), stride, x.data(), nr, out);
          for (int r = 0; r < nr; ++r) {
            EXPECT_EQ(out[r], k.vec_dot[slot](n, w.data() + stride * size_t(r), x.data()))
                << t->name << " " << level.name() << " n=" << n << " nrows=" << nr << " row " << r;
          }
        }
      }
    }
    // IQ2_XXS, IQ2_XS, IQ3_XXS with both grid lookups.
    if (level.isa == Isa::avx512) {
      EXPECT_GE(with_kernel, 3) << level.name();
    }
  }
}

// The AVX-512 table's own kernels against the AVX2 ones: bit for bit (same integer sums, same
// float steps), which the dot-product test above only checks within a tolerance. Random blocks
// give every sign pattern (and its parity bit) and every scale nibble.
TEST(CpuKernels, Avx512DotsEqualAvx2) {
  if (detect_isa() != Isa::avx512) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  for (GridLookup lookup : {GridLookup::inserts, GridLookup::gathers}) {
    const Kernels k2 = make_kernels(Isa::avx2), k5 = make_kernels(Isa::avx512, lookup);
    std::mt19937 gen(9);
    int checked = 0;
    for (size_t slot = 0; slot < kTypeSlots; ++slot) {
      const TypeTraits* t = find_type(int32_t(slot));
      if (!t || k5.vec_dot[slot] == k2.vec_dot[slot]) continue;
      ++checked;
      const GgmlType act = t->vec_dot_type;
      for (int64_t blocks : {1, 5, 64}) {
        const int64_t n = std::max(t->block_size, type_traits(act).block_size) * blocks;
        const std::vector<uint8_t> w = test::random_blocks(t->type, n, uint32_t(gen()));
        const std::vector<float> xf = random_row(n, gen, 3.0f);
        std::vector<uint8_t> x(row_bytes(act, n));
        k2.quantize[size_t(act)](xf.data(), x.data(), n);
        EXPECT_EQ(k5.vec_dot[slot](n, w.data(), x.data()), k2.vec_dot[slot](n, w.data(), x.data()))
            << t->name << " " << grid_lookup_name(lookup);
      }
    }
    EXPECT_GE(checked, 5);  // Q8_0, Q4_0 (VNNI), IQ2_XXS, IQ2_XS, IQ3_XXS (512-bit)
  }
}

TEST(CpuKernels, FloatHelpers) {
  const Kernels ref = make_kernels(Isa::scalar);
  std::mt19937 gen(7);
  for (const Level& level : simd_levels()) {
    const Kernels k = make_kernels(level.isa, level.lookup);
    for (int64_t n : {1, 7, 8, 17, 64, 129}) {
      const std::vector<float> a = random_row(n, gen, 1.0f), b = random_row(n, gen, 1.0f);
      EXPECT_NEAR(k.dot_f32(n, a.data(), b.data()), ref.dot_f32(n, a.data(), b.data()), 1e-5 * double(n));
      std::vector<float> y1 = b, y2 = b;
      ref.axpy_f32(n, 0.7f, a.data(), y1.data());
      k.axpy_f32(n, 0.7f, a.data(), y2.data());
      for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y2[size_t(i)], y1[size_t(i)], 1e-6);
      ref.scale_f32(n, 1.3f, y1.data());
      k.scale_f32(n, 1.3f, y2.data());
      for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y2[size_t(i)], y1[size_t(i)], 1e-6);
    }
  }
}

}  // namespace
}  // namespace moeserve::cpu
