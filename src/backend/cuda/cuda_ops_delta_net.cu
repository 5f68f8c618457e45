// The Gated DeltaNet pieces: the causal depthwise conv with its rolling state, and the gated delta
// rule (qwen3next.md §4.3 step 8) as a sequential scan over each run's tokens. The state of one
// value head is d_k x d_v; eight threads own a column of it and keep it in registers across the
// whole run, so a run reads and writes the state once, and decode (runs of one token) reads it
// exactly once.
#include <algorithm>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

constexpr int kMaxConvTaps = 16;
constexpr int kConvLoadAhead = 8;  // tokens whose conv inputs are loaded together
constexpr int kConvMaxSlots = 16;  // chunks a run's tokens are cut into
// Eight threads per state column: 32 columns x 8 = 256 threads a block, 128 blocks for the
// model's 32 heads: eight warps an SM, enough to overlap the scan's dependent steps.
constexpr int kSplit = 8;
constexpr int kMaxRowsPerThread = 16;  // state rows a thread keeps in registers
constexpr int kMaxKeyDim = kSplit * kMaxRowsPerThread;
constexpr int kCols = 32;  // state columns per block: 4 blocks per 128-wide head fill the GPU
constexpr int kDeltaThreads = kSplit * kCols;
constexpr int kStageTokens = 16;  // tokens staged in shared memory at a time

// Thread per (channel, slot of the run's tokens), one run per blockIdx.y: the run is cut into
// `slots` contiguous chunks of tokens (prefill fills the GPU with chunks, decode has one), and
// each thread slides the conv window over its chunk. The sums in double as the reference's, in
// its order. dst must not alias x (chunks read their neighbours' inputs). TAPS: the kernel width
// when fixed at compile time (the model's 4: no per-tap predicates), 0 for any up to kMaxConvTaps.
template <int TAPS>
__global__ void __launch_bounds__(32 * kConvMaxSlots)
    ssm_conv_kernel(View dst, View x, float* state, View w, DeviceBatch batch, int chans) {
  constexpr int kTaps = TAPS ? TAPS : kMaxConvTaps;
  pdl_wait();
  pdl_trigger();
  const int64_t channels = x.ne[0], kernel = TAPS ? TAPS : w.ne[0];
  const int64_t c = int64_t(blockIdx.x) * chans + threadIdx.x % chans;
  const int slot = threadIdx.x / chans, slots = blockDim.x / chans;
  const bool live = c < channels;
  const SeqRun run = batch.runs[blockIdx.y];
  float* hist = state + int64_t(run.seq) * (kernel - 1) * channels;  // [kernel-1][channels], oldest first
  // Input s of the run (s < 0: the saved history).
  auto input = [&](int32_t s) {
    return s >= 0 ? reinterpret_cast<const float*>(row_ptr(x, run.first + s))[c]
                  : hist[(kernel - 1 + s) * channels + c];
  };
  const int32_t chunk = (run.count + slots - 1) / slots;
  const int32_t begin = min(run.count, slot * chunk), end = min(run.count, begin + chunk);
  double h[kTaps], wt[kTaps];  // window and taps in registers, widened once
  if (live && begin < end) {
    const float* wc = reinterpret_cast<const float*>(row_ptr(w, c));
#pragma unroll
    for (int i = 0; i < kTaps; ++i) {
      if (i < kernel - 1) h[i] = input(begin - int32_t(kernel - 1) + i);
      if (i < kernel) wt[i] = wc[i];
    }
    for (int32_t t0 = begin; t0 < end; t0 += kConvLoadAhead) {
      // The inputs of several tokens loaded before any output is stored: the loads may not move
      // past the stores, so one at a time each would wait a full round trip.
      float xs[kConvLoadAhead];
#pragma unroll
      for (int j = 0; j < kConvLoadAhead; ++j) xs[j] = t0 + j < end ? input(t0 + j) : 0.0f;
#pragma unroll
      for (int j = 0; j < kConvLoadAhead; ++j) {
        if (t0 + j >= end) break;
        const double xt = xs[j];
        double acc = 0;
#pragma unroll
        for (int i = 0; i < kTaps; ++i) {
          if (i == kernel - 1) acc += wt[i] * xt;
        }
#pragma unroll
        for (int i = 0; i < kTaps; ++i) {
          if (i < kernel - 1) acc += wt[i] * h[i];
        }
#pragma unroll
        for (int i = 0; i + 1 < kTaps; ++i) {
          if (i + 1 < kernel - 1) h[i] = h[i + 1];
        }
#pragma unroll
        for (int i = 0; i < kTaps; ++i) {
          if (i == kernel - 2) h[i] = xt;
        }
        reinterpret_cast<float*>(row_ptr(dst, run.first + t0 + j))[c] = silu_f(float(acc));
      }
    }
  }
  // The new history: the run's last kernel-1 inputs (older ones from the old history when the
  // run is shorter), read by slot 0 once every slot has read the old history, then stored.
  if (slot == 0 && live) {
#pragma unroll
    for (int i = 0; i < kTaps; ++i) {
      if (i < kernel - 1) h[i] = input(run.count - int32_t(kernel - 1) + i);
    }
  }
  __syncthreads();
  if (slot == 0 && live) {
#pragma unroll
    for (int i = 0; i < kTaps; ++i) {
      if (i < kernel - 1) hist[i * channels + c] = float(h[i]);
    }
  }
}

