#include "gguf/gguf_parse.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "core/error.h"
#include "gguf/gguf_text.h"

namespace moeserve::gguf::detail {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr size_t kMaxNameBytes = 63;               // GGML_MAX_NAME (64) including the NUL
constexpr uint64_t kMaxStringBytes = 1ull << 30;   // ggml's limit
constexpr uint64_t kMaxArrayItems = 1ull << 30;    // ggml's limit
// Each decoded value costs ~48 bytes of memory against as little as 1 byte of file, so a file
// could ask for 48x its size. Real models hold < 2M values (vocabularies of ~260k tokens, their
// merges, scores and types); refusing more than 16M bounds a hostile file to ~800 MiB of values.
constexpr uint64_t kMaxMetadataValues = 1ull << 24;
// ggml rejects nested arrays; we read them, but bounded so a file cannot exhaust the stack.
constexpr int kMaxArrayDepth = 8;
// Smallest encodings, used to reject counts that the remaining bytes cannot hold before any
// allocation: a key/value is key length (8) + 1 byte of key + type (4) + a 1-byte value; a tensor
// info is name length (8) + 1 byte of name + n_dims (4) + one dim (8) + type (4) + offset (8).
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;

// Bounds-checked little-endian reads over the file, with the field being read named in errors.
class Reader {
 public:
  Reader(const uint8_t* bytes, size_t size, const std::string& file) : bytes_(bytes), size_(size), file_(file) {}

  size_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  void set_context(std::string context) { context_ = std::move(context); }

  template <typename... Args>
  [[noreturn]] void error(Args&&... args) const {
    fail(file_, ": ", context_, ": ", std::forward<Args>(args)...);
  }

