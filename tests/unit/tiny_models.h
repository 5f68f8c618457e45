// Tiny random-weight GGUF models of each architecture, written with our GGUF writer, for the
// engine's consistency tests (batch shapes, caches, backends). Weights are F32 unless a test asks
// for another type, so activations are not quantized and results are exactly comparable.
#pragma once

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "convert_test_util.h"
#include "gguf/gguf_writer.h"

namespace moeserve::test {

struct TinyConfig {
  std::string arch = "qwen3next";
  // n_rot: qwen3next rotates part of each head; the others rotate it whole (llama.cpp insists).
  int64_t n_embd = 64, n_layer = 4, n_head = 4, n_head_kv = 2, head_dim = 32, n_rot = 16, n_vocab = 96;
  int64_t n_ff = 48, n_expert = 8, n_expert_used = 3, n_ff_exp = 32, n_ff_shexp = 32;
  int64_t ssm_nk = 2, ssm_nv = 4, ssm_dk = 16, ssm_dv = 16, conv_kernel = 4;
  int64_t n_ctx_train = 512;
  bool legacy_ssm_in = false;  // qwen3next: fused ssm_in instead of attn_qkv + attn_gate
  bool tied_output = false;
  GgmlType matrix_type = GgmlType::F32;
  uint32_t seed = 7;
};

class TinyModelWriter {
 public:
  explicit TinyModelWriter(const TinyConfig& c) : c_(c), rng_(c.seed) {}

