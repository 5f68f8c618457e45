// Round trips through GgufWriter and GgufFile, and checks the writer's bytes against GgufBytes,
// a field-by-field layout of shared/spec/gguf.md written independently in the test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gguf_test_util.h"

namespace moeserve::gguf {
namespace {

using test::GgufBytes;
using test::random_bytes;
using test::read_bytes;
using test::TempDir;

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool same(const Value& a, const Value& b) {
  if (a.type != b.type || a.data.index() != b.data.index()) return false;
  if (a.type == ValueType::ARRAY) {
    const Array& x = a.as_array();
    const Array& y = b.as_array();
    if (x.elem_type != y.elem_type || x.items.size() != y.items.size()) return false;
    for (size_t i = 0; i < x.items.size(); ++i) {
      if (!same(x.items[i], y.items[i])) return false;
    }
    return true;
  }
  if (const double* d = std::get_if<double>(&a.data)) {
    const double e = std::get<double>(b.data);
    return std::memcmp(d, &e, sizeof(double)) == 0;  // bit-exact, NaN included
  }
  return a.data == b.data;
}

// Every value type, at its extremes, and arrays of every element type (nested ones too).
std::vector<std::pair<std::string, Value>> all_value_types() {
  using L8 = std::numeric_limits<int8_t>;
  using L16 = std::numeric_limits<int16_t>;
  using L32 = std::numeric_limits<int32_t>;
  using L64 = std::numeric_limits<int64_t>;
  std::vector<std::pair<std::string, Value>> m = {
      {"general.architecture", Value::string("test")},
      {"t.u8", Value::u8(255)},
      {"t.i8", Value::i8(L8::min())},
      {"t.u16", Value::u16(65535)},
      {"t.i16", Value::i16(L16::min())},
      {"t.u32", Value::u32(std::numeric_limits<uint32_t>::max())},
      {"t.i32", Value::i32(L32::min())},
      {"t.f32", Value::f32(-1.5e-7f)},
      {"t.f32.inf", Value::f32(std::numeric_limits<float>::infinity())},
      {"t.bool.true", Value::boolean(true)},
      {"t.bool.false", Value::boolean(false)},
      {"t.string", Value::string("héllo\nworld \xF0\x9F\x98\x80")},
      {"t.string.empty", Value::string("")},
      {"t.string.nul", Value::string(std::string("a\0b", 3))},
      {"t.u64", Value::u64(std::numeric_limits<uint64_t>::max())},
      {"t.i64", Value::i64(L64::min())},
      {"t.f64", Value::f64(0.1)},
      {"t.f64.nan", Value::f64(std::numeric_limits<double>::quiet_NaN())},
      {"t.arr.u8", Value::array(ValueType::UINT8, {Value::u8(0), Value::u8(255)})},
      {"t.arr.i8", Value::array(ValueType::INT8, {Value::i8(-128), Value::i8(127)})},
      {"t.arr.u16", Value::array(ValueType::UINT16, {Value::u16(1)})},
      {"t.arr.i16", Value::array(ValueType::INT16, {Value::i16(-2), Value::i16(3)})},
      {"t.arr.u32", Value::array(ValueType::UINT32, {Value::u32(4), Value::u32(5), Value::u32(6)})},
      {"t.arr.i32", Value::array(ValueType::INT32, {Value::i32(L32::max()), Value::i32(-1)})},
      {"t.arr.f32", Value::array(ValueType::FLOAT32, {Value::f32(0.25f), Value::f32(-3.0f)})},
      {"t.arr.bool", Value::array(ValueType::BOOL, {Value::boolean(true), Value::boolean(false)})},
      {"t.arr.string", Value::string_array({"a", "", "Ġ Ġ", std::string(300, 'x')})},
      {"t.arr.u64", Value::array(ValueType::UINT64, {Value::u64(uint64_t(1) << 63)})},
      {"t.arr.i64", Value::array(ValueType::INT64, {Value::i64(L64::max()), Value::i64(L64::min())})},
      {"t.arr.f64", Value::array(ValueType::FLOAT64, {Value::f64(1e300), Value::f64(-0.0)})},
      {"t.arr.empty", Value::array(ValueType::UINT32, {})},
      {"t.arr.nested", Value::array(ValueType::ARRAY, {Value::array(ValueType::UINT32, {Value::u32(1)}),
                                                       Value::array(ValueType::STRING, {})})},
      {"t.arr.nested.strings",
       Value::array(ValueType::ARRAY, {Value::string_array({"p", "q"}), Value::string_array({"r"})})},
  };
  return m;
}

TEST(GgufRoundTrip, EveryMetadataTypeComesBackExactly) {
  TempDir dir;
  const std::string path = dir.file("values.gguf");
  const auto metadata = all_value_types();
  GgufWriter::write_file(path, metadata, {});
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  ASSERT_EQ(f.metadata().size(), metadata.size());
  for (size_t i = 0; i < metadata.size(); ++i) {
    EXPECT_EQ(f.metadata()[i].first, metadata[i].first);
    EXPECT_TRUE(same(f.metadata()[i].second, metadata[i].second)) << metadata[i].first;
    ASSERT_NE(f.find(metadata[i].first), nullptr);
  }
  EXPECT_EQ(f.architecture(), "test");
  EXPECT_EQ(f.get_uint("t.u8"), 255u);
  EXPECT_EQ(f.get_int("t.u16"), 65535);
  EXPECT_EQ(f.get_int("t.i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.get_bool("t.bool.true"), true);
  EXPECT_FLOAT_EQ(float(*f.get_float("t.f32")), -1.5e-7f);
  EXPECT_EQ(f.get_string("t.string.nul")->size(), 3u);
  EXPECT_EQ(f.get_string_array("t.arr.string")[2], "Ġ Ġ");
  EXPECT_EQ(f.get_int_array("t.arr.i32"), (std::vector<int64_t>{std::numeric_limits<int32_t>::max(), -1}));
  EXPECT_EQ(f.get_f32_array("t.arr.f32"), (std::vector<float>{0.25f, -3.0f}));
  EXPECT_EQ(f.get_uint("absent"), std::nullopt);
  EXPECT_TRUE(f.get_string_array("absent").empty());
  EXPECT_TRUE(f.tensors().empty());
}

TEST(GgufRoundTrip, WriterBytesMatchTheSpecLayout) {
  TempDir dir;
  const std::string path = dir.file("layout.gguf");
  const auto data_a = random_bytes(2 * 18, 1);  // 64 Q4_0 elements
  const auto data_b = random_bytes(3 * 4, 2);   // 3 F32
  GgufWriter::write_file(path,
                         {{"general.architecture", Value::string("llama")},
                          {"k.arr", Value::array(ValueType::INT16, {Value::i16(-1), Value::i16(2)})},
                          {"k.f", Value::f32(0.5f)}},
                         {{"a", GgmlType::Q4_0, {64, 1, 1, 1}, data_a}, {"b", GgmlType::F32, {3, 1, 1, 1}, data_b}});

  GgufBytes g;
  g.header(3, 2, 3);
  g.key("general.architecture", 8);
  g.str("v", "llama");
  g.key("k.arr", 9);
  g.put<int32_t>("elem", 3);
  g.put<uint64_t>("count", 2);
  g.put<int16_t>("i0", -1);
  g.put<int16_t>("i1", 2);
  g.key("k.f", 6);
  g.put<float>("f", 0.5f);
  g.tensor_info("a", {64}, 2, 0);
  g.tensor_info("b", {3}, 0, 64);  // 36 bytes of a, padded to 64
  g.pad(32);
  g.data(data_a, 32);
  g.data(data_b, 32);
  EXPECT_EQ(read_bytes(path), g.bytes);
}

TEST(GgufRoundTrip, Version2IsReadLikeVersion3AndVersion1IsRefused) {
  TempDir dir;
  const std::string path = dir.file("v.gguf");
  GgufWriter::write_file(path, {{"x", Value::u32(7)}}, {{"t", GgmlType::F32, {4, 1, 1, 1}, random_bytes(16, 3)}});
  auto bytes = read_bytes(path);
  bytes[4] = 2;
  const GgufFile v2 = GgufFile::parse(bytes.data(), bytes.size(), "v2.gguf");
  EXPECT_EQ(v2.version(), 2u);
  EXPECT_EQ(v2.get_uint("x"), 7u);
  EXPECT_EQ(v2.tensors().size(), 1u);
  bytes[4] = 1;
  EXPECT_EQ(error_of([&] { GgufFile::parse(bytes.data(), bytes.size(), "v1.gguf"); }),
            "v1.gguf: header: GGUF version 1 (32-bit counts) is not supported; re-convert the model");
}

TEST(GgufRoundTrip, AlignmentIsWrittenAndHonoured) {
  for (uint32_t alignment : {1u, 8u, 64u, 4096u}) {
    TempDir dir;
    const std::string path = dir.file("a.gguf");
    GgufWriter::write_file(path, {{"general.architecture", Value::string("x")}},
                           {{"t0", GgmlType::F16, {3, 1, 1, 1}, random_bytes(6, 4)},
                            {"t1", GgmlType::Q8_0, {32, 2, 1, 1}, random_bytes(68, 5)}},
                           alignment);
    const GgufFile f = GgufFile::open(path);
    EXPECT_EQ(f.alignment(), alignment);
    if (alignment != 32) {
      ASSERT_NE(f.find("general.alignment"), nullptr);
      EXPECT_EQ(f.find("general.alignment")->type, ValueType::UINT32);
    } else {
      EXPECT_EQ(f.find("general.alignment"), nullptr);
    }
    EXPECT_EQ(f.data_offset() % alignment, 0u);
    for (const TensorInfo& t : f.tensors()) EXPECT_EQ(t.offset % alignment, 0u);
    EXPECT_EQ(f.tensors()[1].offset, (6 + alignment - 1) / alignment * alignment);
  }
  EXPECT_NE(error_of([] { GgufWriter w(48); }).find("48 is not a power of two"), std::string::npos);
}

TEST(GgufRoundTrip, EveryRegisteredTensorTypeKeepsShapeAndBytes) {
  TempDir dir;
  const std::string path = dir.file("types.gguf");
  std::vector<GgufWriter::Tensor> tensors;
  uint32_t seed = 10;
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    const std::array<int64_t, 4> ne{2 * t->block_size, 3, 1, 2};
    tensors.push_back({std::string("w.") + t->name, t->type, ne, random_bytes(2 * t->block_bytes * 3 * 2, seed++)});
  }
  tensors.push_back({"zero", GgmlType::F32, {0, 4, 1, 1}, {}});
  GgufWriter::write_file(path, {{"general.architecture", Value::string("x")}}, tensors);
  const GgufFile f = GgufFile::open(path);
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& info = f.tensors()[i];
    EXPECT_EQ(info.name, tensors[i].name);
    EXPECT_EQ(info.type, tensors[i].type);
    EXPECT_EQ(info.ne, tensors[i].ne);
    EXPECT_EQ(info.n_dims, i + 1 < tensors.size() ? 4u : 2u);
    EXPECT_EQ(info.n_bytes, tensors[i].data.size());
    const TensorView v = f.view(info.name);
    EXPECT_EQ(v.n_bytes(), tensors[i].data.size());
    if (!tensors[i].data.empty()) {
      EXPECT_EQ(std::memcmp(v.data, tensors[i].data.data(), tensors[i].data.size()), 0) << info.name;
    }
  }
  EXPECT_TRUE(f.missing_data().empty());
}

TEST(GgufRoundTrip, TrailingDimsOfOneAreDroppedOthersKept) {
  TempDir dir;
  const std::string path = dir.file("dims.gguf");
  GgufWriter::write_file(path, {},
                         {{"a", GgmlType::F32, {4, 1, 1, 1}, random_bytes(16, 1)},
                          {"b", GgmlType::F32, {4, 1, 2, 1}, random_bytes(32, 2)},
                          {"c", GgmlType::F32, {1, 1, 1, 1}, random_bytes(4, 3)}});
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.tensors()[0].n_dims, 1u);
  EXPECT_EQ(f.tensors()[1].n_dims, 3u);
  EXPECT_EQ(f.tensors()[1].ne, (std::array<int64_t, 4>{4, 1, 2, 1}));
  EXPECT_EQ(f.tensors()[2].n_dims, 1u);
}

TEST(GgufWriter, RefusesMisuse) {
  TempDir dir;
  const std::string path = dir.file("w.gguf");
  GgufWriter w;
  EXPECT_NE(error_of([&] { w.add_tensor("q", GgmlType::Q4_K, {100, 1, 1, 1}); }).find("block size 256"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.add_tensor(std::string(64, 'n'), GgmlType::F32, {1, 1, 1, 1}); }).find("1..63 bytes"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.set("general.alignment", Value::u32(64)); }).find("u32 32"), std::string::npos);
  w.add_tensor("t", GgmlType::F32, {4, 1, 1, 1});
  EXPECT_NE(error_of([&] { w.add_tensor("t", GgmlType::F32, {4, 1, 1, 1}); }).find("declared twice"), std::string::npos);
  w.set("k", Value::u8(1));
  w.set("k", Value::string("replaced"));
  w.begin(path);
  EXPECT_NE(error_of([&] { w.write_tensor_data("abc", 3); }).find("got 3 bytes, its shape and type need 16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.finish(); }).find("after 0 of 1 tensors"), std::string::npos);
  const auto data = random_bytes(16, 9);
  w.write_tensor_data(data.data(), data.size());
  w.finish();
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.metadata().size(), 1u);
  EXPECT_EQ(f.get_string("k"), "replaced");
}

