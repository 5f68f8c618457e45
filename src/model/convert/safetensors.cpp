#include "model/convert/safetensors.h"

#include <nlohmann/json.hpp>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include "core/error.h"
#include "core/fp16.h"

namespace moeserve::convert {
namespace {

// Tensor data is copied straight into host floats.
static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

struct DtypeRow {
  StDtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeRow kDtypes[] = {
    {StDtype::F64, "F64", 8},     {StDtype::F32, "F32", 4},         {StDtype::F16, "F16", 2},
    {StDtype::BF16, "BF16", 2},   {StDtype::I64, "I64", 8},         {StDtype::I32, "I32", 4},
    {StDtype::I16, "I16", 2},     {StDtype::I8, "I8", 1},           {StDtype::U8, "U8", 1},
    {StDtype::BOOL, "BOOL", 1},   {StDtype::F8_E4M3, "F8_E4M3", 1}, {StDtype::F8_E5M2, "F8_E5M2", 1},
};

// The safetensors format caps the header at 100 MB; anything larger is a corrupt length field.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

const DtypeRow& row(StDtype dtype) {
  for (const DtypeRow& r : kDtypes)
    if (r.dtype == dtype) return r;
  fail("unknown safetensors dtype id ", int(dtype));
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint64_t json_uint(const nlohmann::json& v, const std::string& where) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return uint64_t(v.get<int64_t>());
  fail(where, ": expected a non-negative integer, got ", v.dump());
}

}  // namespace

const char* st_dtype_name(StDtype dtype) { return row(dtype).name; }
size_t st_dtype_size(StDtype dtype) { return row(dtype).size; }

int64_t StTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<StTensor> parse_safetensors(const uint8_t* data, size_t size, const std::string& name) {
  if (size < 8) fail(name, ": ", size, " bytes is too short for a safetensors file (8-byte header length)");
  const uint64_t header_len = read_u64_le(data);
  if (header_len > kMaxHeaderBytes || header_len > size - 8)
    fail(name, ": header length ", header_len, " does not fit the file (", size, " bytes)");
  const uint8_t* header_begin = data + 8;
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail(name, ": header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) fail(name, ": header is not a JSON object");

  std::vector<StTensor> out;
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") continue;
    const std::string where = str_cat(name, ": tensor '", key, "'");
    if (key.empty()) fail(name, ": tensor with an empty name");
    if (!entry.is_object()) fail(where, ": entry is not an object");
    const auto dt = entry.find("dtype");
    const auto sh = entry.find("shape");
    const auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) fail(where, ": missing string field 'dtype'");
    if (sh == entry.end() || !sh->is_array()) fail(where, ": missing array field 'shape'");
    if (off == entry.end() || !off->is_array() || off->size() != 2)
      fail(where, ": 'data_offsets' must be an array [begin, end]");

    StTensor t;
    t.name = key;
    const std::string dtype = dt->get<std::string>();
    bool known = false;
    for (const DtypeRow& r : kDtypes) {
      if (dtype == r.name) {
        t.dtype = r.dtype;
        known = true;
      }
    }
    if (!known) fail(where, ": unknown dtype '", dtype, "'");
    if (sh->size() > 8) fail(where, ": ", sh->size(), " dimensions (at most 8 supported)");
    uint64_t n_elements = 1;
    for (const auto& d : *sh) {
      const uint64_t dim = json_uint(d, where + " shape");
      if (dim > uint64_t(std::numeric_limits<int64_t>::max())) fail(where, ": dimension ", dim, " is too large");
      if (dim != 0 && n_elements > std::numeric_limits<uint64_t>::max() / dim) fail(where, ": shape overflows");
      n_elements *= dim;
      t.shape.push_back(int64_t(dim));
    }
    const uint64_t elem = st_dtype_size(t.dtype);
    if (n_elements > std::numeric_limits<uint64_t>::max() / elem) fail(where, ": size overflows");
    const uint64_t begin = json_uint((*off)[0], where + " data_offsets");
    const uint64_t end = json_uint((*off)[1], where + " data_offsets");
    if (begin > end || end > data_size)
      fail(where, ": data_offsets [", begin, ", ", end, "] outside the data section of ", data_size, " bytes");
    if (end - begin != n_elements * elem)
      fail(where, ": ", end - begin, " bytes of data for shape of ", n_elements, " ", dtype, " elements (",
           n_elements * elem, " bytes)");
    t.data = data + data_start + begin;
    t.n_bytes = end - begin;
    out.push_back(std::move(t));
  }
  return out;
}

SafetensorsSet SafetensorsSet::open_files(const std::vector<std::string>& paths) {
  SafetensorsSet set;
  for (const std::string& p : paths) set.add_file(p);
  return set;
}

SafetensorsSet SafetensorsSet::open_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  const fs::path index = root / "model.safetensors.index.json";
  const fs::path single = root / "model.safetensors";
  if (fs::is_regular_file(index)) {
    nlohmann::json j;
    try {
      std::ifstream in(index);
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail(index.string(), ": not valid JSON: ", e.what());
    }
    const auto map = j.find("weight_map");
    if (map == j.end() || !map->is_object()) fail(index.string(), ": missing object 'weight_map'");
    std::set<std::string> shards;
    for (const auto& [tensor, file] : map->items()) {
      if (!file.is_string()) fail(index.string(), ": weight_map entry '", tensor, "' is not a file name");
      const std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        fail(index.string(), ": weight_map entry '", tensor, "' names '", f, "', not a file in this directory");
      shards.insert(f);
    }
    SafetensorsSet set;
    for (const std::string& f : shards) set.add_file((root / f).string());
    for (const auto& [tensor, file] : map->items()) {
      const StTensor* t = set.find(tensor);
      if (!t) fail(index.string(), ": lists tensor '", tensor, "' but ", file.get<std::string>(), " does not hold it");
    }
    return set;
  }
  if (fs::is_regular_file(single)) return open_files({single.string()});
  fail(dir, ": no model.safetensors or model.safetensors.index.json");
}

void SafetensorsSet::add_file(const std::string& path) {
  MappedFile map = MappedFile::open(path);
  std::vector<StTensor> list = parse_safetensors(map.data(), map.size(), path);
  const size_t file_index = paths_.size();
  for (StTensor& t : list) {
    t.file = file_index;
    const std::string n = t.name;
    if (!tensors_.emplace(n, std::move(t)).second)
      fail(path, ": tensor '", n, "' also appears in ", paths_[tensors_.at(n).file]);
  }
  paths_.push_back(path);
  maps_.push_back(std::move(map));
}

const StTensor* SafetensorsSet::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<float> SafetensorsSet::read_f32(const std::string& name) const {
  const StTensor* t = find(name);
  if (!t) fail("checkpoint has no tensor '", name, "'");
  const size_t n = size_t(t->n_elements());
  std::vector<float> out(n);
  const uint8_t* p = t->data;
  switch (t->dtype) {
    case StDtype::F32:
      std::memcpy(out.data(), p, n * 4);
      break;
    case StDtype::F64:
      for (size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = float(v);
      }
      break;
    case StDtype::F16:
    case StDtype::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = t->dtype == StDtype::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
      }
      break;
    default:
      fail("tensor '", name, "' has dtype ", st_dtype_name(t->dtype),
           "; only F32, F16, BF16 and F64 checkpoints can be converted");
  }
  return out;
}

}  // namespace moeserve::convert
