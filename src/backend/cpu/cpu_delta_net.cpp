// Gated DeltaNet pieces: the causal conv with its rolling state, and the gated delta rule, either
// token by token (decode, short runs) or in chunks (prefill; qwen3next.md §4.4): within a chunk the
// work becomes products of small matrices, and the 128x128 state is read three times per chunk
// instead of three times per token.
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace moeserve::cpu {
namespace {

constexpr int64_t kChunk = 64;
constexpr int64_t kMaxHeadDim = 512;

inline const float* frow(const Tensor& t, int64_t i1, int64_t i2 = 0) {
  return reinterpret_cast<const float*>(t.row(i1, i2));
}

size_t chunk_scratch_floats(int64_t dk, int64_t dv) {
  return size_t(2 * kChunk + kChunk * kChunk + kChunk * dv + kChunk * dk);
}

}  // namespace

void CpuBackend::conv_run(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w, const SeqRun& run,
                          int64_t cb, int64_t ce) const {
  const int64_t channels = x.ne[0], kernel = w.ne[0];
  float* hist = reinterpret_cast<float*>(state.row(run.seq));  // [kernel-1][channels]
  for (int32_t t = run.first; t < run.first + run.count; ++t) {
    const float* xt = frow(x, t);
    float* y = reinterpret_cast<float*>(dst.row(t));
    for (int64_t c = cb; c < ce; ++c) {
      const float* wc = frow(w, c);
      float acc = wc[kernel - 1] * xt[c];
      for (int64_t i = 0; i < kernel - 1; ++i) acc += wc[i] * hist[i * channels + c];
      for (int64_t i = 0; i + 1 < kernel - 1; ++i) hist[i * channels + c] = hist[(i + 1) * channels + c];
      hist[(kernel - 2) * channels + c] = xt[c];
      y[c] = silu(acc);
    }
  }
}

void CpuBackend::do_ssm_conv(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w,
                             const BatchInfo& batch) {
  if (skip()) return;
  const int64_t channels = x.ne[0], kernel = w.ne[0];
  parallel_for(channels, 4 * kernel * batch.n_tokens, [&](int64_t cb, int64_t ce) {
    for (int32_t r = 0; r < batch.n_runs; ++r) conv_run(dst, x, state, w, batch.runs[r], cb, ce);
  });
}

void CpuBackend::delta_net_recurrent(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& g, const Tensor& beta, float* s, int64_t h,
                                     const SeqRun& run) const {
  const int64_t dk = q.ne[0], dv = v.ne[0], kh = h / (v.ne[1] / q.ne[1]);
  float kv[kMaxHeadDim], delta[kMaxHeadDim];
  for (int32_t t = run.first; t < run.first + run.count; ++t) {
    const float* qt = frow(q, kh, t);
    const float* kt = frow(k, kh, t);
    const float* vt = frow(v, h, t);
    const float decay = std::exp(frow(g, t)[h]), b = frow(beta, t)[h];
    std::memset(kv, 0, size_t(dv) * sizeof(float));
    for (int64_t i = 0; i < dk; ++i) kernels_.axpy_f32(dv, kt[i], s + i * dv, kv);
    for (int64_t m = 0; m < dv; ++m) delta[m] = b * (vt[m] - decay * kv[m]);
    float* o = reinterpret_cast<float*>(dst.row(h, t));
    std::memset(o, 0, size_t(dv) * sizeof(float));
    for (int64_t i = 0; i < dk; ++i) {
      float* si = s + i * dv;
      kernels_.scale_f32(dv, decay, si);
      kernels_.axpy_f32(dv, kt[i], delta, si);
      kernels_.axpy_f32(dv, qt[i], si, o);
    }
  }
}

void CpuBackend::delta_net_chunked(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v,
                                   const Tensor& g, const Tensor& beta, float* s, int64_t h, const SeqRun& run,
                                   float* scratch) const {
  const int64_t dk = q.ne[0], dv = v.ne[0], kh = h / (v.ne[1] / q.ne[1]);
  float* G = scratch;            // [C] cumulative log-decay within the chunk
  float* B = G + kChunk;         // [C] beta
  float* A = B + kChunk;         // [C][C] strictly lower L
  float* U = A + kChunk * kChunk;  // [C][dv] pseudo-values, then V_new
  float* W = U + kChunk * dv;      // [C][dk]
  const int32_t end = run.first + run.count;
  for (int32_t t0 = run.first; t0 < end; t0 += int32_t(kChunk)) {
    const int64_t c = std::min<int64_t>(kChunk, end - t0);
    auto K = [&](int64_t i) { return frow(k, kh, t0 + i); };
    auto Q = [&](int64_t i) { return frow(q, kh, t0 + i); };
    float acc = 0;
    for (int64_t i = 0; i < c; ++i) {
      acc += frow(g, t0 + i)[h];
      G[i] = acc;
      B[i] = frow(beta, t0 + i)[h];
    }
    for (int64_t i = 0; i < c; ++i) {
      for (int64_t j = 0; j < i; ++j) A[i * kChunk + j] = B[i] * kernels_.dot_f32(dk, K(i), K(j)) * std::exp(G[i] - G[j]);
    }
    // (I + L) U = diag(beta) V and (I + L) W = diag(beta exp(G)) K, by forward substitution.
    for (int64_t i = 0; i < c; ++i) {
      float* ui = U + i * dv;
      float* wi = W + i * dk;
      const float* vi = frow(v, h, t0 + i);
      const float* ki = K(i);
      const float wb = B[i] * std::exp(G[i]);
      for (int64_t m = 0; m < dv; ++m) ui[m] = B[i] * vi[m];
      for (int64_t m = 0; m < dk; ++m) wi[m] = wb * ki[m];
      for (int64_t j = 0; j < i; ++j) {
        kernels_.axpy_f32(dv, -A[i * kChunk + j], U + j * dv, ui);
        kernels_.axpy_f32(dk, -A[i * kChunk + j], W + j * dk, wi);
      }
    }
    // V_new = U - W S.
    for (int64_t i = 0; i < c; ++i) {
      for (int64_t j = 0; j < dk; ++j) kernels_.axpy_f32(dv, -W[i * dk + j], s + j * dv, U + i * dv);
    }
    // O_i = exp(G_i) q_i S + sum_{j <= i} (q_i . k_j) exp(G_i - G_j) V_new_j.
    for (int64_t i = 0; i < c; ++i) {
      float* o = reinterpret_cast<float*>(dst.row(h, t0 + i));
      std::memset(o, 0, size_t(dv) * sizeof(float));
      const float* qi = Q(i);
      const float eg = std::exp(G[i]);
      for (int64_t j = 0; j < dk; ++j) kernels_.axpy_f32(dv, eg * qi[j], s + j * dv, o);
      for (int64_t j = 0; j <= i; ++j) {
        kernels_.axpy_f32(dv, kernels_.dot_f32(dk, qi, K(j)) * std::exp(G[i] - G[j]), U + j * dv, o);
      }
    }
    // S = exp(G_last) S + sum_j exp(G_last - G_j) k_j V_new_j^T.
    const float g_last = G[c - 1], e_last = std::exp(g_last);
    for (int64_t j = 0; j < c; ++j) A[j] = std::exp(g_last - G[j]);  // row 0 of L is unused now
    for (int64_t r = 0; r < dk; ++r) {
      float* sr = s + r * dv;
      kernels_.scale_f32(dv, e_last, sr);
      for (int64_t j = 0; j < c; ++j) kernels_.axpy_f32(dv, A[j] * K(j)[r], U + j * dv, sr);
    }
  }
}

void CpuBackend::do_gated_delta_net(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& g, const Tensor& beta, const Tensor& state,
                                    const BatchInfo& batch) {
  const int64_t dk = q.ne[0], dv = v.ne[0], n_vh = v.ne[1];
  const size_t per_thread = chunk_scratch_floats(dk, dv) * sizeof(float);
  if (skip(per_thread * size_t(pool_.size()))) return;
  if (dk > kMaxHeadDim || dv > kMaxHeadDim) fail("gated_delta_net: head dims above ", kMaxHeadDim, " are not supported");
  const int64_t n_items = int64_t(batch.n_runs) * n_vh;
  for_each_claimed(n_items, [&](int ith, int64_t item) {
    float* scratch = reinterpret_cast<float*>(static_cast<char*>(workspace()) + per_thread * size_t(ith));
    const SeqRun& run = batch.runs[item / n_vh];
    const int64_t h = item % n_vh;
    float* s = reinterpret_cast<float*>(state.row(run.seq)) + h * dk * dv;
    if (run.count >= options_.delta_net_chunk_min) {
      delta_net_chunked(dst, q, k, v, g, beta, s, h, run, scratch);
    } else {
      delta_net_recurrent(dst, q, k, v, g, beta, s, h, run);
    }
  });
}

}  // namespace moeserve::cpu

