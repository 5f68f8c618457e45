#include "model/convert/tensor_encode.h"

#include "core/error.h"

namespace moeserve::convert {

std::vector<uint8_t> encode_rows(const float* data, int64_t row_len, int64_t n_rows, GgmlType type) {
  const TypeTraits& t = type_traits(type);
  if (!t.quantize) fail("no reference quantizer for ", t.name);
  if (row_len % t.block_size != 0)
    fail("row of ", row_len, " values is not a multiple of the ", t.name, " block size ", t.block_size);
  const size_t rb = row_bytes(type, row_len);
  std::vector<uint8_t> out(rb * size_t(n_rows));
  for (int64_t r = 0; r < n_rows; ++r) t.quantize(data + r * row_len, out.data() + size_t(r) * rb, row_len);
  return out;
}

}  // namespace moeserve::convert
