#include "model/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include "core/error.h"

namespace moeserve {
namespace {

std::string dims_str(const std::array<int64_t, 4>& ne) {
  int n = 4;
  while (n > 1 && ne[size_t(n - 1)] == 1) --n;
  std::string s = "[";
  for (int i = 0; i < n; ++i) s += str_cat(i ? ", " : "", ne[size_t(i)]);
  return s + "]";
}

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A copy of n bytes in memory of this process's own (OpenOptions::map_weights off). Large weights
// go to anonymous memory, 2 MiB aligned and advised for transparent huge pages (a weight stream
// then crosses one TLB entry per 2 MiB instead of per 4 KiB); a kernel without them keeps small
// pages.
Buffer copy_to_ram(const uint8_t* src, size_t n) {
  constexpr size_t kHuge = size_t(2) << 20;
  if (n < kHuge) {
    void* p = std::aligned_alloc(64, (n + 63) / 64 * 64 + 64);  // 64-byte alignment: AVX-512 loads
    if (!p) fail("out of memory copying ", format_bytes(n), " of weights to RAM (--no-mmap)");
    std::memcpy(p, src, n);
    return Buffer(p, n, [](void* q) { std::free(q); });
  }
  const size_t size = (n + kHuge - 1) / kHuge * kHuge + kHuge;  // room to align the start
  void* map = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) fail("out of memory copying ", format_bytes(n), " of weights to RAM (--no-mmap)");
  char* p = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(map) + kHuge - 1) / kHuge * kHuge);
#ifdef MADV_HUGEPAGE
  madvise(p, size - size_t(p - static_cast<char*>(map)), MADV_HUGEPAGE);  // advice only
#endif
  std::memcpy(p, src, n);
  return Buffer(p, n, [map, size](void*) { munmap(map, size); });
}

}  // namespace

std::string format_bytes(size_t bytes) {
  char buf[32];
  const double b = double(bytes);
  if (b >= 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  } else if (b >= 1024.0 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  }
  return buf;
}

size_t Placement::bytes_on(DeviceId device) const {
  size_t total = 0;
  for (const PlacedWeight& w : weights_) {
    if (w.expert_devices.empty()) {
      if (w.device == device) total += w.bytes;
      continue;
    }
    const size_t per_expert = w.bytes / w.expert_devices.size();
    for (DeviceId d : w.expert_devices) total += d == device ? per_expert : 0;
  }
  return total;
}

size_t Placement::total_bytes() const {
  size_t total = 0;
  for (const PlacedWeight& w : weights_) total += w.bytes;
  return total;
}

std::string Placement::summary() const {
  struct Row {
    size_t tensors = 0, bytes = 0, expert_bytes = 0;
  };
  std::map<std::string, Row> rows;
  for (const PlacedWeight& w : weights_) {
    if (w.expert_devices.empty()) {
      Row& r = rows[device_name(w.device)];
      ++r.tensors;
      r.bytes += w.bytes;
      continue;
    }
    const size_t per_expert = w.bytes / w.expert_devices.size();
    std::map<std::string, bool> seen;
    for (DeviceId d : w.expert_devices) {
      Row& r = rows[device_name(d)];
      r.bytes += per_expert;
      r.expert_bytes += per_expert;
      if (!seen[device_name(d)]) ++r.tensors, seen[device_name(d)] = true;
    }
  }
  std::string out;
  for (const auto& [dev, r] : rows) {
    out += str_cat(out.empty() ? "" : "; ", dev, ": ", r.tensors, " tensors, ", format_bytes(r.bytes));
    if (r.expert_bytes) out += str_cat(" (experts ", format_bytes(r.expert_bytes), ")");
  }
  return out;
}

std::string Placement::device_summary() const {
  struct Row {
    size_t bytes = 0;
    std::set<int64_t> expert_layers;
  };
  std::map<std::pair<int, int>, Row> rows;  // (CPU last, index) -> row
  auto row_of = [&](DeviceId d) -> Row& { return rows[{d.kind == DeviceKind::cpu ? 1 : 0, d.index}]; };
  for (const PlacedWeight& w : weights_) {
    if (w.expert_devices.empty()) {
      row_of(w.device).bytes += w.bytes;
      continue;
    }
    const size_t per_expert = w.bytes / w.expert_devices.size();
    const int64_t layer = w.name.starts_with("blk.") ? std::atoll(w.name.c_str() + 4) : -1;
    for (DeviceId d : w.expert_devices) {
      row_of(d).bytes += per_expert;
      row_of(d).expert_layers.insert(layer);
    }
  }
  std::string out;
  for (const auto& [key, r] : rows) {
    const DeviceId d{key.first ? DeviceKind::cpu : DeviceKind::cuda, key.second};
    out += str_cat(out.empty() ? "" : ", ", device_name(d), ": ", format_bytes(r.bytes));
    if (rows.size() > 1 && !r.expert_layers.empty()) {
      out += str_cat(" (experts of ", r.expert_layers.size(), " layer", r.expert_layers.size() == 1 ? "" : "s", ")");
    }
  }
  return out;
}

const gguf::TensorInfo& WeightLoader::find(const std::string& name) const {
  const gguf::TensorInfo* info = file_.find_tensor(name);
  if (!info) fail(file_.path(), ": missing tensor ", name);
  if (!info->data) fail(file_.path(), ": tensor ", name, ": data is missing (truncated file)");
  return *info;
}

