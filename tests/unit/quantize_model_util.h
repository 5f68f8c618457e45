// Helpers for the model quantization tests: a small model with Qwen3-Coder-Next's tensor names
// and layout (shared/spec/qwen3next.md; smaller dimensions), an importance matrix for it in
// llama-imatrix's GGUF format, llama.cpp's own llama_model_quantize (libllama from npm) as the
// reference, running the moeserve binary, and comparing two quantized files.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gguf_test_util.h"
#include "llama_reference.h"

namespace moeserve::test {

struct TinyModel {
  int n_embd = 256;
  int n_layer = 4;  // layer 3 is the full-attention one (full_attention_interval 4)
  int n_expert = 4;
  int n_ff = 128;
  uint32_t seed = 1;
};

// Weights BF16 (Student-t distributed, like real weights), norms and small SSM tensors F32.
inline void write_tiny_qwen3next(const std::string& path, const TinyModel& m) {
  std::vector<gguf::GgufWriter::Tensor> tensors;
  std::mt19937 rng(m.seed);
  std::student_t_distribution<float> dist(4.0f);
  auto add = [&](const std::string& name, GgmlType type, std::array<int64_t, 4> ne) {
    const int64_t n = ne[0] * ne[1] * ne[2] * ne[3];
    std::vector<uint8_t> data(row_bytes(type, n));
    for (int64_t i = 0; i < n; ++i) {
      const float v = 0.02f * dist(rng);
      if (type == GgmlType::F32) {
        std::memcpy(&data[size_t(i) * 4], &v, 4);
      } else {
        const uint16_t b = fp32_to_bf16(v);
        std::memcpy(&data[size_t(i) * 2], &b, 2);
      }
    }
    tensors.push_back({name, type, ne, std::move(data)});
  };
  const int64_t E = m.n_embd, F = m.n_ff, X = m.n_expert;
  add("token_embd.weight", GgmlType::BF16, {E, 1000, 1, 1});
  add("output_norm.weight", GgmlType::F32, {E, 1, 1, 1});
  add("output.weight", GgmlType::BF16, {E, 1000, 1, 1});
  for (int il = 0; il < m.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    add(b + "attn_norm.weight", GgmlType::F32, {E, 1, 1, 1});
    add(b + "post_attention_norm.weight", GgmlType::F32, {E, 1, 1, 1});
    if ((il + 1) % 4 == 0) {
      add(b + "attn_q.weight", GgmlType::BF16, {E, 1024, 1, 1});
      add(b + "attn_k.weight", GgmlType::BF16, {E, 128, 1, 1});
      add(b + "attn_v.weight", GgmlType::BF16, {E, 128, 1, 1});
      add(b + "attn_output.weight", GgmlType::BF16, {512, E, 1, 1});
      add(b + "attn_q_norm.weight", GgmlType::F32, {64, 1, 1, 1});
      add(b + "attn_k_norm.weight", GgmlType::F32, {64, 1, 1, 1});
    } else {
      add(b + "attn_qkv.weight", GgmlType::BF16, {E, 1024, 1, 1});
      add(b + "attn_gate.weight", GgmlType::BF16, {E, 512, 1, 1});
      add(b + "ssm_ba.weight", GgmlType::BF16, {E, 16, 1, 1});
      add(b + "ssm_conv1d.weight", GgmlType::F32, {4, 1024, 1, 1});
      add(b + "ssm_dt.bias", GgmlType::F32, {8, 1, 1, 1});
      add(b + "ssm_a", GgmlType::F32, {8, 1, 1, 1});
      add(b + "ssm_norm.weight", GgmlType::F32, {64, 1, 1, 1});
      add(b + "ssm_out.weight", GgmlType::BF16, {512, E, 1, 1});
    }
    add(b + "ffn_gate_inp.weight", GgmlType::F32, {E, X, 1, 1});
    add(b + "ffn_gate_exps.weight", GgmlType::BF16, {E, F, X, 1});
    add(b + "ffn_up_exps.weight", GgmlType::BF16, {E, F, X, 1});
    add(b + "ffn_down_exps.weight", GgmlType::BF16, {F, E, X, 1});
    add(b + "ffn_gate_inp_shexp.weight", GgmlType::BF16, {E, 1, 1, 1});
    add(b + "ffn_gate_shexp.weight", GgmlType::BF16, {E, F, 1, 1});
    add(b + "ffn_up_shexp.weight", GgmlType::BF16, {E, F, 1, 1});
    add(b + "ffn_down_shexp.weight", GgmlType::BF16, {F, E, 1, 1});
  }
  using gguf::Value;
  const std::string a = "qwen3next.";
  const std::vector<std::pair<std::string, Value>> metadata = {
      {"general.architecture", Value::string("qwen3next")},
      {"general.name", Value::string("tiny qwen3next")},
      {a + "context_length", Value::u32(4096)},
      {a + "embedding_length", Value::u32(uint32_t(E))},
      {a + "feed_forward_length", Value::u32(512)},
      {a + "block_count", Value::u32(uint32_t(m.n_layer))},
      {a + "attention.head_count", Value::u32(16)},
      {a + "attention.head_count_kv", Value::u32(2)},
      {a + "attention.key_length", Value::u32(64)},
      {a + "attention.value_length", Value::u32(64)},
      {a + "attention.layer_norm_rms_epsilon", Value::f32(1e-6f)},
      {a + "rope.freq_base", Value::f32(1e7f)},
      {a + "rope.dimension_count", Value::u32(16)},
      {a + "expert_count", Value::u32(uint32_t(X))},
      {a + "expert_used_count", Value::u32(2)},
      {a + "expert_feed_forward_length", Value::u32(uint32_t(F))},
      {a + "expert_shared_feed_forward_length", Value::u32(uint32_t(F))},
      {a + "ssm.conv_kernel", Value::u32(4)},
      {a + "ssm.state_size", Value::u32(64)},
      {a + "ssm.group_count", Value::u32(4)},
      {a + "ssm.time_step_rank", Value::u32(8)},
      {a + "ssm.inner_size", Value::u32(512)},
      {a + "full_attention_interval", Value::u32(4)},
      {"general.file_type", Value::u32(32)},
      {"tokenizer.ggml.model", Value::string("gpt2")},
  };
  gguf::GgufWriter::write_file(path, metadata, tensors);
}

// An importance matrix for every quantizable weight of a model except the token embedding and
// the output (as llama-imatrix records them): per matrix the summed squared activations of each
// column and the number of tokens. The last expert of each layer saw no token (count 0).
struct Imatrix {
  struct Entry {
    std::vector<float> sums, counts;
    int64_t ne0 = 0, n_mat = 0;
  };
  std::map<std::string, Entry> entries;

