// The scalar reference of every op: one thread, plain loops, doubles where a sum is long, the
// registry's reference conversions and dot products. It defines what each op means; the fast
// backends are tested against it.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"

namespace moeserve {
namespace {

float silu(float x) { return x / (1.0f + std::exp(-x)); }
float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

const float* frow(const Tensor& t, int64_t r) { return reinterpret_cast<const float*>(t.flat_row(r)); }
float* frow_mut(const Tensor& t, int64_t r) { return reinterpret_cast<float*>(t.flat_row(r)); }

std::vector<float> dequantize(const void* row, GgmlType type, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  type_traits(type).dequantize(row, out.data(), n);
  return out;
}

// The activation row quantized the way a weight of `weight_type` wants it for its dot product.
std::vector<uint8_t> quantize_for(GgmlType weight_type, const float* x, int64_t n) {
  const TypeTraits& act = type_traits(type_traits(weight_type).vec_dot_type);
  std::vector<uint8_t> out(row_bytes(act.type, n));
  act.quantize(x, out.data(), n);
  return out;
}

float dot(GgmlType weight_type, const void* w_row, const std::vector<uint8_t>& act, int64_t n) {
  return type_traits(weight_type).vec_dot(n, w_row, act.data());
}

class RefBackend final : public Backend {
 public:
  explicit RefBackend(DeviceId device) : Backend(device) {}
  std::string name() const override { return "ref"; }

  Buffer alloc(size_t bytes) override {
    void* p = std::calloc(1, bytes ? bytes : 1);
    if (!p) fail("out of memory allocating ", bytes, " bytes");
    return Buffer(p, bytes, [](void* q) { std::free(q); });
  }

 protected:
  void do_upload(const Tensor& dst, const void* host) override { std::memcpy(dst.data, host, dst.n_bytes()); }
  void do_download(void* host, const Tensor& src) override { std::memcpy(host, src.data, src.n_bytes()); }

  void do_get_rows(const Tensor& dst, const Tensor& src, const Tensor& ids) override {
    if (skip()) return;
    for (int64_t i = 0; i < dst.ne[1]; ++i) {
      const int32_t id = ids.as<int32_t>()[i];
      if (id < 0 || id >= src.ne[1]) fail("internal: get_rows id ", id, " outside ", src.ne[1], " rows");
      type_traits(src.type).dequantize(src.row(id), frow_mut(dst, i), src.ne[0]);
    }
  }

  void do_rms_norm(const Tensor& dst, const Tensor& src, const Tensor* weight, float eps) override {
    if (skip()) return;
    const int64_t d = src.ne[0];
    for (int64_t r = 0; r < src.n_rows(); ++r) {
      const float* x = frow(src, r);
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += double(x[i]) * x[i];
      const float s = float(1.0 / std::sqrt(ss / double(d) + eps));
      float* y = frow_mut(dst, r);
      for (int64_t i = 0; i < d; ++i) y[i] = x[i] * s * (weight ? weight->as<float>()[i] : 1.0f);
    }
  }

  void do_rms_norm_gated(const Tensor& dst, const Tensor& src, const Tensor& weight, const Tensor& z,
                         float eps) override {
    if (skip()) return;
    const int64_t d = src.ne[0];
    for (int64_t r = 0; r < src.n_rows(); ++r) {
      const float* x = frow(src, r);
      const float* zr = frow(z, r);
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += double(x[i]) * x[i];
      const float s = float(1.0 / std::sqrt(ss / double(d) + eps));
      float* y = frow_mut(dst, r);
      for (int64_t i = 0; i < d; ++i) y[i] = x[i] * s * weight.as<float>()[i] * silu(zr[i]);
    }
  }

  void do_l2_norm(const Tensor& dst, const Tensor& src, float eps) override {
    if (skip()) return;
    const int64_t d = src.ne[0];
    for (int64_t r = 0; r < src.n_rows(); ++r) {
      const float* x = frow(src, r);
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += double(x[i]) * x[i];
      const float s = float(1.0 / std::sqrt(ss + eps));
      float* y = frow_mut(dst, r);
      for (int64_t i = 0; i < d; ++i) y[i] = x[i] * s;
    }
  }

