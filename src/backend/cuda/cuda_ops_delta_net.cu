// The Gated DeltaNet pieces: the causal depthwise conv with its rolling state, and the gated delta
// rule (qwen3next.md §4.3 step 8) as a sequential scan over each run's tokens. The state of one
// value head is d_k x d_v; one or two threads own a column of it and keep it in registers across
// the whole run, so a run reads and writes the state once, and decode (runs of one token) reads it
// exactly once.
#include <algorithm>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

constexpr int kMaxConvTaps = 16;
constexpr int kConvLoadAhead = 8;  // tokens whose conv inputs are loaded together
constexpr int kRowsPerThread = 64;     // state rows a thread keeps in registers
constexpr int kMaxKeyDim = 2 * kRowsPerThread;
constexpr int kStageTokens = 16;       // tokens staged in shared memory at a time
constexpr int kMaxColsPerBlock = 128;  // state columns per block

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
  float h[kMaxConvTaps], wt[kMaxConvTaps];  // taps in registers: reloads could not pass the stores
#pragma unroll
  for (int i = 0; i < kMaxConvTaps; ++i) {
    if (i < kernel - 1) h[i] = hist[i * channels + c];
    if (i < kernel) wt[i] = wc[i];
  }
  const int32_t end = run.first + run.count;
  for (int32_t t0 = run.first; t0 < end; t0 += kConvLoadAhead) {
    // The inputs of several tokens loaded before any output is stored: the loads may not move
    // past the stores (dst could alias x), so one at a time each would wait a full round trip.
    float xs[kConvLoadAhead];
#pragma unroll
    for (int j = 0; j < kConvLoadAhead; ++j) {
      xs[j] = t0 + j < end ? reinterpret_cast<const float*>(row_ptr(x, t0 + j))[c] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kConvLoadAhead; ++j) {
      if (t0 + j >= end) break;
      const float xt = xs[j];
      double acc = 0;
#pragma unroll
      for (int i = 0; i < kMaxConvTaps; ++i) {
        if (i == kernel - 1) acc += double(wt[i]) * xt;
      }
#pragma unroll
      for (int i = 0; i < kMaxConvTaps; ++i) {
        if (i < kernel - 1) acc += double(wt[i]) * h[i];
      }
#pragma unroll
      for (int i = 0; i + 1 < kMaxConvTaps; ++i) {
        if (i + 1 < kernel - 1) h[i] = h[i + 1];
      }
#pragma unroll
      for (int i = 0; i < kMaxConvTaps; ++i) {
        if (i == kernel - 2) h[i] = xt;
      }
      reinterpret_cast<float*>(row_ptr(dst, t0 + j))[c] = silu_f(float(acc));
    }
  }
#pragma unroll
  for (int i = 0; i < kMaxConvTaps; ++i) {
    if (i < kernel - 1) hist[i * channels + c] = h[i];
  }
}

