// quantize_rows against ggml_quantize_chunk (the function llama-quantize calls), byte for byte,
// for every type ggml quantizes model files to, without an importance matrix and with several:
// ggml's own library (npm @node-llama-cpp/linux-x64) is the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ggml_reference.h"
#include "quantize_chunk_check.h"
#include "core/error.h"
#include "quant/quantize.h"
#include "quant_test_util.h"

namespace moeserve {
namespace {

using test::Ggml;

// ggml builds the neighbour tables of the 2-bit grids (IQ2_*, IQ1_*) in tens of seconds, so
// those types are compared in tests/slow/test_quant_imatrix_slow.cpp; these need no such tables
// or cheap ones.
const GgmlType kTypes[] = {
    GgmlType::Q4_0,    GgmlType::Q4_1,  GgmlType::Q5_0,   GgmlType::Q5_1,   GgmlType::Q8_0,  GgmlType::Q2_K,
    GgmlType::Q3_K,    GgmlType::Q4_K,  GgmlType::Q5_K,   GgmlType::Q6_K,   GgmlType::IQ3_XXS, GgmlType::IQ3_S,
    GgmlType::IQ4_NL,  GgmlType::IQ4_XS, GgmlType::MXFP4, GgmlType::F16,    GgmlType::BF16,
};

// Two super-blocks per row keep the test quick; tests/slow repeats it on longer rows.
constexpr int64_t kRowLen = 512;
constexpr int64_t kSuperBlock = 256;

TEST(QuantizeRows, MatchesGgmlQuantizeChunk) {
  REQUIRE_GGML();
  int64_t n_rows = 0;
  const std::vector<float> src = test::test_matrix(kRowLen, &n_rows);
  for (const test::ImatrixCase& im : test::imatrix_cases(kRowLen)) {
    for (GgmlType type : kTypes) test::expect_same_as_ggml(type, src, n_rows, kRowLen, im);
  }
}

TEST(QuantizeRows, RequiresImatrixAgreesWithGgml) {
  REQUIRE_GGML();
  auto requires_imatrix = Ggml::get().fn<bool (*)(int)>("ggml_quantize_requires_imatrix");
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    EXPECT_EQ(quantize_requires_imatrix(t->type), requires_imatrix(int(t->type))) << t->name;
  }
}

// IQ3_S: ggml's reference leaves its write position for the grid indices and signs behind at an
// exactly zero sub-block, so the following sub-blocks are stored one place early and decode to
// the wrong values. Ours stores every sub-block in its place: identical bytes up to that point,
// and a smaller error than ggml's.
TEST(QuantizeRows, Iq3SZeroSubBlockStoredInPlace) {
  REQUIRE_GGML();
  auto chunk = Ggml::get().fn<test::GgmlQuantizeChunk>("ggml_quantize_chunk");
  std::vector<float> row = test::normal_row(kSuperBlock, 3);
  std::fill(row.begin() + 64, row.begin() + 96, 0.0f);  // sub-block 2 of 8
  std::vector<uint8_t> ours(row_bytes(GgmlType::IQ3_S, kSuperBlock)), theirs(ours.size());
  quantize_rows(GgmlType::IQ3_S, row.data(), ours.data(), 1, kSuperBlock, nullptr);
  chunk(int(GgmlType::IQ3_S), row.data(), theirs.data(), 0, 1, kSuperBlock, nullptr);
  // qs (bytes 2..65): sub-blocks 0 and 1 (16 bytes) agree, sub-block 2 differs.
  EXPECT_EQ(std::memcmp(ours.data(), theirs.data(), 2 + 16), 0);
  EXPECT_NE(std::memcmp(ours.data() + 2 + 16, theirs.data() + 2 + 16, 8), 0);
  const double err_ours = test::relative_rmse(row, test::dequantize(GgmlType::IQ3_S, ours, kSuperBlock));
  const double err_theirs = test::relative_rmse(row, test::dequantize(GgmlType::IQ3_S, theirs, kSuperBlock));
  EXPECT_LT(err_ours, 0.5 * err_theirs);
}

TEST(QuantizeRows, ResultDoesNotDependOnThreadCount) {
  int64_t n_rows = 0;
  const std::vector<float> src = test::test_matrix(kRowLen, &n_rows);
  const std::vector<float> weights = test::imatrix_cases(kRowLen)[1].weights;
  for (GgmlType type : {GgmlType::IQ2_XS, GgmlType::Q4_K, GgmlType::IQ4_NL}) {
    const size_t size = row_bytes(type, kRowLen) * size_t(n_rows);
    std::vector<uint8_t> one(size), several(size);
    quantize_rows(type, src.data(), one.data(), n_rows, kRowLen, weights.data(), 1);
    quantize_rows(type, src.data(), several.data(), n_rows, kRowLen, weights.data(), 3);
    EXPECT_EQ(one, several) << type_name(type);
  }
}

TEST(QuantizeRows, RejectsRowsNotMultipleOfBlock) {
  std::vector<float> src(300, 1.0f);
  std::vector<uint8_t> dst(1024);
  try {
    quantize_rows(GgmlType::IQ2_XS, src.data(), dst.data(), 1, 300, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of 256"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_rows(GgmlType::I32, src.data(), dst.data(), 1, 32, nullptr), Error);
}

}  // namespace
}  // namespace moeserve