// Block (value head h, tile of kCols state columns) x run. kSplit adjacent threads own one
// column m of the head's state, ROWS rows each (in float4 groups interleaved across the kSplit
// threads, so their shared-memory reads of q and k do not collide), in registers. Per token:
//   a = S^T k, b = S^T q, c = k.q   (one pass over the rows, one shuffle reduction)
//   delta = beta (v - decay a);  o = decay b + c delta;  S = decay S + k delta^T
// which is the reference's order (decay, read out k, update, read out q) rewritten so that one
// reduction serves both read-outs: the token's latency chain is one pass, one reduction and the
// update instead of two of each. The tokens' q, k, v and gates are staged in shared memory
// kStageTokens at a time, the next stage's loads in flight during the current stage's scan.
template <int ROWS>
__global__ void __launch_bounds__(kDeltaThreads)
    delta_net_kernel(View dst, View q, View k, View v, View g, View beta, float* state, int64_t state_row,
                     DeviceBatch batch, int n_col_blocks) {
  constexpr int KD = kSplit * ROWS, CH = ROWS / 4;
  constexpr int kQKLoads = kStageTokens * KD / kDeltaThreads, kVLoads = kStageTokens * kCols / kDeltaThreads;
  __shared__ __align__(16) float qs[kStageTokens][KD];
  __shared__ __align__(16) float ks[kStageTokens][KD];
  __shared__ float vs[kStageTokens][kCols], decay_s[kStageTokens], beta_s[kStageTokens];
  pdl_wait();
  pdl_trigger();
  const int64_t dk = q.ne[0], dv = v.ne[0], ratio = v.ne[1] / q.ne[1];
  const int64_t h = blockIdx.x / n_col_blocks, kh = h / ratio;
  const int c = threadIdx.x / kSplit, part = threadIdx.x % kSplit;
  const int64_t m0 = int64_t(blockIdx.x % n_col_blocks) * kCols, m = m0 + c;
  const bool col = m < dv;
  const SeqRun run = batch.runs[blockIdx.y];
  float* s_head = state + int64_t(run.seq) * state_row + h * dk * dv;  // S[i][m] at i*dv + m
  // This thread's rows: s[4j + e] is S[(j*kSplit + part)*4 + e][m].
  float s[ROWS];
#pragma unroll
  for (int j = 0; j < CH; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t i = (j * kSplit + part) * 4 + e;
      s[4 * j + e] = col && i < dk ? s_head[i * dv + m] : 0.0f;
    }

  const int32_t end = run.first + run.count;
  float qr[kQKLoads], kr[kQKLoads], vr[kVLoads], gr = 0.0f, br = 0.0f;
  auto fetch = [&](int32_t t0) {
    const int nt = min(kStageTokens, end - t0);
#pragma unroll
    for (int a = 0; a < kQKLoads; ++a) {
      const int idx = threadIdx.x + a * kDeltaThreads, tt = idx / KD, i = idx % KD;
      const bool ok = tt < nt && i < dk;
      qr[a] = ok ? reinterpret_cast<const float*>(row_ptr(q, kh, t0 + tt))[i] : 0.0f;
      kr[a] = ok ? reinterpret_cast<const float*>(row_ptr(k, kh, t0 + tt))[i] : 0.0f;
    }
#pragma unroll
    for (int a = 0; a < kVLoads; ++a) {
      const int idx = threadIdx.x + a * kDeltaThreads, tt = idx / kCols, cc = idx % kCols;
      vr[a] = tt < nt && m0 + cc < dv ? reinterpret_cast<const float*>(row_ptr(v, h, t0 + tt))[m0 + cc] : 0.0f;
    }
    if (int(threadIdx.x) < nt) {
      gr = reinterpret_cast<const float*>(row_ptr(g, t0 + threadIdx.x))[h];
      br = reinterpret_cast<const float*>(row_ptr(beta, t0 + threadIdx.x))[h];
    }
  };
  auto stash = [&](int nt) {
#pragma unroll
    for (int a = 0; a < kQKLoads; ++a) {
      const int idx = threadIdx.x + a * kDeltaThreads;
      qs[idx / KD][idx % KD] = qr[a];
      ks[idx / KD][idx % KD] = kr[a];
    }
#pragma unroll
    for (int a = 0; a < kVLoads; ++a) {
      const int idx = threadIdx.x + a * kDeltaThreads;
      vs[idx / kCols][idx % kCols] = vr[a];
    }
    if (int(threadIdx.x) < nt) {
      decay_s[threadIdx.x] = expf(gr);
      beta_s[threadIdx.x] = br;
    }
  };

  if (run.count > 0) fetch(run.first);
  for (int32_t t0 = run.first; t0 < end; t0 += kStageTokens) {
    const int nt = min(kStageTokens, end - t0);
    __syncthreads();  // the previous stage is consumed
    stash(nt);
    __syncthreads();
    if (t0 + kStageTokens < end) fetch(t0 + kStageTokens);
    for (int tt = 0; tt < nt; ++tt) {
      const float decay = decay_s[tt];
      const float4* k4 = reinterpret_cast<const float4*>(ks[tt]);
      const float4* q4 = reinterpret_cast<const float4*>(qs[tt]);
      // Four partial sums of each: independent FMA chains instead of one as long as the rows.
      float a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0}, cq[4] = {0, 0, 0, 0};
#pragma unroll
      for (int j = 0; j < CH; ++j) {
        const float4 kv = k4[j * kSplit + part], qv = q4[j * kSplit + part];
        const float kk[4] = {kv.x, kv.y, kv.z, kv.w}, qq[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          a[e] = fmaf(s[4 * j + e], kk[e], a[e]);
          b[e] = fmaf(s[4 * j + e], qq[e], b[e]);
          cq[e] = fmaf(kk[e], qq[e], cq[e]);
        }
      }
      float sa = (a[0] + a[1]) + (a[2] + a[3]), sb = (b[0] + b[1]) + (b[2] + b[3]);
      float sc = (cq[0] + cq[1]) + (cq[2] + cq[3]);
#pragma unroll
      for (int o = 1; o < kSplit; o <<= 1) {
        sa += __shfl_xor_sync(0xffffffffu, sa, o);
        sb += __shfl_xor_sync(0xffffffffu, sb, o);
        sc += __shfl_xor_sync(0xffffffffu, sc, o);
      }
      const float delta = beta_s[tt] * (vs[tt][c] - decay * sa);
#pragma unroll
      for (int j = 0; j < CH; ++j) {
        const float4 kv = k4[j * kSplit + part];
        const float kk[4] = {kv.x, kv.y, kv.z, kv.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) s[4 * j + e] = fmaf(s[4 * j + e], decay, kk[e] * delta);
      }
      if (col && part == 0) reinterpret_cast<float*>(row_ptr(dst, h, t0 + tt))[m] = fmaf(decay, sb, sc * delta);
    }
  }
