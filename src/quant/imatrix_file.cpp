#include "quant/imatrix_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "core/error.h"
#include "gguf/gguf_file.h"

namespace moeserve::quant {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ImatrixFile read_gguf(const std::string& path) {
  const gguf::GgufFile file = gguf::GgufFile::open(path);
  ImatrixFile im;
  im.path = path;
  // llama-quantize requires the three imatrix.* keys of the GGUF format.
  const auto chunk_count = file.get_uint("imatrix.chunk_count");
  const auto chunk_size = file.get_uint("imatrix.chunk_size");
  if (!file.find("imatrix.datasets") || !chunk_count || !chunk_size) {
    fail(path, ": not an importance matrix: imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size are required");
  }
  im.datasets = file.get_string_array("imatrix.datasets");
  im.chunk_count = uint32_t(*chunk_count);
  im.chunk_size = uint32_t(*chunk_size);

  struct Pair {
    const gguf::TensorInfo* sums = nullptr;
    const gguf::TensorInfo* counts = nullptr;
  };
  std::map<std::string, Pair> pairs;
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (ends_with(t.name, ".in_sum2")) {
      pairs[t.name.substr(0, t.name.size() - 8)].sums = &t;
    } else if (ends_with(t.name, ".counts")) {
      pairs[t.name.substr(0, t.name.size() - 7)].counts = &t;
    }
  }
  if (pairs.empty()) fail(path, ": no <tensor>.in_sum2 / <tensor>.counts tensors in this importance matrix");
  for (const auto& [name, p] : pairs) {
    if (!p.sums || !p.counts) fail(path, ": ", name, " has ", p.sums ? "in_sum2 but no counts" : "counts but no in_sum2");
    if (p.sums->type != GgmlType::F32 || p.counts->type != GgmlType::F32) {
      fail(path, ": ", name, ": in_sum2 and counts must be F32");
    }
    const int64_t n_sums = p.sums->n_elements(), n_counts = p.counts->n_elements();
    if (n_counts == 0 || n_sums == 0) continue;  // nothing recorded: as llama-quantize, no entry
    if (n_sums % n_counts != 0) {
      fail(path, ": ", name, ": ", n_sums, " sums do not split into ", n_counts, " matrices");
    }
    const int64_t ne0 = n_sums / n_counts;
    std::vector<float> sums(static_cast<size_t>(n_sums)), counts(static_cast<size_t>(n_counts));
    std::memcpy(sums.data(), p.sums->data, sums.size() * sizeof(float));
    std::memcpy(counts.data(), p.counts->data, counts.size() * sizeof(float));
    std::vector<float>& values = im.entries[name];
    values.resize(size_t(n_sums));
    for (int64_t j = 0; j < n_counts; ++j) {
      // Counts are whole numbers stored as floats; llama-quantize rounds them first.
      const float count = float(std::lround(counts[size_t(j)]));
      for (int64_t i = 0; i < ne0; ++i) {
        const size_t k = size_t(j * ne0 + i);
        values[k] = count > 0 ? sums[k] / count : 1.0f;
      }
    }
  }
  return im;
}

// Legacy: int32 n_entries; per entry int32 name length, name, int32 ncall, int32 nval, nval floats
// (sums); then optionally int32 chunk count, int32 dataset name length, dataset name.
ImatrixFile read_legacy(const std::string& path, const std::vector<uint8_t>& bytes) {
  ImatrixFile im;
  im.path = path;
  im.legacy = true;
  size_t pos = 0;
  auto take = [&](void* out, size_t n, const char* what) {
    if (bytes.size() - pos < n) fail(path, ": not an importance matrix (GGUF or legacy .dat): ", what, " cut short");
    std::memcpy(out, bytes.data() + pos, n);
    pos += n;
  };
  auto take_i32 = [&](const char* what) {
    int32_t v;
    take(&v, sizeof v, what);
    return v;
  };
  const int32_t n_entries = take_i32("entry count");
  if (n_entries < 1) fail(path, ": not an importance matrix (GGUF or legacy .dat): entry count ", n_entries);
  for (int32_t e = 0; e < n_entries; ++e) {
    const int32_t len = take_i32("name length");
    if (len < 0 || size_t(len) > bytes.size() - pos) fail(path, ": entry ", e, ": bad name length ", len);
    std::string name(reinterpret_cast<const char*>(bytes.data() + pos), size_t(len));
    pos += size_t(len);
    const int32_t ncall = take_i32("call count");
    const int32_t nval = take_i32("value count");
    if (nval < 1 || size_t(nval) > (bytes.size() - pos) / sizeof(float)) {
      fail(path, ": entry ", name, ": bad value count ", nval);
    }
    std::vector<float> values(static_cast<size_t>(nval));
    take(values.data(), values.size() * sizeof(float), "values");
    if (ncall > 0) {
      for (float& v : values) v /= float(ncall);
    }
    im.entries[std::move(name)] = std::move(values);
  }
  if (bytes.size() - pos >= sizeof(int32_t)) {
    im.chunk_count = uint32_t(std::max(0, take_i32("chunk count")));
    if (bytes.size() - pos >= sizeof(int32_t)) {
      const int32_t len = take_i32("dataset name length");
      if (len > 0 && size_t(len) <= bytes.size() - pos) {
        im.datasets.emplace_back(reinterpret_cast<const char*>(bytes.data() + pos), size_t(len));
      }
    }
  }
  return im;
}

}  // namespace

ImatrixFile read_imatrix(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open: ", std::strerror(errno));
  char magic[4] = {};
  in.read(magic, 4);
  if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return read_gguf(path);
  in.seekg(0);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return read_legacy(path, bytes);
}

}  // namespace moeserve::quant