namespace moeserve::cpu {

// Runs the recurrent form (every run shorter than delta_net_chunk_min: decode) as one job whose
// items are (run, key head): an item convolves its q/k channels and the channels of the value
// heads that read its key head, computes their gates and the l2 norms of its q/k rows, runs the
// delta rule over their states and the gated norm of their outputs. No item waits for another,
// and every value comes from the code the default chain's ops run (conv_run, l2_norm_row,
// rms_norm_gated_row, delta_net_recurrent, sigmoid/softplus), in the same order, so the results
// are the chain's bit for bit. Runs in chunked form take the chain.
void CpuBackend::do_delta_net_step(const DeltaNetStep& s, const BatchInfo& batch) {
  if (!options_.fused_layer_ops) return Backend::do_delta_net_step(s, batch);
  for (int32_t r = 0; r < batch.n_runs; ++r) {
    if (batch.runs[r].count >= options_.delta_net_chunk_min) return Backend::do_delta_net_step(s, batch);
  }
  if (skip()) return;
  constexpr size_t kF = sizeof(float);
  const int64_t dk = s.q.ne[0], nk = s.q.ne[1], n = s.qkv.ne[1], dv = s.y.ne[0], nv = s.y.ne[1];
  const int64_t ratio = nv / nk;
  if (dk > kMaxHeadDim || dv > kMaxHeadDim) fail("delta_net_step: head dims above ", kMaxHeadDim, " are not supported");
  // The views the chain hands to gated_delta_net.
  const Tensor v = s.u.view({dv, nv, n, 1}, {0, size_t(dv) * kF, s.u.nb[1], s.u.nb[1] * size_t(n)},
                            size_t(2 * nk * dk) * kF);
  const Tensor g = s.g.reshape({nv, n, 1, 1}), beta = s.beta.reshape({nv, n, 1, 1});
  for_each_claimed(int64_t(batch.n_runs) * nk, [&](int, int64_t item) {
    const SeqRun& run = batch.runs[item / nk];
    const int64_t kh = item % nk;
    conv_run(s.u, s.qkv, s.conv_state, s.conv_w, run, kh * dk, (kh + 1) * dk);
    conv_run(s.u, s.qkv, s.conv_state, s.conv_w, run, (nk + kh) * dk, (nk + kh + 1) * dk);
    conv_run(s.u, s.qkv, s.conv_state, s.conv_w, run, 2 * nk * dk + kh * ratio * dv, 2 * nk * dk + (kh + 1) * ratio * dv);
    const float* dt_bias = frow(s.dt_bias, kh);
    const float* a_coef = frow(s.a_coef, kh);
    for (int32_t t = run.first; t < run.first + run.count; ++t) {
      // delta_gates: beta = sigmoid(b); g = (a + dt_bias), softplus, times a_coef.
      const float* b = frow(s.b, kh, t);
      const float* a = frow(s.a, kh, t);
      float* beta_t = reinterpret_cast<float*>(s.beta.row(kh, t));
      float* g_t = reinterpret_cast<float*>(s.g.row(kh, t));
      for (int64_t j = 0; j < ratio; ++j) {
        beta_t[j] = sigmoid(b[j]);
        const float sum = a[j] + dt_bias[j];
        const float sp = softplus(sum);
        g_t[j] = sp * a_coef[j];
      }
      // qk_l2_norm: q = l2_norm(q_src), then q * q_scale; k = l2_norm(k_src).
      const float* u = frow(s.u, t);
      float* q = reinterpret_cast<float*>(s.q.row(kh, t));
      l2_norm_row(dk, u + kh * dk, q, s.eps);
      for (int64_t i = 0; i < dk; ++i) q[i] = q[i] * s.q_scale;
      l2_norm_row(dk, u + (nk + kh) * dk, reinterpret_cast<float*>(s.k.row(kh, t)), s.eps);
    }
    for (int64_t h = kh * ratio; h < (kh + 1) * ratio; ++h) {
      float* state = reinterpret_cast<float*>(s.ssm_state.row(run.seq)) + h * dk * dv;
      delta_net_recurrent(s.o, s.q, s.k, v, g, beta, state, h, run);
      for (int32_t t = run.first; t < run.first + run.count; ++t) {
        rms_norm_gated_row(dv, frow(s.o, h, t), s.norm.as<float>(), frow(s.z, h, t),
                           reinterpret_cast<float*>(s.y.row(h, t)), s.eps);
      }
    }
  });
}

}  // namespace moeserve::cpu
