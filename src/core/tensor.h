// A view of tensor data that lives elsewhere (a mapped GGUF file, a backend buffer).
// ne[0] is the innermost, contiguous dimension (ggml order); unused dims are 1.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/ggml_type.h"

namespace moeserve {

struct TensorView {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  const void* data = nullptr;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_size() const { return row_bytes(type, ne[0]); }
  size_t n_bytes() const { return row_size() * size_t(n_rows()); }
};

}  // namespace moeserve
