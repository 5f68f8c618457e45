// Helpers for the convert / synth tests: temporary directories, the HF fixtures under
// tests/fixtures/hf (their manifest.json and reference arrays, written by transformers), one
// cached conversion per (fixture, type), and GGUF tensors as floats via the type registry.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ggml_type.h"
#include "gguf/gguf_file.h"
#include "model/convert/converter.h"

namespace moeserve::convert_test {

class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "moeserve-convert-XXXXXX").string();
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
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The fixtures folder: MOESERVE_TEST_FIXTURES from the environment (the GPU machine has the tree
// at another path) or the one compiled in.
inline std::string fixtures_dir() {
  const char* env = std::getenv("MOESERVE_TEST_FIXTURES");
  return env && *env ? std::string(env) : std::string(MOESERVE_TEST_FIXTURES);
}

inline std::string hf_fixture(const std::string& model) { return fixtures_dir() + "/hf/" + model; }

inline nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path);
  return nlohmann::json::parse(in);
}

inline const nlohmann::json& manifest() {
  static const nlohmann::json m = load_json(fixtures_dir() + "/hf/manifest.json");
  return m;
}

// A reference array recorded by make_fixtures.py (raw little-endian, shape in manifest.json).
struct RefArray {
  std::vector<int64_t> shape;
  std::vector<float> f32;
  std::vector<int32_t> i32;
};

inline RefArray reference(const std::string& model, const std::string& case_name, const std::string& key) {
  const nlohmann::json& meta = manifest()["models"][model]["cases"][case_name]["arrays"][key];
  RefArray r;
  r.shape = meta["shape"].get<std::vector<int64_t>>();
  int64_t n = 1;
  for (int64_t d : r.shape) n *= d;
  std::ifstream in(hf_fixture(model) + "/" + meta["file"].get<std::string>(), std::ios::binary);
  if (meta["dtype"] == "f32") {
    r.f32.resize(size_t(n));
    in.read(reinterpret_cast<char*>(r.f32.data()), std::streamsize(n * 4));
  } else {
    r.i32.resize(size_t(n));
    in.read(reinterpret_cast<char*>(r.i32.data()), std::streamsize(n * 4));
  }
  if (!in) throw Error("short reference file for " + model + " " + key);
  return r;
}

// Converts each fixture at most once per type for the whole test binary.
inline const std::string& converted(const std::string& model, GgmlType type = GgmlType::F32) {
  static TempDir dir;
  static std::map<std::string, std::string> done;
  const std::string key = model + "." + type_name(type);
  auto it = done.find(key);
  if (it == done.end()) {
    convert::ConvertOptions opt;
    opt.hf_dir = hf_fixture(model);
    opt.out_path = dir.file(key + ".gguf");
    opt.type = type;
    convert::convert_hf_to_gguf(opt);
    it = done.emplace(key, opt.out_path).first;
  }
  return it->second;
}

// Any tensor of the file as floats, in ggml order.
inline std::vector<float> tensor_f32(const gguf::GgufFile& f, const std::string& name) {
  const TensorView v = f.view(name);
  const TypeTraits& t = type_traits(v.type);
  if (!t.dequantize) throw Error(std::string("no dequantizer for ") + t.name);
  std::vector<float> out(size_t(v.n_elements()));
  const size_t rb = v.row_size();
  for (int64_t r = 0; r < v.n_rows(); ++r)
    t.dequantize(static_cast<const uint8_t*>(v.data) + size_t(r) * rb, out.data() + r * v.ne[0], v.ne[0]);
  return out;
}

inline std::vector<int64_t> dims(const gguf::TensorInfo& t) {
  return std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims);
}

}  // namespace moeserve::convert_test

namespace moeserve::convert_test {

struct StEntry {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Writes an F32 safetensors file by hand (the format in safetensors.h's comment).
inline void write_safetensors(const std::string& path, const std::vector<StEntry>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const StEntry& t : tensors) {
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size() * 4}}};
    offset += t.data.size() * 4;
  }
  header["__metadata__"] = {{"format", "pt"}};
  const std::string h = header.dump();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = h.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(h.data(), std::streamsize(h.size()));
  for (const StEntry& t : tensors) out.write(reinterpret_cast<const char*>(t.data.data()), std::streamsize(t.data.size() * 4));
}

// A fixture directory copied (without its checkpoint) into `dir`, to edit and convert.
inline void copy_fixture_files(const std::string& model, const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"})
    if (fs::exists(fs::path(hf_fixture(model)) / f)) fs::copy_file(fs::path(hf_fixture(model)) / f, dir / f);
}

}  // namespace moeserve::convert_test
