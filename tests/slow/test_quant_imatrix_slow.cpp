// quantize_rows against ggml_quantize_chunk for every type llama-quantize writes, including the
// 2-bit grid i-quants whose neighbour tables ggml takes tens of seconds to build, on longer rows,
// without and with importance matrices (ggml's own library from npm is the reference).
#include <gtest/gtest.h>

#include <vector>

#include "../unit/ggml_reference.h"
#include "../unit/quant_test_util.h"
#include "../unit/quantize_chunk_check.h"

namespace moeserve {
namespace {

TEST(QuantizeRowsSlow, EveryTypeMatchesGgmlQuantizeChunk) {
  REQUIRE_GGML();
  const GgmlType types[] = {
      GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S,  GgmlType::IQ1_S,  GgmlType::IQ1_M, GgmlType::IQ3_XXS,
      GgmlType::IQ3_S,   GgmlType::IQ4_NL, GgmlType::IQ4_XS, GgmlType::Q2_K,   GgmlType::Q3_K,  GgmlType::Q4_K,
      GgmlType::Q5_K,    GgmlType::Q6_K,   GgmlType::Q4_0,   GgmlType::Q4_1,   GgmlType::Q5_0,  GgmlType::Q5_1,
      GgmlType::Q8_0,    GgmlType::MXFP4,
  };
  constexpr int64_t n_per_row = 4096;
  int64_t n_rows = 0;
  const std::vector<float> src = test::test_matrix(n_per_row, &n_rows);
  for (const test::ImatrixCase& im : test::imatrix_cases(n_per_row)) {
    for (GgmlType type : types) test::expect_same_as_ggml(type, src, n_rows, n_per_row, im);
  }
}

}  // namespace
}  // namespace moeserve
