#include "model/convert/model_shape.h"

#include "core/error.h"

namespace moeserve::convert {
namespace {

struct ArchRow {
  Arch arch;
  const char* name;
};
constexpr ArchRow kArchs[] = {
    {Arch::Llama, "llama"}, {Arch::Qwen3, "qwen3"}, {Arch::Qwen3Moe, "qwen3moe"}, {Arch::Qwen3Next, "qwen3next"}};

std::string blk(int64_t il, const char* rest) { return str_cat("blk.", il, ".", rest); }

}  // namespace

const char* arch_name(Arch arch) {
  for (const ArchRow& r : kArchs)
    if (r.arch == arch) return r.name;
  fail("unknown architecture id ", int(arch));
}

std::optional<Arch> arch_from_name(std::string_view name) {
  for (const ArchRow& r : kArchs)
    if (name == r.name) return r.arch;
  return std::nullopt;
}

bool ModelShape::is_full_attention(int64_t il) const {
  if (arch != Arch::Qwen3Next) return true;
  return (il + 1) % full_attention_interval == 0;
}

void validate_shape(const ModelShape& s) {
  const auto positive = [](int64_t v, const char* what) {
    if (v <= 0) fail(what, " must be positive (got ", v, ")");
  };
  positive(s.n_vocab, "vocabulary size");
  positive(s.n_embd, "hidden size");
  positive(s.n_layer, "layer count");
  positive(s.n_head, "attention head count");
  positive(s.n_head_kv, "key/value head count");
  positive(s.head_dim, "head dim");
  positive(s.n_rot, "rotary dims");
  positive(s.context_length, "context length");
  if (s.n_head % s.n_head_kv != 0)
    fail("attention head count ", s.n_head, " is not a multiple of the key/value head count ", s.n_head_kv);
  if (s.n_rot > s.head_dim || s.n_rot % 2 != 0)
    fail("rotary dims ", s.n_rot, " must be even and at most the head dim ", s.head_dim);
  if (!(s.rms_eps > 0)) fail("rms norm epsilon must be positive");
  if (!(s.rope_theta > 0)) fail("rope theta must be positive");
  if (s.arch == Arch::Llama || s.arch == Arch::Qwen3) positive(s.n_ff, "intermediate size");
  if (s.arch == Arch::Llama && s.head_dim % 2 != 0) fail("llama head dim ", s.head_dim, " must be even");
  if (s.is_moe()) {
    positive(s.n_expert, "expert count");
    positive(s.n_expert_used, "experts per token");
    positive(s.n_ff_exp, "expert intermediate size");
    if (s.n_expert_used > s.n_expert)
      fail("experts per token ", s.n_expert_used, " exceeds the expert count ", s.n_expert);
  }
  if (s.arch == Arch::Qwen3Next) {
    positive(s.n_ff_shexp, "shared expert intermediate size");
    positive(s.full_attention_interval, "full attention interval");
    positive(s.ssm_conv_kernel, "conv kernel size");
    positive(s.ssm_k_heads, "linear key head count");
    positive(s.ssm_v_heads, "linear value head count");
    positive(s.ssm_k_dim, "linear key head dim");
    positive(s.ssm_v_dim, "linear value head dim");
    if (s.ssm_v_heads % s.ssm_k_heads != 0)
      fail("linear value heads ", s.ssm_v_heads, " must be a multiple of linear key heads ", s.ssm_k_heads);
  }
}

std::vector<std::pair<std::string, gguf::Value>> hparams_metadata(const ModelShape& s) {
  using gguf::Value;
  const std::string a = arch_name(s.arch);
  const auto u32 = [](int64_t v) { return Value::u32(uint32_t(v)); };
  std::vector<std::pair<std::string, Value>> kv;
  const auto put = [&](const char* key, Value v) { kv.emplace_back(a + "." + key, std::move(v)); };
  if (s.arch == Arch::Llama) put("vocab_size", u32(s.n_vocab));
  put("context_length", u32(s.context_length));
  put("embedding_length", u32(s.n_embd));
  put("block_count", u32(s.n_layer));
  put("feed_forward_length", u32(s.n_ff));
  put("attention.head_count", u32(s.n_head));
  put("attention.head_count_kv", u32(s.n_head_kv));
  put("attention.key_length", u32(s.head_dim));
  put("attention.value_length", u32(s.head_dim));
  put("attention.layer_norm_rms_epsilon", Value::f32(float(s.rms_eps)));
  put("rope.freq_base", Value::f32(float(s.rope_theta)));
  put("rope.dimension_count", u32(s.n_rot));
  if (s.is_moe()) {
    put("expert_count", u32(s.n_expert));
    put("expert_used_count", u32(s.n_expert_used));
    put("expert_feed_forward_length", u32(s.n_ff_exp));
  }
  if (s.arch == Arch::Qwen3Next) {
    put("expert_shared_feed_forward_length", u32(s.n_ff_shexp));
    put("ssm.conv_kernel", u32(s.ssm_conv_kernel));
    put("ssm.state_size", u32(s.ssm_k_dim));
    put("ssm.group_count", u32(s.ssm_k_heads));
    put("ssm.time_step_rank", u32(s.ssm_v_heads));
    put("ssm.inner_size", u32(s.ssm_v_dim * s.ssm_v_heads));
    put("full_attention_interval", u32(s.full_attention_interval));
  }
  return kv;
}

int TensorSpec::n_dims() const {
  int n = 1;
  for (int i = 1; i < 4; ++i)
    if (ne[i] > 1) n = i + 1;
  return n;
}

bool TensorSpec::keep_f32() const {
  return role == TensorRole::Vector || role == TensorRole::Router || role == TensorRole::Conv || n_dims() == 1;
}

std::vector<TensorSpec> tensor_manifest(const ModelShape& s) {
  std::vector<TensorSpec> out;
  const auto add = [&](std::string name, std::array<int64_t, 4> ne, TensorRole role, int64_t layer) {
    out.push_back(TensorSpec{std::move(name), ne, role, int(layer)});
  };
  const int64_t E = s.n_embd, V = s.n_vocab;
  add("token_embd.weight", {E, V, 1, 1}, TensorRole::Embedding, -1);
  add("output_norm.weight", {E, 1, 1, 1}, TensorRole::Vector, -1);
  if (!s.tied_embeddings) add("output.weight", {E, V, 1, 1}, TensorRole::Output, -1);

  const int64_t q_width = s.n_head * s.head_dim, kv_width = s.n_head_kv * s.head_dim;
  for (int64_t il = 0; il < s.n_layer; ++il) {
    const auto M = [&](const char* n, int64_t ne0, int64_t ne1) {
      add(blk(il, n), {ne0, ne1, 1, 1}, TensorRole::Matrix, il);
    };
    const auto vec = [&](const char* n, int64_t ne0) { add(blk(il, n), {ne0, 1, 1, 1}, TensorRole::Vector, il); };
    vec("attn_norm.weight", E);
    if (s.is_full_attention(il)) {
      // qwen3next packs an output gate next to each query head: [query | gate] per head (§3).
      M("attn_q.weight", E, s.arch == Arch::Qwen3Next ? 2 * q_width : q_width);
      M("attn_k.weight", E, kv_width);
      M("attn_v.weight", E, kv_width);
      M("attn_output.weight", q_width, E);
      if (s.arch != Arch::Llama) {
        vec("attn_q_norm.weight", s.head_dim);
        vec("attn_k_norm.weight", s.head_dim);
      }
    } else {
      const int64_t key_dim = s.ssm_k_heads * s.ssm_k_dim, value_dim = s.ssm_v_heads * s.ssm_v_dim;
      if (s.legacy_ssm_in) {
        M("ssm_in.weight", E, 2 * key_dim + 2 * value_dim);
      } else {
        M("attn_qkv.weight", E, 2 * key_dim + value_dim);
        M("attn_gate.weight", E, value_dim);
      }
      M("ssm_ba.weight", E, 2 * s.ssm_v_heads);
      add(blk(il, "ssm_conv1d.weight"), {s.ssm_conv_kernel, 2 * key_dim + value_dim, 1, 1}, TensorRole::Conv, il);
      vec("ssm_dt.bias", s.ssm_v_heads);
      vec("ssm_a", s.ssm_v_heads);
      vec("ssm_norm.weight", s.ssm_v_dim);
      M("ssm_out.weight", value_dim, E);
    }
    vec(s.arch == Arch::Qwen3Next ? "post_attention_norm.weight" : "ffn_norm.weight", E);
    if (s.is_moe()) {
      add(blk(il, "ffn_gate_inp.weight"), {E, s.n_expert, 1, 1}, TensorRole::Router, il);
      add(blk(il, "ffn_gate_exps.weight"), {E, s.n_ff_exp, s.n_expert, 1}, TensorRole::Experts, il);
      add(blk(il, "ffn_up_exps.weight"), {E, s.n_ff_exp, s.n_expert, 1}, TensorRole::Experts, il);
      add(blk(il, "ffn_down_exps.weight"), {s.n_ff_exp, E, s.n_expert, 1}, TensorRole::Experts, il);
      if (s.arch == Arch::Qwen3Next) {
        vec("ffn_gate_inp_shexp.weight", E);
        M("ffn_gate_shexp.weight", E, s.n_ff_shexp);
        M("ffn_up_shexp.weight", E, s.n_ff_shexp);
        M("ffn_down_shexp.weight", s.n_ff_shexp, E);
      }
    } else {
      M("ffn_gate.weight", E, s.n_ff);
      M("ffn_up.weight", E, s.n_ff);
      M("ffn_down.weight", s.n_ff, E);
    }
  }
  return out;
}

}  // namespace moeserve::convert
