// Writing GGUF v3 files that our reader and other GGUF tools accept. Two stages so that files of
// any size (the 23 GiB synthetic Qwen3-Coder-Next) stream to disk: declare metadata and tensors,
// then write each tensor's bytes in declaration order.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "gguf/gguf_value.h"

namespace moeserve::gguf {

class GgufWriter {
 public:
  // The alignment must be a power of two; other than 32 it is written as general.alignment.
  explicit GgufWriter(uint32_t alignment = 32);
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;
  // A file not finished (an exception, an abandoned write) is closed and removed, so no half-written
  // file is left looking like a model.
  ~GgufWriter();

  // Keys keep insertion order; setting an existing key replaces its value.
  void set(const std::string& key, Value value);
  // ne[0] innermost; it must be a multiple of the type's block size. Returns the tensor's index.
  size_t add_tensor(const std::string& name, GgmlType type, std::array<int64_t, 4> ne);

  // Writes header, metadata and tensor infos, then padding up to the data section.
  void begin(const std::string& path);
  // The bytes of the next declared tensor (exactly its size; pads to the alignment itself).
  void write_tensor_data(const void* data, size_t n_bytes);
  // Checks that every tensor was written, flushes and closes. Throws on any I/O error.
  void finish();
  // Closes the file after the header and the tensors written so far, leaving it cut short like an
  // interrupted download (for tests and for header-only files `moeserve inspect` can read).
  void finish_truncated();

  // Convenience for small files: all data in memory, one call.
  struct Tensor {
    std::string name;
    GgmlType type;
    std::array<int64_t, 4> ne;
    std::vector<uint8_t> data;
  };
  static void write_file(const std::string& path, const std::vector<std::pair<std::string, Value>>& metadata,
                         const std::vector<Tensor>& tensors, uint32_t alignment = 32);

 private:
  struct Pending {
    std::string name;
    GgmlType type;
    std::array<int64_t, 4> ne;
    uint64_t n_bytes;
  };
  uint32_t alignment_;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<Pending> tensors_;
  std::FILE* out_ = nullptr;
  std::string path_;
  size_t next_tensor_ = 0;

  void write_bytes(const void* data, size_t n);
  void close_file();
};

}  // namespace moeserve::gguf
