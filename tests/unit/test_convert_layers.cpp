// The converted GGUF computes what transformers computed: each layer of each fixture is run in
// plain scalar code from the GGUF weights alone (shared/spec/qwen3next.md §2-§5, §7), fed the
// hidden state transformers recorded before that layer, and compared with transformers' output
// of the same layer (token mixer, MoE/MLP, final logits). Conversion mistakes (a wrong q/k
// permutation, qkvz grouping, conv orientation, missing +1, A sign, expert order) show up here
// as large errors; float rounding stays far below the tolerance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "convert_test_util.h"

namespace moeserve::convert_test {
namespace {

using gguf::GgufFile;
using Vec = std::vector<float>;

struct Net {
  GgufFile f;
  std::string arch;
  int64_t E, nh, nkv, hd, n_rot, L;
  float eps, theta;

  explicit Net(const std::string& path) : f(GgufFile::open(path)) {
    arch = f.architecture();
    const auto u = [&](const char* k) { return int64_t(*f.get_uint(arch + "." + k)); };
    E = u("embedding_length");
    nh = u("attention.head_count");
    nkv = u("attention.head_count_kv");
    hd = u("attention.key_length");
    n_rot = u("rope.dimension_count");
    L = u("block_count");
    eps = float(*f.get_float(arch + ".attention.layer_norm_rms_epsilon"));
    theta = float(*f.get_float(arch + ".rope.freq_base"));
  }
  int64_t u(const char* k) const { return int64_t(*f.get_uint(arch + "." + k)); }
  Vec w(const std::string& name) const { return tensor_f32(f, name); }
  Vec w(int64_t il, const char* n) const { return w(str_cat("blk.", il, ".", n)); }
  bool has(int64_t il, const char* n) const { return f.find_tensor(str_cat("blk.", il, ".", n)) != nullptr; }
};

// y = W x for a ggml {in, out} matrix.
Vec matvec(const Vec& W, const float* x, int64_t in) {
  const int64_t out = int64_t(W.size()) / in;
  Vec y(static_cast<size_t>(out));
  for (int64_t r = 0; r < out; ++r) {
    double s = 0;
    for (int64_t c = 0; c < in; ++c) s += double(W[size_t(r * in + c)]) * x[c];
    y[size_t(r)] = float(s);
  }
  return y;
}

Vec rmsnorm(const float* x, int64_t n, const float* g, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float inv = float(1.0 / std::sqrt(ss / double(n) + eps));
  Vec y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[size_t(i)] = x[i] * inv * (g ? g[i] : 1.0f);
  return y;
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }
float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

// Rotates one head in place: NeoX pairs (i, i + n/2) for qwen, adjacent pairs (2i, 2i + 1) for
// llama (whose q/k rows the converter permuted into that order).
void rope(float* v, int64_t n_rot, int64_t pos, float theta, bool neox) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const double ang = double(pos) * std::pow(double(theta), -2.0 * double(i) / double(n_rot));
    const float c = float(std::cos(ang)), s = float(std::sin(ang));
    const int64_t a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
    const float x = v[a], y = v[b];
    v[a] = x * c - y * s;
    v[b] = x * s + y * c;
  }
}

