// Helpers for the GPU op tests: the CUDA backend (one per process), device mirrors of host tensors
// (the whole host buffer is copied, so views keep their offsets and strides), poisoned outputs
// and a comparison that first demands every element was written.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "../unit/ops_test_util.h"

namespace moeserve::test {

inline Backend& gpu() {
  static std::unique_ptr<Backend> be = make_cuda_backend(0);
  return *be;
}

inline Tensor byte_tensor(void* p, size_t n) { return Tensor::contiguous(GgmlType::I8, {int64_t(n), 1, 1, 1}, p); }

// A device copy of a host tensor's buffer, with the same view into it.
struct DevTensor {
  std::shared_ptr<Buffer> buf;
  Tensor t;
  size_t size = 0;
  size_t offset = 0;
};

inline DevTensor to_gpu(const HostTensor& h) {
  DevTensor d;
  d.size = h.bytes->size();
  d.buf = std::make_shared<Buffer>(gpu().alloc(d.size));
  gpu().upload(byte_tensor(d.buf->data(), d.size), h.bytes->data());
  d.offset = size_t(static_cast<const uint8_t*>(h.t.data) - h.bytes->data());
  d.t = h.t;
  d.t.data = static_cast<char*>(d.buf->data()) + d.offset;
  d.t.device = gpu().device();
  return d;
}

// The device buffer back on the host, viewed as `like` is.
inline HostTensor from_gpu(const DevTensor& d, const HostTensor& like) {
  HostTensor h = like.clone();
  gpu().download(h.bytes->data(), byte_tensor(d.buf->data(), d.size));
  return h;
}

// A view of a host tensor (shares its bytes).
inline HostTensor host_view(const HostTensor& base, std::array<int64_t, 4> ne, std::array<size_t, 4> nb, size_t offset = 0) {
  HostTensor h = base;
  h.t = base.t.view(ne, nb, offset);
  return h;
}

// Every byte 0xFF: NaN in F32, so an element a kernel forgot to write shows.
inline HostTensor poisoned(GgmlType type, std::array<int64_t, 4> ne) {
  HostTensor h = HostTensor::make(type, ne);
  std::memset(h.bytes->data(), 0xFF, h.bytes->size());
  return h;
}

// got (from the GPU) against want (the reference): every element finite, max |got - want| at
// most tol times max |want|.
inline void expect_close(const HostTensor& got, const HostTensor& want, double tol, const std::string& what) {
  const std::vector<float> a = to_floats(got.t), b = to_floats(want.t);
  int64_t bad = 0;
  for (float x : a) bad += std::isfinite(x) ? 0 : 1;
  EXPECT_EQ(bad, 0) << what << ": elements not written (or not finite)";
  const double err = rel_error(a, b);
  EXPECT_LE(err, tol) << what;
}

inline size_t count_diff_bytes(const HostTensor& a, const HostTensor& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.bytes->size(); ++i) n += (*a.bytes)[i] != (*b.bytes)[i];
  return n;
}

}  // namespace moeserve::test
