// Runs the built `moeserve inspect` on corrupted files, on every tensor type, on a split model and
// on a header-only file with the exact shapes of Qwen3-Coder-Next (shared/spec/qwen3next.md).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gguf_corpus.h"

namespace moeserve::gguf {
namespace {

using test::TempDir;

struct CliResult {
  int status = -1;
  std::string out, err;
};

CliResult run_inspect(const TempDir& dir, const std::vector<std::string>& args) {
  std::string cmd = std::string("'") + MOESERVE_BINARY + "' inspect";
  for (const std::string& a : args) cmd += " '" + a + "'";
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  cmd += " >'" + out + "' 2>'" + err + "'";
  const int rc = std::system(cmd.c_str());
  CliResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  const auto o = test::read_bytes(out), e = test::read_bytes(err);
  r.out.assign(o.begin(), o.end());
  r.err.assign(e.begin(), e.end());
  return r;
}

bool one_line(const std::string& s) { return !s.empty() && s.back() == '\n' && s.find('\n') == s.size() - 1; }

TEST(InspectCli, CorruptFilesExitOneWithOneLineNamingTheFileAndField) {
  TempDir dir;
  const auto corpus = test::corrupt_corpus();
  size_t tried = 0;
  for (size_t i = 0; i < corpus.size() && tried < 30; i += 97) {
    const std::string path = dir.file("corrupt-" + std::to_string(i) + ".gguf");
    test::write_bytes(path, corpus[i].bytes);
    std::string expected;
    try {
      GgufFile::open(path, {.allow_truncated_data = true});
      continue;  // this mutation left a valid file
    } catch (const Error& e) {
      expected = std::string("moeserve inspect: error: ") + e.what() + "\n";
    }
    ++tried;
    const CliResult r = run_inspect(dir, {path});
    EXPECT_EQ(r.status, 1) << corpus[i].what;
    EXPECT_TRUE(r.out.empty()) << corpus[i].what;
    EXPECT_TRUE(one_line(r.err)) << corpus[i].what << ": " << r.err;
    EXPECT_EQ(r.err, expected) << corpus[i].what;
    EXPECT_NE(r.err.find(path + ": "), std::string::npos);
  }
  EXPECT_GE(tried, 20u);
}

TEST(InspectCli, UsageErrors) {
  TempDir dir;
  CliResult r = run_inspect(dir, {});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "moeserve inspect: error: missing FILE.gguf (see moeserve inspect --help)\n");
  r = run_inspect(dir, {"--bogus", "x.gguf"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "moeserve inspect: error: unknown option '--bogus' (see moeserve inspect --help)\n");
  r = run_inspect(dir, {dir.file("absent.gguf")});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "moeserve inspect: error: " + dir.file("absent.gguf") + ": cannot open: No such file or directory\n");
  r = run_inspect(dir, {"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("usage: moeserve inspect FILE.gguf"), std::string::npos);
}

TEST(InspectCli, ListsEveryTensorTypeWithTotals) {
  TempDir dir;
  const std::string path = dir.file("types.gguf");
  std::vector<GgufWriter::Tensor> tensors;
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    tensors.push_back({std::string("blk.0.w_") + t->name, t->type, {t->block_size * 4, 3, 1, 1},
                       test::random_bytes(4 * 3 * t->block_bytes, uint32_t(t->type))});
  }
  GgufWriter::write_file(path, {{"general.architecture", Value::string("mystery")}}, tensors);
  const CliResult r = run_inspect(dir, {path});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.err.empty());
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    // The tensor row: name, type, shape and exact bytes.
    const std::string name = std::string("blk.0.w_") + t->name;
    const size_t row = r.out.find("\n  " + name + " ");
    ASSERT_NE(row, std::string::npos) << name;
    const std::string line = r.out.substr(row + 1, r.out.find('\n', row + 1) - row - 1);
    EXPECT_NE(line.find(std::string(" ") + t->name + " "), std::string::npos) << line;
    EXPECT_NE(line.find(std::to_string(t->block_size * 4) + " x 3"), std::string::npos) << line;
    EXPECT_NE(line.find(" " + std::to_string(4 * 3 * t->block_bytes)), std::string::npos) << line;
    // The totals-by-type row.
    EXPECT_NE(r.out.find("\n  " + std::string(t->name) + std::string(10 - std::string(t->name).size(), ' ') + "       1"),
              std::string::npos)
        << t->name;
  }
  EXPECT_NE(r.out.find("summary  mystery: 1 layer, dense, "), std::string::npos) << r.out.substr(0, 400);
}

