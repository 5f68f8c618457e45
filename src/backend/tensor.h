// A tensor as the backends see it: typed, up to 4 dims in ggml order (ne[0] innermost), byte
// strides per dim, data on one device. Rows (ne[0]) are always contiguous; rows themselves may be
// strided, which lets the forward take views (one head of a fused projection, the gate half of
// an interleaved query) without copies.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/ggml_type.h"

namespace moeserve {

enum class DeviceKind : uint8_t { cpu, cuda };

struct DeviceId {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;
  bool operator==(const DeviceId&) const = default;
};

std::string device_name(DeviceId device);  // "CPU", "CUDA0", ...

struct Tensor {
  GgmlType type = GgmlType::F32;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  std::array<size_t, 4> nb{};  // nb[0] = bytes of one block (one element for plain types)
  void* data = nullptr;
  DeviceId device{};

  // A contiguous tensor over `data`; ne[0] must be a multiple of the type's block size.
  static Tensor contiguous(GgmlType type, std::array<int64_t, 4> ne, void* data, DeviceId device = {});

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_size() const { return row_bytes(type, ne[0]); }
  bool is_contiguous() const;
  size_t n_bytes() const;  // span from the first to the last byte (contiguous: row_size * n_rows)

  // Row (i1, i2, i3): the ne[0] elements there.
  char* row(int64_t i1, int64_t i2 = 0, int64_t i3 = 0) const {
    return static_cast<char*>(data) + size_t(i1) * nb[1] + size_t(i2) * nb[2] + size_t(i3) * nb[3];
  }
  // Row number r counted over dims 1..3 (r < n_rows()).
  char* flat_row(int64_t r) const {
    const int64_t i1 = r % ne[1], i2 = (r / ne[1]) % ne[2], i3 = r / (ne[1] * ne[2]);
    return row(i1, i2, i3);
  }
  template <typename T>
  T* as() const { return static_cast<T*>(data); }

  // A view with new dims/strides starting `offset` bytes in (rows stay contiguous).
  Tensor view(std::array<int64_t, 4> new_ne, std::array<size_t, 4> new_nb, size_t offset = 0) const;
  // Same bytes, new dims (contiguous tensors only).
  Tensor reshape(std::array<int64_t, 4> new_ne) const;
  // Rows [first, first + count) along dim 1 (a 2-D slice of consecutive rows).
  Tensor rows(int64_t first, int64_t count) const;
};

std::string shape_str(const Tensor& t);  // "F32 [2048, 7, 1, 1]"

}  // namespace moeserve
