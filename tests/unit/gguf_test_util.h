// Helpers for the GGUF tests: temporary directories, file bytes, random data, and GgufBytes, which
// lays out GGUF bytes field by field by hand (not through GgufWriter) and records where each field
// is, so a test can corrupt exactly one field or compare against the writer's output.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve::test {

class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "moeserve-gguf-XXXXXX").string();
    if (!::mkdtemp(templ.data())) std::abort();
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (uint8_t& b : out) b = uint8_t(rng());
  return out;
}

struct Field {
  std::string name;
  size_t pos;
  size_t width;
};

class GgufBytes {
 public:
  std::vector<uint8_t> bytes;
  std::vector<Field> fields;

  template <typename T>
  void put(const std::string& field, T v) {
    fields.push_back({field, bytes.size(), sizeof(T)});
    const size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &v, sizeof(T));
  }
  void raw(std::string_view s) { bytes.insert(bytes.end(), s.begin(), s.end()); }
  void str(const std::string& field, std::string_view s) {
    put<uint64_t>(field + ".length", s.size());
    raw(s);
  }
  void header(uint32_t version, int64_t n_tensors, int64_t n_kv) {
    raw("GGUF");
    put<uint32_t>("version", version);
    put<int64_t>("n_tensors", n_tensors);
    put<int64_t>("n_kv", n_kv);
  }
  // key + value type; the caller appends the value.
  void key(const std::string& name, int32_t type) {
    str("key " + name, name);
    put<int32_t>("key " + name + ".type", type);
  }
  void tensor_info(const std::string& name, const std::vector<int64_t>& ne, int32_t type, uint64_t offset) {
    str("tensor " + name + ".name", name);
    put<uint32_t>("tensor " + name + ".n_dims", uint32_t(ne.size()));
    for (size_t d = 0; d < ne.size(); ++d) put<int64_t>("tensor " + name + ".ne" + std::to_string(d), ne[d]);
    put<int32_t>("tensor " + name + ".type", type);
    put<uint64_t>("tensor " + name + ".offset", offset);
  }
  void pad(size_t alignment) { bytes.resize((bytes.size() + alignment - 1) / alignment * alignment, 0); }
  void data(const std::vector<uint8_t>& d, size_t alignment) {
    bytes.insert(bytes.end(), d.begin(), d.end());
    pad(alignment);
  }
  const Field& field(const std::string& name) const {
    for (const Field& f : fields) {
      if (f.name == name) return f;
    }
    std::abort();
  }
  // A copy with one integer field replaced (little-endian, cut to the field's width).
  std::vector<uint8_t> with(const std::string& name, uint64_t v) const {
    const Field& f = field(name);
    std::vector<uint8_t> out = bytes;
    std::memcpy(out.data() + f.pos, &v, f.width);
    return out;
  }
};

}  // namespace moeserve::test