TEST(InspectCli, SplitModelListsItsParts) {
  TempDir dir;
  for (uint16_t part = 0; part < 2; ++part) {
    char name[64];
    std::snprintf(name, sizeof(name), "m-%05d-of-00002.gguf", part + 1);
    GgufWriter::write_file(dir.file(name),
                           {{"general.architecture", Value::string("llama")},
                            {"split.no", Value::u16(part)},
                            {"split.count", Value::u16(2)},
                            {"split.tensors.count", Value::i32(2)}},
                           {{"t" + std::to_string(part), GgmlType::F32, {8, 1, 1, 1}, test::random_bytes(32, part)}});
  }
  const CliResult r = run_inspect(dir, {dir.file("m-00001-of-00002.gguf"), "--json"});
  EXPECT_EQ(r.status, 0) << r.err;
  const auto doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc["parts"].size(), 2u);
  EXPECT_EQ(doc["parts"][1]["path"], dir.file("m-00002-of-00002.gguf"));
  EXPECT_EQ(doc["tensors"][1]["name"], "t1");
  EXPECT_EQ(doc["tensors"][1]["part"], 1);
}

// Qwen3-Coder-Next as llama.cpp's converter lays it out (qwen3next.md §1, §3-6; new-format delta
// net with attn_qkv + attn_gate), IQ2_XS experts, header only: the data is cut short.
struct QwenShapes {
  static constexpr int64_t H = 2048, vocab = 151936, layers = 48, experts = 512, expert_ff = 512;
  int64_t params = 0;
  size_t n_tensors = 0;
};

