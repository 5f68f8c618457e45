// One comparison of quantize_rows with ggml_quantize_chunk, shared by the unit and slow tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ggml_reference.h"
#include "quant/quantize.h"
#include "quant_test_util.h"

namespace moeserve::test {

// Quantizes the n_rows x n_per_row matrix src to `type` with our quantize_rows and with ggml,
// with the importance weights of `im`, and expects the same bytes.
inline void expect_same_as_ggml(GgmlType type, const std::vector<float>& src, int64_t n_rows, int64_t n_per_row,
                                const ImatrixCase& im) {
  SCOPED_TRACE(std::string(type_name(type)) + ", imatrix " + im.name);
  auto chunk = Ggml::get().fn<GgmlQuantizeChunk>("ggml_quantize_chunk");
  const float* weights = im.weights.empty() ? nullptr : im.weights.data();
  const size_t row_size = row_bytes(type, n_per_row);
  const size_t size = row_size * size_t(n_rows);
  std::vector<uint8_t> ours(size), theirs(size);
  EXPECT_EQ(quantize_rows(type, src.data(), ours.data(), n_rows, n_per_row, weights), size);
  // ggml aborts for these types without an importance matrix; ours then weighs every column the
  // same, which is ggml with an importance matrix of ones.
  const std::vector<float> ones(static_cast<size_t>(n_per_row), 1.0f);
  const float* ref_weights = !weights && quantize_requires_imatrix(type) ? ones.data() : weights;
  EXPECT_EQ(chunk(int(type), src.data(), theirs.data(), 0, n_rows, n_per_row, ref_weights), size);
  size_t diff = 0;
  while (diff < size && ours[diff] == theirs[diff]) ++diff;
  EXPECT_EQ(diff, size) << "first difference in row " << diff / row_size << ", block "
                        << (diff % row_size) / type_traits(type).block_bytes;
}

}  // namespace moeserve::test
