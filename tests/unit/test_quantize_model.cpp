// `moeserve quantize` against llama.cpp's llama_model_quantize (libllama from npm
// @node-llama-cpp/linux-x64) on a small model with Qwen3-Coder-Next's tensor names and layout:
// the same tensors, types, bytes and metadata, with and without an importance matrix. Then the
// output read back (and through `moeserve inspect`), and bad input giving one clear error. The
// 1- and 2-bit types, whose tables take ggml tens of seconds to build, and more file types are
// in tests/slow.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "quant/imatrix_file.h"
#include "quant/quantize_model.h"
#include "quantize_model_util.h"

namespace moeserve {
namespace {

using test::TempDir;

TEST(QuantizeModel, MatchesLlamaModelQuantize) {
  REQUIRE_LLAMA();
  for (const test::QuantCase& c :
       {test::QuantCase{"Q4_K_M", 15, false}, test::QuantCase{"Q4_K_M", 15, true}, test::QuantCase{"IQ4_XS", 30, true}}) {
    test::expect_matches_llama(c);
  }
}

TEST(QuantizeModel, OutputReadsBackAndInspects) {
  TempDir dir;
  const std::string model = dir.file("model.gguf"), out = dir.file("out.gguf");
  test::write_tiny_qwen3next(model, {});
  const test::CliResult r = test::run_moeserve(dir, {"quantize", model, out, "Q4_K_M", "--tensor-type", "ssm_ba=q8_0"});
  ASSERT_EQ(r.status, 0) << r.err;
  const test::CliResult inspect = test::run_moeserve(dir, {"inspect", out});
  EXPECT_EQ(inspect.status, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("Q4_K"), std::string::npos);
  const gguf::GgufFile in = gguf::GgufFile::open(model), q = gguf::GgufFile::open(out);
  EXPECT_EQ(q.get_string("general.name"), "tiny qwen3next");
  EXPECT_EQ(q.get_uint("qwen3next.expert_count"), 4u);
  EXPECT_EQ(q.find_tensor("blk.0.ssm_ba.weight")->type, GgmlType::Q8_0);
  EXPECT_EQ(q.find_tensor("blk.0.ssm_a")->type, GgmlType::F32);
  EXPECT_EQ(q.find_tensor("blk.0.ssm_conv1d.weight")->type, GgmlType::F32);
  EXPECT_EQ(q.find_tensor("blk.0.ffn_gate_inp.weight")->type, GgmlType::F32);
  // Every tensor dequantizes to close to the original (copied ones exactly).
  for (const gguf::TensorInfo& t : in.tensors()) {
    const gguf::TensorInfo* o = q.find_tensor(t.name);
    ASSERT_NE(o, nullptr) << t.name;
    ASSERT_EQ(o->ne, t.ne);
    const int64_t n = t.n_elements();
    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    type_traits(t.type).dequantize(t.data, a.data(), n);
    type_traits(o->type).dequantize(o->data, b.data(), n);
    double err = 0, ref = 0;
    for (int64_t i = 0; i < n; ++i) {
      err += (double(a[size_t(i)]) - b[size_t(i)]) * (double(a[size_t(i)]) - b[size_t(i)]);
      ref += double(a[size_t(i)]) * a[size_t(i)];
    }
    EXPECT_LT(std::sqrt(err / ref), o->type == t.type ? 1e-12 : 0.12) << t.name << " " << type_name(o->type);
  }
}

void expect_one_line_error(const test::CliResult& r, const std::string& part) {
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  EXPECT_EQ(r.err.rfind("moeserve quantize: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
}

TEST(QuantizeModel, BadInputIsOneClearError) {
  TempDir dir;
  const std::string model = dir.file("model.gguf"), out = dir.file("out.gguf");
  test::write_tiny_qwen3next(model, {.n_layer = 1});
  expect_one_line_error(test::run_moeserve(dir, {"quantize", model, out, "Q4_K_X"}), "unknown quantization type 'Q4_K_X'");
  expect_one_line_error(test::run_moeserve(dir, {"quantize", model, out}), "expected IN.gguf OUT.gguf TYPE");
  expect_one_line_error(test::run_moeserve(dir, {"quantize", model, out, "Q4_K_M", "--pur"}), "unknown option '--pur'");
  expect_one_line_error(test::run_moeserve(dir, {"quantize", model, out, "Q4_K_M", "--tensor-type", "attn_v"}),
                        "expected REGEX=TYPE");
  expect_one_line_error(test::run_moeserve(dir, {"quantize", model, out, "Q4_K_M", "--tensor-type", "attn_v=q9_k"}),
                        "unknown tensor type 'q9_k'");
  expect_one_line_error(test::run_moeserve(dir, {"quantize", model, out, "Q4_K_M", "--output-tensor-type", "q8_k"}),
                        "cannot quantize to Q8_K");
  expect_one_line_error(test::run_moeserve(dir, {"quantize", model, out, "Q4_K_M", "-t", "0"}), "--threads");
  expect_one_line_error(test::run_moeserve(dir, {"quantize", model, model, "Q4_K_M"}), "must not be the input file");
  // Not a GGUF file, a missing file, a bad importance matrix.
  const std::string text = dir.file("notes.txt");
  std::ofstream(text) << "not a model\n";
  expect_one_line_error(test::run_moeserve(dir, {"quantize", text, out, "Q4_K_M"}), text);
  expect_one_line_error(test::run_moeserve(dir, {"quantize", dir.file("nope.gguf"), out, "Q4_K_M"}),
                        dir.file("nope.gguf"));
  expect_one_line_error(test::run_moeserve(dir, {"quantize", model, out, "IQ4_XS", "--imatrix", text}), text);
  expect_one_line_error(test::run_moeserve(dir, {"quantize", model, out, "IQ4_XS", "--imatrix", model}),
                        "not an importance matrix");
  // Already quantized input.
  ASSERT_EQ(test::run_moeserve(dir, {"quantize", model, out, "Q8_0"}).status, 0);
  expect_one_line_error(test::run_moeserve(dir, {"quantize", out, dir.file("again.gguf"), "Q4_K_M"}),
                        "--allow-requantize");
  EXPECT_FALSE(std::filesystem::exists(dir.file("again.gguf")));
}

// An imatrix whose entry does not fit its tensor is refused (llama-quantize: "imatrix size ... is
// different from tensor size"), naming both.
TEST(QuantizeModel, ImatrixSizeMismatchIsAnError) {
  TempDir dir;
  const std::string model = dir.file("model.gguf");
  test::write_tiny_qwen3next(model, {.n_layer = 1});
  test::Imatrix im = test::make_imatrix(model, 3);
  im.entries["blk.0.ffn_up_exps.weight"].ne0 = 128;
  im.entries["blk.0.ffn_up_exps.weight"].sums.resize(128 * 4);
  test::write_imatrix(dir.file("im.gguf"), im);
  expect_one_line_error(
      test::run_moeserve(dir, {"quantize", model, dir.file("out.gguf"), "Q4_K_M", "--imatrix", dir.file("im.gguf")}),
      "blk.0.ffn_up_exps.weight has 512 values, the tensor needs 1024");
}

TEST(ImatrixFile, GgufValuesAreMeanSquares) {
  TempDir dir;
  const std::string model = dir.file("model.gguf");
  test::write_tiny_qwen3next(model, {.n_layer = 1});
  const test::Imatrix im = test::make_imatrix(model, 9);
  test::write_imatrix(dir.file("im.gguf"), im);
  const quant::ImatrixFile f = quant::read_imatrix(dir.file("im.gguf"));
  EXPECT_FALSE(f.legacy);
  EXPECT_EQ(f.datasets, std::vector<std::string>{"calibration.txt"});
  EXPECT_EQ(f.chunk_count, 42u);
  const auto expected = im.values();
  ASSERT_EQ(f.entries.size(), expected.size());
  for (const auto& [name, v] : expected) {
    ASSERT_NE(f.find(name), nullptr) << name;
    EXPECT_EQ(*f.find(name), v) << name;
  }
  // The unused last expert has weights 1.
  EXPECT_EQ(f.find("blk.0.ffn_up_exps.weight")->back(), 1.0f);
}

TEST(ImatrixFile, LegacyFormat) {
  TempDir dir;
  const std::string path = dir.file("im.dat");
  {
    std::ofstream out(path, std::ios::binary);
    auto i32 = [&](int32_t v) { out.write(reinterpret_cast<const char*>(&v), 4); };
    i32(1);
    const std::string name = "blk.0.attn_q.weight";
    i32(int32_t(name.size()));
    out.write(name.data(), std::streamsize(name.size()));
    i32(4);  // calls
    i32(2);  // values
    const float sums[2] = {8.0f, 2.0f};
    out.write(reinterpret_cast<const char*>(sums), sizeof sums);
    i32(10);  // chunks
    i32(4);
    out.write("wiki", 4);
  }
  const quant::ImatrixFile f = quant::read_imatrix(path);
  EXPECT_TRUE(f.legacy);
  EXPECT_EQ(*f.find("blk.0.attn_q.weight"), (std::vector<float>{2.0f, 0.5f}));
  EXPECT_EQ(f.chunk_count, 10u);
  EXPECT_EQ(f.datasets, std::vector<std::string>{"wiki"});
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "xx";
  EXPECT_THROW(quant::read_imatrix(path), Error);
}

}  // namespace
}  // namespace moeserve