QwenShapes write_qwen3_coder_next_header(const std::string& path) {
  QwenShapes q;
  constexpr int64_t H = QwenShapes::H;
  GgufWriter w;
  const std::string a = "qwen3next.";
  w.set("general.architecture", Value::string("qwen3next"));
  w.set("general.name", Value::string("Qwen3-Coder-Next"));
  w.set("general.file_type", Value::u32(20));
  w.set("general.quantization_version", Value::u32(2));
  w.set(a + "context_length", Value::u32(262144));
  w.set(a + "embedding_length", Value::u32(H));
  w.set(a + "feed_forward_length", Value::u32(5120));
  w.set(a + "block_count", Value::u32(48));
  w.set(a + "attention.head_count", Value::u32(16));
  w.set(a + "attention.head_count_kv", Value::u32(2));
  w.set(a + "attention.key_length", Value::u32(256));
  w.set(a + "attention.value_length", Value::u32(256));
  w.set(a + "attention.layer_norm_rms_epsilon", Value::f32(1e-6f));
  w.set(a + "rope.freq_base", Value::f32(5e6f));
  w.set(a + "rope.dimension_count", Value::u32(64));
  w.set(a + "expert_count", Value::u32(512));
  w.set(a + "expert_used_count", Value::u32(10));
  w.set(a + "expert_feed_forward_length", Value::u32(512));
  w.set(a + "expert_shared_feed_forward_length", Value::u32(512));
  w.set(a + "ssm.conv_kernel", Value::u32(4));
  w.set(a + "ssm.state_size", Value::u32(128));
  w.set(a + "ssm.group_count", Value::u32(16));
  w.set(a + "ssm.time_step_rank", Value::u32(32));
  w.set(a + "ssm.inner_size", Value::u32(4096));
  w.set(a + "full_attention_interval", Value::u32(4));
  w.set("tokenizer.ggml.model", Value::string("gpt2"));
  w.set("tokenizer.ggml.pre", Value::string("qwen2"));
  std::vector<std::string> tokens;
  for (int64_t i = 0; i < QwenShapes::vocab; ++i) tokens.push_back("[PAD" + std::to_string(i) + "]");
  w.set("tokenizer.ggml.tokens", Value::string_array(tokens));

  auto add = [&](const std::string& name, GgmlType type, std::array<int64_t, 4> ne) {
    w.add_tensor(name, type, ne);
    q.params += ne[0] * ne[1] * ne[2] * ne[3];
    q.n_tensors += 1;
  };
  add("token_embd.weight", GgmlType::Q4_K, {H, QwenShapes::vocab, 1, 1});
  for (int il = 0; il < QwenShapes::layers; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    add(b + "attn_norm.weight", GgmlType::F32, {H, 1, 1, 1});
    add(b + "post_attention_norm.weight", GgmlType::F32, {H, 1, 1, 1});
    if ((il + 1) % 4 == 0) {
      add(b + "attn_q.weight", GgmlType::Q4_K, {H, 16 * 256 * 2, 1, 1});
      add(b + "attn_k.weight", GgmlType::Q4_K, {H, 2 * 256, 1, 1});
      add(b + "attn_v.weight", GgmlType::Q4_K, {H, 2 * 256, 1, 1});
      add(b + "attn_output.weight", GgmlType::Q4_K, {16 * 256, H, 1, 1});
      add(b + "attn_q_norm.weight", GgmlType::F32, {256, 1, 1, 1});
      add(b + "attn_k_norm.weight", GgmlType::F32, {256, 1, 1, 1});
    } else {
      add(b + "attn_qkv.weight", GgmlType::Q4_K, {H, 2 * 2048 + 4096, 1, 1});
      add(b + "attn_gate.weight", GgmlType::Q4_K, {H, 4096, 1, 1});
      add(b + "ssm_ba.weight", GgmlType::Q8_0, {H, 64, 1, 1});
      add(b + "ssm_conv1d.weight", GgmlType::F32, {4, 8192, 1, 1});
      add(b + "ssm_dt.bias", GgmlType::F32, {32, 1, 1, 1});
      add(b + "ssm_a", GgmlType::F32, {32, 1, 1, 1});
      add(b + "ssm_norm.weight", GgmlType::F32, {128, 1, 1, 1});
      add(b + "ssm_out.weight", GgmlType::Q4_K, {4096, H, 1, 1});
    }
    add(b + "ffn_gate_inp.weight", GgmlType::F32, {H, QwenShapes::experts, 1, 1});
    add(b + "ffn_gate_exps.weight", GgmlType::IQ2_XS, {H, QwenShapes::expert_ff, QwenShapes::experts, 1});
    add(b + "ffn_up_exps.weight", GgmlType::IQ2_XS, {H, QwenShapes::expert_ff, QwenShapes::experts, 1});
    add(b + "ffn_down_exps.weight", GgmlType::IQ2_XS, {QwenShapes::expert_ff, H, QwenShapes::experts, 1});
    add(b + "ffn_gate_shexp.weight", GgmlType::Q8_0, {H, 512, 1, 1});
    add(b + "ffn_up_shexp.weight", GgmlType::Q8_0, {H, 512, 1, 1});
    add(b + "ffn_down_shexp.weight", GgmlType::Q8_0, {512, H, 1, 1});
    add(b + "ffn_gate_inp_shexp.weight", GgmlType::F32, {H, 1, 1, 1});
  }
  add("output_norm.weight", GgmlType::F32, {H, 1, 1, 1});
  add("output.weight", GgmlType::Q6_K, {H, QwenShapes::vocab, 1, 1});
  w.begin(path);
  w.finish_truncated();
  return q;
}

