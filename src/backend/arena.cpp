#include "backend/arena.h"

#include "core/error.h"

namespace moeserve {

void Arena::begin_measure() {
  measuring_ = true;
  used_ = 0;
}

void Arena::end_measure() {
  measuring_ = false;
  used_ = 0;
  if (peak_ > buffer_.size()) buffer_ = backend_.alloc(peak_);
}

Tensor Arena::alloc(GgmlType type, std::array<int64_t, 4> ne) {
  const size_t bytes = row_bytes(type, ne[0]) * size_t(ne[1] * ne[2] * ne[3]);
  const size_t offset = used_;
  used_ += (bytes + 63) / 64 * 64;
  if (used_ > peak_) peak_ = used_;
  if (!measuring_ && used_ > buffer_.size()) {
    fail("internal: step scratch exceeds its planned ", buffer_.size(), " bytes (needs ", used_, ")");
  }
  void* data = measuring_ ? nullptr : static_cast<char*>(buffer_.data()) + offset;
  return Tensor::contiguous(type, ne, data, backend_.device());
}

}  // namespace moeserve
