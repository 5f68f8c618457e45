// The architecture summary line and totals, on header-only files shaped like the models of
// shared/spec/qwen3next.md §7 (qwen3moe, dense qwen3) and on files with no known architecture.
#include <gtest/gtest.h>

#include "gguf/gguf_file.h"
#include "gguf/gguf_summary.h"
#include "gguf/gguf_writer.h"
#include "gguf_test_util.h"

namespace moeserve::gguf {
namespace {

using test::TempDir;

struct Layout {
  std::vector<std::pair<std::string, Value>> metadata;
  std::vector<std::tuple<std::string, GgmlType, std::array<int64_t, 4>>> tensors;
};

ModelSummary summarize_layout(const Layout& layout) {
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  GgufWriter w;
  for (const auto& [k, v] : layout.metadata) w.set(k, v);
  for (const auto& [name, type, ne] : layout.tensors) w.add_tensor(name, type, ne);
  w.begin(path);
  w.finish_truncated();
  return summarize(GgufFile::open(path, {.allow_truncated_data = true}));
}

// Attention + FFN tensors of a Qwen3-style layer (qwen3next.md §7), routed experts when n_experts > 0.
void add_qwen3_layer(Layout& l, int il, int64_t H, int64_t n_experts, int64_t ff) {
  const std::string b = "blk." + std::to_string(il) + ".";
  l.tensors.push_back({b + "attn_norm.weight", GgmlType::F32, {H, 1, 1, 1}});
  l.tensors.push_back({b + "attn_q.weight", GgmlType::Q4_K, {H, 4096, 1, 1}});
  l.tensors.push_back({b + "attn_k.weight", GgmlType::Q4_K, {H, 512, 1, 1}});
  l.tensors.push_back({b + "attn_v.weight", GgmlType::Q6_K, {H, 512, 1, 1}});
  l.tensors.push_back({b + "attn_output.weight", GgmlType::Q4_K, {4096, H, 1, 1}});
  l.tensors.push_back({b + "attn_q_norm.weight", GgmlType::F32, {128, 1, 1, 1}});
  l.tensors.push_back({b + "attn_k_norm.weight", GgmlType::F32, {128, 1, 1, 1}});
  l.tensors.push_back({b + "ffn_norm.weight", GgmlType::F32, {H, 1, 1, 1}});
  if (n_experts > 0) {
    l.tensors.push_back({b + "ffn_gate_inp.weight", GgmlType::F32, {H, n_experts, 1, 1}});
    l.tensors.push_back({b + "ffn_gate_exps.weight", GgmlType::Q4_K, {H, ff, n_experts, 1}});
    l.tensors.push_back({b + "ffn_up_exps.weight", GgmlType::Q4_K, {H, ff, n_experts, 1}});
    l.tensors.push_back({b + "ffn_down_exps.weight", GgmlType::Q6_K, {ff, H, n_experts, 1}});
  } else {
    l.tensors.push_back({b + "ffn_gate.weight", GgmlType::Q4_K, {H, ff, 1, 1}});
    l.tensors.push_back({b + "ffn_up.weight", GgmlType::Q4_K, {H, ff, 1, 1}});
    l.tensors.push_back({b + "ffn_down.weight", GgmlType::Q6_K, {ff, H, 1, 1}});
  }
}

TEST(GgufSummary, Qwen3MoeHasExpertsAndOneLayerKind) {
  Layout l;
  l.metadata = {{"general.architecture", Value::string("qwen3moe")},
                {"qwen3moe.block_count", Value::u32(2)},
                {"qwen3moe.expert_count", Value::u32(128)},
                {"qwen3moe.expert_used_count", Value::u32(8)}};
  for (int il = 0; il < 2; ++il) add_qwen3_layer(l, il, 2048, 128, 768);
  l.tensors.push_back({"token_embd.weight", GgmlType::Q4_K, {2048, 1000, 1, 1}});
  const ModelSummary s = summarize_layout(l);
  EXPECT_EQ(s.n_layers, 2);
  EXPECT_EQ(s.layer_kinds, (std::vector<std::pair<std::string, int64_t>>{{"attention", 2}}));
  EXPECT_EQ(s.n_experts, 128u);
  EXPECT_FALSE(s.shared_expert);
  // Q4_K gate+up carry more bytes than Q6_K down, so they come first.
  EXPECT_EQ(s.expert_types, (std::vector<GgmlType>{GgmlType::Q4_K, GgmlType::Q6_K}));
  // 2 x (attention 18.9M + router 0.26M + experts 3 x 2048 x 768 x 128) + embeddings 2.0M
  EXPECT_EQ(s.total.n_elements, 2 * (16777216 + 2097152 + 4352 + 262144 + 603979776) + 2048000u);
  EXPECT_EQ(s.line().substr(0, 51), "qwen3moe: 2 layers, 128 experts top-8, 1.2B params,");
  EXPECT_NE(s.line().find(", Q4_K/Q6_K experts"), std::string::npos) << s.line();
  ASSERT_EQ(s.by_layer.size(), 2u);
  EXPECT_EQ(s.by_layer[1].totals.n_tensors, 12u);
  EXPECT_EQ(s.outside_layers.n_tensors, 1u);
  EXPECT_EQ(s.total.n_elements, s.by_layer[0].totals.n_elements * 2 + 2048 * 1000);
}

TEST(GgufSummary, DenseQwen3SaysDenseAndItsMainType) {
  Layout l;
  l.metadata = {{"general.architecture", Value::string("qwen3")}, {"qwen3.block_count", Value::u32(3)}};
  for (int il = 0; il < 3; ++il) add_qwen3_layer(l, il, 1024, 0, 3072);
  const ModelSummary s = summarize_layout(l);
  EXPECT_EQ(s.n_experts, 0u);
  EXPECT_TRUE(s.expert_types.empty());
  EXPECT_EQ(s.line().substr(0, 24), "qwen3: 3 layers, dense, ");
  EXPECT_NE(s.line().find(", mostly Q4_K"), std::string::npos) << s.line();
}

TEST(GgufSummary, ExpertCountComesFromTensorsWhenKeysAreAbsentOrMalformed) {
  Layout l;
  l.metadata = {{"general.architecture", Value::u32(5)}, {"x.expert_count", Value::string("many")}};
  l.tensors.push_back({"blk.0.ffn_up_exps.weight", GgmlType::F16, {8, 4, 6, 1}});
  l.tensors.push_back({"blk.7.ssm_a", GgmlType::F32, {4, 1, 1, 1}});
  l.tensors.push_back({"blk.x.odd", GgmlType::F32, {4, 1, 1, 1}});
  const ModelSummary s = summarize_layout(l);
  EXPECT_EQ(s.architecture, "");
  EXPECT_EQ(s.n_layers, 2);  // blk.0 and blk.7; "blk.x" is not a layer
  EXPECT_EQ(s.n_experts, 6u);
  EXPECT_EQ(s.line(), "(no general.architecture): 2 layers (1 other, 1 recurrent), 6 experts, 200 params, 416 bytes, F16 experts");
}

TEST(GgufSummary, EmptyFile) {
  const ModelSummary s = summarize_layout({});
  EXPECT_EQ(s.line(), "(no general.architecture): 0 params, 0 bytes, no tensors");
}

TEST(GgufSummary, Formats) {
  EXPECT_EQ(format_count(79674391296), "79.7B");
  EXPECT_EQ(format_count(596049920), "596.0M");
  EXPECT_EQ(format_count(1234), "1.2K");
  EXPECT_EQ(format_count(12), "12");
  EXPECT_EQ(format_bytes(uint64_t(23.3 * (1ull << 30))), "23.3 GiB");
  EXPECT_EQ(format_bytes(3 << 20), "3.0 MiB");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(12), "12 bytes");
}

}  // namespace
}  // namespace moeserve::gguf