TEST(InspectCli, Qwen3CoderNextHeaderOnly) {
  TempDir dir;
  const std::string path = dir.file("Qwen3-Coder-Next-IQ2_XS.gguf");
  const QwenShapes q = write_qwen3_coder_next_header(path);
  // The model card's 80B total, counted from the shapes in the spec.
  EXPECT_GT(q.params, 79'650'000'000);
  EXPECT_LT(q.params, 79'750'000'000);

  const CliResult text = run_inspect(dir, {path});
  EXPECT_EQ(text.status, 1);
  EXPECT_NE(text.out.find("summary  qwen3next: 48 layers (36 delta-net, 12 attention), 512 experts top-10 + shared, "
                          "79.7B params, "),
            std::string::npos)
      << text.out.substr(0, 600);
  EXPECT_NE(text.out.find(" IQ2_XS experts\n"), std::string::npos);
  EXPECT_NE(text.out.find("tokenizer.ggml.tokens"), std::string::npos);
  EXPECT_NE(text.out.find("array[string]   [\"[PAD0]\", \"[PAD1]\""), std::string::npos);
  EXPECT_NE(text.out.find("\"[PAD7]\", ... (151936 items)]\n"), std::string::npos);
  EXPECT_EQ(text.out.find("[PAD151935]"), std::string::npos);  // summarized, not printed in full
  EXPECT_NE(text.out.find("blk.47.ffn_down_exps.weight"), std::string::npos);
  EXPECT_NE(text.out.find("512 x 2048 x 512"), std::string::npos);
  EXPECT_NE(text.out.find("MISSING"), std::string::npos);
  EXPECT_TRUE(one_line(text.err)) << text.err;
  EXPECT_EQ(text.err.rfind("moeserve inspect: error: " + path + ": tensor data is cut short: ", 0), 0u) << text.err;
  EXPECT_NE(text.err.find(std::to_string(q.n_tensors) + " of " + std::to_string(q.n_tensors) + " tensors have no data: "
                          "token_embd.weight, blk.0.attn_norm.weight"),
            std::string::npos)
      << text.err;

  const CliResult json = run_inspect(dir, {"--json", path});
  EXPECT_EQ(json.status, 1);
  const auto doc = nlohmann::json::parse(json.out);
  const auto& s = doc["summary"];
  EXPECT_EQ(s["architecture"], "qwen3next");
  EXPECT_EQ(s["layers"], 48);
  EXPECT_EQ(s["layer_kinds"]["delta-net"], 36);
  EXPECT_EQ(s["layer_kinds"]["attention"], 12);
  EXPECT_EQ(s["experts"], 512);
  EXPECT_EQ(s["experts_used"], 10);
  EXPECT_EQ(s["shared_expert"], true);
  EXPECT_EQ(s["expert_types"], nlohmann::json::array({"IQ2_XS"}));
  EXPECT_EQ(s["params"].get<int64_t>(), q.params);
  EXPECT_EQ(doc["tensors"].size(), q.n_tensors);
  EXPECT_EQ(doc["missing_data"]["tensors"].size(), q.n_tensors);
  const uint64_t needs = doc["parts"][0]["data_offset"].get<uint64_t>() + doc["totals"]["bytes"].get<uint64_t>();
  EXPECT_EQ(doc["missing_data"]["bytes_missing"].get<uint64_t>(), needs - doc["parts"][0]["size"].get<uint64_t>());
  ASSERT_EQ(doc["totals_by_layer"].size(), 48u);
  for (int il = 0; il < 48; ++il) {
    EXPECT_EQ(doc["totals_by_layer"][il]["kind"], (il + 1) % 4 == 0 ? "attention" : "delta-net") << il;
  }
  const auto& tokens = std::find_if(doc["metadata"].begin(), doc["metadata"].end(),
                                    [](const auto& e) { return e["key"] == "tokenizer.ggml.tokens"; });
  ASSERT_NE(tokens, doc["metadata"].end());
  EXPECT_EQ((*tokens)["type"], "array[string]");
  EXPECT_EQ((*tokens)["count"], 151936);
  EXPECT_EQ((*tokens)["truncated"], true);
  EXPECT_EQ((*tokens)["value"].size(), 8u);
}

}  // namespace
}  // namespace moeserve::gguf