  void do_matmul(const Tensor& dst, const Tensor& w, const Tensor& x) override {
    if (skip()) return;
    const int64_t k = w.ne[0];
    for (int64_t j = 0; j < x.ne[1]; ++j) {
      const std::vector<uint8_t> act = quantize_for(w.type, frow(x, j), k);
      float* y = frow_mut(dst, j);
      for (int64_t i = 0; i < w.ne[1]; ++i) y[i] = dot(w.type, w.row(i), act, k);
    }
  }

  // Element-wise ops: visit every element of dst by its 4-D index.
  template <typename F>
  static void each(const Tensor& dst, F&& f) {
    for (int64_t i3 = 0; i3 < dst.ne[3]; ++i3)
      for (int64_t i2 = 0; i2 < dst.ne[2]; ++i2)
        for (int64_t i1 = 0; i1 < dst.ne[1]; ++i1)
          for (int64_t i0 = 0; i0 < dst.ne[0]; ++i0) f(i0, i1, i2, i3);
  }
  static float& at(const Tensor& t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return reinterpret_cast<float*>(t.row(i1, i2, i3))[i0];
  }

  void do_unary(const Tensor& dst, const Tensor& src, UnaryOp op) override {
    if (skip()) return;
    each(dst, [&](int64_t a, int64_t b, int64_t c, int64_t d) {
      const float x = at(src, a, b, c, d);
      at(dst, a, b, c, d) = op == UnaryOp::silu ? silu(x) : op == UnaryOp::sigmoid ? sigmoid(x) : softplus(x);
    });
  }

  void do_binary(const Tensor& dst, const Tensor& a, const Tensor& b, BinaryOp op) override {
    if (skip()) return;
    each(dst, [&](int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
      const float y = at(b, i0 % b.ne[0], i1 % b.ne[1], i2 % b.ne[2], i3 % b.ne[3]);
      const float x = at(a, i0, i1, i2, i3);
      at(dst, i0, i1, i2, i3) = op == BinaryOp::add ? x + y : x * y;
    });
  }

  void do_scale(const Tensor& dst, const Tensor& src, float factor) override {
    if (skip()) return;
    each(dst, [&](int64_t a, int64_t b, int64_t c, int64_t d) { at(dst, a, b, c, d) = at(src, a, b, c, d) * factor; });
  }

  void do_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up) override {
    if (skip()) return;
    each(dst, [&](int64_t a, int64_t b, int64_t c, int64_t d) {
      at(dst, a, b, c, d) = silu(at(gate, a, b, c, d)) * at(up, a, b, c, d);
    });
  }

  void do_copy(const Tensor& dst, const Tensor& src) override {
    if (skip()) return;
    for (int64_t r = 0; r < dst.n_rows(); ++r) {
      if (dst.type == src.type) {
        std::memcpy(dst.flat_row(r), src.flat_row(r), dst.row_size());
      } else if (dst.type == GgmlType::F32) {
        type_traits(src.type).dequantize(src.flat_row(r), frow_mut(dst, r), dst.ne[0]);
      } else {
        type_traits(dst.type).quantize(frow(src, r), dst.flat_row(r), dst.ne[0]);
      }
    }
  }

  void do_zero(const Tensor& dst) override {
    if (skip()) return;
    for (int64_t r = 0; r < dst.n_rows(); ++r) std::memset(dst.flat_row(r), 0, dst.row_size());
  }