  // Writes the model and returns its path, in a temporary directory of this process (ctest runs
  // test processes in parallel) that is removed when the process exits.
  std::string write(const std::string& file_name) {
    using gguf::Value;
    const std::string a = c_.arch;
    md_.push_back({"general.architecture", Value::string(a)});
    md_.push_back({a + ".context_length", Value::u32(uint32_t(c_.n_ctx_train))});
    md_.push_back({a + ".embedding_length", Value::u32(uint32_t(c_.n_embd))});
    md_.push_back({a + ".block_count", Value::u32(uint32_t(c_.n_layer))});
    md_.push_back({a + ".attention.head_count", Value::u32(uint32_t(c_.n_head))});
    md_.push_back({a + ".attention.head_count_kv", Value::u32(uint32_t(c_.n_head_kv))});
    md_.push_back({a + ".attention.key_length", Value::u32(uint32_t(c_.head_dim))});
    md_.push_back({a + ".attention.value_length", Value::u32(uint32_t(c_.head_dim))});
    md_.push_back({a + ".rope.dimension_count", Value::u32(uint32_t(a == "qwen3next" ? c_.n_rot : c_.head_dim))});
    md_.push_back({a + ".rope.freq_base", Value::f32(a == "qwen3next" ? 5e6f : 1e6f)});
    md_.push_back({a + ".attention.layer_norm_rms_epsilon", Value::f32(1e-6f)});
    md_.push_back({a + ".feed_forward_length", Value::u32(uint32_t(c_.n_ff))});
    const bool moe = a == "qwen3next" || a == "qwen3moe";
    if (moe) {
      md_.push_back({a + ".expert_count", Value::u32(uint32_t(c_.n_expert))});
      md_.push_back({a + ".expert_used_count", Value::u32(uint32_t(c_.n_expert_used))});
      md_.push_back({a + ".expert_feed_forward_length", Value::u32(uint32_t(c_.n_ff_exp))});
    }
    if (a == "qwen3next") {
      md_.push_back({a + ".expert_shared_feed_forward_length", Value::u32(uint32_t(c_.n_ff_shexp))});
      md_.push_back({a + ".ssm.conv_kernel", Value::u32(uint32_t(c_.conv_kernel))});
      md_.push_back({a + ".ssm.state_size", Value::u32(uint32_t(c_.ssm_dk))});
      md_.push_back({a + ".ssm.group_count", Value::u32(uint32_t(c_.ssm_nk))});
      md_.push_back({a + ".ssm.time_step_rank", Value::u32(uint32_t(c_.ssm_nv))});
      md_.push_back({a + ".ssm.inner_size", Value::u32(uint32_t(c_.ssm_nv * c_.ssm_dv))});
      md_.push_back({a + ".full_attention_interval", Value::u32(4)});
    }

    // A minimal byte-level BPE vocabulary (token texts, types, no merges), so that other GGUF
    // readers (llama.cpp, as a reference) accept the file too.
    std::vector<std::string> texts;
    for (int64_t i = 0; i < c_.n_vocab; ++i) texts.push_back("<t" + std::to_string(i) + ">");
    std::vector<Value> types(static_cast<size_t>(c_.n_vocab), Value::i32(1));
    md_.push_back({"tokenizer.ggml.model", Value::string("gpt2")});
    md_.push_back({"tokenizer.ggml.pre", Value::string("qwen2")});
    md_.push_back({"tokenizer.ggml.tokens", Value::string_array(texts)});
    md_.push_back({"tokenizer.ggml.token_type", Value::array(gguf::ValueType::INT32, types)});
    md_.push_back({"tokenizer.ggml.merges", Value::string_array({})});
    md_.push_back({"tokenizer.ggml.bos_token_id", Value::u32(0)});
    md_.push_back({"tokenizer.ggml.eos_token_id", Value::u32(1)});

    const int64_t E = c_.n_embd;
    matrix("token_embd.weight", {E, c_.n_vocab}, 1.0f);
    norm("output_norm.weight", E);
    if (!c_.tied_output) matrix("output.weight", {E, c_.n_vocab}, 0.5f);
    for (int64_t il = 0; il < c_.n_layer; ++il) {
      const std::string p = "blk." + std::to_string(il) + ".";
      norm(p + "attn_norm.weight", E);
      norm(p + (a == "qwen3next" ? "post_attention_norm.weight" : "ffn_norm.weight"), E);
      const bool full = a != "qwen3next" || (il + 1) % 4 == 0;
      if (full) {
        const int64_t q_rows = c_.n_head * c_.head_dim * (a == "qwen3next" ? 2 : 1);
        matrix(p + "attn_q.weight", {E, q_rows}, 1.0f);
        matrix(p + "attn_k.weight", {E, c_.n_head_kv * c_.head_dim}, 1.0f);
        matrix(p + "attn_v.weight", {E, c_.n_head_kv * c_.head_dim}, 1.0f);
        matrix(p + "attn_output.weight", {c_.n_head * c_.head_dim, E}, 1.0f);
        if (a != "llama") {
          norm(p + "attn_q_norm.weight", c_.head_dim);
          norm(p + "attn_k_norm.weight", c_.head_dim);
        }
      } else {
        delta_net(p);
      }
      if (moe) {
        matrix(p + "ffn_gate_inp.weight", {E, c_.n_expert}, 1.0f);
        matrix(p + "ffn_gate_exps.weight", {E, c_.n_ff_exp, c_.n_expert}, 1.0f);
        matrix(p + "ffn_up_exps.weight", {E, c_.n_ff_exp, c_.n_expert}, 1.0f);
        matrix(p + "ffn_down_exps.weight", {c_.n_ff_exp, E, c_.n_expert}, 1.0f);
        if (a == "qwen3next") {
          matrix(p + "ffn_gate_shexp.weight", {E, c_.n_ff_shexp}, 1.0f);
          matrix(p + "ffn_up_shexp.weight", {E, c_.n_ff_shexp}, 1.0f);
          matrix(p + "ffn_down_shexp.weight", {c_.n_ff_shexp, E}, 1.0f);
          f32(p + "ffn_gate_inp_shexp.weight", {E}, random_vector(E, 1.0f / std::sqrt(float(E))));
        }
      } else {
        matrix(p + "ffn_gate.weight", {E, c_.n_ff}, 1.0f);
        matrix(p + "ffn_up.weight", {E, c_.n_ff}, 1.0f);
        matrix(p + "ffn_down.weight", {c_.n_ff, E}, 1.0f);
      }
    }
    static convert_test::TempDir dir;
    const std::string path = dir.file(file_name);
    gguf::GgufWriter::write_file(path, md_, tensors_);
    return path;
  }