// Block (value head h, tile of up to 128 state columns) x run. SPLIT adjacent threads own one
// column m of the head's state, kRowsPerThread rows each, in registers, so S^T k and S^T q are
// sums inside a thread plus one shuffle (no barrier per token); the tokens' q, k, v and gates
// are staged in shared memory kStageTokens at a time, two barriers per stage.
template <int SPLIT>
__global__ void delta_net_kernel(View dst, View q, View k, View v, View g, View beta, float* state, int64_t state_row,
                                 DeviceBatch batch, int n_col_blocks) {
  constexpr int KD = SPLIT * kRowsPerThread;
  __shared__ float qs[kStageTokens][KD], ks[kStageTokens][KD], vs[kStageTokens][kMaxColsPerBlock];
  __shared__ float decay_s[kStageTokens], beta_s[kStageTokens];
  pdl_wait();
  pdl_trigger();
  const int64_t dk = q.ne[0], dv = v.ne[0], ratio = v.ne[1] / q.ne[1];
  const int64_t h = blockIdx.x / n_col_blocks, kh = h / ratio;
  const int c = threadIdx.x / SPLIT, row0 = (threadIdx.x % SPLIT) * kRowsPerThread;
  const int cols = blockDim.x / SPLIT;
  const int64_t m = int64_t(blockIdx.x % n_col_blocks) * cols + c;
  const bool col = m < dv;
  const SeqRun run = batch.runs[blockIdx.y];
  float* s_head = state + int64_t(run.seq) * state_row + h * dk * dv;  // S[i][m] at i*dv + m
  // This thread's part of column m: rows row0 .. row0 + rows - 1, S[row0 + r][m] at s_col[r * dv].
  float* s_col = s_head + row0 * dv + m;
  const int64_t rows_left = col ? dk - row0 : 0;
  const int rows = rows_left <= 0 ? 0 : rows_left < kRowsPerThread ? int(rows_left) : kRowsPerThread;
  float s[kRowsPerThread];
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) s[r] = r < rows ? s_col[r * dv] : 0.0f;
  const int32_t end = run.first + run.count;
  for (int32_t t0 = run.first; t0 < end; t0 += kStageTokens) {
    const int nt = min(kStageTokens, end - t0);
    __syncthreads();  // the previous stage is consumed
    for (int idx = threadIdx.x; idx < nt * KD; idx += blockDim.x) {
      const int tt = idx / KD, i = idx % KD;
      qs[tt][i] = i < dk ? reinterpret_cast<const float*>(row_ptr(q, kh, t0 + tt))[i] : 0.0f;
      ks[tt][i] = i < dk ? reinterpret_cast<const float*>(row_ptr(k, kh, t0 + tt))[i] : 0.0f;
    }
    for (int idx = threadIdx.x; idx < nt * cols; idx += blockDim.x) {
      const int tt = idx / cols, cc = idx % cols;
      const int64_t mm = m - c + cc;
      vs[tt][cc] = mm < dv ? reinterpret_cast<const float*>(row_ptr(v, h, t0 + tt))[mm] : 0.0f;
    }
    if (threadIdx.x < nt) {
      decay_s[threadIdx.x] = expf(reinterpret_cast<const float*>(row_ptr(g, t0 + threadIdx.x))[h]);
      beta_s[threadIdx.x] = reinterpret_cast<const float*>(row_ptr(beta, t0 + threadIdx.x))[h];
    }
    __syncthreads();
    for (int tt = 0; tt < nt; ++tt) {
      const float decay = decay_s[tt];
      const float* kt = ks[tt] + row0;
      const float* qt = qs[tt] + row0;
      // Four partial sums: independent FMA chains instead of one as long as the rows.
      float kv[4] = {0, 0, 0, 0};
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) {
        s[r] *= decay;
        kv[r % 4] += s[r] * kt[r];
      }
      float kv_sum = (kv[0] + kv[1]) + (kv[2] + kv[3]);
      if constexpr (SPLIT == 2) kv_sum += __shfl_xor_sync(0xffffffffu, kv_sum, 1);
      const float delta = beta_s[tt] * (vs[tt][c] - kv_sum);
      float o[4] = {0, 0, 0, 0};
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) {
        s[r] += kt[r] * delta;
        o[r % 4] += s[r] * qt[r];
      }
      float o_sum = (o[0] + o[1]) + (o[2] + o[3]);
      if constexpr (SPLIT == 2) o_sum += __shfl_xor_sync(0xffffffffu, o_sum, 1);
      if (col && row0 == 0) reinterpret_cast<float*>(row_ptr(dst, h, t0 + tt))[m] = o_sum;
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    if (r < rows) s_col[r * dv] = s[r];
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
  const int split = q.ne[0] <= kRowsPerThread ? 1 : 2;
  const int cols = int(std::min<int64_t>((v.ne[0] + 31) / 32 * 32, kMaxColsPerBlock));
  const int n_col_blocks = int((v.ne[0] + cols - 1) / cols);
  const dim3 grid(unsigned(v.ne[1] * n_col_blocks), unsigned(batch.n_runs));
  launch_pdl(split == 1 ? delta_net_kernel<1> : delta_net_kernel<2>, grid, cols * split, 0, stream_, view_of(dst),
             view_of(q), view_of(k), view_of(v), view_of(g), view_of(beta), state.as<float>(), state.ne[0], db,
             n_col_blocks);
}

}  // namespace moeserve::cuda