// Full (gated for qwen3next) attention of layer il over T tokens; `in` is the residual input.
Vec attention(const Net& m, int64_t il, const float* in, int64_t T) {
  const bool next = m.arch == "qwen3next";
  const Vec norm = m.w(il, "attn_norm.weight"), Wq = m.w(il, "attn_q.weight"), Wk = m.w(il, "attn_k.weight");
  const Vec Wv = m.w(il, "attn_v.weight"), Wo = m.w(il, "attn_output.weight");
  const bool qk_norm = m.has(il, "attn_q_norm.weight");
  const Vec qn = qk_norm ? m.w(il, "attn_q_norm.weight") : Vec(), kn = qk_norm ? m.w(il, "attn_k_norm.weight") : Vec();
  const int64_t hd = m.hd;
  std::vector<Vec> Q(static_cast<size_t>(T)), G(static_cast<size_t>(T)), K(static_cast<size_t>(T)), V(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const Vec x = rmsnorm(in + t * m.E, m.E, norm.data(), m.eps);
    const Vec q = matvec(Wq, x.data(), m.E);
    K[size_t(t)] = matvec(Wk, x.data(), m.E);
    V[size_t(t)] = matvec(Wv, x.data(), m.E);
    Vec& qt = Q[size_t(t)];
    for (int64_t h = 0; h < m.nh; ++h) {  // qwen3next: per head [query | gate] (§3 step 1)
      const float* src = q.data() + h * hd * (next ? 2 : 1);
      qt.insert(qt.end(), src, src + hd);
      if (next) G[size_t(t)].insert(G[size_t(t)].end(), src + hd, src + 2 * hd);
    }
    for (int64_t h = 0; h < m.nh; ++h) {
      if (qk_norm) {
        const Vec y = rmsnorm(&qt[size_t(h * hd)], hd, qn.data(), m.eps);
        std::copy(y.begin(), y.end(), qt.begin() + h * hd);
      }
      rope(&qt[size_t(h * hd)], m.n_rot, t, m.theta, m.arch != "llama");
    }
    for (int64_t h = 0; h < m.nkv; ++h) {
      Vec& kt = K[size_t(t)];
      if (qk_norm) {
        const Vec y = rmsnorm(&kt[size_t(h * hd)], hd, kn.data(), m.eps);
        std::copy(y.begin(), y.end(), kt.begin() + h * hd);
      }
      rope(&kt[size_t(h * hd)], m.n_rot, t, m.theta, m.arch != "llama");
    }
  }
  Vec out(static_cast<size_t>(T * m.E));
  for (int64_t t = 0; t < T; ++t) {
    Vec o(static_cast<size_t>(m.nh * hd), 0.0f);
    for (int64_t h = 0; h < m.nh; ++h) {
      const int64_t kvh = h / (m.nh / m.nkv);
      std::vector<double> p(static_cast<size_t>(t + 1));
      for (int64_t s = 0; s <= t; ++s) {
        double d = 0;
        for (int64_t i = 0; i < hd; ++i) d += double(Q[size_t(t)][size_t(h * hd + i)]) * K[size_t(s)][size_t(kvh * hd + i)];
        p[size_t(s)] = d / std::sqrt(double(hd));
      }
      const double mx = *std::max_element(p.begin(), p.end());
      double sum = 0;
      for (double& v : p) sum += (v = std::exp(v - mx));
      for (int64_t s = 0; s <= t; ++s)
        for (int64_t i = 0; i < hd; ++i) o[size_t(h * hd + i)] += float(p[size_t(s)] / sum) * V[size_t(s)][size_t(kvh * hd + i)];
    }
    if (next) {
      for (size_t i = 0; i < o.size(); ++i) o[i] *= sigmoid(G[size_t(t)][i]);
    }
    const Vec y = matvec(Wo, o.data(), m.nh * hd);
    std::copy(y.begin(), y.end(), out.begin() + t * m.E);
  }
  return out;
}