  void do_rope(const Tensor& dst, const Tensor& src, const BatchInfo& batch, const RopeParams& p) override {
    if (skip()) return;
    const int64_t hd = src.ne[0], half = p.n_rot / 2;
    for (int64_t t = 0; t < src.ne[2]; ++t) {
      for (int64_t h = 0; h < src.ne[1]; ++h) {
        const float* x = reinterpret_cast<const float*>(src.row(h, t));
        std::vector<float> y(x, x + hd);
        for (int64_t i = 0; i < half; ++i) {
          // The angle in float, as HF transformers and ggml compute it (it matters at long context).
          const float inv_freq = float(std::pow(double(p.freq_base), -2.0 * double(i) / p.n_rot));
          const double theta = double(float(batch.pos[t]) * inv_freq);
          const int64_t i0 = p.neox ? i : 2 * i, i1 = p.neox ? i + half : 2 * i + 1;
          const double c = std::cos(theta), s = std::sin(theta);
          y[size_t(i0)] = float(x[i0] * c - x[i1] * s);
          y[size_t(i1)] = float(x[i0] * s + x[i1] * c);
        }
        std::memcpy(dst.row(h, t), y.data(), size_t(hd) * sizeof(float));
      }
    }
  }

  void do_kv_store(const Tensor& cache, const Tensor& src, const BatchInfo& batch) override {
    if (skip()) return;
    for (int32_t t = 0; t < batch.n_tokens; ++t) {
      type_traits(cache.type).quantize(frow(src, t), cache.row(batch.pos[t], batch.seq[t]), cache.ne[0]);
    }
  }

  void do_attention(const Tensor& dst, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                    const BatchInfo& batch, const AttentionParams& params) override {
    if (skip()) return;
    const int64_t dk = q.ne[0], dv = dst.ne[0], n_head = q.ne[1];
    const int64_t group = n_head / (k_cache.ne[0] / dk);
    const size_t k_head_bytes = row_bytes(k_cache.type, dk), v_head_bytes = row_bytes(v_cache.type, dv);
    for (int32_t t = 0; t < batch.n_tokens; ++t) {
      const int64_t n_kv = int64_t(batch.pos[t]) + 1;
      for (int64_t h = 0; h < n_head; ++h) {
        const int64_t kvh = h / group;
        const float* qh = reinterpret_cast<const float*>(q.row(h, t));
        float* out = reinterpret_cast<float*>(dst.row(h, t));
        auto k_at = [&](int64_t c) { return k_cache.row(c, batch.seq[t]) + size_t(kvh) * k_head_bytes; };
        auto v_at = [&](int64_t c) { return v_cache.row(c, batch.seq[t]) + size_t(kvh) * v_head_bytes; };
        if (params.flash) {
          flash_one(out, qh, dk, dv, n_kv, k_cache.type, v_cache.type, k_at, v_at, params.scale);
        } else {
          naive_one(out, qh, dk, dv, n_kv, k_cache.type, v_cache.type, k_at, v_at, params.scale);
        }
      }
    }
  }

  // Dequantize everything, two passes: scores, softmax, weighted sum.
  template <typename KAt, typename VAt>
  static void naive_one(float* out, const float* q, int64_t dk, int64_t dv, int64_t n_kv, GgmlType kt, GgmlType vt,
                        KAt k_at, VAt v_at, float scale) {
    std::vector<double> s(static_cast<size_t>(n_kv));
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < n_kv; ++c) {
      const std::vector<float> k = dequantize(k_at(c), kt, dk);
      double acc = 0;
      for (int64_t i = 0; i < dk; ++i) acc += double(q[i]) * k[size_t(i)];
      s[size_t(c)] = acc * scale;
      mx = std::max(mx, s[size_t(c)]);
    }
    double sum = 0;
    for (double& x : s) sum += (x = std::exp(x - mx));
    std::vector<double> acc(static_cast<size_t>(dv), 0.0);
    for (int64_t c = 0; c < n_kv; ++c) {
      const std::vector<float> v = dequantize(v_at(c), vt, dv);
      for (int64_t m = 0; m < dv; ++m) acc[size_t(m)] += s[size_t(c)] / sum * v[size_t(m)];
    }
    for (int64_t m = 0; m < dv; ++m) out[m] = float(acc[size_t(m)]);
  }

