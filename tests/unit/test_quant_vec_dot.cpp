// The vec_dot references against "dequantize both rows, dot in double": they must agree to float
// rounding for every weight type, on quantized real-valued rows and on random blocks.
#include <gtest/gtest.h>

#include <cmath>

#include "quant/blocks.h"
#include "quant_test_util.h"

namespace moeserve {
namespace {

std::vector<const TypeTraits*> weight_types() {
  std::vector<const TypeTraits*> out;
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    if (t->vec_dot) out.push_back(t);
  }
  return out;
}

// Q4_1/Q5_1 dots use the activation's stored s = fp16(d * sum q), not d * sum q: allow half a
// unit of fp16 rounding of each block's m * s term.
double q8_1_offset_slack(const TypeTraits& w, const std::vector<uint8_t>& wb, const std::vector<uint8_t>& ab) {
  if (w.vec_dot_type != GgmlType::Q8_1) return 0;
  const size_t nb = ab.size() / sizeof(quant::BlockQ8_1);
  const auto* a = reinterpret_cast<const quant::BlockQ8_1*>(ab.data());
  double slack = 0;
  for (size_t b = 0; b < nb; ++b) {
    uint16_t m;  // Q4_1 and Q5_1 both keep m right after d
    std::memcpy(&m, wb.data() + b * w.block_bytes + 2, 2);
    slack += std::fabs(double(fp16_to_fp32(m)) * fp16_to_fp32(a[b].s)) * std::ldexp(1.0, -11);
  }
  return slack;
}

void check_dot(const TypeTraits& w, const std::vector<uint8_t>& wb, int64_t n, uint32_t seed) {
  const std::vector<float> act = test::normal_row(n, seed);
  const std::vector<uint8_t> ab = test::quantize(w.vec_dot_type, act);
  const std::vector<float> wf = test::dequantize(w.type, wb, n);
  const std::vector<float> af = test::dequantize(w.vec_dot_type, ab, n);
  double ref = 0, magnitude = 0;
  for (int64_t i = 0; i < n; ++i) {
    ref += double(wf[size_t(i)]) * af[size_t(i)];
    magnitude += std::fabs(double(wf[size_t(i)]) * af[size_t(i)]);
  }
  const float got = w.vec_dot(n, wb.data(), ab.data());
  ASSERT_TRUE(std::isfinite(got)) << w.name << " n=" << n;
  // Integer block sums are exact; what is left is float rounding of one product and one sum per
  // block (and of the dequantized reference values): well below 1e-5 of sum |w a|.
  EXPECT_NEAR(got, ref, 1e-5 * magnitude + q8_1_offset_slack(w, wb, ab)) << w.name << " n=" << n;
}

TEST(QuantVecDot, EveryWeightTypeHasOne) {
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    const bool weight = t->dequantize && t->type != GgmlType::Q8_1 && t->type != GgmlType::Q8_K;
    EXPECT_EQ(t->vec_dot != nullptr, weight) << t->name;
    if (t->vec_dot) {
      EXPECT_NE(type_traits(t->vec_dot_type).quantize, nullptr) << t->name;
    }
  }
}

TEST(QuantVecDot, MatchesDequantizedDotOnRandomBlocks) {
  for (const TypeTraits* t : weight_types()) {
    const int64_t unit = std::max<int64_t>(t->block_size, type_traits(t->vec_dot_type).block_size);
    for (int64_t blocks : {1, 2, 3, 10, 16}) {
      const int64_t n = std::max<int64_t>(unit, 256) * blocks;
      const uint32_t seed = uint32_t(1000 * int(t->type) + blocks);
      const std::vector<uint8_t> wb = t->quantized ? test::random_blocks(t->type, n, seed)
                                                   : test::quantize(t->type, test::normal_row(n, seed));
      check_dot(*t, wb, n, seed + 7);
    }
  }
}

TEST(QuantVecDot, MatchesDequantizedDotOnQuantizedRows) {
  for (const TypeTraits* t : weight_types()) {
    if (!t->quantize) continue;
    for (int64_t n : {256, 1024, 4096}) {
      const uint32_t seed = uint32_t(2000 * int(t->type) + n);
      check_dot(*t, test::quantize(t->type, test::heavy_tailed_row(n, seed)), n, seed + 1);
    }
  }
}

TEST(QuantVecDot, ShortRowsOfLegacyBlocks) {
  // 32-element formats work on rows of any multiple of 32.
  for (const TypeTraits* t : weight_types()) {
    if (t->block_size != 32 || type_traits(t->vec_dot_type).block_size != 32) continue;
    for (int64_t n : {32, 64, 96, 160}) check_dot(*t, test::random_blocks(t->type, n, uint32_t(n)), n, 5);
  }
}

}  // namespace
}  // namespace moeserve
