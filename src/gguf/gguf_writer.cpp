#include "gguf/gguf_writer.h"

#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "gguf/gguf_text.h"

namespace moeserve::gguf {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF writer assumes a little-endian host");

constexpr uint32_t kDefaultAlignment = 32;
constexpr size_t kMaxNameBytes = 63;

uint64_t pad_to(uint64_t n, uint32_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// The header is built in memory (it is small next to the data) and written in one go.
class Buffer {
 public:
  template <typename T>
  void put(T v) {
    const size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &v, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  std::vector<uint8_t> bytes;
};

void put_value(Buffer& out, const Value& v, const std::string& key) {
  switch (v.type) {
    case ValueType::UINT8: out.put<uint8_t>(uint8_t(std::get<uint64_t>(v.data))); return;
    case ValueType::INT8: out.put<int8_t>(int8_t(std::get<int64_t>(v.data))); return;
    case ValueType::UINT16: out.put<uint16_t>(uint16_t(std::get<uint64_t>(v.data))); return;
    case ValueType::INT16: out.put<int16_t>(int16_t(std::get<int64_t>(v.data))); return;
    case ValueType::UINT32: out.put<uint32_t>(uint32_t(std::get<uint64_t>(v.data))); return;
    case ValueType::INT32: out.put<int32_t>(int32_t(std::get<int64_t>(v.data))); return;
    case ValueType::FLOAT32: out.put<float>(float(std::get<double>(v.data))); return;
    case ValueType::BOOL: out.put<uint8_t>(std::get<uint64_t>(v.data) != 0 ? 1 : 0); return;
    case ValueType::STRING: out.put_string(std::get<std::string>(v.data)); return;
    case ValueType::UINT64: out.put<uint64_t>(std::get<uint64_t>(v.data)); return;
    case ValueType::INT64: out.put<int64_t>(std::get<int64_t>(v.data)); return;
    case ValueType::FLOAT64: out.put<double>(std::get<double>(v.data)); return;
    case ValueType::ARRAY: {
      const Array& a = v.as_array();
      out.put<int32_t>(int32_t(a.elem_type));
      out.put<uint64_t>(a.items.size());
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (a.items[i].type != a.elem_type) {
          fail("GGUF key ", key, ": array item ", i, " is ", value_type_name(a.items[i].type), ", the array holds ",
               value_type_name(a.elem_type));
        }
        put_value(out, a.items[i], key);
      }
      return;
    }
  }
  fail("GGUF key ", key, ": invalid value type ", int32_t(v.type));
}

// The values a Value of each type may hold are those of its variant alternative; check that the
// alternative matches the type, so a hand-built Value cannot make put_value throw bad_variant_access.
bool holds_matching_alternative(const Value& v) {
  switch (v.type) {
    case ValueType::UINT8: case ValueType::UINT16: case ValueType::UINT32: case ValueType::UINT64:
    case ValueType::BOOL:
      return std::holds_alternative<uint64_t>(v.data);
    case ValueType::INT8: case ValueType::INT16: case ValueType::INT32: case ValueType::INT64:
      return std::holds_alternative<int64_t>(v.data);
    case ValueType::FLOAT32: case ValueType::FLOAT64:
      return std::holds_alternative<double>(v.data);
    case ValueType::STRING:
      return std::holds_alternative<std::string>(v.data);
    case ValueType::ARRAY: {
      const auto* a = std::get_if<std::shared_ptr<Array>>(&v.data);
      if (!a || !*a) return false;
      for (const Value& item : (*a)->items) {
        if (!holds_matching_alternative(item)) return false;
      }
      return true;
    }
  }
  return false;
}

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  if (alignment == 0 || !std::has_single_bit(alignment)) fail("GGUF alignment ", alignment, " is not a power of two");
}

GgufWriter::~GgufWriter() {
  if (out_) {
    std::fclose(out_);
    std::remove(path_.c_str());
  }
}

void GgufWriter::set(const std::string& key, Value value) {
  if (out_) fail(path_, ": metadata must be set before begin()");
  if (key.empty()) fail("GGUF key must not be empty");
  if (!holds_matching_alternative(value)) fail("GGUF key ", key, ": value does not hold a ", value_type_name(value.type));
  if (key == "general.alignment" && (value.type != ValueType::UINT32 || value.as_uint() != alignment_)) {
    fail("GGUF key general.alignment must be the u32 ", alignment_, " given to the writer");
  }
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

size_t GgufWriter::add_tensor(const std::string& name, GgmlType type, std::array<int64_t, 4> ne) {
  if (out_) fail(path_, ": tensors must be declared before begin()");
  if (name.empty() || name.size() > kMaxNameBytes) {
    fail("GGUF tensor name '", printable(name), "' must be 1..", kMaxNameBytes, " bytes");
  }
  for (const Pending& t : tensors_) {
    if (t.name == name) fail("GGUF tensor ", name, " declared twice");
  }
  const TypeTraits& traits = type_traits(type);
  for (int64_t n : ne) {
    if (n < 0) fail("GGUF tensor ", name, ": negative dimension ", n);
  }
  if (ne[0] % traits.block_size != 0) {
    fail("GGUF tensor ", name, ": ne[0] = ", ne[0], " is not a multiple of the ", traits.name, " block size ",
         traits.block_size);
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(uint64_t(ne[0] / traits.block_size), uint64_t(traits.block_bytes), &bytes) ||
      __builtin_mul_overflow(bytes, uint64_t(ne[1]), &bytes) || __builtin_mul_overflow(bytes, uint64_t(ne[2]), &bytes) ||
      __builtin_mul_overflow(bytes, uint64_t(ne[3]), &bytes)) {
    fail("GGUF tensor ", name, ": size overflows 64 bits");
  }
  tensors_.push_back({name, type, ne, bytes});
  return tensors_.size() - 1;
}

void GgufWriter::begin(const std::string& path) {
  if (out_) fail(path_, ": begin() called twice");
  std::vector<std::pair<std::string, Value>> metadata = metadata_;
  bool has_alignment_key = false;
  for (const auto& kv : metadata) has_alignment_key |= kv.first == "general.alignment";
  if (alignment_ != kDefaultAlignment && !has_alignment_key) metadata.emplace_back("general.alignment", Value::u32(alignment_));

  Buffer header;
  header.put<uint32_t>(0x46554747);  // "GGUF" read as a little-endian u32
  header.put<uint32_t>(3);
  header.put<int64_t>(int64_t(tensors_.size()));
  header.put<int64_t>(int64_t(metadata.size()));
  for (const auto& [key, value] : metadata) {
    header.put_string(key);
    header.put<int32_t>(int32_t(value.type));
    put_value(header, value, key);
  }
  // Tensors are laid out in declaration order, each padded to the alignment (as ggml does).
  uint64_t offset = 0;
  for (const Pending& t : tensors_) {
    header.put_string(t.name);
    // n_dims as ggml writes it: trailing dims of 1 are dropped, at least one is kept.
    uint32_t n_dims = 1;
    for (uint32_t d = 1; d < 4; ++d) {
      if (t.ne[d] != 1) n_dims = d + 1;
    }
    header.put<uint32_t>(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) header.put<int64_t>(t.ne[d]);
    header.put<int32_t>(int32_t(t.type));
    header.put<uint64_t>(offset);
    offset += pad_to(t.n_bytes, alignment_);
  }
  header.bytes.resize(pad_to(header.bytes.size(), alignment_), 0);

  out_ = std::fopen(path.c_str(), "wb");
  if (!out_) fail(path, ": cannot create: ", std::strerror(errno));
  path_ = path;
  next_tensor_ = 0;
  std::setvbuf(out_, nullptr, _IOFBF, 1 << 20);
  write_bytes(header.bytes.data(), header.bytes.size());
}

void GgufWriter::write_bytes(const void* data, size_t n) {
  if (n > 0 && std::fwrite(data, 1, n, out_) != n) fail(path_, ": write failed: ", std::strerror(errno));
}

void GgufWriter::write_tensor_data(const void* data, size_t n_bytes) {
  if (!out_) fail("GGUF writer: write_tensor_data() before begin()");
  if (next_tensor_ >= tensors_.size()) fail(path_, ": more tensor data than the ", tensors_.size(), " declared tensors");
  const Pending& t = tensors_[next_tensor_];
  if (n_bytes != t.n_bytes) fail(path_, ": tensor ", t.name, ": got ", n_bytes, " bytes, its shape and type need ", t.n_bytes);
  write_bytes(data, n_bytes);
  static constexpr uint8_t kZeros[256] = {};
  for (uint64_t pad = pad_to(n_bytes, alignment_) - n_bytes; pad > 0;) {
    const size_t n = size_t(pad < sizeof(kZeros) ? pad : sizeof(kZeros));
    write_bytes(kZeros, n);
    pad -= n;
  }
  ++next_tensor_;
}

void GgufWriter::close_file() {
  std::FILE* f = std::exchange(out_, nullptr);
  errno = 0;
  bool ok = std::fflush(f) == 0 && !std::ferror(f);
  int err = errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(path_.c_str());
    fail(path_, ": write failed: ", std::strerror(err != 0 ? err : EIO));
  }
}

void GgufWriter::finish() {
  if (!out_) fail("GGUF writer: finish() before begin()");
  if (next_tensor_ != tensors_.size()) {
    fail(path_, ": finish() after ", next_tensor_, " of ", tensors_.size(), " tensors were written");
  }
  close_file();
}

void GgufWriter::finish_truncated() {
  if (!out_) fail("GGUF writer: finish_truncated() before begin()");
  close_file();
}

void GgufWriter::write_file(const std::string& path, const std::vector<std::pair<std::string, Value>>& metadata,
                            const std::vector<Tensor>& tensors, uint32_t alignment) {
  GgufWriter writer(alignment);
  for (const auto& [key, value] : metadata) writer.set(key, value);
  for (const Tensor& t : tensors) writer.add_tensor(t.name, t.type, t.ne);
  writer.begin(path);
  for (const Tensor& t : tensors) writer.write_tensor_data(t.data.data(), t.data.size());
  writer.finish();
}

}  // namespace moeserve::gguf
