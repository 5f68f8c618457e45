// The Gated DeltaNet pieces: the causal depthwise conv with its rolling state, and the gated delta
// rule (qwen3next.md §4.3 step 8) as a sequential scan over each run's tokens. The state of one
// value head is d_k x d_v; a block owns a 32-column slice of it (a warp per 32 rows, a lane per
// column) and keeps it in registers across the whole run, so a run reads and writes the state
// once, and decode (runs of one token) reads it exactly once.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

constexpr int kMaxConvTaps = 16;
constexpr int kMaxKeyDim = 256;

// Thread per channel, one run per blockIdx.y. The sums in double as the reference's.
__global__ void ssm_conv_kernel(View dst, View x, float* state, View w, DeviceBatch batch) {
  pdl_wait();
  pdl_trigger();
  const int64_t channels = x.ne[0], kernel = w.ne[0];
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  const SeqRun run = batch.runs[blockIdx.y];
  float* hist = state + int64_t(run.seq) * (kernel - 1) * channels;  // [kernel-1][channels], oldest first
  const float* wc = reinterpret_cast<const float*>(row_ptr(w, c));
  float h[kMaxConvTaps];
#pragma unroll
  for (int i = 0; i < kMaxConvTaps; ++i) {
    if (i < kernel - 1) h[i] = hist[i * channels + c];
  }
  for (int32_t t = run.first; t < run.first + run.count; ++t) {
    const float xt = reinterpret_cast<const float*>(row_ptr(x, t))[c];
    double acc = double(wc[kernel - 1]) * xt;
#pragma unroll
    for (int i = 0; i < kMaxConvTaps; ++i) {
      if (i < kernel - 1) acc += double(wc[i]) * h[i];
    }
#pragma unroll
    for (int i = 0; i + 1 < kMaxConvTaps; ++i) {
      if (i + 1 < kernel - 1) h[i] = h[i + 1];
    }
#pragma unroll
    for (int i = 0; i < kMaxConvTaps; ++i) {
      if (i == kernel - 2) h[i] = xt;
    }
    reinterpret_cast<float*>(row_ptr(dst, t))[c] = silu_f(float(acc));
  }
#pragma unroll
  for (int i = 0; i < kMaxConvTaps; ++i) {
    if (i < kernel - 1) hist[i * channels + c] = h[i];
  }
}

// Block (value head h, column tile) x run; blockDim = 32 * ceil(d_k / 32).
__global__ void delta_net_kernel(View dst, View q, View k, View v, View g, View beta, float* state, int64_t state_row,
                                 DeviceBatch batch, int n_col_tiles) {
  __shared__ float qs[kMaxKeyDim], ks[kMaxKeyDim];
  __shared__ float red_kv[kMaxKeyDim / 32][32], red_o[kMaxKeyDim / 32][32];
  pdl_wait();
  pdl_trigger();
  const int64_t dk = q.ne[0], dv = v.ne[0], ratio = v.ne[1] / q.ne[1];
  const int64_t h = blockIdx.x / n_col_tiles, kh = h / ratio;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
  const int64_t m = int64_t(blockIdx.x % n_col_tiles) * 32 + lane;
  const bool col = m < dv;
  const SeqRun run = batch.runs[blockIdx.y];
  float* s_head = state + int64_t(run.seq) * state_row + h * dk * dv;  // S[i][m] at i*dv + m
  float s[32];
#pragma unroll
  for (int r = 0; r < 32; ++r) {
    const int64_t i = warp * 32 + r;
    s[r] = col && i < dk ? s_head[i * dv + m] : 0.0f;
  }
  for (int32_t t = run.first; t < run.first + run.count; ++t) {
    const float* qt = reinterpret_cast<const float*>(row_ptr(q, kh, t));
    const float* kt = reinterpret_cast<const float*>(row_ptr(k, kh, t));
    for (int64_t i = threadIdx.x; i < kMaxKeyDim; i += blockDim.x) {
      qs[i] = i < dk ? qt[i] : 0.0f;
      ks[i] = i < dk ? kt[i] : 0.0f;
    }
    const float decay = expf(reinterpret_cast<const float*>(row_ptr(g, t))[h]);
    const float b = reinterpret_cast<const float*>(row_ptr(beta, t))[h];
    const float vm = col ? reinterpret_cast<const float*>(row_ptr(v, h, t))[m] : 0.0f;
    __syncthreads();
    float kv = 0;
#pragma unroll
    for (int r = 0; r < 32; ++r) {
      s[r] *= decay;
      kv += s[r] * ks[warp * 32 + r];
    }
    red_kv[warp][lane] = kv;
    __syncthreads();
    kv = 0;
    for (int w = 0; w < n_warps; ++w) kv += red_kv[w][lane];
    const float delta = b * (vm - kv);
    float o = 0;
#pragma unroll
    for (int r = 0; r < 32; ++r) {
      s[r] += ks[warp * 32 + r] * delta;
      o += s[r] * qs[warp * 32 + r];
    }
    red_o[warp][lane] = o;
    __syncthreads();
    if (warp == 0 && col) {
      o = 0;
      for (int w = 0; w < n_warps; ++w) o += red_o[w][lane];
      reinterpret_cast<float*>(row_ptr(dst, h, t))[m] = o;
    }
  }
#pragma unroll
  for (int r = 0; r < 32; ++r) {
    const int64_t i = warp * 32 + r;
    if (col && i < dk) s_head[i * dv + m] = s[r];
  }
}

}  // namespace

void CudaBackend::do_ssm_conv(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w,
                              const BatchInfo& batch) {
  if (w.ne[0] > kMaxConvTaps) fail("CUDA backend: ssm_conv supports kernels of at most ", kMaxConvTaps, " taps");
  if (skip()) return;
  if (batch.n_runs == 0 || x.ne[0] == 0) return;
  const DeviceBatch db = device_batch(batch);
  const dim3 grid(unsigned((x.ne[0] + 127) / 128), unsigned(batch.n_runs));
  launch_pdl(ssm_conv_kernel, grid, 128, 0, stream_, view_of(dst), view_of(x), state.as<float>(), view_of(w), db);
}

void CudaBackend::do_gated_delta_net(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& g, const Tensor& beta, const Tensor& state, const BatchInfo& batch) {
  if (q.ne[0] > kMaxKeyDim) fail("CUDA backend: gated_delta_net supports key heads of at most ", kMaxKeyDim, " dims");
  if (skip()) return;
  if (batch.n_runs == 0) return;
  const DeviceBatch db = device_batch(batch);
  const int n_col_tiles = int((v.ne[0] + 31) / 32);
  const int threads = int((q.ne[0] + 31) / 32) * 32;
  const dim3 grid(unsigned(v.ne[1] * n_col_tiles), unsigned(batch.n_runs));
  launch_pdl(delta_net_kernel, grid, threads, 0, stream_, view_of(dst), view_of(q), view_of(k), view_of(v), view_of(g),
             view_of(beta), state.as<float>(), state.ne[0], db, n_col_tiles);
}

}  // namespace moeserve::cuda