// Gated DeltaNet (§4.3), recurrent form from a zero state.
Vec delta_net(const Net& m, int64_t il, const float* in, int64_t T) {
  const int64_t Kh = m.u("ssm.group_count"), Vh = m.u("ssm.time_step_rank"), dk = m.u("ssm.state_size");
  const int64_t dv = m.u("ssm.inner_size") / Vh, K = m.u("ssm.conv_kernel"), r = Vh / Kh;
  const int64_t C = 2 * Kh * dk + Vh * dv;
  const Vec norm = m.w(il, "attn_norm.weight"), Wqkv = m.w(il, "attn_qkv.weight"), Wz = m.w(il, "attn_gate.weight");
  const Vec Wba = m.w(il, "ssm_ba.weight"), conv = m.w(il, "ssm_conv1d.weight"), dt = m.w(il, "ssm_dt.bias");
  const Vec A = m.w(il, "ssm_a"), gnorm = m.w(il, "ssm_norm.weight"), Wout = m.w(il, "ssm_out.weight");
  std::vector<Vec> raw(static_cast<size_t>(T)), Z(static_cast<size_t>(T)), BA(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const Vec x = rmsnorm(in + t * m.E, m.E, norm.data(), m.eps);
    raw[size_t(t)] = matvec(Wqkv, x.data(), m.E);
    Z[size_t(t)] = matvec(Wz, x.data(), m.E);
    BA[size_t(t)] = matvec(Wba, x.data(), m.E);
  }
  std::vector<Vec> S(static_cast<size_t>(Vh), Vec(static_cast<size_t>(dk * dv), 0.0f));  // S[i][m], i over key dims
  Vec out(static_cast<size_t>(T * m.E));
  for (int64_t t = 0; t < T; ++t) {
    Vec u(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {  // causal conv: tap K-1 is the current token
      double s = 0;
      for (int64_t i = 0; i < K; ++i) {
        const int64_t src = t - (K - 1) + i;
        if (src >= 0) s += double(conv[size_t(c * K + i)]) * raw[size_t(src)][size_t(c)];
      }
      u[size_t(c)] = silu(float(s));
    }
    const auto l2 = [](float* v, int64_t n) {
      double ss = 0;
      for (int64_t i = 0; i < n; ++i) ss += double(v[i]) * v[i];
      const float inv = float(1.0 / std::sqrt(ss + 1e-6));
      for (int64_t i = 0; i < n; ++i) v[i] *= inv;
    };
    for (int64_t h = 0; h < 2 * Kh; ++h) l2(&u[size_t(h * dk)], dk);  // q heads, then k heads
    Vec y(static_cast<size_t>(Vh * dv));
    for (int64_t j = 0; j < Vh; ++j) {
      const int64_t kh = j / r, within = j % r;
      const float b = BA[size_t(t)][size_t(kh * 2 * r + within)], a = BA[size_t(t)][size_t(kh * 2 * r + r + within)];
      const float beta = sigmoid(b), g = A[size_t(j)] * softplus(a + dt[size_t(j)]);
      const float* q = &u[size_t(kh * dk)];
      const float* k = &u[size_t(Kh * dk + kh * dk)];
      const float* v = &u[size_t(2 * Kh * dk + j * dv)];
      Vec& s = S[size_t(j)];
      const float decay = std::exp(g);
      for (float& x : s) x *= decay;
      for (int64_t mm = 0; mm < dv; ++mm) {
        double kv = 0;
        for (int64_t i = 0; i < dk; ++i) kv += double(s[size_t(i * dv + mm)]) * k[i];
        const float delta = beta * (v[mm] - float(kv));
        for (int64_t i = 0; i < dk; ++i) s[size_t(i * dv + mm)] += k[i] * delta;
      }
      Vec o(static_cast<size_t>(dv));
      const float scale = 1.0f / std::sqrt(float(dk));
      for (int64_t mm = 0; mm < dv; ++mm) {
        double acc = 0;
        for (int64_t i = 0; i < dk; ++i) acc += double(s[size_t(i * dv + mm)]) * q[i] * scale;
        o[size_t(mm)] = float(acc);
      }
      const Vec on = rmsnorm(o.data(), dv, gnorm.data(), m.eps);
      for (int64_t mm = 0; mm < dv; ++mm) y[size_t(j * dv + mm)] = on[size_t(mm)] * silu(Z[size_t(t)][size_t(j * dv + mm)]);
    }
    const Vec o = matvec(Wout, y.data(), Vh * dv);
    std::copy(o.begin(), o.end(), out.begin() + t * m.E);
  }
  return out;
}

Vec swiglu(const Vec& Wg, const Vec& Wu, const Vec& Wd, const float* x, int64_t E, int64_t F, int64_t expert = 0) {
  const Vec g = matvec(Vec(Wg.begin() + expert * F * E, Wg.begin() + (expert + 1) * F * E), x, E);
  const Vec up = matvec(Vec(Wu.begin() + expert * F * E, Wu.begin() + (expert + 1) * F * E), x, E);
  Vec h(static_cast<size_t>(F));
  for (int64_t i = 0; i < F; ++i) h[size_t(i)] = silu(g[size_t(i)]) * up[size_t(i)];
  return matvec(Vec(Wd.begin() + expert * F * E, Wd.begin() + (expert + 1) * F * E), h.data(), F);
}

// Dense SwiGLU or routed experts (+ gated shared expert for qwen3next); checks the router's
// choices against transformers' when `topk_ref` is given.
Vec feed_forward(const Net& m, int64_t il, const float* in, int64_t T, const int32_t* topk_ref) {
  const bool next = m.arch == "qwen3next";
  const Vec norm = m.w(il, next ? "post_attention_norm.weight" : "ffn_norm.weight");
  Vec out(static_cast<size_t>(T * m.E));
  for (int64_t t = 0; t < T; ++t) {
    const Vec x = rmsnorm(in + t * m.E, m.E, norm.data(), m.eps);
    Vec y(static_cast<size_t>(m.E), 0.0f);
    if (!m.has(il, "ffn_gate_inp.weight")) {
      y = swiglu(m.w(il, "ffn_gate.weight"), m.w(il, "ffn_up.weight"), m.w(il, "ffn_down.weight"), x.data(), m.E,
                 m.u("feed_forward_length"));
    } else {
      const int64_t X = m.u("expert_count"), k = m.u("expert_used_count"), F = m.u("expert_feed_forward_length");
      const Vec logits = matvec(m.w(il, "ffn_gate_inp.weight"), x.data(), m.E);
      const float mx = *std::max_element(logits.begin(), logits.end());
      Vec p(static_cast<size_t>(X));
      double sum = 0;
      for (int64_t e = 0; e < X; ++e) sum += (p[size_t(e)] = std::exp(logits[size_t(e)] - mx));
      for (float& v : p) v = float(v / sum);
      std::vector<int64_t> order(static_cast<size_t>(X));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[size_t(a)] > p[size_t(b)]; });
      double wsum = 0;
      for (int64_t i = 0; i < k; ++i) wsum += p[size_t(order[size_t(i)])];
      const Vec Wg = m.w(il, "ffn_gate_exps.weight"), Wu = m.w(il, "ffn_up_exps.weight"), Wd = m.w(il, "ffn_down_exps.weight");
      for (int64_t i = 0; i < k; ++i) {
        const int64_t e = order[size_t(i)];
        if (topk_ref) {
          EXPECT_EQ(e, topk_ref[t * k + i]) << "layer " << il << " token " << t << " rank " << i;
        }
        const Vec o = swiglu(Wg, Wu, Wd, x.data(), m.E, F, e);
        for (int64_t c = 0; c < m.E; ++c) y[size_t(c)] += float(p[size_t(e)] / wsum) * o[size_t(c)];
      }
      if (next) {
        const Vec sg = m.w(il, "ffn_gate_inp_shexp.weight");
        double gate = 0;
        for (int64_t c = 0; c < m.E; ++c) gate += double(sg[size_t(c)]) * x[size_t(c)];
        const Vec o = swiglu(m.w(il, "ffn_gate_shexp.weight"), m.w(il, "ffn_up_shexp.weight"),
                             m.w(il, "ffn_down_shexp.weight"), x.data(), m.E, m.u("expert_shared_feed_forward_length"));
        for (int64_t c = 0; c < m.E; ++c) y[size_t(c)] += sigmoid(float(gate)) * o[size_t(c)];
      }
    }
    std::copy(y.begin(), y.end(), out.begin() + t * m.E);
  }
  return out;
}

