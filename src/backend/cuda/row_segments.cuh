// Several weight products of one input as one grid (Backend::matmuls): the rows of up to
// Backend::kMaxMatmuls weights, product s on the blocks [first[s], first[s + 1]).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <span>

#include "backend/backend.h"
#include "core/error.h"

namespace moeserve::cuda {

struct RowSegments {
  static constexpr int kMax = Backend::kMaxMatmuls;
  const uint8_t* w[kMax];
  size_t nb1[kMax];
  int64_t m[kMax];
  float* dst[kMax];
  int64_t d_stride[kMax];  // floats between dst columns
  unsigned first[kMax + 1];
  int n;
};

// rows_per_block rows of a product to a block.
inline RowSegments row_segments(std::span<const MatmulProduct> products, int64_t rows_per_block) {
  if (products.empty() || products.size() > size_t(RowSegments::kMax)) {
    fail("internal: cuda matvec takes 1 to ", RowSegments::kMax, " products, not ", products.size());
  }
  RowSegments s{};
  s.n = int(products.size());
  unsigned blocks = 0;
  for (int i = 0; i < s.n; ++i) {
    const MatmulProduct& p = products[size_t(i)];
    if (p.dst.nb[1] % sizeof(float) != 0) fail("internal: cuda matmul dst row stride is not a multiple of 4");
    s.w[i] = static_cast<const uint8_t*>(p.w.data);
    s.nb1[i] = p.w.nb[1];
    s.m[i] = p.w.ne[1];
    s.dst[i] = p.dst.as<float>();
    s.d_stride[i] = int64_t(p.dst.nb[1] / sizeof(float));
    s.first[i] = blocks;
    blocks += unsigned((p.w.ne[1] + rows_per_block - 1) / rows_per_block);
  }
  s.first[s.n] = blocks;
  return s;
}

// The product block b works on.
__device__ __forceinline__ int segment_of(const RowSegments& s, unsigned b) {
  int i = 0;
  while (i + 1 < s.n && b >= s.first[i + 1]) ++i;
  return i;
}

}  // namespace moeserve::cuda
