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

  // Tells the kernel that the mapped bytes [data, data + size) are not needed for now: their pages
  // leave this process's resident memory (a pass over a whole model otherwise ends with all of it
  // resident) and are read from the file again if touched. Any pointer into a read-only mapping.
  static void release(const void* data, size_t size);

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moeserve