  // What llama-quantize passes to llama_model_quantize: sums / count per matrix, 1 where the
  // count is 0.
  std::map<std::string, std::vector<float>> values() const {
    std::map<std::string, std::vector<float>> out;
    for (const auto& [name, e] : entries) {
      std::vector<float>& v = out[name];
      v.resize(e.sums.size());
      for (int64_t j = 0; j < e.n_mat; ++j) {
        for (int64_t i = 0; i < e.ne0; ++i) {
          const size_t k = size_t(j * e.ne0 + i);
          v[k] = e.counts[size_t(j)] > 0 ? e.sums[k] / e.counts[size_t(j)] : 1.0f;
        }
      }
    }
    return out;
  }
};

inline Imatrix make_imatrix(const std::string& model_path, uint32_t seed) {
  const gguf::GgufFile model = gguf::GgufFile::open(model_path);
  std::mt19937 rng(seed);
  std::lognormal_distribution<float> act2(-1.0f, 1.5f);
  Imatrix im;
  for (const gguf::TensorInfo& t : model.tensors()) {
    if (t.ne[1] <= 1 || !t.name.ends_with(".weight") || t.name.find("norm") != std::string::npos ||
        t.name.find("ffn_gate_inp") != std::string::npos || t.name.find("conv1d") != std::string::npos ||
        t.name == "token_embd.weight" || t.name == "output.weight") {
      continue;
    }
    Imatrix::Entry& e = im.entries[t.name];
    e.ne0 = t.ne[0];
    e.n_mat = t.ne[2];
    for (int64_t j = 0; j < e.n_mat; ++j) {
      const bool unused = e.n_mat > 1 && j == e.n_mat - 1;
      const float count = unused ? 0.0f : float(100 + 7 * j);
      e.counts.push_back(count);
      for (int64_t i = 0; i < e.ne0; ++i) e.sums.push_back(unused ? 0.0f : count * act2(rng));
    }
  }
  return im;
}

// llama-imatrix's GGUF layout: imatrix.* keys, <name>.in_sum2 {ne0, n_mat}, <name>.counts {1, n_mat}.
inline void write_imatrix(const std::string& path, const Imatrix& im) {
  using gguf::Value;
  std::vector<gguf::GgufWriter::Tensor> tensors;
  for (const auto& [name, e] : im.entries) {
    std::vector<uint8_t> sums(e.sums.size() * 4), counts(e.counts.size() * 4);
    std::memcpy(sums.data(), e.sums.data(), sums.size());
    std::memcpy(counts.data(), e.counts.data(), counts.size());
    tensors.push_back({name + ".in_sum2", GgmlType::F32, {e.ne0, e.n_mat, 1, 1}, std::move(sums)});
    tensors.push_back({name + ".counts", GgmlType::F32, {1, e.n_mat, 1, 1}, std::move(counts)});
  }
  gguf::GgufWriter::write_file(path,
                               {{"general.type", Value::string("imatrix")},
                                {"imatrix.datasets", Value::string_array({"calibration.txt"})},
                                {"imatrix.chunk_count", Value::u32(42)},
                                {"imatrix.chunk_size", Value::u32(512)}},
                               tensors);
}

// llama.cpp's llama_model_quantize on `input`, with importance values as llama-quantize would
// pass them. Returns its status (0 on success).
inline uint32_t llama_quantize(const std::string& input, const std::string& output, int32_t ftype,
                               const std::map<std::string, std::vector<float>>* imatrix, int n_threads) {
  const Llama& l = Llama::get();
  std::array<uint8_t, 256> params = llama_quantize_default_params();
  std::memcpy(params.data() + QuantizeParamOffsets::nthread, &n_threads, 4);
  std::memcpy(params.data() + QuantizeParamOffsets::ftype, &ftype, 4);
  // llama_model_imatrix_data: {name, values, count}, the list ended by a null name.
  struct ImatrixData {
    const char* name;
    const float* data;
    size_t size;
  };
  std::vector<ImatrixData> data;
  if (imatrix) {
    for (const auto& [name, v] : *imatrix) data.push_back({name.c_str(), v.data(), v.size()});
    data.push_back({nullptr, nullptr, 0});
    const ImatrixData* p = data.data();
    std::memcpy(params.data() + QuantizeParamOffsets::imatrix, &p, sizeof p);
  }
  return l.fn<uint32_t (*)(const char*, const char*, const void*)>("llama_model_quantize")(input.c_str(),
                                                                                          output.c_str(), params.data());
}

struct CliResult {
  int status = -1;
  std::string out, err;
};

inline CliResult run_moeserve(const TempDir& dir, const std::vector<std::string>& args) {
  std::string cmd = std::string("'") + MOESERVE_BINARY + "'";
  for (const std::string& a : args) cmd += " '" + a + "'";
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  cmd += " >'" + out + "' 2>'" + err + "'";
  const int rc = std::system(cmd.c_str());
  CliResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  const auto o = read_bytes(out), e = read_bytes(err);
  r.out.assign(o.begin(), o.end());
  r.err.assign(e.begin(), e.end());
  return r;
}

inline bool same_value(const gguf::Value& a, const gguf::Value& b) {
  if (a.type != b.type) return false;
  if (a.type != gguf::ValueType::ARRAY) return a.data == b.data;
  const gguf::Array &x = a.as_array(), &y = b.as_array();
  if (x.elem_type != y.elem_type || x.items.size() != y.items.size()) return false;
  for (size_t i = 0; i < x.items.size(); ++i) {
    if (!same_value(x.items[i], y.items[i])) return false;
  }
  return true;
}

// Same tensors in the same order with the same types and bytes, and the same metadata (as a set;
// keys starting with `ignore_prefix` only in ours).
inline void expect_same_model(const std::string& ours_path, const std::string& theirs_path,
                              const std::string& ignore_prefix = "quantize.") {
  const gguf::GgufFile ours = gguf::GgufFile::open(ours_path), theirs = gguf::GgufFile::open(theirs_path);
  ASSERT_EQ(ours.tensors().size(), theirs.tensors().size());
  for (size_t i = 0; i < ours.tensors().size(); ++i) {
    const gguf::TensorInfo &a = ours.tensors()[i], &b = theirs.tensors()[i];
    ASSERT_EQ(a.name, b.name) << "tensor " << i;
    EXPECT_EQ(type_name(a.type), std::string(type_name(b.type))) << a.name;
    EXPECT_EQ(a.ne, b.ne) << a.name;
    if (a.type != b.type || a.n_bytes != b.n_bytes) continue;
    size_t diff = 0;
    while (diff < a.n_bytes && a.data[diff] == b.data[diff]) ++diff;
    EXPECT_EQ(diff, a.n_bytes) << a.name << " (" << type_name(a.type) << "): first different byte " << diff
                               << ", row " << diff / row_bytes(a.type, a.ne[0]);
  }
  std::map<std::string, const gguf::Value*> mine, ref;
  for (const auto& [k, v] : ours.metadata()) {
    if (!k.starts_with(ignore_prefix)) mine[k] = &v;
  }
  for (const auto& [k, v] : theirs.metadata()) ref[k] = &v;
  for (const auto& [k, v] : ref) {
    ASSERT_TRUE(mine.count(k)) << "missing key " << k;
    EXPECT_TRUE(same_value(*mine[k], *v)) << "key " << k;
  }
  for (const auto& [k, v] : mine) EXPECT_TRUE(ref.count(k)) << "extra key " << k;
}

// `moeserve quantize` and llama_model_quantize on the same small model (and importance matrix):
// expects the same file contents.
struct QuantCase {
  const char* ftype;
  int32_t id;
  bool imatrix;
};

inline void expect_matches_llama(const QuantCase& c) {
  SCOPED_TRACE(std::string(c.ftype) + (c.imatrix ? " with imatrix" : ""));
  TempDir dir;
  const std::string model = dir.file("model.gguf"), ours = dir.file("ours.gguf"), theirs = dir.file("theirs.gguf");
  write_tiny_qwen3next(model, {});
  std::vector<std::string> args = {"quantize", model, ours, c.ftype, "-t", "2"};
  Imatrix im;
  std::map<std::string, std::vector<float>> values;
  if (c.imatrix) {
    im = make_imatrix(model, 5);
    values = im.values();
    write_imatrix(dir.file("imatrix.gguf"), im);
    args.push_back("--imatrix");
    args.push_back(dir.file("imatrix.gguf"));
  }
  const CliResult r = run_moeserve(dir, args);
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(llama_quantize(model, theirs, c.id, c.imatrix ? &values : nullptr, 2), 0u);
  expect_same_model(ours, theirs);
  const gguf::GgufFile out = gguf::GgufFile::open(ours);
  EXPECT_EQ(out.get_uint("general.file_type"), uint64_t(c.id));
  EXPECT_EQ(out.get_uint("general.quantization_version"), 2u);
  if (c.imatrix) {
    EXPECT_EQ(out.get_string("quantize.imatrix.file"), dir.file("imatrix.gguf"));
    EXPECT_EQ(out.get_string("quantize.imatrix.dataset"), "calibration.txt");
    EXPECT_EQ(out.get_uint("quantize.imatrix.entries_count"), im.entries.size());
    EXPECT_EQ(out.get_uint("quantize.imatrix.chunks_count"), 42u);
  }
}

}  // namespace moeserve::test