TEST(GgufWriter, AnUnfinishedFileIsRemovedAndATruncatedOneKept) {
  TempDir dir;
  const std::string abandoned = dir.file("abandoned.gguf");
  {
    GgufWriter w;
    w.add_tensor("t", GgmlType::F32, {4, 1, 1, 1});
    w.begin(abandoned);
  }
  EXPECT_FALSE(std::filesystem::exists(abandoned));

  const std::string cut = dir.file("cut.gguf");
  GgufWriter w;
  w.add_tensor("t0", GgmlType::F32, {8, 1, 1, 1});
  w.add_tensor("t1", GgmlType::F32, {8, 1, 1, 1});
  w.begin(cut);
  const auto data = random_bytes(32, 1);
  w.write_tensor_data(data.data(), data.size());
  w.finish_truncated();
  const std::string err = error_of([&] { GgufFile::open(cut); });
  EXPECT_EQ(err, cut + ": tensor t1: data ends at byte " + std::to_string(GgufFile::open(cut, {true}).data_offset() + 64) +
                     ", file has " + std::to_string(std::filesystem::file_size(cut)));
  const GgufFile f = GgufFile::open(cut, {.allow_truncated_data = true});
  EXPECT_EQ(f.missing_data(), std::vector<std::string>{"t1"});
  EXPECT_EQ(std::memcmp(f.view("t0").data, data.data(), 32), 0);
  EXPECT_EQ(f.find_tensor("t1")->data, nullptr);
  EXPECT_EQ(error_of([&] { f.view("t1"); }), cut + ": tensor t1: data is missing (the file is cut short)");
  EXPECT_EQ(error_of([&] { f.view("nope"); }), cut + ": tensor nope not found");
}

