// The type registry against the ggml type table in shared/spec/gguf.md §3 (copied to
// tests/fixtures/spec/gguf.md): every row's name, block size and bytes per block.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <string>

#include "core/ggml_type.h"

namespace moeserve {
namespace {

struct SpecRow {
  std::string name;
  int64_t block;
  size_t bytes;
};

// Rows like "| 12 | Q4_K | 256 | 144 | 4.5 |"; removed ids ("| 4, 5 | (Q4_2 ...) | | | |") do not match.
std::map<int, SpecRow> spec_type_table() {
  std::ifstream in(std::string(MOESERVE_SPEC_DIR) + "/gguf.md");
  EXPECT_TRUE(in.good()) << "cannot read gguf.md";
  const std::regex row(R"(^\|\s*(\d+)\s*\|\s*([A-Z0-9_]+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|)");
  std::map<int, SpecRow> out;
  std::string line;
  bool in_section = false;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) in_section = line.find("ggml type ids") != std::string::npos;
    std::smatch m;
    if (in_section && std::regex_search(line, m, row)) {
      out[std::stoi(m[1])] = SpecRow{m[2], std::stoll(m[3]), size_t(std::stoull(m[4]))};
    }
  }
  return out;
}

TEST(TypeRegistry, MatchesSpecTable) {
  const std::map<int, SpecRow> spec = spec_type_table();
  ASSERT_GE(spec.size(), 30u);
  int checked = 0;
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    const auto it = spec.find(int(t->type));
    ASSERT_NE(it, spec.end()) << t->name << " (id " << int(t->type) << ") is not in gguf.md";
    EXPECT_EQ(it->second.name, t->name);
    EXPECT_EQ(it->second.block, t->block_size) << t->name;
    EXPECT_EQ(it->second.bytes, t->block_bytes) << t->name;
    EXPECT_EQ(find_type(int(t->type)), t);
    EXPECT_EQ(type_from_name(t->name), t->type);
    ++checked;
  }
  EXPECT_EQ(checked, 32);
  // Removed ids are unknown to the registry.
  for (int id : {4, 5, 31, 32, 33, 36, 37, 38}) EXPECT_EQ(find_type(id), nullptr) << id;
}

TEST(TypeRegistry, ConversionsPresentWhereSpecified) {
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    const bool integer = t->type == GgmlType::I8 || t->type == GgmlType::I16 || t->type == GgmlType::I32 ||
                         t->type == GgmlType::I64 || t->type == GgmlType::F64;
    const bool ternary = t->type == GgmlType::TQ1_0 || t->type == GgmlType::TQ2_0;  // not in quants.md
    EXPECT_EQ(t->dequantize != nullptr, !integer && !ternary) << t->name;
  }
  for (GgmlType q : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q8_1,
                     GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_K}) {
    EXPECT_NE(type_traits(q).quantize, nullptr) << type_name(q);
  }
}

}  // namespace
}  // namespace moeserve
