// Split models (shared/spec/gguf.md §1.6): <prefix>-0000i-of-0000N.gguf, split.* keys.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gguf_test_util.h"

namespace moeserve::gguf {
namespace {

using test::random_bytes;
using test::TempDir;

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

struct SplitSpec {
  uint16_t no_override = 0xffff;       // split.no to write instead of the true index
  int32_t tensors_count = 6;           // split.tensors.count in part 1
  bool duplicate_tensor = false;       // part 3 repeats a tensor of part 1
};

// Writes model-0000i-of-00003.gguf, two tensors per part; the first part also carries the model's
// metadata. Returns the data written per tensor name.
std::vector<std::pair<std::string, std::vector<uint8_t>>> write_split(const TempDir& dir, const SplitSpec& spec = {}) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> written;
  for (uint16_t part = 0; part < 3; ++part) {
    std::vector<std::pair<std::string, Value>> metadata;
    if (part == 0) {
      metadata.emplace_back("general.architecture", Value::string("llama"));
      metadata.emplace_back("llama.block_count", Value::u32(3));
    }
    metadata.emplace_back("split.no", Value::u16(part == 1 && spec.no_override != 0xffff ? spec.no_override : part));
    metadata.emplace_back("split.count", Value::u16(3));
    metadata.emplace_back("split.tensors.count", Value::i32(spec.tensors_count));
    std::vector<GgufWriter::Tensor> tensors;
    for (int i = 0; i < 2; ++i) {
      std::string name = "blk." + std::to_string(part) + ".w" + std::to_string(i) + ".weight";
      if (spec.duplicate_tensor && part == 2 && i == 1) name = "blk.0.w0.weight";
      auto data = random_bytes(64 * 4 * 2, part * 10 + i);
      tensors.push_back({name, GgmlType::F32, {64, 2, 1, 1}, data});
      written.emplace_back(name, std::move(data));
    }
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05d-of-00003.gguf", part + 1);
    GgufWriter::write_file(dir.file(name), metadata, tensors);
  }
  return written;
}

TEST(GgufSplit, FirstPartOpensAllPartsAndEveryTensorIsVisible) {
  TempDir dir;
  const auto written = write_split(dir);
  const GgufFile f = GgufFile::open(dir.file("model-00001-of-00003.gguf"));
  EXPECT_EQ(f.n_parts(), 3u);
  EXPECT_EQ(f.part_path(2), dir.file("model-00003-of-00003.gguf"));
  ASSERT_EQ(f.tensors().size(), 6u);
  for (size_t i = 0; i < written.size(); ++i) {
    const TensorInfo* t = f.find_tensor(written[i].first);
    ASSERT_NE(t, nullptr) << written[i].first;
    EXPECT_EQ(t->part, i / 2);
    EXPECT_EQ(std::memcmp(f.view(t->name).data, written[i].second.data(), written[i].second.size()), 0);
  }
  EXPECT_EQ(f.get_uint("llama.block_count"), 3u);  // metadata comes from the first part
  EXPECT_EQ(f.get_uint("split.no"), 0u);
  EXPECT_GT(f.file_size(1), f.data_offset(1));
}

TEST(GgufSplit, PartsCanBeOpenedAlone) {
  TempDir dir;
  write_split(dir);
  const GgufFile f = GgufFile::open(dir.file("model-00001-of-00003.gguf"), {.load_split_parts = false});
  EXPECT_EQ(f.n_parts(), 1u);
  EXPECT_EQ(f.tensors().size(), 2u);
  const GgufFile second = GgufFile::open(dir.file("model-00002-of-00003.gguf"), {.load_split_parts = false});
  EXPECT_EQ(second.tensors()[0].name, "blk.1.w0.weight");
}

TEST(GgufSplit, OpeningALaterPartPointsToTheFirst) {
  TempDir dir;
  write_split(dir);
  EXPECT_EQ(error_of([&] { GgufFile::open(dir.file("model-00002-of-00003.gguf")); }),
            dir.file("model-00002-of-00003.gguf") + ": this is part 2 of a 3-part model (split.no = 1); open the first part, " +
                dir.file("model-00001-of-00003.gguf"));
}

TEST(GgufSplit, InconsistenciesAreErrors) {
  {
    TempDir dir;
    write_split(dir, {.tensors_count = 7});
    EXPECT_EQ(error_of([&] { GgufFile::open(dir.file("model-00001-of-00003.gguf")); }),
              dir.file("model-00001-of-00003.gguf") + ": key split.tensors.count is 7 but the 3 part(s) hold 6 tensors");
  }
  {
    TempDir dir;
    write_split(dir, {.no_override = 2});
    EXPECT_EQ(error_of([&] { GgufFile::open(dir.file("model-00001-of-00003.gguf")); }),
              dir.file("model-00002-of-00003.gguf") + ": key split.no is 2, expected 1 (part 2 of 3)");
  }
  {
    TempDir dir;
    write_split(dir, {.duplicate_tensor = true});
    EXPECT_EQ(error_of([&] { GgufFile::open(dir.file("model-00001-of-00003.gguf")); }),
              dir.file("model-00003-of-00003.gguf") + ": tensor blk.0.w0.weight is also in " +
                  dir.file("model-00001-of-00003.gguf"));
  }
  {
    TempDir dir;
    write_split(dir);
    std::filesystem::remove(dir.file("model-00003-of-00003.gguf"));
    EXPECT_NE(error_of([&] { GgufFile::open(dir.file("model-00001-of-00003.gguf")); })
                  .find("model-00003-of-00003.gguf: cannot open: No such file"),
              std::string::npos);
  }
  {
    TempDir dir;
    write_split(dir);
    std::filesystem::rename(dir.file("model-00001-of-00003.gguf"), dir.file("renamed.gguf"));
    EXPECT_EQ(error_of([&] { GgufFile::open(dir.file("renamed.gguf")); }),
              dir.file("renamed.gguf") + ": key split.count is 3 but the file name does not end in -00001-of-00003.gguf");
  }
}

}  // namespace
}  // namespace moeserve::gguf
