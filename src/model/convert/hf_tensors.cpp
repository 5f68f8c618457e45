#include "model/convert/hf_tensors.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace moeserve::convert {
namespace {

using Kind = Recipe::Kind;

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += str_cat(i ? ", " : "", s[i]);
  return out + "]";
}

// PyTorch shape of a tensor stored with ggml dims `ne` and no transformation.
std::vector<int64_t> torch_shape(const TensorSpec& spec) {
  std::vector<int64_t> s;
  for (int i = spec.n_dims() - 1; i >= 0; --i) s.push_back(spec.ne[size_t(i)]);
  return s;
}

Recipe make(Kind kind, std::string source, std::vector<int64_t> shape, int64_t heads = 0) {
  Recipe r;
  r.kind = kind;
  r.sources.push_back(std::move(source));
  r.source_shape = std::move(shape);
  r.heads = heads;
  return r;
}

void check_sources(const Recipe& r, const TensorSpec& spec, const SafetensorsSet& st) {
  for (const std::string& name : r.sources) {
    const StTensor* t = st.find(name);
    if (!t) fail("checkpoint has no tensor '", name, "' (needed for ", spec.name, ")");
    // A [1, N] shared-expert gate may also be saved as [N]; both hold the same N values.
    std::vector<int64_t> got = t->shape, want = r.source_shape;
    if (got != want && t->n_elements() == spec.n_elements() && want.size() == 2 && want[0] == 1 && got.size() == 1)
      got.insert(got.begin(), 1);
    if (got != want)
      fail("checkpoint tensor '", name, "' has shape ", shape_str(t->shape), ", but the config implies ",
           shape_str(r.source_shape), " for ", spec.name);
  }
}

}  // namespace

bool ignored_hf_tensor(const std::string& name) {
  return name.rfind("mtp.", 0) == 0 || name.find("rotary_emb.inv_freq") != std::string::npos;
}

Recipe plan_tensor(const TensorSpec& spec, const ModelShape& s, const SafetensorsSet& st) {
  const bool next = s.arch == Arch::Qwen3Next;
  const Kind norm_kind = next ? Kind::PlusOne : Kind::Copy;
  const std::vector<int64_t> plain = torch_shape(spec);
  Recipe r;
  if (spec.layer < 0) {
    if (spec.name == "token_embd.weight") r = make(Kind::Copy, "model.embed_tokens.weight", plain);
    else if (spec.name == "output_norm.weight") r = make(norm_kind, "model.norm.weight", plain);
    else if (spec.name == "output.weight") r = make(Kind::Copy, "lm_head.weight", plain);
    else fail("no checkpoint mapping for ", spec.name);
    check_sources(r, spec, st);
    return r;
  }

  const std::string hf = str_cat("model.layers.", spec.layer, ".");
  const std::string prefix = str_cat("blk.", spec.layer, ".");
  const std::string n = spec.name.substr(prefix.size());
  const int64_t E = s.n_embd;
  const int64_t key_dim = s.ssm_k_heads * s.ssm_k_dim, value_dim = s.ssm_v_heads * s.ssm_v_dim;

  if (n == "attn_norm.weight") r = make(norm_kind, hf + "input_layernorm.weight", plain);
  else if (n == "post_attention_norm.weight" || n == "ffn_norm.weight")
    r = make(norm_kind, hf + "post_attention_layernorm.weight", plain);
  else if (n == "attn_q.weight")
    r = s.arch == Arch::Llama ? make(Kind::RopePermute, hf + "self_attn.q_proj.weight", plain, s.n_head)
                              : make(Kind::Copy, hf + "self_attn.q_proj.weight", plain);
  else if (n == "attn_k.weight")
    r = s.arch == Arch::Llama ? make(Kind::RopePermute, hf + "self_attn.k_proj.weight", plain, s.n_head_kv)
                              : make(Kind::Copy, hf + "self_attn.k_proj.weight", plain);
  else if (n == "attn_v.weight") r = make(Kind::Copy, hf + "self_attn.v_proj.weight", plain);
  else if (n == "attn_output.weight") r = make(Kind::Copy, hf + "self_attn.o_proj.weight", plain);
  else if (n == "attn_q_norm.weight") r = make(norm_kind, hf + "self_attn.q_norm.weight", plain);
  else if (n == "attn_k_norm.weight") r = make(norm_kind, hf + "self_attn.k_norm.weight", plain);
  else if (n == "attn_qkv.weight")
    r = make(Kind::QkvzToQkv, hf + "linear_attn.in_proj_qkvz.weight", {2 * key_dim + 2 * value_dim, E});
  else if (n == "attn_gate.weight")
    r = make(Kind::QkvzToGate, hf + "linear_attn.in_proj_qkvz.weight", {2 * key_dim + 2 * value_dim, E});
  else if (n == "ssm_in.weight") r = make(Kind::Copy, hf + "linear_attn.in_proj_qkvz.weight", plain);
  else if (n == "ssm_ba.weight") r = make(Kind::Copy, hf + "linear_attn.in_proj_ba.weight", plain);
  else if (n == "ssm_conv1d.weight")
    r = make(Kind::Copy, hf + "linear_attn.conv1d.weight", {spec.ne[1], 1, spec.ne[0]});  // squeezed
  else if (n == "ssm_dt.bias") r = make(Kind::Copy, hf + "linear_attn.dt_bias", plain);
  else if (n == "ssm_a") r = make(Kind::NegExp, hf + "linear_attn.A_log", plain);
  else if (n == "ssm_norm.weight") r = make(Kind::Copy, hf + "linear_attn.norm.weight", plain);
  else if (n == "ssm_out.weight") r = make(Kind::Copy, hf + "linear_attn.out_proj.weight", plain);
  else if (n == "ffn_gate_inp.weight") r = make(Kind::Copy, hf + "mlp.gate.weight", plain);
  else if (n == "ffn_gate_inp_shexp.weight") r = make(Kind::Copy, hf + "mlp.shared_expert_gate.weight", {1, E});
  else if (n == "ffn_gate_shexp.weight") r = make(Kind::Copy, hf + "mlp.shared_expert.gate_proj.weight", plain);
  else if (n == "ffn_up_shexp.weight") r = make(Kind::Copy, hf + "mlp.shared_expert.up_proj.weight", plain);
  else if (n == "ffn_down_shexp.weight") r = make(Kind::Copy, hf + "mlp.shared_expert.down_proj.weight", plain);
  else if (n == "ffn_gate.weight") r = make(Kind::Copy, hf + "mlp.gate_proj.weight", plain);
  else if (n == "ffn_up.weight") r = make(Kind::Copy, hf + "mlp.up_proj.weight", plain);
  else if (n == "ffn_down.weight") r = make(Kind::Copy, hf + "mlp.down_proj.weight", plain);
  else if (n == "ffn_gate_exps.weight" || n == "ffn_up_exps.weight" || n == "ffn_down_exps.weight") {
    const std::string which = n.substr(4, n.find('_', 4) - 4);  // gate | up | down
    const int64_t I = s.n_ff_exp, X = s.n_expert;
    if (st.find(hf + "mlp.experts.gate_up_proj")) {
      // transformers-5 fused layout: gate_up_proj [E, 2I, H] (gate rows first), down_proj [E, H, I].
      if (which == "down") r = make(Kind::Copy, hf + "mlp.experts.down_proj", {X, E, I});
      else r = make(which == "gate" ? Kind::FusedGate : Kind::FusedUp, hf + "mlp.experts.gate_up_proj", {X, 2 * I, E});
    } else {
      r.kind = Kind::StackExperts;
      for (int64_t e = 0; e < X; ++e) r.sources.push_back(str_cat(hf, "mlp.experts.", e, ".", which, "_proj.weight"));
      r.source_shape = which == "down" ? std::vector<int64_t>{E, I} : std::vector<int64_t>{I, E};
    }
  } else {
    fail("no checkpoint mapping for ", spec.name);
  }
  check_sources(r, spec, st);
  return r;
}

