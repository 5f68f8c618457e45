// quantize -> dequantize on random rows: error bounds per type, no NaN on degenerate rows, and
// quantize(dequantize(q)) == q for the formats whose quantizer reproduces its own output.
#include <gtest/gtest.h>

#include <ostream>

#include <cstring>

#include "quant_test_util.h"

namespace moeserve {
namespace {

// Bounds on relative RMSE (sqrt(sum err^2 / sum x^2)), worst over 8 rows of 4096 values each.
// For a uniform quantizer of step s the error is s / sqrt(12); with the block's extreme value
// (~2.1 sigma for 32 normal values, ~2.9 for 256) mapped to the top level this gives about
// 0.5% for 8 bits, and each bit less doubles it; the super-block formats lose a little to their
// quantized sub-block scales, Q2_K/Q3_K more so (only 4/8 levels). The bounds are the measured
// worst cases (noted) plus ~25%, so a real regression fails but the float details of the search
// do not. Heavy-tailed rows have outliers that stretch block scales: looser bounds.
struct ErrorCase {
  GgmlType type;
  double normal;  // bound for N(0, 1) rows
  double heavy;   // bound for Student-t(3) rows with 1% x30 outliers
};

constexpr ErrorCase kErrorCases[] = {
    {GgmlType::Q8_0, 0.007, 0.016},  // measured 0.0054 / 0.0127
    {GgmlType::Q8_1, 0.007, 0.016},  // same quantization as Q8_0
    {GgmlType::Q8_K, 0.009, 0.040},  // 0.0071 / 0.0320 (one scale per 256)
    {GgmlType::Q6_K, 0.023, 0.042},  // 0.0180 / 0.0338
    {GgmlType::Q5_0, 0.055, 0.098},  // 0.0434 / 0.0780
    {GgmlType::Q5_1, 0.049, 0.070},  // 0.0388 / 0.0561
    {GgmlType::Q5_K, 0.046, 0.070},  // 0.0367 / 0.0556
    {GgmlType::Q4_0, 0.110, 0.152},  // 0.0875 / 0.1216
    {GgmlType::Q4_1, 0.100, 0.152},  // 0.0792 / 0.1214
    {GgmlType::Q4_K, 0.092, 0.116},  // 0.0728 / 0.0924
    {GgmlType::Q3_K, 0.192, 0.171},  // 0.1530 / 0.1363
    {GgmlType::Q2_K, 0.380, 0.350},  // 0.3036 / 0.2796
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << type_name(c.type); }

class QuantError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(QuantError, RelativeRmseWithinBound) {
  const ErrorCase& c = GetParam();
  const int64_t n = 4096;
  double worst_normal = 0, worst_heavy = 0;
  for (uint32_t seed = 1; seed <= 8; ++seed) {
    const std::vector<float> x = test::normal_row(n, seed);
    const std::vector<float> y = test::dequantize(c.type, test::quantize(c.type, x), n);
    ASSERT_TRUE(test::all_finite(y));
    worst_normal = std::max(worst_normal, test::relative_rmse(x, y));
    const std::vector<float> h = test::heavy_tailed_row(n, seed + 100);
    const std::vector<float> z = test::dequantize(c.type, test::quantize(c.type, h), n);
    ASSERT_TRUE(test::all_finite(z));
    worst_heavy = std::max(worst_heavy, test::relative_rmse(h, z));
  }
  EXPECT_LE(worst_normal, c.normal) << type_name(c.type);
  EXPECT_LE(worst_heavy, c.heavy) << type_name(c.type);
}

TEST_P(QuantError, ZeroAndConstantRowsStayFinite) {
  const ErrorCase& c = GetParam();
  const int64_t n = 1024;
  const std::vector<float> zeros(static_cast<size_t>(n), 0.0f);
  for (float v : test::dequantize(c.type, test::quantize(c.type, zeros), n)) ASSERT_EQ(v, 0.0f) << type_name(c.type);
  // Constants come back within the type's normal-data bound while the fp16 scales stay clear of
  // the subnormal range (Q6_K's d is about max / 4096, so a constant 1e-3 row already loses ~2%).
  for (float value : {0.7f, -2.5f, 0.05f, 1234.5f}) {
    const std::vector<float> x(static_cast<size_t>(n), value);
    const std::vector<float> y = test::dequantize(c.type, test::quantize(c.type, x), n);
    ASSERT_TRUE(test::all_finite(y)) << type_name(c.type) << " constant " << value;
    EXPECT_LE(test::relative_rmse(x, y), c.normal) << type_name(c.type) << " constant " << value;
  }
  // Values so small that the fp16 scales underflow lose precision but must not produce NaN/inf.
  for (float value : {1e-3f, 1e-7f, -3e-9f, 1e-30f}) {
    const std::vector<float> x(static_cast<size_t>(n), value);
    ASSERT_TRUE(test::all_finite(test::dequantize(c.type, test::quantize(c.type, x), n)))
        << type_name(c.type) << " constant " << value;
  }
}

INSTANTIATE_TEST_SUITE_P(AllQuantizers, QuantError, ::testing::ValuesIn(kErrorCases),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) {
                           return std::string(type_name(info.param.type));
                         });

// The legacy formats quantize their own output back to the same bytes: the block's extreme
// value is exactly d times the extreme level, so d and every level are found again. Not so for
// Q8_1 (its s is computed from the unrounded d), Q8_K (float d re-derived through 1/x) or the
// K-quants (the scale search may settle elsewhere on already-quantized values).
class QuantFixedPoint : public ::testing::TestWithParam<GgmlType> {};

TEST_P(QuantFixedPoint, RequantizingDequantizedBlocksIsIdentity) {
  const GgmlType type = GetParam();
  const int64_t n = 4096;
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    const std::vector<float> x = seed % 2 ? test::normal_row(n, seed) : test::heavy_tailed_row(n, seed);
    const std::vector<uint8_t> q = test::quantize(type, x);
    const std::vector<uint8_t> again = test::quantize(type, test::dequantize(type, q, n));
    EXPECT_EQ(q, again) << type_name(type) << " seed " << seed;
  }
}

INSTANTIATE_TEST_SUITE_P(Legacy, QuantFixedPoint,
                         ::testing::Values(GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                           GgmlType::Q8_0),
                         [](const ::testing::TestParamInfo<GgmlType>& info) {
                           return std::string(type_name(info.param));
                         });

}  // namespace
}  // namespace moeserve
