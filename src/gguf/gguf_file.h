// Reading GGUF files (shared/spec/gguf.md): memory-mapped, validated before use. Any violation
// becomes one moeserve::Error naming the file and the field, e.g.
//   "model.gguf: tensor blk.3.ffn_up_exps.weight: data ends at byte X, file has Y".
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/ggml_type.h"
#include "core/tensor.h"
#include "gguf/gguf_value.h"

namespace moeserve::gguf {

struct TensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  uint32_t n_dims = 1;
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // ne[0] innermost; dims past n_dims are 1
  uint64_t offset = 0;   // relative to the data section of its part
  uint64_t n_bytes = 0;
  uint32_t part = 0;     // index of the split part holding it (0 for single files)
  const uint8_t* data = nullptr;  // null when the file's data is cut short before this tensor ends
                                  // (a tensor of 0 bytes is never missing)

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

struct OpenOptions {
  // Accept files whose tensor data is cut short (for `inspect`): tensors past the end get
  // data == nullptr and are listed in GgufFile::missing_data(). Default: such a file is an error.
  bool allow_truncated_data = false;
  // Load every part of a split model when given its first part (`-00001-of-0000N.gguf`).
  bool load_split_parts = true;
  // False (`--no-mmap`): the weights a model keeps in RAM are copied out of the mapping into memory
  // of its own (WeightLoader) instead of being read where the file is mapped.
  bool map_weights = true;
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path, const OpenOptions& options = {});
  // Validates a file held in memory (the fuzz target, tests); `name` is used in messages. Tensor
  // data points into `bytes`, which must outlive the result. Split parts are not looked for.
  static GgufFile parse(const uint8_t* bytes, size_t size, std::string name, const OpenOptions& options = {});

  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  const std::string& path() const;        // first part
  const std::string& part_path(size_t part) const;
  uint32_t version() const;               // 2 or 3
  uint32_t alignment() const;
  size_t n_parts() const;
  uint64_t file_size(size_t part = 0) const;
  uint64_t data_offset(size_t part = 0) const;  // absolute offset of the data section
  bool map_weights() const;                     // OpenOptions::map_weights

  // Metadata in file order (first part; split parts' own split.* keys are not merged).
  const std::vector<std::pair<std::string, Value>>& metadata() const;
  const Value* find(std::string_view key) const;
  // Typed getters: nullopt when absent, moeserve::Error when present with an incompatible type.
  std::optional<uint64_t> get_uint(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;  // empty when absent
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  std::string architecture() const;  // general.architecture, or "" when absent

  // Tensors of all parts, in file order.
  const std::vector<TensorInfo>& tensors() const;
  const TensorInfo* find_tensor(std::string_view name) const;
  // A view for the engine; throws moeserve::Error if absent or its data is missing.
  TensorView view(std::string_view name) const;
  // Names of tensors whose data is cut short (only with allow_truncated_data).
  std::vector<std::string> missing_data() const;

 private:
  struct Impl;
  explicit GgufFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moeserve::gguf
