// Our reference quant code against ggml itself: the ggml shared libraries shipped prebuilt in the
// npm package @node-llama-cpp/linux-x64 (tests/clients, installed by scripts/setup.sh). Checks
// registry sizes and vec_dot types against ggml's type traits, quantizers byte for byte against
// ggml's quantize_row_*_ref, dequantizers against dequantize_row_*, and the dot products against
// ggml's portable ggml_vec_dot_*_generic.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <string>

#include "ggml_reference.h"
#include "quant_test_util.h"

namespace moeserve {
namespace {

using test::Ggml;
using test::GgmlDequantize;
using test::GgmlQuantize;
using test::GgmlTypeTraits;
using test::GgmlTypeTraitsCpu;
using test::GgmlVecDot;
using test::ggml_name;

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

TEST(GgmlReference, RegistryMatchesGgmlTypeTraits) {
  REQUIRE_GGML();
  auto traits = Ggml::get().fn<const GgmlTypeTraits* (*)(int)>("ggml_get_type_traits");
  auto cpu_traits = Ggml::get().fn<const GgmlTypeTraitsCpu* (*)(int)>("ggml_get_type_traits_cpu");
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    const GgmlTypeTraits* g = traits(int(t->type));
    ASSERT_NE(g->type_name, nullptr) << t->name;
    EXPECT_EQ(lower(g->type_name), lower(t->name));
    EXPECT_EQ(g->blck_size, t->block_size) << t->name;
    EXPECT_EQ(g->type_size, t->block_bytes) << t->name;
    EXPECT_EQ(g->is_quantized, t->quantized) << t->name;
    if (t->vec_dot) {
      EXPECT_EQ(cpu_traits(int(t->type))->vec_dot_type, int(t->vec_dot_type)) << t->name;
    }
  }
}

TEST(GgmlReference, DequantizeMatchesOnRandomBlocks) {
  REQUIRE_GGML();
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    if (!t->quantized || !t->dequantize || t->type == GgmlType::Q8_1) continue;  // ggml has no Q8_1 one
    SCOPED_TRACE(t->name);
    const int64_t n = 64 * t->block_size;
    const std::vector<uint8_t> blocks = test::random_blocks(t->type, n, 1234u + uint32_t(t->type));
    const std::vector<float> ours = test::dequantize(t->type, blocks, n);
    std::vector<float> theirs(static_cast<size_t>(n));
    Ggml::get().fn<GgmlDequantize>("dequantize_row_" + ggml_name(t->type))(blocks.data(), theirs.data(), n);
    EXPECT_EQ(std::memcmp(ours.data(), theirs.data(), ours.size() * sizeof(float)), 0);
  }
}

TEST(GgmlReference, QuantizersAreBitExact) {
  REQUIRE_GGML();
  const GgmlType types[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                            GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q2_K, GgmlType::Q3_K,
                            GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_K};
  const int64_t n = 4096;
  const auto rows = test::quantizer_rows(n);
  for (GgmlType type : types) {
    const TypeTraits& t = type_traits(type);
    auto ref = Ggml::get().fn<GgmlQuantize>("quantize_row_" + ggml_name(type) + "_ref");
    for (size_t r = 0; r < rows.size(); ++r) {
      const std::vector<uint8_t> ours = test::quantize(type, rows[r]);
      // Zeroed first: ggml leaves Q8_K bsums of all-zero blocks unwritten, we write zeros.
      std::vector<uint8_t> theirs(ours.size(), 0);
      ref(rows[r].data(), theirs.data(), n);
      size_t first_diff = 0;
      while (first_diff < ours.size() && ours[first_diff] == theirs[first_diff]) ++first_diff;
      EXPECT_EQ(first_diff, ours.size()) << t.name << " row " << r << ": first difference in block "
                                         << first_diff / t.block_bytes << ", byte "
                                         << first_diff % t.block_bytes;
    }
  }
}

TEST(GgmlReference, VecDotMatchesGgmlGeneric) {
  REQUIRE_GGML();
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    if (!t->vec_dot) continue;
    SCOPED_TRACE(t->name);
    const std::string name = "ggml_vec_dot_" + (t->quantized ? ggml_name(t->type) + "_" + ggml_name(t->vec_dot_type) + "_generic"
                                                              : ggml_name(t->type));
    auto ref = Ggml::get().fn<GgmlVecDot>(name);
    for (int64_t n : {256, 1024, 4096}) {
      const uint32_t seed = uint32_t(100 * int(t->type) + n);
      const std::vector<uint8_t> w = t->quantized ? test::random_blocks(t->type, n, seed)
                                                  : test::quantize(t->type, test::normal_row(n, seed));
      const std::vector<uint8_t> a = test::quantize(t->vec_dot_type, test::normal_row(n, seed + 1));
      float theirs = 0;
      ref(int(n), &theirs, 0, w.data(), 0, a.data(), 0, 1);
      const float ours = t->vec_dot(n, w.data(), a.data());
      // Both sum exact integer block sums in float; only the accumulation order differs, so the
      // gap is a few float roundings of the magnitude of the terms.
      const std::vector<float> wf = test::dequantize(t->type, w, n);
      const std::vector<float> af = test::dequantize(t->vec_dot_type, a, n);
      double magnitude = 0;
      for (int64_t i = 0; i < n; ++i) magnitude += std::fabs(double(wf[size_t(i)]) * af[size_t(i)]);
      EXPECT_NEAR(ours, theirs, 1e-5 * magnitude) << "n = " << n;
    }
  }
}

}  // namespace
}  // namespace moeserve