void WeightLoader::check_dims(const gguf::TensorInfo& info, std::array<int64_t, 4> ne) const {
  if (info.ne != ne) {
    fail(file_.path(), ": tensor ", info.name, ": expected shape ", dims_str(ne), ", found ", dims_str(info.ne));
  }
}

void WeightLoader::require_matmul(const std::string& name, const Tensor& t) const {
  const TypeTraits& tr = type_traits(t.type);
  if (!tr.vec_dot || !type_traits(tr.vec_dot_type).quantize) {
    fail(file_.path(), ": tensor ", name, ": type ", tr.name, " is not supported for matrix products");
  }
}

Tensor WeightLoader::matrix(const std::string& name, std::array<int64_t, 4> ne, bool embedding) {
  const gguf::TensorInfo& info = find(name);
  check_dims(info, ne);
  const TypeTraits& t = type_traits(info.type);
  if (embedding && !t.dequantize) {
    fail(file_.path(), ": tensor ", name, ": type ", t.name, " is not supported for embeddings");
  }
  const DeviceId home = backend_.weight_device(name);
  Tensor tensor = Tensor::contiguous(info.type, info.ne, const_cast<uint8_t*>(info.data), home);
  if (!embedding) require_matmul(name, tensor);
  if (home.kind != DeviceKind::cpu) {
    if (home != backend_.device()) fail("internal: weight ", name, " placed on ", device_name(home), ", not a device of this backend");
    Buffer buffer = backend_.alloc(tensor.n_bytes());
    tensor.data = buffer.data();
    upload_chunked(tensor, info.data);
    buffers_.push_back(std::move(buffer));
  } else if (!file_.map_weights()) {
    Buffer buffer = copy_to_ram(info.data, tensor.n_bytes());
    tensor.data = buffer.data();
    buffers_.push_back(std::move(buffer));
  }
  PlacedWeight placed{name, info.type, tensor.n_bytes(), home, {}};
  if (name.find("_exps") != std::string::npos) placed.expert_devices.assign(size_t(ne[2]), home);
  placement_.add(std::move(placed));
  return tensor;
}

void WeightLoader::upload_chunked(const Tensor& dst, const uint8_t* src) {
  // Chunks of whole rows keep the host side bounded (the device backend stages each chunk) and let
  // the kernel read the next chunk's pages from the file while this one is copied.
  constexpr size_t kChunkBytes = size_t(64) << 20;
  const double t0 = seconds_now();
  const size_t row = dst.row_size();
  const int64_t n_rows = dst.n_rows();
  const int64_t per_chunk = std::max<int64_t>(1, int64_t(kChunkBytes / row));
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  for (int64_t r = 0; r < n_rows; r += per_chunk) {
    const int64_t count = std::min(per_chunk, n_rows - r);
    const size_t offset = size_t(r) * row;
    if (r + count < n_rows) {
      const uintptr_t next = reinterpret_cast<uintptr_t>(src + offset + size_t(count) * row);
      const uintptr_t start = next / page * page;
      const size_t len = std::min(size_t(per_chunk), size_t(n_rows - r - count)) * row + (next - start);
      posix_madvise(reinterpret_cast<void*>(start), len, POSIX_MADV_WILLNEED);
    }
    const Tensor part = Tensor::contiguous(dst.type, {dst.ne[0], count, 1, 1}, static_cast<char*>(dst.data) + offset, dst.device);
    backend_.upload(part, src + offset);
  }
  placement_.uploaded_bytes += dst.n_bytes();
  placement_.upload_seconds += seconds_now() - t0;
}

std::optional<Tensor> WeightLoader::matrix_opt(const std::string& name, std::array<int64_t, 4> ne) {
  if (!has(name)) return std::nullopt;
  return matrix(name, ne);
}

Tensor WeightLoader::vector_f32(const std::string& name, std::array<int64_t, 4> ne) {
  const gguf::TensorInfo& info = find(name);
  const int64_t n = ne[0] * ne[1] * ne[2] * ne[3];
  check_dims(info, ne);
  const TypeTraits& t = type_traits(info.type);
  if (!t.dequantize) fail(file_.path(), ": tensor ", name, ": type ", t.name, " cannot be converted to F32");
  Buffer buffer = backend_.alloc(size_t(n) * sizeof(float));
  Tensor tensor = Tensor::contiguous(GgmlType::F32, ne, buffer.data(), backend_.device());
  std::vector<float> host(static_cast<size_t>(n));
  // Converted per source row (block-quantized rows cannot be split).
  for (int64_t r = 0; r < n / info.ne[0]; ++r) {
    t.dequantize(info.data + size_t(r) * row_bytes(info.type, info.ne[0]), host.data() + r * info.ne[0], info.ne[0]);
  }
  backend_.upload(tensor, host.data());
  placement_.add(PlacedWeight{name, GgmlType::F32, size_t(n) * sizeof(float), backend_.device(), {}});
  buffers_.push_back(std::move(buffer));
  return tensor;
}

std::optional<Tensor> WeightLoader::vector_f32_opt(const std::string& name, std::array<int64_t, 4> ne) {
  if (!has(name)) return std::nullopt;
  return vector_f32(name, ne);
}

}  // namespace moeserve
