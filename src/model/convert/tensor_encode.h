// Float rows -> bytes of a ggml type through the type registry's reference quantizer.
#pragma once

#include <cstdint>
#include <vector>

#include "core/ggml_type.h"

namespace moeserve::convert {

// `n_rows` rows of `row_len` floats each; row_len must be a multiple of the type's block size.
// Throws when the registry has no reference quantizer for `type`.
std::vector<uint8_t> encode_rows(const float* data, int64_t row_len, int64_t n_rows, GgmlType type);

}  // namespace moeserve::convert
