// Malformed GGUF: each violation of shared/spec/gguf.md is one moeserve::Error naming the file and
// the field; no input crashes, aborts or allocates absurdly (this binary also runs under ASan/UBSan
// in the slow label, see tests/scripts/gguf_fuzz.sh).
#include <gtest/gtest.h>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_report.h"
#include "gguf/gguf_summary.h"
#include "gguf/gguf_writer.h"
#include "gguf_corpus.h"

namespace moeserve::gguf {
namespace {

using test::GgufBytes;

std::string parse_error(const std::vector<uint8_t>& bytes, bool allow_truncated = false) {
  try {
    GgufFile::parse(bytes.data(), bytes.size(), "bad.gguf", {.allow_truncated_data = allow_truncated});
  } catch (const Error& e) {
    return e.what();
  }
  return "(parsed)";
}

// The data section of test::base_gguf(): the end of its last tensor info, padded to 32.
size_t base_data_offset(const GgufBytes& g) { return (g.field("tensor c.offset").pos + 8 + 31) / 32 * 32; }

#define EXPECT_GGUF_ERROR(bytes, text) EXPECT_EQ(parse_error(bytes), std::string("bad.gguf: ") + (text))

TEST(GgufCorrupt, BaseFileIsValid) {
  const GgufBytes g = test::base_gguf();
  const GgufFile f = GgufFile::parse(g.bytes.data(), g.bytes.size(), "base.gguf");
  EXPECT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.get_string_array("tok"), (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(f.find("nested")->as_array().items[0].as_array().items[1].as_uint(), 2u);
}

TEST(GgufCorrupt, Header) {
  const GgufBytes g = test::base_gguf();
  auto bytes = g.bytes;
  bytes[0] = 'X';
  EXPECT_GGUF_ERROR(bytes, "header: not a GGUF file (magic is \"XGUF\", expected \"GGUF\")");
  EXPECT_GGUF_ERROR(std::vector<uint8_t>(g.bytes.begin(), g.bytes.begin() + 3),
                    "header: file is 3 bytes, too short to be a GGUF file");
  EXPECT_GGUF_ERROR(std::vector<uint8_t>(g.bytes.begin(), g.bytes.begin() + 6),
                    "header: version at byte 4 runs past the end of the file (6 bytes)");
  EXPECT_GGUF_ERROR(g.with("version", 0x03000000), "header: version 50331648: big-endian GGUF files are not supported");
  EXPECT_GGUF_ERROR(g.with("version", 4), "header: unsupported GGUF version 4 (2 and 3 are supported)");
  EXPECT_GGUF_ERROR(g.with("n_tensors", uint64_t(-1)), "header: tensor count -1 is negative");
  EXPECT_GGUF_ERROR(g.with("n_kv", uint64_t(-5)), "header: metadata count -5 is negative");
  EXPECT_GGUF_ERROR(g.with("n_kv", 1ull << 40),
                    "header: metadata count 1099511627776 cannot fit in the " + std::to_string(g.bytes.size() - 24) +
                        " bytes left in the file");
  EXPECT_GGUF_ERROR(g.with("n_tensors", 1ull << 40), "header: tensor count 1099511627776 cannot fit in the " +
                                                         std::to_string(g.bytes.size() - g.field("key f.type").pos - 8) +
                                                         " bytes left in the file");
}

TEST(GgufCorrupt, KeysAndValues) {
  const GgufBytes g = test::base_gguf();
  const size_t at = g.field("key general.architecture.length").pos;
  EXPECT_GGUF_ERROR(g.with("key general.architecture.length", 1ull << 62),
                    "key #0: key length 4611686018427387904 at byte " + std::to_string(at) + " exceeds the " +
                        std::to_string(g.bytes.size() - at - 8) + " bytes left in the file");
  EXPECT_GGUF_ERROR(g.with("key general.architecture.length", 0), "key #0: empty key");
  EXPECT_GGUF_ERROR(g.with("key general.architecture.type", 13),
                    "key general.architecture: value type 13 is not a GGUF value type (0..12)");
  EXPECT_GGUF_ERROR(g.with("tok.elem", uint32_t(-1)), "key tok: array element type -1 is not a GGUF value type (0..12)");
  EXPECT_GGUF_ERROR(g.with("tok.count", 1ull << 29),
                    "key tok: array of 536870912 string items cannot fit in the " +
                        std::to_string(g.bytes.size() - g.field("tok.count").pos - 8) + " bytes left in the file");
  EXPECT_GGUF_ERROR(g.with("tok.count", 1ull << 31), "key tok: array length 2147483648 exceeds the limit of 1073741824");
  EXPECT_GGUF_ERROR(g.with("nested.inner.count", 1000), "key nested: array of 1000 u32 items cannot fit in the " +
                                                           std::to_string(g.bytes.size() -
                                                                          g.field("nested.inner.count").pos - 8) +
                                                           " bytes left in the file");
  GgufBytes dup;
  dup.header(3, 0, 2);
  dup.key("k", 4);
  dup.put<uint32_t>("v0", 1);
  dup.key("k", 4);
  dup.put<uint32_t>("v1", 2);
  EXPECT_GGUF_ERROR(dup.bytes, "key k: duplicate key");
}

TEST(GgufCorrupt, NestingIsBounded) {
  GgufBytes g;
  g.header(3, 0, 1);
  g.key("deep", 9);
  for (int i = 0; i < 100; ++i) {
    g.put<int32_t>("elem", 9);
    g.put<uint64_t>("count", 1);
  }
  EXPECT_GGUF_ERROR(g.bytes, "key deep: arrays nested deeper than 8 levels");
}

TEST(GgufCorrupt, MetadataValueCountIsBoundedBeforeAllocating) {
  GgufBytes g;
  g.header(3, 0, 1);
  g.key("big", 9);
  g.put<int32_t>("elem", 0);
  const uint64_t count = (1u << 24) + 1;
  g.put<uint64_t>("count", count);
  g.bytes.resize(g.bytes.size() + count);
  EXPECT_GGUF_ERROR(g.bytes, "key big: metadata holds more than 16777216 values");
}

TEST(GgufCorrupt, Alignment) {
  const GgufBytes g = test::base_gguf();
  EXPECT_GGUF_ERROR(g.with("alignment", 48), "key general.alignment: value 48 is not a power of two");
  EXPECT_GGUF_ERROR(g.with("alignment", 0), "key general.alignment: value 0 is not a power of two");
  EXPECT_GGUF_ERROR(g.with("key general.alignment.type", 5), "key general.alignment: must be u32, found i32");
  // Alignment 64: tensor b's offset 64 stays aligned, but the data section moves and c's offset 128
  // is fine too; alignment 256 makes b's offset 64 misaligned.
  EXPECT_GGUF_ERROR(g.with("alignment", 256), "tensor blk.0.b: offset 64 is not a multiple of the alignment 256");
}

TEST(GgufCorrupt, TensorInfos) {
  const GgufBytes g = test::base_gguf();
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.a.name.length", 0), "tensor #0: empty name");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.a.n_dims", 0), "tensor blk.0.a: n_dims 0 is not in 1..4");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.a.n_dims", 5), "tensor blk.0.a: n_dims 5 is not in 1..4");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.b.ne1", uint64_t(-2)), "tensor blk.0.b: ne[1] = -2 is negative");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.a.ne0", 48), "tensor blk.0.a: ne[0] = 48 is not a multiple of the Q4_0 block size 32");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.a.type", 4), "tensor blk.0.a: type id 4 is Q4_2 (removed from ggml)");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.a.type", 31),
                    "tensor blk.0.a: type id 31 is Q4_0_4_4 (removed from ggml; re-convert the model)");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.a.type", 1000), "tensor blk.0.a: unknown ggml type id 1000");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.b.ne1", 1ull << 62), "tensor blk.0.b: shape 8 x 4611686018427387904 x 1 x 1 has too many elements");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.b.ne1", 1ull << 59), "tensor blk.0.b: size in bytes overflows 64 bits");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.b.offset", 65), "tensor blk.0.b: offset 65 is not a multiple of the alignment 32");
  const uint64_t data_offset = base_data_offset(g);
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.b.offset", 256), "tensor blk.0.b: data ends at byte " +
                                                              std::to_string(data_offset + 256 + 64) + ", file has " +
                                                              std::to_string(g.bytes.size()));
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.b.offset", ~0ull << 5), "tensor blk.0.b: offset 18446744073709551584 + 64 bytes overflows 64 bits");
  EXPECT_GGUF_ERROR(g.with("tensor blk.0.b.offset", 0),
                    "tensor blk.0.b: data at bytes " + std::to_string(data_offset) + ".." + std::to_string(data_offset + 64) +
                        " overlaps tensor blk.0.a at bytes " + std::to_string(data_offset) + ".." +
                        std::to_string(data_offset + 36));

  GgufBytes names;
  names.header(3, 2, 0);
  names.tensor_info(std::string(64, 'n'), {4}, 0, 0);
  EXPECT_EQ(parse_error(names.bytes), "bad.gguf: tensor " + std::string(64, 'n') + ": name is 64 bytes, the limit is 63");
  GgufBytes dup;
  dup.header(3, 2, 0);
  dup.tensor_info("t", {4}, 0, 0);
  dup.tensor_info("t", {4}, 0, 32);
  dup.pad(32);
  dup.data(test::random_bytes(16, 1), 32);
  dup.data(test::random_bytes(16, 2), 32);
  EXPECT_GGUF_ERROR(dup.bytes, "tensor t: duplicate tensor name");
}

