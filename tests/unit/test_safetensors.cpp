// The safetensors reader: the fixtures' tensors are listed exactly as the Python safetensors
// library saw them (manifest.json), F16/BF16/F64 convert to F32, and every malformed header is
// refused with a message naming the file and the field.
#include <gtest/gtest.h>

#include <cstring>

#include "convert_test_util.h"
#include "core/fp16.h"
#include "model/convert/safetensors.h"

namespace moeserve::convert_test {
namespace {

using convert::SafetensorsSet;

TEST(Safetensors, FixtureListingMatchesPythonSafetensors) {
  for (const auto& [model, meta] : manifest()["models"].items()) {
    const SafetensorsSet st = SafetensorsSet::open_dir(hf_fixture(model));
    ASSERT_EQ(st.tensors().size(), meta["safetensors"].size()) << model;
    for (const auto& [name, info] : meta["safetensors"].items()) {
      const convert::StTensor* t = st.find(name);
      ASSERT_NE(t, nullptr) << name;
      EXPECT_EQ(t->shape, info["shape"].get<std::vector<int64_t>>()) << name;
      EXPECT_EQ(convert::st_dtype_name(t->dtype), info["dtype"].get<std::string>()) << name;
    }
  }
}

std::vector<uint8_t> file_bytes(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(uint64_t(header.size()) >> (8 * i)));  // u64 LE length
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
  try {
    convert::parse_safetensors(bytes.data(), bytes.size(), "x.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, HalfAndDoubleConvertToFloat) {
  TempDir dir;
  const std::vector<float> values = {1.0f, -2.5f, 0.333251953125f, 65504.0f};
  std::vector<uint8_t> data;
  for (float v : values) {
    const uint16_t h = fp32_to_fp16(v);
    data.insert(data.end(), reinterpret_cast<const uint8_t*>(&h), reinterpret_cast<const uint8_t*>(&h) + 2);
  }
  for (float v : values) {
    const uint16_t h = fp32_to_bf16(v);
    data.insert(data.end(), reinterpret_cast<const uint8_t*>(&h), reinterpret_cast<const uint8_t*>(&h) + 2);
  }
  for (float v : values) {
    const double d = v;
    data.insert(data.end(), reinterpret_cast<const uint8_t*>(&d), reinterpret_cast<const uint8_t*>(&d) + 8);
  }
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[8,16]},)"
      R"("d":{"dtype":"F64","shape":[4,1],"data_offsets":[16,48]},)"
      R"("i":{"dtype":"I32","shape":[0],"data_offsets":[48,48]}})";
  const std::vector<uint8_t> bytes = file_bytes(header, data);
  std::ofstream(dir.file("a.safetensors"), std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  const SafetensorsSet st = SafetensorsSet::open_files({dir.file("a.safetensors")});
  EXPECT_EQ(st.read_f32("h"), values);
  std::vector<float> bf;
  for (float v : values) bf.push_back(bf16_to_fp32(fp32_to_bf16(v)));
  EXPECT_EQ(st.read_f32("b"), bf);
  EXPECT_EQ(st.read_f32("d"), values);
  EXPECT_EQ(st.find("d")->shape, (std::vector<int64_t>{4, 1}));
  try {
    st.read_f32("i");
    ADD_FAILURE() << "I32 read as float";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("only F32, F16, BF16 and F64"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, MalformedHeadersAreRefused) {
  const std::vector<uint8_t> four(4, 0);
  const auto expect = [&](const std::vector<uint8_t>& bytes, const std::string& part) {
    const std::string err = parse_error(bytes);
    EXPECT_NE(err.find(part), std::string::npos) << "got: " << err;
    EXPECT_EQ(err.rfind("x.safetensors", 0), 0u) << "names the file: " << err;
  };
  expect({1, 2, 3}, "too short");
  std::vector<uint8_t> huge(16, 0);
  huge[7] = 0x10;  // header length 2^60
  expect(huge, "header length");
  expect(file_bytes("{not json", {}), "not valid JSON");
  expect(file_bytes("[1,2]", {}), "not a JSON object");
  expect(file_bytes(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four), "outside the data section");
  expect(file_bytes(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four), "4 bytes of data for shape");
  expect(file_bytes(R"({"t":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", four), "unknown dtype 'Q4'");
  expect(file_bytes(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four), "non-negative integer");
  expect(file_bytes(R"({"t":{"dtype":"F32","shape":[1]}})", four), "data_offsets");
  expect(file_bytes(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", four),
         "overflows");
  EXPECT_EQ(parse_error(file_bytes(R"({"__metadata__":{"format":"pt"},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", four)),
            "");
}

TEST(Safetensors, IndexMustMatchItsShards) {
  TempDir dir;
  write_safetensors(dir.file("a.safetensors"), {{"x", {2}, {1, 2}}});
  std::ofstream(dir.file("model.safetensors.index.json")) << R"({"weight_map":{"x":"a.safetensors","y":"a.safetensors"}})";
  try {
    SafetensorsSet::open_dir(dir.path().string());
    ADD_FAILURE() << "index naming a missing tensor accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lists tensor 'y'"), std::string::npos) << e.what();
  }
  std::ofstream(dir.file("model.safetensors.index.json")) << R"({"weight_map":{"x":"../a.safetensors"}})";
  EXPECT_THROW(SafetensorsSet::open_dir(dir.path().string()), Error);
  write_safetensors(dir.file("b.safetensors"), {{"x", {1}, {3}}});
  EXPECT_THROW(SafetensorsSet::open_files({dir.file("a.safetensors"), dir.file("b.safetensors")}), Error);  // x twice
}

}  // namespace
}  // namespace moeserve::convert_test
