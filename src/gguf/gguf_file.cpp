#include "gguf/gguf_file.h"

#include <cstdio>
#include <unordered_map>

#include "core/error.h"
#include "core/mapped_file.h"
#include "gguf/gguf_parse.h"
#include "gguf/gguf_text.h"

namespace moeserve::gguf {
namespace {

// Lookup by string_view without building a std::string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using NameIndex = std::unordered_map<std::string, size_t, StringHash, std::equal_to<>>;

struct SplitName {
  std::string prefix;
  uint32_t index = 0;  // 1-based, as in the name
  uint32_t count = 0;
};

// "<prefix>-00001-of-00003.gguf" -> {prefix, 1, 3}; nullopt for any other name.
std::optional<SplitName> parse_split_name(const std::string& path) {
  constexpr std::string_view kTail = "-00000-of-00000.gguf";
  if (path.size() <= kTail.size()) return std::nullopt;
  const std::string_view tail = std::string_view(path).substr(path.size() - kTail.size());
  auto digits = [&](size_t at) -> std::optional<uint32_t> {
    uint32_t v = 0;
    for (size_t i = at; i < at + 5; ++i) {
      if (tail[i] < '0' || tail[i] > '9') return std::nullopt;
      v = v * 10 + uint32_t(tail[i] - '0');
    }
    return v;
  };
  if (tail[0] != '-' || tail.substr(6, 4) != "-of-" || tail.substr(15) != ".gguf") return std::nullopt;
  const auto index = digits(1);
  const auto count = digits(10);
  if (!index || !count) return std::nullopt;
  return SplitName{path.substr(0, path.size() - kTail.size()), *index, *count};
}

std::string split_part_path(const std::string& prefix, uint32_t index, uint32_t count) {
  char tail[32];
  std::snprintf(tail, sizeof(tail), "-%05u-of-%05u.gguf", index, count);
  return prefix + tail;
}

const Value* find_key(const std::vector<std::pair<std::string, Value>>& metadata, std::string_view key) {
  for (const auto& [k, v] : metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

// An integer split.* key of a part, accepted at any integer width as llama.cpp does.
std::optional<uint64_t> split_key(const detail::ParsedPart& part, const std::string& path, std::string_view key) {
  const Value* v = find_key(part.metadata, key);
  if (!v) return std::nullopt;
  if (!v->is_integer()) fail(path, ": key ", key, ": expected an integer, found ", value_type_name(v->type));
  try {
    return v->as_uint();
  } catch (const Error& e) {
    fail(path, ": key ", key, ": ", e.what());
  }
}

}  // namespace

struct GgufFile::Impl {
  struct Part {
    std::string path;
    MappedFile map;  // empty for files parsed from memory
    uint64_t size = 0;
    detail::ParsedPart parsed;
  };
  std::vector<Part> parts;
  std::vector<TensorInfo> tensors;
  NameIndex tensor_index;
  NameIndex key_index;
  std::vector<std::string> missing;
  bool map_weights = true;

  void index_and_merge() {
    for (size_t i = 0; i < parts[0].parsed.metadata.size(); ++i) key_index.emplace(parts[0].parsed.metadata[i].first, i);
    for (Part& part : parts) {
      for (TensorInfo& t : part.parsed.tensors) {
        const auto [it, inserted] = tensor_index.emplace(t.name, tensors.size());
        if (!inserted) {
          fail(part.path, ": tensor ", printable(t.name), " is also in ", parts[tensors[it->second].part].path);
        }
        tensors.push_back(std::move(t));
      }
      part.parsed.tensors.clear();
      for (std::string& name : part.parsed.missing) missing.push_back(std::move(name));
      part.parsed.missing.clear();
    }
  }

  // Checks that `part` (index i) belongs to the split set described by the first part.
  void check_split_part(size_t i, uint64_t count) const {
    const Part& p = parts[i];
    const auto no = split_key(p.parsed, p.path, "split.no");
    const auto n = split_key(p.parsed, p.path, "split.count");
    if (!no) fail(p.path, ": key split.no is missing (expected ", i, " in part ", i + 1, " of ", count, ")");
    if (*no != i) fail(p.path, ": key split.no is ", *no, ", expected ", i, " (part ", i + 1, " of ", count, ")");
    if (!n || *n != count) {
      fail(p.path, ": key split.count is ", n ? str_cat(*n) : std::string("missing"), ", the first part says ", count);
    }
  }

  void load_split_parts(const OpenOptions& options) {
    const Part& first = parts[0];
    const auto count = split_key(first.parsed, first.path, "split.count");
    if (!count || *count <= 1) return;
    const auto no = split_key(first.parsed, first.path, "split.no").value_or(0);
    const auto name = parse_split_name(first.path);
    if (no != 0) {
      fail(first.path, ": this is part ", no + 1, " of a ", *count, "-part model (split.no = ", no, "); open the first part",
           name ? str_cat(", ", split_part_path(name->prefix, 1, name->count)) : std::string());
    }
    if (*count > 99999) fail(first.path, ": key split.count is ", *count, ", more than a file name can number");
    if (!name || name->index != 1 || name->count != *count) {
      fail(first.path, ": key split.count is ", *count, " but the file name does not end in -00001-of-",
           split_part_path("", 1, uint32_t(*count)).substr(10));
    }
    for (uint32_t i = 1; i < *count; ++i) {
      Part part;
      part.path = split_part_path(name->prefix, i + 1, uint32_t(*count));
      part.map = MappedFile::open(part.path);
      part.size = part.map.size();
      part.parsed = detail::parse_part(part.map.data(), part.map.size(), part.path, i, options.allow_truncated_data);
      parts.push_back(std::move(part));
      check_split_part(i, *count);
    }
  }

  void check_split_tensor_count() const {
    const Part& first = parts[0];
    const auto expected = split_key(first.parsed, first.path, "split.tensors.count");
    if (expected && *expected != tensors.size()) {
      fail(first.path, ": key split.tensors.count is ", *expected, " but the ", parts.size(), " part(s) hold ",
           tensors.size(), " tensors");
    }
  }
};

GgufFile::GgufFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

GgufFile GgufFile::open(const std::string& path, const OpenOptions& options) {
  auto impl = std::make_unique<Impl>();
  Impl::Part first;
  first.path = path;
  first.map = MappedFile::open(path);
  first.size = first.map.size();
  first.parsed = detail::parse_part(first.map.data(), first.map.size(), path, 0, options.allow_truncated_data);
  impl->parts.push_back(std::move(first));
  impl->map_weights = options.map_weights;
  if (options.load_split_parts) impl->load_split_parts(options);
  impl->index_and_merge();
  if (impl->parts.size() > 1) impl->check_split_tensor_count();
  return GgufFile(std::move(impl));
}

GgufFile GgufFile::parse(const uint8_t* bytes, size_t size, std::string name, const OpenOptions& options) {
  auto impl = std::make_unique<Impl>();
  Impl::Part part;
  part.path = std::move(name);
  part.size = size;
  part.parsed = detail::parse_part(bytes, size, part.path, 0, options.allow_truncated_data);
  impl->map_weights = options.map_weights;
  impl->parts.push_back(std::move(part));
  impl->index_and_merge();
  return GgufFile(std::move(impl));
}

const std::string& GgufFile::path() const { return impl_->parts[0].path; }
uint32_t GgufFile::version() const { return impl_->parts[0].parsed.version; }
uint32_t GgufFile::alignment() const { return impl_->parts[0].parsed.alignment; }
size_t GgufFile::n_parts() const { return impl_->parts.size(); }

uint64_t GgufFile::file_size(size_t part) const {
  if (part >= impl_->parts.size()) fail("internal: part ", part, " of ", impl_->parts.size());
  return impl_->parts[part].size;
}

uint64_t GgufFile::data_offset(size_t part) const {
  if (part >= impl_->parts.size()) fail("internal: part ", part, " of ", impl_->parts.size());
  return impl_->parts[part].parsed.data_offset;
}

bool GgufFile::map_weights() const { return impl_->map_weights; }

const std::string& GgufFile::part_path(size_t part) const {
  if (part >= impl_->parts.size()) fail("internal: part ", part, " of ", impl_->parts.size());
  return impl_->parts[part].path;
}

const std::vector<std::pair<std::string, Value>>& GgufFile::metadata() const { return impl_->parts[0].parsed.metadata; }

const Value* GgufFile::find(std::string_view key) const {
  const auto it = impl_->key_index.find(key);
  return it == impl_->key_index.end() ? nullptr : &impl_->parts[0].parsed.metadata[it->second].second;
}

namespace {

// Runs a Value accessor, prefixing its error with the file and key.
template <typename F>
auto typed(const GgufFile& file, std::string_view key, F&& get) {
  try {
    return get();
  } catch (const Error& e) {
    fail(file.path(), ": key ", printable(key), ": ", e.what());
  }
}

}  // namespace

std::optional<uint64_t> GgufFile::get_uint(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return typed(*this, key, [&] { return v->as_uint(); });
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return typed(*this, key, [&] { return v->as_int(); });
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return typed(*this, key, [&] { return v->as_float(); });
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return typed(*this, key, [&] { return v->as_bool(); });
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  return typed(*this, key, [&] { return v->as_string(); });
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return {};
  return typed(*this, key, [&] {
    std::vector<std::string> out;
    const Array& a = v->as_array();
    out.reserve(a.items.size());
    for (const Value& item : a.items) out.push_back(item.as_string());
    return out;
  });
}

std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return {};
  return typed(*this, key, [&] {
    std::vector<float> out;
    const Array& a = v->as_array();
    out.reserve(a.items.size());
    for (const Value& item : a.items) out.push_back(float(item.as_float()));
    return out;
  });
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return {};
  return typed(*this, key, [&] {
    std::vector<int64_t> out;
    const Array& a = v->as_array();
    out.reserve(a.items.size());
    for (const Value& item : a.items) out.push_back(item.as_int());
    return out;
  });
}

std::string GgufFile::architecture() const { return get_string("general.architecture").value_or(""); }

const std::vector<TensorInfo>& GgufFile::tensors() const { return impl_->tensors; }

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const auto it = impl_->tensor_index.find(name);
  return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

TensorView GgufFile::view(std::string_view name) const {
  const TensorInfo* t = find_tensor(name);
  if (!t) fail(path(), ": tensor ", printable(name), " not found");
  if (!t->data && t->n_bytes > 0) {
    fail(impl_->parts[t->part].path, ": tensor ", printable(name), ": data is missing (the file is cut short)");
  }
  return TensorView{t->name, t->type, t->ne, t->data};
}

std::vector<std::string> GgufFile::missing_data() const { return impl_->missing; }

}  // namespace moeserve::gguf