TEST(GgufCorrupt, UntrustedNamesAreEscapedInMessages) {
  GgufBytes g;
  g.header(3, 0, 1);
  g.key("bad\nkey\x1b[31m", 13);
  EXPECT_GGUF_ERROR(g.bytes, "key bad\\nkey\\x1b[31m: value type 13 is not a GGUF value type (0..12)");
}

TEST(GgufCorrupt, DataCutShortIsAnErrorUnlessAllowed) {
  const GgufBytes g = test::base_gguf();
  const size_t info_end = g.field("tensor c.offset").pos + 8;
  const size_t data_offset = base_data_offset(g);
  for (size_t n = 0; n < g.bytes.size(); ++n) {
    const std::vector<uint8_t> cut(g.bytes.begin(), g.bytes.begin() + std::ptrdiff_t(n));
    if (n < info_end) {
      // Inside the header: an error either way.
      EXPECT_NE(parse_error(cut, true), "(parsed)") << n;
      continue;
    }
    const std::string strict = parse_error(cut);
    const GgufFile f = GgufFile::parse(cut.data(), cut.size(), "cut.gguf", {.allow_truncated_data = true});
    const bool all_data = n >= data_offset + 128 + 144;  // c ends there (its padding may be cut)
    EXPECT_EQ(strict == "(parsed)", all_data) << n << ": " << strict;
    EXPECT_EQ(f.missing_data().empty(), all_data) << n;
    if (!all_data) {
      EXPECT_NE(strict.find("data ends at byte"), std::string::npos) << strict;
      EXPECT_EQ(f.find_tensor("c")->data, nullptr);
      EXPECT_TRUE(missing_data_message(f).has_value());
    }
  }
}

