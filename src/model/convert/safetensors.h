// Reading Hugging Face safetensors checkpoints: one file or a set of shards listed by
// model.safetensors.index.json. Files are memory-mapped; the JSON header of each is validated
// (dtype, shape, offsets inside the file, sizes matching the shape) before any tensor is read.
//
// File layout: u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {...}}
// then the data section; offsets are relative to its start. Shapes are PyTorch order (outermost
// first), data row-major.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/mapped_file.h"

namespace moeserve::convert {

enum class StDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2 };

const char* st_dtype_name(StDtype dtype);
size_t st_dtype_size(StDtype dtype);

struct StTensor {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;  // PyTorch order
  const uint8_t* data = nullptr;
  uint64_t n_bytes = 0;
  size_t file = 0;  // index into SafetensorsSet::files()

  int64_t n_elements() const;
};

class SafetensorsSet {
 public:
  // `dir` holds model.safetensors, or model.safetensors.index.json and the shards it names.
  static SafetensorsSet open_dir(const std::string& dir);
  // Explicit list of files (tests, odd layouts).
  static SafetensorsSet open_files(const std::vector<std::string>& paths);

  const std::map<std::string, StTensor>& tensors() const { return tensors_; }
  const StTensor* find(const std::string& name) const;
  // The tensor converted to float32 (from F32, F16, BF16 or F64), row-major in PyTorch order.
  // Throws naming the tensor when it is absent or of another dtype.
  std::vector<float> read_f32(const std::string& name) const;
  const std::vector<std::string>& files() const { return paths_; }

 private:
  void add_file(const std::string& path);
  std::vector<std::string> paths_;
  std::vector<MappedFile> maps_;
  std::map<std::string, StTensor> tensors_;
};

// Parses one safetensors header held in memory (validation shared by files and the fuzz/unit
// tests). `data` points at the first byte of the file; `size` is the file size.
std::vector<StTensor> parse_safetensors(const uint8_t* data, size_t size, const std::string& name);

}  // namespace moeserve::convert