  template <typename T>
  T read(const char* field) {
    if (left() < sizeof(T)) {
      error(field, " at byte ", pos_, " runs past the end of the file (", size_, " bytes)");
    }
    T value;
    std::memcpy(&value, bytes_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string read_string(const char* field) {
    const uint64_t length = read<uint64_t>(field);
    if (length > left()) {
      error(field, " length ", length, " at byte ", pos_ - 8, " exceeds the ", left(), " bytes left in the file");
    }
    if (length > kMaxStringBytes) error(field, " length ", length, " exceeds the limit of ", kMaxStringBytes);
    std::string s(reinterpret_cast<const char*>(bytes_ + pos_), size_t(length));
    pos_ += size_t(length);
    return s;
  }

 private:
  const uint8_t* bytes_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& file_;
  std::string context_ = "header";
};

uint64_t min_encoded_bytes(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
    case ValueType::STRING: return 8;
    case ValueType::ARRAY: return 4 + 8;
  }
  return 1;
}

ValueType read_value_type(Reader& r, const char* field) {
  const int32_t id = r.read<int32_t>(field);
  if (id < 0 || id > int32_t(ValueType::FLOAT64)) r.error(field, " ", id, " is not a GGUF value type (0..12)");
  return ValueType(id);
}

Value read_value(Reader& r, ValueType type, int depth, uint64_t& n_values) {
  if (++n_values > kMaxMetadataValues) r.error("metadata holds more than ", kMaxMetadataValues, " values");
  switch (type) {
    case ValueType::UINT8: return Value::u8(r.read<uint8_t>("u8 value"));
    case ValueType::INT8: return Value::i8(r.read<int8_t>("i8 value"));
    case ValueType::UINT16: return Value::u16(r.read<uint16_t>("u16 value"));
    case ValueType::INT16: return Value::i16(r.read<int16_t>("i16 value"));
    case ValueType::UINT32: return Value::u32(r.read<uint32_t>("u32 value"));
    case ValueType::INT32: return Value::i32(r.read<int32_t>("i32 value"));
    case ValueType::FLOAT32: return Value::f32(r.read<float>("f32 value"));
    case ValueType::BOOL: return Value::boolean(r.read<uint8_t>("bool value") != 0);
    case ValueType::STRING: return Value::string(r.read_string("string value"));
    case ValueType::UINT64: return Value::u64(r.read<uint64_t>("u64 value"));
    case ValueType::INT64: return Value::i64(r.read<int64_t>("i64 value"));
    case ValueType::FLOAT64: return Value::f64(r.read<double>("f64 value"));
    case ValueType::ARRAY: break;
  }
  const ValueType elem = read_value_type(r, "array element type");
  if (elem == ValueType::ARRAY && depth + 1 >= kMaxArrayDepth) {
    r.error("arrays nested deeper than ", kMaxArrayDepth, " levels");
  }
  const uint64_t count = r.read<uint64_t>("array length");
  if (count > kMaxArrayItems) r.error("array length ", count, " exceeds the limit of ", kMaxArrayItems);
  if (count > r.left() / min_encoded_bytes(elem)) {
    r.error("array of ", count, " ", value_type_name(elem), " items cannot fit in the ", r.left(),
            " bytes left in the file");
  }
  if (count > kMaxMetadataValues - n_values) r.error("metadata holds more than ", kMaxMetadataValues, " values");
  auto array = std::make_shared<Array>();
  array->elem_type = elem;
  array->items.reserve(size_t(count));
  for (uint64_t i = 0; i < count; ++i) array->items.push_back(read_value(r, elem, depth + 1, n_values));
  return Value{ValueType::ARRAY, std::move(array)};
}

// Ids ggml once used and removed, or newer than this build: named in the error so the user knows
// the file is not simply corrupt.
const char* retired_type_name(int32_t id) {
  switch (id) {
    case 4: return "Q4_2 (removed from ggml)";
    case 5: return "Q4_3 (removed from ggml)";
    case 31: return "Q4_0_4_4 (removed from ggml; re-convert the model)";
    case 32: return "Q4_0_4_8 (removed from ggml; re-convert the model)";
    case 33: return "Q4_0_8_8 (removed from ggml; re-convert the model)";
    case 36: return "IQ4_NL_4_4 (removed from ggml; re-convert the model)";
    case 37: return "IQ4_NL_4_8 (removed from ggml; re-convert the model)";
    case 38: return "IQ4_NL_8_8 (removed from ggml; re-convert the model)";
    case 40: return "NVFP4 (not supported by moeserve)";
    case 41: return "Q1_0 (not supported by moeserve)";
    case 42: return "Q2_0 (not supported by moeserve)";
    default: return nullptr;
  }
}

void check_alignment(Reader& r, const std::vector<std::pair<std::string, Value>>& metadata, uint32_t& alignment) {
  for (const auto& [key, value] : metadata) {
    if (key != "general.alignment") continue;
    r.set_context("key general.alignment");
    if (value.type != ValueType::UINT32) r.error("must be u32, found ", value_type_name(value.type));
    const uint64_t a = value.as_uint();
    if (a == 0 || !std::has_single_bit(a)) r.error("value ", a, " is not a power of two");
    alignment = uint32_t(a);
  }
}

void read_tensor_info(Reader& r, size_t index, uint32_t alignment, uint32_t part, TensorInfo& t) {
  r.set_context(str_cat("tensor #", index));
  t.name = r.read_string("name");
  if (t.name.empty()) r.error("empty name");
  r.set_context(str_cat("tensor ", printable(t.name)));
  if (t.name.size() > kMaxNameBytes) r.error("name is ", t.name.size(), " bytes, the limit is ", kMaxNameBytes);

  t.n_dims = r.read<uint32_t>("n_dims");
  if (t.n_dims < 1 || t.n_dims > 4) r.error("n_dims ", t.n_dims, " is not in 1..4");
  for (uint32_t d = 0; d < t.n_dims; ++d) {
    t.ne[d] = r.read<int64_t>("dimension");
    if (t.ne[d] < 0) r.error("ne[", d, "] = ", t.ne[d], " is negative");
  }

  const int32_t type_id = r.read<int32_t>("type");
  const TypeTraits* traits = find_type(type_id);
  if (!traits) {
    const char* retired = retired_type_name(type_id);
    if (retired) r.error("type id ", type_id, " is ", retired);
    r.error("unknown ggml type id ", type_id);
  }
  t.type = traits->type;
  if (t.ne[0] % traits->block_size != 0) {
    r.error("ne[0] = ", t.ne[0], " is not a multiple of the ", traits->name, " block size ", traits->block_size);
  }

  // Element count and byte size, rejecting shapes whose products overflow.
  uint64_t elements = 1;
  for (int64_t n : t.ne) {
    if (__builtin_mul_overflow(elements, uint64_t(n), &elements) ||
        elements > uint64_t(std::numeric_limits<int64_t>::max())) {
      r.error("shape ", t.ne[0], " x ", t.ne[1], " x ", t.ne[2], " x ", t.ne[3], " has too many elements");
    }
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(uint64_t(t.ne[0] / traits->block_size), uint64_t(traits->block_bytes), &bytes) ||
      __builtin_mul_overflow(bytes, uint64_t(t.ne[1]), &bytes) ||
      __builtin_mul_overflow(bytes, uint64_t(t.ne[2]), &bytes) ||
      __builtin_mul_overflow(bytes, uint64_t(t.ne[3]), &bytes)) {
    r.error("size in bytes overflows 64 bits");
  }
  t.n_bytes = bytes;

  t.offset = r.read<uint64_t>("offset");
  if (t.offset % alignment != 0) r.error("offset ", t.offset, " is not a multiple of the alignment ", alignment);
  t.part = part;
}

}  // namespace

ParsedPart parse_part(const uint8_t* bytes, size_t size, const std::string& name, uint32_t part,
                      bool allow_truncated_data) {
  Reader r(bytes, size, name);
  ParsedPart out;

  if (size < sizeof(kMagic) || std::memcmp(bytes, kMagic, sizeof(kMagic)) != 0) {
    if (size < sizeof(kMagic)) r.error("file is ", size, " bytes, too short to be a GGUF file");
    r.error("not a GGUF file (magic is \"", printable(std::string_view(reinterpret_cast<const char*>(bytes), 4)),
            "\", expected \"GGUF\")");
  }
  r.read<uint32_t>("magic");
  out.version = r.read<uint32_t>("version");
  if (out.version != 2 && out.version != 3) {
    if (out.version == 1) r.error("GGUF version 1 (32-bit counts) is not supported; re-convert the model");
    if ((out.version & 0xffff) == 0) r.error("version ", out.version, ": big-endian GGUF files are not supported");
    r.error("unsupported GGUF version ", out.version, " (2 and 3 are supported)");
  }
  const int64_t n_tensors = r.read<int64_t>("tensor count");
  const int64_t n_kv = r.read<int64_t>("metadata count");
  if (n_tensors < 0) r.error("tensor count ", n_tensors, " is negative");
  if (n_kv < 0) r.error("metadata count ", n_kv, " is negative");
  if (uint64_t(n_kv) > r.left() / kMinKvBytes) {
    r.error("metadata count ", n_kv, " cannot fit in the ", r.left(), " bytes left in the file");
  }

  std::unordered_set<std::string> keys;
  uint64_t n_values = 0;
  out.metadata.reserve(size_t(n_kv));
  for (int64_t i = 0; i < n_kv; ++i) {
    r.set_context(str_cat("key #", i));
    std::string key = r.read_string("key");
    if (key.empty()) r.error("empty key");
    r.set_context(str_cat("key ", printable(key)));
    if (!keys.insert(key).second) r.error("duplicate key");
    const ValueType type = read_value_type(r, "value type");
    Value value = read_value(r, type, 0, n_values);
    out.metadata.emplace_back(std::move(key), std::move(value));
  }
  check_alignment(r, out.metadata, out.alignment);

  r.set_context("header");
  if (uint64_t(n_tensors) > r.left() / kMinTensorInfoBytes) {
    r.error("tensor count ", n_tensors, " cannot fit in the ", r.left(), " bytes left in the file");
  }
  std::unordered_set<std::string> names;
  out.tensors.resize(size_t(n_tensors));
  for (size_t i = 0; i < out.tensors.size(); ++i) {
    read_tensor_info(r, i, out.alignment, part, out.tensors[i]);
    if (!names.insert(out.tensors[i].name).second) r.error("duplicate tensor name");
  }

  const uint64_t info_end = r.pos();
  out.data_offset = (info_end + out.alignment - 1) / out.alignment * out.alignment;

  // Offsets: each tensor must lie inside the file (or, when allowed, be cut short by its end) and
  // no two may share bytes. Order and gaps are not checked (see docs/ARCHITECTURE.md).
  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  spans.reserve(out.tensors.size());
  for (size_t i = 0; i < out.tensors.size(); ++i) {
    TensorInfo& t = out.tensors[i];
    r.set_context(str_cat("tensor ", printable(t.name)));
    uint64_t begin = 0, end = 0;
    if (__builtin_add_overflow(out.data_offset, t.offset, &begin) || __builtin_add_overflow(begin, t.n_bytes, &end)) {
      r.error("offset ", t.offset, " + ", t.n_bytes, " bytes overflows 64 bits");
    }
    if (end > size && t.n_bytes > 0) {
      if (!allow_truncated_data) r.error("data ends at byte ", end, ", file has ", size);
      out.missing.push_back(t.name);
      t.data = nullptr;
    } else {
      t.data = begin <= size ? bytes + begin : nullptr;
    }
    if (t.n_bytes > 0) spans.push_back({begin, end, i});
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.index < b.index; });
  for (size_t i = 1; i < spans.size(); ++i) {
    const Span& prev = spans[i - 1];
    const Span& cur = spans[i];
    if (cur.begin < prev.end) {
      r.set_context(str_cat("tensor ", printable(out.tensors[cur.index].name)));
      r.error("data at bytes ", cur.begin, "..", cur.end, " overlaps tensor ", printable(out.tensors[prev.index].name),
              " at bytes ", prev.begin, "..", prev.end);
    }
  }
  return out;
}

}  // namespace moeserve::gguf::detail