// Parses a case strictly and tolerantly; every outcome must be success or one moeserve::Error whose
// message names the file and fits on one line. Successful parses are also summarized and reported.
struct Outcome {
  size_t ok = 0, rejected = 0;
};
void check_case(const test::CorruptCase& c, Outcome& outcome) {
  for (bool allow : {false, true}) {
    try {
      const GgufFile f = GgufFile::parse(c.bytes.data(), c.bytes.size(), "corpus.gguf", {.allow_truncated_data = allow});
      const ModelSummary s = summarize(f);
      (void)s.line();
      (void)report_text(f, {.all_metadata = true});
      (void)report_json(f, {}).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      (void)missing_data_message(f);
      ++outcome.ok;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("corpus.gguf: ", 0), 0u) << c.what << ": " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << c.what << ": " << msg;
      ++outcome.rejected;
    }
  }
}

TEST(GgufCorrupt, CorpusOfMutationsNeverCrashes) {
  const auto corpus = test::corrupt_corpus();
  EXPECT_GT(corpus.size(), 1000u);
  Outcome outcome;
  for (const auto& c : corpus) check_case(c, outcome);
  EXPECT_GT(outcome.rejected, 1000u);
  EXPECT_GT(outcome.ok, 100u);  // some flips land in values and padding and stay valid
}

TEST(GgufCorrupt, WriterFilesWithEveryTypeSurviveTruncationAndFlips) {
  test::TempDir dir;
  const std::string path = dir.file("w.gguf");
  std::vector<GgufWriter::Tensor> tensors;
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    tensors.push_back({std::string("blk.1.") + t->name, t->type, {t->block_size, 2, 1, 1},
                       test::random_bytes(2 * t->block_bytes, uint32_t(t->type))});
  }
  GgufWriter::write_file(path,
                         {{"general.architecture", Value::string("qwen3moe")},
                          {"qwen3moe.block_count", Value::u32(2)},
                          {"v.f64", Value::f64(2.5)},
                          {"v.i16s", Value::array(ValueType::INT16, {Value::i16(1), Value::i16(-1)})},
                          {"v.strs", Value::string_array({"x", "yy", "zzz"})},
                          {"v.bools", Value::array(ValueType::BOOL, {Value::boolean(true)})},
                          {"v.u64", Value::u64(9)}},
                         tensors, 64);
  const auto bytes = test::read_bytes(path);
  const size_t header_end = GgufFile::open(path).data_offset();
  Outcome outcome;
  for (const auto& c : test::truncations(std::vector<uint8_t>(bytes.begin(), bytes.begin() + std::ptrdiff_t(header_end)),
                                          "writer")) {
    check_case(c, outcome);
  }
  for (const auto& c : test::bit_flips(bytes, "writer", header_end, 2000, 7)) check_case(c, outcome);
  EXPECT_GT(outcome.rejected, 1000u);
  EXPECT_GT(outcome.ok, 100u);
}

}  // namespace
}  // namespace moeserve::gguf
