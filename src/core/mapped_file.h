// A read-only memory map of a whole file (POSIX mmap). Model files are tens of GiB: mapping costs
// only address space, and the kernel pages in what is touched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace moeserve {

class MappedFile {
 public:
  // Throws moeserve::Error naming the path when it cannot be opened, is not a regular file, or
  // cannot be mapped. An empty file maps to data() == nullptr, size() == 0.
  static MappedFile open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moeserve
