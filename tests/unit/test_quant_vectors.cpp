// Dequantization against shared/spec/testvectors: 64 blocks of random bytes per type and the
// floats ggml's own dequantize_row_* produced from them.
#include <gtest/gtest.h>

#include <ostream>

#include <cmath>
#include <cstring>
#include <string>

#include "quant_test_util.h"

namespace moeserve {
namespace {

struct VectorFile {
  GgmlType type;
  const char* stem;
};

void PrintTo(const VectorFile& f, std::ostream* os) { *os << f.stem; }

class SpecVectors : public ::testing::TestWithParam<VectorFile> {};

TEST_P(SpecVectors, DequantizeMatchesGgml) {
  const VectorFile& f = GetParam();
  const std::string dir = std::string(MOESERVE_SPEC_DIR) + "/testvectors/";
  const std::vector<uint8_t> blocks = test::read_binary(dir + f.stem + ".blocks.bin");
  const std::vector<uint8_t> expected_bytes = test::read_binary(dir + f.stem + ".dequant.f32");
  const TypeTraits& t = type_traits(f.type);
  ASSERT_EQ(blocks.size(), 64 * t.block_bytes);
  const int64_t n = 64 * t.block_size;
  ASSERT_EQ(expected_bytes.size(), size_t(n) * sizeof(float));
  std::vector<float> expected(static_cast<size_t>(n));
  std::memcpy(expected.data(), expected_bytes.data(), expected_bytes.size());

  const std::vector<float> got = test::dequantize(f.type, blocks, n);
  int64_t not_identical = 0;
  for (int64_t i = 0; i < n; ++i) {
    // Random scale bits (IQ1_M) can make a NaN super-block scale: NaN in, NaN out.
    if (std::isnan(expected[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << f.stem << " element " << i;
      continue;
    }
    // The README allows 1e-6 relative; every product here is exact, so we get the same bits.
    ASSERT_LE(std::fabs(got[i] - expected[i]), 1e-6f * std::fabs(expected[i])) << f.stem << " element " << i;
    if (std::memcmp(&got[i], &expected[i], sizeof(float)) != 0) ++not_identical;
  }
  EXPECT_EQ(not_identical, 0) << f.stem << ": values within tolerance but not bit-identical";
}

INSTANTIATE_TEST_SUITE_P(
    AllFiles, SpecVectors,
    ::testing::Values(VectorFile{GgmlType::Q4_0, "q4_0"}, VectorFile{GgmlType::Q4_1, "q4_1"},
                      VectorFile{GgmlType::Q5_0, "q5_0"}, VectorFile{GgmlType::Q5_1, "q5_1"},
                      VectorFile{GgmlType::Q8_0, "q8_0"}, VectorFile{GgmlType::Q2_K, "q2_K"},
                      VectorFile{GgmlType::Q3_K, "q3_K"}, VectorFile{GgmlType::Q4_K, "q4_K"},
                      VectorFile{GgmlType::Q5_K, "q5_K"}, VectorFile{GgmlType::Q6_K, "q6_K"},
                      VectorFile{GgmlType::IQ2_XXS, "iq2_xxs"}, VectorFile{GgmlType::IQ2_XS, "iq2_xs"},
                      VectorFile{GgmlType::IQ2_S, "iq2_s"}, VectorFile{GgmlType::IQ3_XXS, "iq3_xxs"},
                      VectorFile{GgmlType::IQ3_S, "iq3_s"}, VectorFile{GgmlType::IQ1_S, "iq1_s"},
                      VectorFile{GgmlType::IQ1_M, "iq1_m"}, VectorFile{GgmlType::IQ4_NL, "iq4_nl"},
                      VectorFile{GgmlType::IQ4_XS, "iq4_xs"}, VectorFile{GgmlType::MXFP4, "mxfp4"}),
    [](const ::testing::TestParamInfo<VectorFile>& info) { return std::string(info.param.stem); });

}  // namespace
}  // namespace moeserve
