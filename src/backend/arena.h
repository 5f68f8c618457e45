// Scratch memory for one forward step on one device: a bump allocator over a buffer whose size is
// planned by a dry run (measuring mode) at load, so steps allocate nothing. mark()/release() free
// a layer's temporaries before the next layer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "backend/backend.h"

namespace moeserve {

class Arena {
 public:
  explicit Arena(Backend& backend) : backend_(backend) {}

  // Measuring: tensors get no memory (null data); the peak use is recorded.
  void begin_measure();
  // Ends measuring and allocates the peak seen so far (never shrinks).
  void end_measure();
  void reset() { used_ = 0; }

  Tensor alloc(GgmlType type, std::array<int64_t, 4> ne);
  Tensor f32(int64_t ne0, int64_t ne1 = 1, int64_t ne2 = 1, int64_t ne3 = 1) {
    return alloc(GgmlType::F32, {ne0, ne1, ne2, ne3});
  }
  Tensor i32(int64_t ne0, int64_t ne1 = 1) { return alloc(GgmlType::I32, {ne0, ne1, 1, 1}); }

  size_t mark() const { return used_; }
  void release(size_t mark) { used_ = mark; }
  size_t capacity() const { return buffer_.size(); }
  size_t peak() const { return peak_; }

 private:
  Backend& backend_;
  Buffer buffer_;
  size_t used_ = 0;
  size_t peak_ = 0;
  bool measuring_ = false;
};

}  // namespace moeserve