std::vector<float> run_recipe(const Recipe& r, const TensorSpec& spec, const ModelShape& s, const SafetensorsSet& st) {
  const size_t n = size_t(spec.n_elements());
  std::vector<float> out;
  switch (r.kind) {
    case Kind::Copy:
      out = st.read_f32(r.sources[0]);
      break;
    case Kind::PlusOne:
      out = st.read_f32(r.sources[0]);
      for (float& v : out) v += 1.0f;
      break;
    case Kind::NegExp:
      out = st.read_f32(r.sources[0]);
      for (float& v : out) v = float(-std::exp(double(v)));
      break;
    case Kind::RopePermute: {
      // Row h*D + j*D/2 + i (rotate-half: pair (i, i + D/2)) moves to h*D + 2i + j (adjacent pairs).
      const std::vector<float> in = st.read_f32(r.sources[0]);
      const int64_t rows = r.source_shape[0], cols = r.source_shape[1];
      const int64_t D = rows / r.heads, half = D / 2;
      out.resize(in.size());
      for (int64_t h = 0; h < r.heads; ++h)
        for (int64_t j = 0; j < 2; ++j)
          for (int64_t i = 0; i < half; ++i)
            std::memcpy(&out[size_t((h * D + 2 * i + j) * cols)], &in[size_t((h * D + j * half + i) * cols)],
                        size_t(cols) * sizeof(float));
      break;
    }
    case Kind::QkvzToQkv:
    case Kind::QkvzToGate: {
      // Per k-head group of G rows: [q (dk) | k (dk) | v (r*dv) | z (r*dv)], r = v-heads per k-head.
      const std::vector<float> in = st.read_f32(r.sources[0]);
      const int64_t cols = s.n_embd, dk = s.ssm_k_dim, vr = s.ssm_v_heads / s.ssm_k_heads * s.ssm_v_dim;
      const int64_t G = 2 * dk + 2 * vr;
      out.reserve(n);
      const auto take = [&](int64_t offset, int64_t count) {
        for (int64_t kh = 0; kh < s.ssm_k_heads; ++kh) {
          const float* src = &in[size_t((kh * G + offset) * cols)];
          out.insert(out.end(), src, src + count * cols);
        }
      };
      if (r.kind == Kind::QkvzToQkv) {
        take(0, dk);       // q of every k-head
        take(dk, dk);      // k
        take(2 * dk, vr);  // v, v-heads in grouped order
      } else {
        take(2 * dk + vr, vr);  // z
      }
      break;
    }
    case Kind::StackExperts:
      out.reserve(n);
      for (const std::string& name : r.sources) {
        const std::vector<float> e = st.read_f32(name);
        out.insert(out.end(), e.begin(), e.end());
      }
      break;
    case Kind::FusedGate:
    case Kind::FusedUp: {
      const std::vector<float> in = st.read_f32(r.sources[0]);
      const int64_t X = r.source_shape[0], I = r.source_shape[1] / 2, cols = r.source_shape[2];
      out.reserve(n);
      for (int64_t e = 0; e < X; ++e) {
        const float* src = &in[size_t((e * 2 * I + (r.kind == Kind::FusedUp ? I : 0)) * cols)];
        out.insert(out.end(), src, src + I * cols);
      }
      break;
    }
  }
  if (out.size() != n) fail("internal: ", spec.name, " produced ", out.size(), " values, expected ", n);
  return out;
}

}  // namespace moeserve::convert
