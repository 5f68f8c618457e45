// Writes GGUF files with GgufWriter into DIR, and DIR/samples.json describing what was written
// (metadata with types, tensor infos, data bytes as hex), for gguf_interop.mjs to compare with what
// an independent parser (@huggingface/gguf) reads. The files also seed the fuzzer.
//   usage: gguf_write_samples DIR
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"

namespace {

using moeserve::GgmlType;
using moeserve::gguf::GgufWriter;
using moeserve::gguf::Value;
using moeserve::gguf::ValueType;
using nlohmann::json;
using Metadata = std::vector<std::pair<std::string, Value>>;

// 64-bit integers as strings (JavaScript numbers hold 53 bits), non-finite floats as strings.
json value_json(const Value& v) {
  switch (v.type) {
    case ValueType::UINT64: return std::to_string(v.as_uint());
    case ValueType::INT64: return std::to_string(v.as_int());
    case ValueType::FLOAT32: case ValueType::FLOAT64: {
      const double d = v.as_float();
      if (std::isnan(d)) return "nan";
      if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
      return d;
    }
    case ValueType::BOOL: return v.as_bool();
    case ValueType::STRING: return v.as_string();
    case ValueType::ARRAY: {
      json items = json::array();
      for (const Value& item : v.as_array().items) items.push_back(value_json(item));
      return items;
    }
    default: return v.is_integer() && v.as_float() < 0 ? json(v.as_int()) : json(v.as_uint());
  }
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (uint8_t& b : out) b = uint8_t(rng());
  return out;
}

std::string hex(const std::vector<uint8_t>& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

json write_sample(const std::string& dir, const std::string& name, const Metadata& metadata,
                  const std::vector<GgufWriter::Tensor>& tensors, uint32_t alignment) {
  const std::string path = dir + "/" + name;
  GgufWriter::write_file(path, metadata, tensors, alignment);
  json meta = json::array();
  for (const auto& [key, value] : metadata) {
    json entry = {{"key", key}, {"type", int(value.type)}, {"value", value_json(value)}};
    if (value.type == ValueType::ARRAY) entry["subType"] = int(value.as_array().elem_type);
    meta.push_back(std::move(entry));
  }
  if (alignment != 32) meta.push_back({{"key", "general.alignment"}, {"type", int(ValueType::UINT32)}, {"value", alignment}});
  json infos = json::array();
  uint64_t offset = 0, params = 0;
  for (const GgufWriter::Tensor& t : tensors) {
    json shape = json::array();
    int n_dims = 1;
    for (int d = 1; d < 4; ++d) {
      if (t.ne[d] != 1) n_dims = d + 1;
    }
    for (int d = 0; d < n_dims; ++d) shape.push_back(t.ne[d]);
    infos.push_back({{"name", t.name}, {"type", int(t.type)}, {"shape", shape}, {"offset", offset}, {"hex", hex(t.data)}});
    offset += (t.data.size() + alignment - 1) / alignment * alignment;
    params += uint64_t(t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3]);
  }
  // Where our reader puts the data section, for the other parser to agree with.
  const uint64_t data_offset = moeserve::gguf::GgufFile::open(path, {.load_split_parts = false}).data_offset();
  return {{"file", name}, {"metadata", meta}, {"tensors", infos}, {"data_offset", data_offset}, {"params", params}};
}

Metadata every_value_type() {
  using L32 = std::numeric_limits<int32_t>;
  using L64 = std::numeric_limits<int64_t>;
  return {
      {"general.architecture", Value::string("llama")},
      {"general.name", Value::string("interop sample \xE2\x9C\x93")},
      {"t.u8", Value::u8(255)},
      {"t.i8", Value::i8(-128)},
      {"t.u16", Value::u16(65535)},
      {"t.i16", Value::i16(-32768)},
      {"t.u32", Value::u32(4294967295u)},
      {"t.i32", Value::i32(L32::min())},
      {"t.f32", Value::f32(-1.5e-7f)},
      {"t.f32.inf", Value::f32(std::numeric_limits<float>::infinity())},
      {"t.bool", Value::boolean(true)},
      {"t.bool.false", Value::boolean(false)},
      {"t.string", Value::string("line1\nline2 \"quoted\" \xF0\x9F\x98\x80")},
      {"t.string.empty", Value::string("")},
      {"t.u64", Value::u64(std::numeric_limits<uint64_t>::max())},
      {"t.i64", Value::i64(L64::min())},
      {"t.f64", Value::f64(0.1)},
      {"t.f64.nan", Value::f64(std::numeric_limits<double>::quiet_NaN())},
      {"t.arr.u8", Value::array(ValueType::UINT8, {Value::u8(0), Value::u8(255)})},
      {"t.arr.i8", Value::array(ValueType::INT8, {Value::i8(-1), Value::i8(127)})},
      {"t.arr.u16", Value::array(ValueType::UINT16, {Value::u16(7)})},
      {"t.arr.i16", Value::array(ValueType::INT16, {Value::i16(-300), Value::i16(300)})},
      {"t.arr.u32", Value::array(ValueType::UINT32, {Value::u32(1), Value::u32(2), Value::u32(3)})},
      {"t.arr.i32", Value::array(ValueType::INT32, {Value::i32(L32::max()), Value::i32(-1)})},
      {"t.arr.f32", Value::array(ValueType::FLOAT32, {Value::f32(0.1f), Value::f32(-2.5f)})},
      {"t.arr.bool", Value::array(ValueType::BOOL, {Value::boolean(false), Value::boolean(true)})},
      {"t.arr.string", Value::string_array({"Ġ Ġ", "", "<|im_start|>", std::string(200, 'z')})},
      {"t.arr.u64", Value::array(ValueType::UINT64, {Value::u64(uint64_t(1) << 63), Value::u64(5)})},
      {"t.arr.i64", Value::array(ValueType::INT64, {Value::i64(L64::max()), Value::i64(-2)})},
      {"t.arr.f64", Value::array(ValueType::FLOAT64, {Value::f64(1e300), Value::f64(-0.5)})},
      {"t.arr.empty", Value::array(ValueType::INT32, {})},
      {"t.arr.nested", Value::array(ValueType::ARRAY, {Value::array(ValueType::UINT32, {Value::u32(1), Value::u32(2)}),
                                                       Value::array(ValueType::UINT32, {Value::u32(3)})})},
  };
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: gguf_write_samples DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  try {
    json samples = json::array();
    // Every registered tensor type, 2-D and 3-D.
    std::vector<GgufWriter::Tensor> tensors;
    uint32_t seed = 1;
    for (const moeserve::TypeTraits* t = moeserve::all_types().begin; t != moeserve::all_types().end; ++t) {
      tensors.push_back({std::string("blk.0.") + t->name + ".weight", t->type, {t->block_size * 2, 3, 1, 1},
                         random_bytes(2 * 3 * t->block_bytes, seed++)});
    }
    tensors.push_back({"blk.1.ffn_up_exps.weight", GgmlType::Q8_0, {64, 3, 4, 1}, random_bytes(2 * 34 * 12, seed++)});
    tensors.push_back({"output_norm.weight", GgmlType::F32, {5, 1, 1, 1}, random_bytes(20, seed++)});
    samples.push_back(write_sample(dir, "all_types.gguf", every_value_type(), tensors, 32));

    samples.push_back(write_sample(dir, "align64.gguf",
                                   {{"general.architecture", Value::string("qwen3")}, {"qwen3.block_count", Value::u32(1)}},
                                   {{"blk.0.attn_q.weight", GgmlType::Q4_K, {256, 2, 1, 1}, random_bytes(288, seed++)},
                                    {"blk.0.attn_norm.weight", GgmlType::F32, {3, 1, 1, 1}, random_bytes(12, seed++)},
                                    {"token_embd.weight", GgmlType::F16, {8, 7, 1, 1}, random_bytes(112, seed++)}},
                                   64));

    for (int part = 0; part < 3; ++part) {
      Metadata metadata;
      if (part == 0) metadata.emplace_back("general.architecture", Value::string("llama"));
      metadata.emplace_back("split.no", Value::u16(uint16_t(part)));
      metadata.emplace_back("split.count", Value::u16(3));
      metadata.emplace_back("split.tensors.count", Value::i32(6));
      std::vector<GgufWriter::Tensor> part_tensors;
      for (int i = 0; i < 2; ++i) {
        part_tensors.push_back({"blk." + std::to_string(part) + ".w" + std::to_string(i), GgmlType::BF16,
                                {16, 2, 1, 1}, random_bytes(64, seed++)});
      }
      char name[64];
      std::snprintf(name, sizeof(name), "split-%05d-of-00003.gguf", part + 1);
      json sample = write_sample(dir, name, metadata, part_tensors, 32);
      sample["split_first"] = part == 0;
      samples.push_back(std::move(sample));
    }

    std::FILE* out = std::fopen((dir + "/samples.json").c_str(), "w");
    if (!out) throw moeserve::Error(dir + "/samples.json: cannot create");
    const std::string text = samples.dump(1);
    std::fwrite(text.data(), 1, text.size(), out);
    std::fclose(out);
  } catch (const moeserve::Error& e) {
    std::fprintf(stderr, "gguf_write_samples: %s\n", e.what());
    return 1;
  }
  return 0;
}