  // The regrouping the converter applies to in_proj_qkvz (qwen3next.md §4.2), written out with
  // plain loops: rows of the fused grouped matrix -> [q all heads | k all heads | v all heads] and z.
  static void split_qkvz(const std::vector<float>& fused, const TinyConfig& c, std::vector<float>& qkv,
                         std::vector<float>& z) {
    const int64_t E = c.n_embd, dk = c.ssm_dk, dv = c.ssm_dv, ratio = c.ssm_nv / c.ssm_nk;
    const int64_t group = 2 * dk + 2 * ratio * dv;
    auto row = [&](int64_t r) { return fused.begin() + r * E; };
    qkv.clear();
    z.clear();
    for (int64_t part = 0; part < 3; ++part) {  // q, k, v
      for (int64_t kh = 0; kh < c.ssm_nk; ++kh) {
        const int64_t offset = part == 0 ? 0 : part == 1 ? dk : 2 * dk;
        const int64_t width = part == 2 ? ratio * dv : dk;
        for (int64_t r = 0; r < width; ++r) qkv.insert(qkv.end(), row(kh * group + offset + r), row(kh * group + offset + r) + E);
      }
    }
    for (int64_t kh = 0; kh < c.ssm_nk; ++kh) {
      for (int64_t r = 0; r < ratio * dv; ++r) {
        const int64_t src = kh * group + 2 * dk + ratio * dv + r;
        z.insert(z.end(), row(src), row(src) + E);
      }
    }
  }

 private:
  std::vector<float> random_vector(int64_t n, float scale) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng_);
    return v;
  }

  void f32(const std::string& name, std::vector<int64_t> dims, const std::vector<float>& v) {
    std::array<int64_t, 4> ne{1, 1, 1, 1};
    for (size_t i = 0; i < dims.size(); ++i) ne[i] = dims[i];
    std::vector<uint8_t> bytes(v.size() * sizeof(float));
    std::memcpy(bytes.data(), v.data(), bytes.size());
    tensors_.push_back({name, GgmlType::F32, ne, std::move(bytes)});
  }

  // A matrix with rows of unit-ish norm (std 1/sqrt(in)) times `gain`, stored as matrix_type.
  void matrix(const std::string& name, std::vector<int64_t> dims, float gain) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    const std::vector<float> v = random_vector(n, gain / std::sqrt(float(dims[0])));
    if (c_.matrix_type == GgmlType::F32 || name == "token_embd.weight") return f32(name, dims, v);
    std::array<int64_t, 4> ne{1, 1, 1, 1};
    for (size_t i = 0; i < dims.size(); ++i) ne[i] = dims[i];
    const size_t row = row_bytes(c_.matrix_type, ne[0]);
    std::vector<uint8_t> bytes(row * size_t(n / ne[0]));
    for (int64_t r = 0; r < n / ne[0]; ++r) type_traits(c_.matrix_type).quantize(v.data() + r * ne[0], bytes.data() + size_t(r) * row, ne[0]);
    tensors_.push_back({name, c_.matrix_type, ne, std::move(bytes)});
  }

  void norm(const std::string& name, int64_t n) {
    std::vector<float> v = random_vector(n, 0.1f);
    for (float& x : v) x += 1.0f;
    f32(name, {n}, v);
  }

  void delta_net(const std::string& p) {
    const int64_t E = c_.n_embd, nv = c_.ssm_nv, dv = c_.ssm_dv;
    const int64_t channels = 2 * c_.ssm_nk * c_.ssm_dk + nv * dv;
    const int64_t fused_rows = channels + nv * dv;
    const std::vector<float> fused = random_vector(fused_rows * E, 1.0f / std::sqrt(float(E)));
    if (c_.legacy_ssm_in) {
      f32(p + "ssm_in.weight", {E, fused_rows}, fused);
    } else {
      std::vector<float> qkv, z;
      split_qkvz(fused, c_, qkv, z);
      f32(p + "attn_qkv.weight", {E, channels}, qkv);
      f32(p + "attn_gate.weight", {E, nv * dv}, z);
    }
    matrix(p + "ssm_ba.weight", {E, 2 * nv}, 1.0f);
    f32(p + "ssm_conv1d.weight", {c_.conv_kernel, channels}, random_vector(c_.conv_kernel * channels, 0.5f));
    f32(p + "ssm_dt.bias", {nv}, random_vector(nv, 0.5f));
    std::vector<float> a = random_vector(nv, 0.5f);
    for (float& x : a) x = -std::exp(x);  // A = -exp(A_log), as the converter stores it
    f32(p + "ssm_a", {nv}, a);
    norm(p + "ssm_norm.weight", dv);
    matrix(p + "ssm_out.weight", {nv * dv, E}, 1.0f);
  }

  TinyConfig c_;
  std::mt19937 rng_;
  std::vector<std::pair<std::string, gguf::Value>> md_;
  std::vector<gguf::GgufWriter::Tensor> tensors_;
};

}  // namespace moeserve::test
