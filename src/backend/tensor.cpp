#include "backend/tensor.h"

#include "core/error.h"

namespace moeserve {

std::string device_name(DeviceId device) {
  return device.kind == DeviceKind::cpu ? std::string("CPU") : str_cat("CUDA", device.index);
}

Tensor Tensor::contiguous(GgmlType type, std::array<int64_t, 4> ne, void* data, DeviceId device) {
  const TypeTraits& traits = type_traits(type);
  if (ne[0] % traits.block_size != 0) {
    fail("internal: ", traits.name, " row of ", ne[0], " elements is not a multiple of its block size");
  }
  Tensor t;
  t.type = type;
  t.ne = ne;
  t.nb[0] = traits.block_bytes;
  t.nb[1] = row_bytes(type, ne[0]);
  t.nb[2] = t.nb[1] * size_t(ne[1]);
  t.nb[3] = t.nb[2] * size_t(ne[2]);
  t.data = data;
  t.device = device;
  return t;
}

bool Tensor::is_contiguous() const {
  // Strides of dims of size 1 never matter.
  size_t expected = row_size();
  for (int d = 1; d < 4; ++d) {
    if (ne[d] > 1 && nb[d] != expected) return false;
    expected *= size_t(ne[d]);
  }
  return true;
}

size_t Tensor::n_bytes() const {
  size_t last = row_size();
  for (int d = 1; d < 4; ++d) last += size_t(ne[d] - 1) * nb[d];
  return last;
}

Tensor Tensor::view(std::array<int64_t, 4> new_ne, std::array<size_t, 4> new_nb, size_t offset) const {
  Tensor t = *this;
  t.ne = new_ne;
  t.nb = new_nb;
  t.nb[0] = type_traits(type).block_bytes;
  t.data = data ? static_cast<char*>(data) + offset : nullptr;
  return t;
}

Tensor Tensor::reshape(std::array<int64_t, 4> new_ne) const {
  if (!is_contiguous()) fail("internal: reshape of a non-contiguous tensor ", shape_str(*this));
  if (new_ne[0] * new_ne[1] * new_ne[2] * new_ne[3] != n_elements()) {
    fail("internal: reshape of ", shape_str(*this), " to a different element count");
  }
  return contiguous(type, new_ne, data, device);
}

Tensor Tensor::rows(int64_t first, int64_t count) const {
  Tensor t = *this;
  t.ne[1] = count;
  t.data = data ? static_cast<char*>(data) + size_t(first) * nb[1] : nullptr;
  return t;
}

std::string shape_str(const Tensor& t) {
  return str_cat(type_name(t.type), " [", t.ne[0], ", ", t.ne[1], ", ", t.ne[2], ", ", t.ne[3], "]");
}

}  // namespace moeserve