// Largest difference relative to the reference's scale.
double rel_err(const Vec& got, const float* want, size_t n) {
  double err = 0, scale = 1e-3;
  for (size_t i = 0; i < n; ++i) {
    err = std::max(err, double(std::fabs(got[i] - want[i])));
    scale = std::max(scale, double(std::fabs(want[i])));
  }
  return err / scale;
}

constexpr double kTol = 2e-5;  // observed: up to 1.1e-6

class LayerVsTransformers : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(LayerVsTransformers, EveryLayerAndTheLogits) {
  const auto [model, case_name] = GetParam();
  const Net m(converted(model));
  const RefArray hidden = reference(model, case_name, "hidden");
  const RefArray attn_out = reference(model, case_name, "attn_out");
  const RefArray ffn_out = reference(model, case_name, "ffn_out");
  const RefArray logits = reference(model, case_name, "logits");
  const bool moe = manifest()["models"][model]["cases"][case_name]["arrays"].contains("topk_ids");
  const RefArray topk = moe ? reference(model, case_name, "topk_ids") : RefArray{};
  const int64_t T = hidden.shape[1], E = m.E;
  ASSERT_EQ(hidden.shape[0], m.L + 1);
  ASSERT_EQ(hidden.shape[2], E);

  // Token embedding lookup reproduces hidden[0].
  const RefArray ids = reference(model, case_name, "input_ids");
  const Vec emb = m.w("token_embd.weight");
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < E; ++c)
      ASSERT_EQ(emb[size_t(ids.i32[size_t(t)] * E + c)], hidden.f32[size_t(t * E + c)]) << "token " << t;

  for (int64_t il = 0; il < m.L; ++il) {
    const float* h_in = &hidden.f32[size_t(il * T * E)];
    const Vec mix = m.has(il, "attn_q.weight") ? attention(m, il, h_in, T) : delta_net(m, il, h_in, T);
    EXPECT_LT(rel_err(mix, &attn_out.f32[size_t(il * T * E)], size_t(T * E)), kTol) << model << " layer " << il << " mixer";
    Vec mid(static_cast<size_t>(T * E));
    for (size_t i = 0; i < mid.size(); ++i) mid[i] = h_in[i] + attn_out.f32[size_t(il * T * E) + i];
    const Vec ff = feed_forward(m, il, mid.data(), T, moe ? &topk.i32[size_t(il * T * topk.shape[2])] : nullptr);
    EXPECT_LT(rel_err(ff, &ffn_out.f32[size_t(il * T * E)], size_t(T * E)), kTol) << model << " layer " << il << " ffn";
  }

  const Vec onorm = m.w("output_norm.weight");
  const Vec out = m.f.find_tensor("output.weight") ? m.w("output.weight") : emb;  // tied: token_embd
  Vec lg;
  for (int64_t t = 0; t < T; ++t) {
    const Vec x = rmsnorm(&hidden.f32[size_t((m.L * T + t) * E)], E, onorm.data(), m.eps);
    const Vec l = matvec(out, x.data(), E);
    lg.insert(lg.end(), l.begin(), l.end());
  }
  EXPECT_LT(rel_err(lg, logits.f32.data(), logits.f32.size()), kTol) << model << " logits";
}

// "long" (100 tokens) exists for qwen3next only: it spans two 64-token DeltaNet chunks in HF.
INSTANTIATE_TEST_SUITE_P(Fixtures, LayerVsTransformers,
                         ::testing::Values(std::make_tuple("qwen3next", "prompt"), std::make_tuple("qwen3next", "long"),
                                           std::make_tuple("qwen3moe", "prompt"), std::make_tuple("qwen3", "prompt"),
                                           std::make_tuple("llama", "prompt")));

}  // namespace
}  // namespace moeserve::convert_test
