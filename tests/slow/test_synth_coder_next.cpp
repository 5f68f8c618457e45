// The synthetic Qwen3-Coder-Next at full width (4 layers: three Gated DeltaNet layers and the
// first gated-attention layer, all 512 experts) against the shape and hyper-parameter tables of
// shared/spec/qwen3next.md §1.1, §3, §4.1, §5, §6, and the size of the whole 48-layer model.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "../unit/convert_test_util.h"
#include "model/synth/synth.h"

namespace moeserve::convert_test {
namespace {

using Shape = std::vector<int64_t>;

TEST(SynthCoderNext, ShapesAndKeysAreTheSpecs) {
  TempDir dir;
  synth::SynthOptions opt;
  opt.preset = "qwen3-coder-next";
  opt.layers = 4;
  opt.out_path = dir.file("coder-next-4.gguf");
  synth::synthesize(opt);
  const gguf::GgufFile f = gguf::GgufFile::open(opt.out_path);

  const std::map<std::string, uint64_t> keys = {
      {"embedding_length", 2048}, {"block_count", 4}, {"full_attention_interval", 4},
      {"attention.head_count", 16}, {"attention.head_count_kv", 2}, {"attention.key_length", 256},
      {"attention.value_length", 256}, {"rope.dimension_count", 64}, {"ssm.group_count", 16},
      {"ssm.time_step_rank", 32}, {"ssm.state_size", 128}, {"ssm.inner_size", 4096}, {"ssm.conv_kernel", 4},
      {"expert_count", 512}, {"expert_used_count", 10}, {"expert_feed_forward_length", 512},
      {"expert_shared_feed_forward_length", 512}, {"feed_forward_length", 5120}, {"context_length", 262144}};
  for (const auto& [k, v] : keys) EXPECT_EQ(f.get_uint("qwen3next." + k), v) << k;
  EXPECT_EQ(f.get_float("qwen3next.rope.freq_base"), 5000000.0);
  EXPECT_FLOAT_EQ(float(*f.get_float("qwen3next.attention.layer_norm_rms_epsilon")), 1e-6f);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 151936u);

  // §6 globals, §3 attention (layer 3), §4.1 DeltaNet new format (layers 0-2), §5 MoE (all).
  std::map<std::string, Shape> want = {{"token_embd.weight", {2048, 151936}},
                                       {"output_norm.weight", {2048}},
                                       {"output.weight", {2048, 151936}}};
  for (int il = 0; il < 4; ++il) {
    const auto put = [&](const std::string& n, Shape s) { want[str_cat("blk.", il, ".", n)] = s; };
    put("attn_norm.weight", {2048});
    put("post_attention_norm.weight", {2048});
    if (il == 3) {
      put("attn_q.weight", {2048, 8192});
      put("attn_k.weight", {2048, 512});
      put("attn_v.weight", {2048, 512});
      put("attn_output.weight", {4096, 2048});
      put("attn_q_norm.weight", {256});
      put("attn_k_norm.weight", {256});
    } else {
      put("attn_qkv.weight", {2048, 8192});
      put("attn_gate.weight", {2048, 4096});
      put("ssm_ba.weight", {2048, 64});
      put("ssm_conv1d.weight", {4, 8192});
      put("ssm_dt.bias", {32});
      put("ssm_a", {32});
      put("ssm_norm.weight", {128});
      put("ssm_out.weight", {4096, 2048});
    }
    put("ffn_gate_inp.weight", {2048, 512});
    put("ffn_gate_exps.weight", {2048, 512, 512});
    put("ffn_up_exps.weight", {2048, 512, 512});
    put("ffn_down_exps.weight", {512, 2048, 512});
    put("ffn_gate_shexp.weight", {2048, 512});
    put("ffn_up_shexp.weight", {2048, 512});
    put("ffn_down_shexp.weight", {512, 2048});
    put("ffn_gate_inp_shexp.weight", {2048});
  }
  std::map<std::string, Shape> got;
  uint64_t global = 0, delta_layer = 0, attn_layer = 0;
  for (const gguf::TensorInfo& t : f.tensors()) {
    got[t.name] = dims(t);
    if (t.name.rfind("blk.0.", 0) == 0) {
      delta_layer += t.n_bytes;
    } else if (t.name.rfind("blk.3.", 0) == 0) {
      attn_layer += t.n_bytes;
    } else if (t.name.rfind("blk.", 0) != 0) {
      global += t.n_bytes;
    }
    if (t.name.find("_exps") != std::string::npos) {
      EXPECT_EQ(t.type, GgmlType::IQ2_XS) << t.name;
    }
  }
  EXPECT_EQ(got, want);
  // 48 layers = 36 DeltaNet + 12 attention: about 23 GiB with IQ2_XS experts (design.md §6).
  const double total_gib = double(global + 36 * delta_layer + 12 * attn_layer) / double(1ull << 30);
  std::printf("full qwen3-coder-next at IQ2_XS experts / Q8_0 other: %.2f GiB\n", total_gib);
  EXPECT_GT(total_gib, 21.0);
  EXPECT_LT(total_gib, 25.0);
}

}  // namespace
}  // namespace moeserve::convert_test
