// RoPE, NeoX (pairs i, i + n_rot/2) or normal (pairs 2i, 2i+1), over the first n_rot dims of each
// head; the rest pass through. The angle as the reference computes it: a float inverse
// frequency, float(pos) * inv_freq in float, then cos/sin and the rotation in double (decode
// rotates a few thousand values, so double costs nothing measurable).
// Also the attention block's fused q/k preparation: RMSNorm, RoPE and the K/V cache stores in one
// launch (the norm's row lives in shared memory between the steps).
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_formats.h"

namespace moeserve::cuda {
namespace {

constexpr int kMaxFusedHeadDim = 1024;

// Pair i of a head: rotates (x[i0], x[i1]) into y.
__device__ __forceinline__ void rope_pair(float* y, const float* x, int64_t i, float pos, int n_rot, float freq_base,
                                          bool neox) {
  const int64_t half = n_rot / 2;
  const float inv_freq = float(pow(double(freq_base), -2.0 * double(i) / double(n_rot)));
  const double theta = double(__fmul_rn(pos, inv_freq));
  double s, c;
  sincos(theta, &s, &c);
  const int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
  const double x0 = x[i0], x1 = x[i1];
  y[i0] = float(x0 * c - x1 * s);
  y[i1] = float(x0 * s + x1 * c);
}

// Block per (head, token); thread per pair, then per passed-through element.
__global__ void rope_kernel(View dst, View src, DeviceBatch batch, int n_rot, float freq_base, bool neox) {
  pdl_wait();
  pdl_trigger();
  const int64_t h = blockIdx.x, t = blockIdx.y, hd = src.ne[0], half = n_rot / 2;
  const float* x = reinterpret_cast<const float*>(row_ptr(src, h, t));
  float* y = reinterpret_cast<float*>(row_ptr(dst, h, t));
  const float pos = float(batch.pos[t]);
  // All reads of a thread's pair happen before its writes (in place is safe).
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) rope_pair(y, x, i, pos, n_rot, freq_base, neox);
  for (int64_t i = n_rot + threadIdx.x; i < hd; i += blockDim.x) y[i] = x[i];
}

struct QkArgs {
  View q, q_src, k, v, k_cache, v_cache;
  const float* q_norm;
  const float* k_norm;
  DeviceBatch batch;
  Fmt kf, vf;
  int64_t k_head_bytes;
  float eps, freq_base;
  int n_rot;
  bool neox;
};

// blockIdx.x: query heads [0, n_head), key heads [n_head, n_head + n_head_kv), then one block
// storing the token's V row; blockIdx.y: token.
__global__ void qk_norm_rope_store_kernel(QkArgs a) {
  __shared__ float xs[kMaxFusedHeadDim], ys[kMaxFusedHeadDim];
  pdl_wait();
  pdl_trigger();
  const int64_t t = blockIdx.y, n_head = a.q.ne[1], n_head_kv = a.k.ne[1], hd = a.q.ne[0];
  const int64_t h = blockIdx.x;
  const int pos = a.batch.pos[t], seq = a.batch.seq[t];
  if (h == n_head + n_head_kv) {
    const float* x = reinterpret_cast<const float*>(row_ptr(a.v, t));
    store_row_block(a.vf, row_ptr(a.v_cache, pos, seq), a.v.ne[0], [&](int64_t i) { return x[i]; });
    return;
  }
  const bool is_q = h < n_head;
  const int64_t hh = is_q ? h : h - n_head;
  const float* x = reinterpret_cast<const float*>(is_q ? row_ptr(a.q_src, hh, t) : row_ptr(a.k, hh, t));
  const float* w = is_q ? a.q_norm : a.k_norm;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) {
    const float v = x[i];
    xs[i] = v;
    ss += v * v;
  }
  ss = block_sum(ss);  // its barriers also publish xs
  const float s = 1.0f / sqrtf(ss / float(hd) + a.eps);
  for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) xs[i] = xs[i] * s * w[i];
  __syncthreads();
  for (int64_t i = threadIdx.x; i < a.n_rot / 2; i += blockDim.x) rope_pair(ys, xs, i, float(pos), a.n_rot, a.freq_base, a.neox);
  for (int64_t i = a.n_rot + threadIdx.x; i < hd; i += blockDim.x) ys[i] = xs[i];
  __syncthreads();
  float* y = reinterpret_cast<float*>(is_q ? row_ptr(a.q, hh, t) : row_ptr(a.k, hh, t));
  for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) y[i] = ys[i];
  if (!is_q) store_row_block(a.kf, row_ptr(a.k_cache, pos, seq) + hh * a.k_head_bytes, hd, [&](int64_t i) { return ys[i]; });
}

}  // namespace

void CudaBackend::do_rope(const Tensor& dst, const Tensor& src, const BatchInfo& batch, const RopeParams& p) {
  if (skip()) return;
  if (batch.n_tokens == 0 || src.ne[1] == 0) return;
  const DeviceBatch db = device_batch(batch);
  const dim3 grid(unsigned(src.ne[1]), unsigned(batch.n_tokens));
  launch_pdl(rope_kernel, grid, 64, 0, stream_, view_of(dst), view_of(src), db, p.n_rot, p.freq_base, p.neox);
}

void CudaBackend::do_qk_norm_rope_store(const Tensor& q, const Tensor& q_src, const Tensor& q_norm, const Tensor& k,
                                        const Tensor& k_norm, const Tensor& v, const Tensor& k_cache,
                                        const Tensor& v_cache, float eps, const BatchInfo& batch,
                                        const RopeParams& rope) {
  const Fmt kf = kv_format(k_cache.type, "K"), vf = kv_format(v_cache.type, "V");
  const int64_t hd = q.ne[0];
  // One K head per block must cover whole quantization blocks; other shapes take the plain ops.
  const bool blocky = kf == Fmt::q8_0 || kf == Fmt::q4_0;
  if (hd > kMaxFusedHeadDim || (blocky && hd % kQK != 0)) {
    Backend::do_qk_norm_rope_store(q, q_src, q_norm, k, k_norm, v, k_cache, v_cache, eps, batch, rope);
    return;
  }
  if (skip()) return;
  if (batch.n_tokens == 0) return;
  QkArgs a{};
  a.q = view_of(q);
  a.q_src = view_of(q_src);
  a.k = view_of(k);
  a.v = view_of(v);
  a.k_cache = view_of(k_cache);
  a.v_cache = view_of(v_cache);
  a.q_norm = q_norm.as<float>();
  a.k_norm = k_norm.as<float>();
  a.batch = device_batch(batch);
  a.kf = kf;
  a.vf = vf;
  a.k_head_bytes = int64_t(row_bytes(k_cache.type, hd));
  a.eps = eps;
  a.freq_base = rope.freq_base;
  a.n_rot = rope.n_rot;
  a.neox = rope.neox;
  const dim3 grid(unsigned(q.ne[1] + k.ne[1] + 1), unsigned(batch.n_tokens));
  launch_pdl(qk_norm_rope_store_kernel, grid, 128, 0, stream_, a);
}

}  // namespace moeserve::cuda
