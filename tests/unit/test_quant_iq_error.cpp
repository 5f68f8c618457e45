// Error properties of the i-quant quantizers (their bytes are checked against ggml in
// test_quant_imatrix / tests/slow): on Gaussian rows the relative RMS error stays within the
// bounds of each bit width (ggml's quantizers give the same errors, being byte-identical), fewer
// bits never do better, and an importance matrix lowers the error it weighs, for every type.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "quant/quantize.h"
#include "quant_test_util.h"

namespace moeserve {
namespace {

constexpr int64_t kN = 4096, kRows = 6;

struct Errors {
  double plain;     // sqrt(sum (x - y)^2 / sum x^2)
  double weighted;  // the same with every column weighted by the importance matrix
};

Errors errors(GgmlType type, const std::vector<float>& x, const std::vector<float>& w, bool use_imatrix) {
  std::vector<uint8_t> q(row_bytes(type, kN) * kRows);
  quantize_rows(type, x.data(), q.data(), kRows, kN, use_imatrix ? w.data() : nullptr);
  const std::vector<float> y = test::dequantize(type, q, kN * kRows);
  double e = 0, s = 0, ew = 0, sw = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = double(x[i]) - y[i];
    e += d * d;
    s += double(x[i]) * x[i];
    ew += w[i % kN] * d * d;
    sw += w[i % kN] * double(x[i]) * x[i];
  }
  return {std::sqrt(e / s), std::sqrt(ew / sw)};
}

struct Bound {
  GgmlType type;
  double max_rmse;  // without an importance matrix, Gaussian rows
};

// In order of bits per weight.
const Bound kBounds[] = {
    {GgmlType::IQ1_S, 0.54},   {GgmlType::IQ1_M, 0.64},  {GgmlType::IQ2_XXS, 0.38}, {GgmlType::IQ2_XS, 0.33},
    {GgmlType::IQ2_S, 0.29},   {GgmlType::IQ3_XXS, 0.235}, {GgmlType::IQ3_S, 0.185}, {GgmlType::IQ4_XS, 0.085},
    {GgmlType::IQ4_NL, 0.085},
};

TEST(IquantError, BoundedAndImprovedByImatrix) {
  std::vector<float> x;
  for (uint32_t r = 0; r < kRows; ++r) {
    const std::vector<float> row = test::normal_row(kN, 40 + r);
    x.insert(x.end(), row.begin(), row.end());
  }
  std::mt19937 rng(3);
  std::lognormal_distribution<float> spread(0.0f, 1.5f);
  std::vector<float> w(kN);
  for (float& v : w) v = spread(rng);
  double previous_weighted = 1.0;
  for (const Bound& b : kBounds) {
    SCOPED_TRACE(type_name(b.type));
    const Errors plain = errors(b.type, x, w, false), weighted = errors(b.type, x, w, true);
    EXPECT_LT(plain.plain, b.max_rmse);
    EXPECT_GT(plain.plain, 0.5 * b.max_rmse);  // a bound that could not fail would test nothing
    EXPECT_LT(weighted.weighted, 0.9 * plain.weighted);
    // More bits, less error, where importance is measured as it will be at inference.
    EXPECT_LT(weighted.weighted, previous_weighted * 1.02);
    previous_weighted = weighted.weighted;
  }
}

// All-zero and constant rows stay exact (zero) or finite, for every i-quant, with and without
// importance weights.
TEST(IquantError, DegenerateRows) {
  const std::vector<float> ones(kN, 1.0f);
  for (const Bound& b : kBounds) {
    for (const std::vector<float>& row : {std::vector<float>(kN, 0.0f), std::vector<float>(kN, 0.3f)}) {
      for (bool im : {false, true}) {
        std::vector<uint8_t> q(row_bytes(b.type, kN));
        quantize_rows(b.type, row.data(), q.data(), 1, kN, im ? ones.data() : nullptr);
        const std::vector<float> y = test::dequantize(b.type, q, kN);
        EXPECT_TRUE(test::all_finite(y)) << type_name(b.type);
        if (row[0] == 0.0f) {
          for (float v : y) ASSERT_EQ(v, 0.0f) << type_name(b.type);
        }
      }
    }
  }
}

}  // namespace
}  // namespace moeserve
