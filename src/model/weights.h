// Weights of a model: where each lives (the placement plan) and how they are fetched from a GGUF
// file with their shapes and types checked, one clear error per problem.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf_file.h"

namespace moeserve {

// The device of every weight; stacked expert tensors also have a device per expert slice, so the
// hybrid placement can keep some experts of a layer in RAM and others in VRAM.
struct PlacedWeight {
  std::string name;
  GgmlType type = GgmlType::F32;
  size_t bytes = 0;
  DeviceId device{};
  std::vector<DeviceId> expert_devices;  // [n_expert] for *_exps tensors, else empty
};

class Placement {
 public:
  void add(PlacedWeight w) { weights_.push_back(std::move(w)); }
  const std::vector<PlacedWeight>& weights() const { return weights_; }
  size_t bytes_on(DeviceId device) const;
  size_t total_bytes() const;
  // "CPU: 311 tensors, 1.23 GiB (experts 0.98 GiB)" per device.
  std::string summary() const;
  // Bytes per device, accelerators first: "CUDA0: 12.3 GiB, CPU: 9.8 GiB (experts of 11 layers)".
  std::string device_summary() const;

  // Weights copied to an accelerator at load, and how long the copies took.
  size_t uploaded_bytes = 0;
  double upload_seconds = 0;

 private:
  std::vector<PlacedWeight> weights_;
};

// Fetches tensors by name. Matrices go where the backend keeps them (Backend::weight_device):
// those whose home is the CPU stay where the file maps them (zero copy; with the file's
// map_weights off they are copied into memory the model owns instead), the others are allocated
// on their device and uploaded in bounded chunks. Small vectors (norms, biases, conv taps, decay
// rates) are converted to F32 once into memory the model owns on the compute device.
class WeightLoader {
 public:
  WeightLoader(const gguf::GgufFile& file, Backend& backend) : file_(file), backend_(backend) {}

  bool has(const std::string& name) const { return file_.find_tensor(name) != nullptr; }
  // Dims of a tensor in the file (error naming it when absent).
  std::array<int64_t, 4> dims(const std::string& name) const { return find(name).ne; }
  // A weight that matmul (or get_rows when `embedding`) can use, of exactly these dims (trailing
  // 1s may be omitted in the file). n_expert > 0 marks a stacked expert tensor (last dim).
  Tensor matrix(const std::string& name, std::array<int64_t, 4> ne, bool embedding = false);
  std::optional<Tensor> matrix_opt(const std::string& name, std::array<int64_t, 4> ne);
  // A tensor loaded for one use (the embedding) reused as a matrix (a tied output head).
  void require_matmul(const std::string& name, const Tensor& t) const;
  // An F32 copy of a small tensor of exactly these dims (any float or quantized type in the file).
  Tensor vector_f32(const std::string& name, std::array<int64_t, 4> ne);
  std::optional<Tensor> vector_f32_opt(const std::string& name, std::array<int64_t, 4> ne);

  const std::string& path() const { return file_.path(); }
  Placement take_placement() { return std::move(placement_); }
  std::vector<Buffer> take_buffers() { return std::move(buffers_); }

 private:
  const gguf::TensorInfo& find(const std::string& name) const;
  void check_dims(const gguf::TensorInfo& info, std::array<int64_t, 4> ne) const;
  void upload_chunked(const Tensor& dst, const uint8_t* src);

  const gguf::GgufFile& file_;
  Backend& backend_;
  Placement placement_;
  std::vector<Buffer> buffers_;
};

std::string format_bytes(size_t bytes);  // "1.23 GiB", "512.0 MiB", "12.0 KiB"

}  // namespace moeserve