TEST(GgufFile, TypedGettersNameFileAndKeyOnMismatch) {
  TempDir dir;
  const std::string path = dir.file("g.gguf");
  GgufWriter::write_file(path,
                         {{"s", Value::string("x")},
                          {"neg", Value::i32(-4)},
                          {"ints", Value::array(ValueType::INT32, {Value::i32(1)})}},
                         {});
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(error_of([&] { f.get_uint("s"); }), path + ": key s: expected an integer, found string");
  EXPECT_EQ(error_of([&] { f.get_uint("neg"); }), path + ": key neg: value -4 is negative, expected an unsigned integer");
  EXPECT_EQ(error_of([&] { f.get_string_array("ints"); }), path + ": key ints: expected a string, found i32");
  EXPECT_EQ(error_of([&] { f.get_bool("s"); }), path + ": key s: expected a bool, found string");
}

TEST(GgufFile, OpenErrorsNameThePath) {
  TempDir dir;
  EXPECT_NE(error_of([&] { GgufFile::open(dir.file("none.gguf")); }).find("none.gguf: cannot open"), std::string::npos);
  test::write_bytes(dir.file("empty.gguf"), {});
  EXPECT_EQ(error_of([&] { GgufFile::open(dir.file("empty.gguf")); }),
            dir.file("empty.gguf") + ": header: file is 0 bytes, too short to be a GGUF file");
  EXPECT_NE(error_of([&] { GgufFile::open(dir.file("")); }).find("not a regular file"), std::string::npos);
}

}  // namespace
}  // namespace moeserve::gguf