#pragma unroll
  for (int j = 0; j < CH; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t i = (j * kSplit + part) * 4 + e;
      if (col && i < dk) s_head[i * dv + m] = s[4 * j + e];
    }
}

}  // namespace

void CudaBackend::do_ssm_conv(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w,
                              const BatchInfo& batch) {
  if (w.ne[0] > kMaxConvTaps) fail("CUDA backend: ssm_conv supports kernels of at most ", kMaxConvTaps, " taps");
  if (skip()) return;
  if (batch.n_runs == 0 || x.ne[0] == 0) return;
  const DeviceBatch db = device_batch(batch);
  // Slots per run from the longest run (decode: one): up to kConvMaxSlots chunks of at least
  // kConvLoadAhead tokens. Only the speed depends on it (every slot count gives the same bytes),
  // so recorded steps stay right whatever their runs.
  int32_t longest = 0;
  for (int32_t r = 0; r < batch.n_runs; ++r) longest = std::max(longest, batch.runs[r].count);
  int slots = 1;
  while (slots < kConvMaxSlots && int64_t(slots) * kConvLoadAhead < longest) slots *= 2;
  const int chans = std::max(32, 128 / slots);
  const dim3 grid(unsigned((x.ne[0] + chans - 1) / chans), unsigned(batch.n_runs));
  launch_pdl(w.ne[0] == 4 ? ssm_conv_kernel<4> : ssm_conv_kernel<0>, grid, chans * slots, 0, stream_, view_of(dst),
             view_of(x), state.as<float>(), view_of(w), db, chans);
}

void CudaBackend::do_gated_delta_net(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& g, const Tensor& beta, const Tensor& state, const BatchInfo& batch) {
  if (q.ne[0] > kMaxKeyDim) fail("CUDA backend: gated_delta_net supports key heads of at most ", kMaxKeyDim, " dims");
  if (skip()) return;
  if (batch.n_runs == 0) return;
  const DeviceBatch db = device_batch(batch);
  const int n_col_blocks = int((v.ne[0] + kCols - 1) / kCols);
  const dim3 grid(unsigned(v.ne[1] * n_col_blocks), unsigned(batch.n_runs));
  launch_pdl(q.ne[0] <= kSplit * 8 ? delta_net_kernel<8> : delta_net_kernel<kMaxRowsPerThread>, grid, kDeltaThreads,
             0, stream_, view_of(dst), view_of(q), view_of(k), view_of(v), view_of(g), view_of(beta),
             state.as<float>(), state.ne[0], db, n_col_blocks);
}

}  // namespace moeserve::cuda