  // One pass with a running maximum (online softmax), q quantized to K's dot type, K/V read in
  // their stored format: the numerics the fast flash kernels follow.
  template <typename KAt, typename VAt>
  static void flash_one(float* out, const float* q, int64_t dk, int64_t dv, int64_t n_kv, GgmlType kt, GgmlType vt,
                        KAt k_at, VAt v_at, float scale) {
    const std::vector<uint8_t> qa = quantize_for(kt, q, dk);
    float mx = -std::numeric_limits<float>::infinity(), sum = 0;
    std::vector<float> acc(static_cast<size_t>(dv), 0.0f);
    for (int64_t c = 0; c < n_kv; ++c) {
      const float s = dot(kt, k_at(c), qa, dk) * scale;
      const float m_new = std::max(mx, s);
      const float corr = std::exp(mx - m_new), p = std::exp(s - m_new);
      const std::vector<float> v = dequantize(v_at(c), vt, dv);
      for (int64_t m = 0; m < dv; ++m) acc[size_t(m)] = acc[size_t(m)] * corr + p * v[size_t(m)];
      sum = sum * corr + p;
      mx = m_new;
    }
    for (int64_t m = 0; m < dv; ++m) out[m] = acc[size_t(m)] / sum;
  }

  void do_moe_route(const Tensor& ids, const Tensor& weights, const Tensor& logits, bool normalize) override {
    if (skip()) return;
    const int64_t n_expert = logits.ne[0], k = ids.ne[0];
    for (int64_t t = 0; t < logits.ne[1]; ++t) {
      const float* l = frow(logits, t);
      const double mx = *std::max_element(l, l + n_expert);
      std::vector<double> p(static_cast<size_t>(n_expert));
      double sum = 0;
      for (int64_t e = 0; e < n_expert; ++e) sum += (p[size_t(e)] = std::exp(l[e] - mx));
      for (double& x : p) x /= sum;
      std::vector<bool> taken(static_cast<size_t>(n_expert), false);
      int32_t* id = ids.as<int32_t>() + t * k;
      float* w = weights.as<float>() + t * k;
      double chosen = 0;
      for (int64_t j = 0; j < k; ++j) {
        int64_t best = -1;
        for (int64_t e = 0; e < n_expert; ++e) {
          if (!taken[size_t(e)] && (best < 0 || p[size_t(e)] > p[size_t(best)])) best = e;
        }
        taken[size_t(best)] = true;
        id[j] = int32_t(best);
        w[j] = float(p[size_t(best)]);
        chosen += p[size_t(best)];
      }
      if (normalize) {
        const double denom = std::max(chosen, 6.103515625e-5);
        for (int64_t j = 0; j < k; ++j) w[j] = float(p[size_t(id[j])] / denom);
      }
    }
  }

  void do_moe_experts(const Tensor& dst, const Tensor& x, const ExpertWeights& ex, const Tensor& ids,
                      const Tensor& weights) override {
    if (skip()) return;
    const int64_t n_embd = x.ne[0], n_ff = ex.gate.ne[1], k = ids.ne[0];
    for (int64_t t = 0; t < x.ne[1]; ++t) {
      std::vector<double> acc(static_cast<size_t>(n_embd), 0.0);
      const std::vector<uint8_t> xg = quantize_for(ex.gate.type, frow(x, t), n_embd);
      const std::vector<uint8_t> xu = quantize_for(ex.up.type, frow(x, t), n_embd);
      for (int64_t j = 0; j < k; ++j) {
        const int32_t e = ids.as<int32_t>()[t * k + j];
        if (e < 0 || e >= ex.gate.ne[2]) fail("internal: moe_experts id ", e, " outside ", ex.gate.ne[2], " experts");
        std::vector<float> a(static_cast<size_t>(n_ff));
        for (int64_t f = 0; f < n_ff; ++f) {
          a[size_t(f)] = silu(dot(ex.gate.type, ex.gate.row(f, e), xg, n_embd)) * dot(ex.up.type, ex.up.row(f, e), xu, n_embd);
        }
        const std::vector<uint8_t> ad = quantize_for(ex.down.type, a.data(), n_ff);
        const float w = weights.as<float>()[t * k + j];
        for (int64_t i = 0; i < n_embd; ++i) acc[size_t(i)] += double(w) * dot(ex.down.type, ex.down.row(i, e), ad, n_ff);
      }
      float* y = frow_mut(dst, t);
      for (int64_t i = 0; i < n_embd; ++i) y[i] = float(acc[size_t(i)]);
    }
  }

