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
#include "core/error.h"
#include "quant/quantize.h"
#include "quant_test_util.h"

namespace moeserve {
namespace {

using test::Ggml;

const GgmlType kTypes[] = {
    GgmlType::Q4_0,   GgmlType::Q4_1,  GgmlType::Q5_0,    GgmlType::Q5_1,   GgmlType::Q8_0,  GgmlType::Q2_K,
    GgmlType::Q3_K,   GgmlType::Q4_K,  GgmlType::Q5_K,    GgmlType::Q6_K,   GgmlType::IQ2_XXS, GgmlType::IQ2_XS,
    GgmlType::IQ2_S,  GgmlType::IQ3_XXS, GgmlType::IQ3_S, GgmlType::IQ1_S,  GgmlType::IQ1_M, GgmlType::IQ4_NL,
    GgmlType::IQ4_XS, GgmlType::MXFP4, GgmlType::F16,     GgmlType::BF16,
};

// Two super-blocks per row keep the test quick; tests/slow repeats it on longer rows.
constexpr int64_t kRowLen = 512;
constexpr int64_t kSuperBlock = 256;

// A matrix of rows: the branch-exercising rows of quantizer_rows plus rows shaped like real weight
// matrices (columns of very different scale, a few outlier channels).
std::vector<float> test_matrix(int64_t n_per_row, int64_t* n_rows) {
  std::vector<std::vector<float>> rows = test::quantizer_rows(n_per_row);
  std::mt19937 rng(99);
  std::lognormal_distribution<float> column_scale(0.0f, 0.7f);
  std::vector<float> scale(static_cast<size_t>(n_per_row));
  for (float& s : scale) s = column_scale(rng);
  for (uint32_t seed = 20; seed < 26; ++seed) {
    std::vector<float> row = test::heavy_tailed_row(n_per_row, seed);
    for (int64_t i = 0; i < n_per_row; ++i) row[size_t(i)] *= 0.02f * scale[size_t(i)];
    rows.push_back(row);
  }
  *n_rows = int64_t(rows.size());
  std::vector<float> m;
  for (const auto& r : rows) m.insert(m.end(), r.begin(), r.end());
  return m;
}

struct ImatrixCase {
  const char* name;
  std::vector<float> weights;  // empty: none
};

// Importance matrices as llama.cpp computes them (mean squared activations per column): spread
// over orders of magnitude, a few dominant columns, and columns never activated (zero).
std::vector<ImatrixCase> imatrix_cases(int64_t n) {
  std::vector<ImatrixCase> cases;
  cases.push_back({"none", {}});
  std::mt19937 rng(7);
  std::lognormal_distribution<float> spread(-2.0f, 1.5f);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& v : w) v = spread(rng);
  cases.push_back({"lognormal", w});
  for (size_t i = 0; i < w.size(); i += 97) w[i] *= 400.0f;
  for (size_t i = 5; i < w.size(); i += 31) w[i] = 0.0f;
  cases.push_back({"outliers_and_zeros", w});
  cases.push_back({"ones", std::vector<float>(static_cast<size_t>(n), 1.0f)});
  return cases;
}

size_t first_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  size_t i = 0;
  while (i < a.size() && a[i] == b[i]) ++i;
  return i;
}

TEST(QuantizeRows, MatchesGgmlQuantizeChunk) {
  REQUIRE_GGML();
  auto chunk = Ggml::get().fn<test::GgmlQuantizeChunk>("ggml_quantize_chunk");
  int64_t n_rows = 0;
  const std::vector<float> src = test_matrix(kRowLen, &n_rows);
  for (const ImatrixCase& im : imatrix_cases(kRowLen)) {
    for (GgmlType type : kTypes) {
      SCOPED_TRACE(std::string(type_name(type)) + ", imatrix " + im.name);
      const float* weights = im.weights.empty() ? nullptr : im.weights.data();
      const size_t size = row_bytes(type, kRowLen) * size_t(n_rows);
      std::vector<uint8_t> ours(size), theirs(size);
      EXPECT_EQ(quantize_rows(type, src.data(), ours.data(), n_rows, kRowLen, weights), size);
      // ggml aborts for these types without an importance matrix; ours then weighs every column
      // the same, which is ggml with an importance matrix of ones.
      const std::vector<float> ones(kRowLen, 1.0f);
      const float* ref_weights = !weights && quantize_requires_imatrix(type) ? ones.data() : weights;
      EXPECT_EQ(chunk(int(type), src.data(), theirs.data(), 0, n_rows, kRowLen, ref_weights), size);
      const size_t diff = first_difference(ours, theirs);
      const size_t row = diff / row_bytes(type, kRowLen);
      EXPECT_EQ(diff, size) << "first difference in row " << row << ", block "
                            << (diff % row_bytes(type, kRowLen)) / type_traits(type).block_bytes;
    }
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
  const std::vector<float> src = test_matrix(kRowLen, &n_rows);
  const std::vector<float> weights = imatrix_cases(kRowLen)[1].weights;
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