  void do_ssm_conv(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w,
                   const BatchInfo& batch) override {
    if (skip()) return;
    const int64_t channels = x.ne[0], kernel = w.ne[0];
    for (int32_t r = 0; r < batch.n_runs; ++r) {
      const SeqRun& run = batch.runs[r];
      float* hist = reinterpret_cast<float*>(state.row(run.seq));  // [kernel-1][channels], oldest first
      for (int32_t t = run.first; t < run.first + run.count; ++t) {
        const float* xt = frow(x, t);
        float* y = frow_mut(dst, t);
        for (int64_t c = 0; c < channels; ++c) {
          const float* wc = reinterpret_cast<const float*>(w.row(c));
          double acc = double(wc[kernel - 1]) * xt[c];
          for (int64_t i = 0; i < kernel - 1; ++i) acc += double(wc[i]) * hist[i * channels + c];
          y[c] = silu(float(acc));
        }
        for (int64_t i = 0; i + 1 < kernel - 1; ++i) {
          std::memcpy(hist + i * channels, hist + (i + 1) * channels, size_t(channels) * sizeof(float));
        }
        std::memcpy(hist + (kernel - 2) * channels, xt, size_t(channels) * sizeof(float));
      }
    }
  }

  // The recurrent form, token by token (qwen3next.md §4.3 step 8).
  void do_gated_delta_net(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                          const Tensor& beta, const Tensor& state, const BatchInfo& batch) override {
    if (skip()) return;
    const int64_t dk = q.ne[0], dv = v.ne[0], n_vh = v.ne[1], ratio = v.ne[1] / q.ne[1];
    for (int32_t r = 0; r < batch.n_runs; ++r) {
      const SeqRun& run = batch.runs[r];
      float* s_all = reinterpret_cast<float*>(state.row(run.seq));
      for (int64_t h = 0; h < n_vh; ++h) {
        float* s = s_all + h * dk * dv;  // S[i][m]
        for (int32_t t = run.first; t < run.first + run.count; ++t) {
          const float* qt = reinterpret_cast<const float*>(q.row(h / ratio, t));
          const float* kt = reinterpret_cast<const float*>(k.row(h / ratio, t));
          const float* vt = reinterpret_cast<const float*>(v.row(h, t));
          const float decay = std::exp(frow(g, t)[h]), b = frow(beta, t)[h];
          for (int64_t i = 0; i < dk * dv; ++i) s[i] *= decay;
          std::vector<double> delta(static_cast<size_t>(dv));
          for (int64_t m = 0; m < dv; ++m) {
            double kv = 0;
            for (int64_t i = 0; i < dk; ++i) kv += double(s[i * dv + m]) * kt[i];
            delta[size_t(m)] = b * (vt[m] - kv);
          }
          for (int64_t i = 0; i < dk; ++i)
            for (int64_t m = 0; m < dv; ++m) s[i * dv + m] += float(kt[i] * delta[size_t(m)]);
          float* o = reinterpret_cast<float*>(dst.row(h, t));
          for (int64_t m = 0; m < dv; ++m) {
            double acc = 0;
            for (int64_t i = 0; i < dk; ++i) acc += double(s[i * dv + m]) * qt[i];
            o[m] = float(acc);
          }
        }
      }
    }
  }
};

}  // namespace

std::unique_ptr<Backend> make_ref_backend(DeviceId device) { return std::make_unique<RefBackend>(device); }

}  // namespace moeserve
