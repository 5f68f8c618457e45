// The delta-net decode step (Backend::delta_net_step) in one kernel: every run of the batch one
// token. One block per (sequence, value head) does the head's part of the whole chain: the conv +
// SiLU of its q, k and v channels (conv state updated), the l2 norms, the gates, the delta rule
// over its d_k x d_v state and the gated RMS norm of its outputs. The `ratio` value heads of one
// key head share its q and k channels: each computes them, and they form a thread-block cluster so
// that the first writes the new q/k conv history only once all have read the old one. Other
// shapes and prefill take the composition (its kernels scan runs of many tokens).
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace moeserve::cuda {
namespace {

constexpr int kWarps = 16;
constexpr int kThreads = 32 * kWarps;
// d_k and d_v at most: a warp's lanes cover one state row of d_v columns, four each (one float4,
// so a warp's load of a row is one coalesced 512-byte access); the warps split the rows.
constexpr int kMaxDim = 128;
constexpr int kRows = kMaxDim / kWarps;  // state rows per thread
constexpr int kMaxTaps = 8;
constexpr int kMaxRatio = 8;  // the portable cluster size

struct StepArgs {
  View y, qkv, z, b, a, dt_bias, a_coef, conv_w;
  float* conv_state;
  float* ssm_state;
  int64_t conv_row, ssm_row;  // floats per sequence row of each state
  const float* norm;
  DeviceBatch batch;
  int dk, dv, nk, ratio, taps;
  float eps, q_scale;
};

__device__ __forceinline__ void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.aligned;" ::: "memory");  // release
#endif
}

__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.aligned;" ::: "memory");  // acquire
#endif
}

// Block (value head h, run r). TAPS: the conv width fixed at compile time (the model's 4), 0 for
// any up to kMaxTaps. The arithmetic follows the composition's kernels: the conv sum in double in
// the reference's order, the norms' float sums, the delta rule as delta_net_kernel rewrites it
// (one pass over the state for both read-outs).
template <int TAPS>
__global__ void __launch_bounds__(kThreads) delta_step_kernel(const __grid_constant__ StepArgs p) {
  constexpr int kTaps = TAPS ? TAPS : kMaxTaps;
  __shared__ __align__(16) float q_s[kMaxDim];
  __shared__ __align__(16) float k_s[kMaxDim];
  __shared__ __align__(16) float v_s[kMaxDim];
  __shared__ __align__(16) float delta_s[kMaxDim];
  __shared__ __align__(16) float part_a[kWarps][kMaxDim];
  __shared__ __align__(16) float part_b[kWarps][kMaxDim];
  __shared__ float ss_s[kMaxDim / 32], gate_s[2];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int h = blockIdx.x, kh = h / p.ratio, r = h % p.ratio;  // r: the block's rank in its cluster
  const int dk = p.dk, dv = p.dv, taps = TAPS ? TAPS : p.taps;
  const int64_t key_dim = int64_t(p.nk) * dk, channels = p.qkv.ne[0];
  // This thread's conv channel: the head's q rows, then its k rows, then its v rows.
  int64_t c = -1;
  if (tid < dk) c = kh * dk + tid;
  else if (tid < 2 * dk) c = key_dim + kh * dk + (tid - dk);
  else if (tid < 2 * dk + dv) c = 2 * key_dim + int64_t(h) * dv + (tid - 2 * dk);

  // Weights first: no kernel writes them, so they load while the previous kernel finishes.
  double wt[kTaps];
  if (c >= 0) {
    const float* wc = reinterpret_cast<const float*>(row_ptr(p.conv_w, c));
#pragma unroll
    for (int i = 0; i < kTaps; ++i) {
      if (i < taps) wt[i] = wc[i];
    }
  }
  const float norm_w = tid < dv ? p.norm[tid] : 0.0f;
  float dt = 0.0f, a_coef = 0.0f;
  if (tid == 0) {
    dt = reinterpret_cast<const float*>(row_ptr(p.dt_bias, kh))[r];
    a_coef = reinterpret_cast<const float*>(row_ptr(p.a_coef, kh))[r];
  }
  // The states load before the wait too: the kernel before this one (the input products) does
  // not write them (pdl.cuh), and the batch's runs were copied in before the step's first kernel.
  // Everything up to the delta rule runs while the states are in flight.
  // s[j] holds S[warp + kWarps*j][4*lane .. 4*lane+3].
  const SeqRun run = p.batch.runs[blockIdx.y];
  const int32_t t = run.first;
  float* s_head = p.ssm_state + int64_t(run.seq) * p.ssm_row + int64_t(h) * dk * dv;
  const bool col = 4 * lane < dv;
  float4 s[kRows];
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    const int i = warp + kWarps * j;
    s[j] = col && i < dk ? *reinterpret_cast<const float4*>(s_head + int64_t(i) * dv + 4 * lane)
                         : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
  // hist keeps the old conv history for the new one.
  float* conv_hist = p.conv_state + int64_t(run.seq) * p.conv_row;  // [taps-1][channels], oldest first
  float hist[kTaps];
  if (c >= 0) {
#pragma unroll
    for (int i = 0; i < kTaps; ++i) {
      if (i < taps - 1) hist[i] = conv_hist[i * channels + c];
    }
  }
  pdl_wait();
  pdl_trigger();
  const float zv = tid < dv ? reinterpret_cast<const float*>(row_ptr(p.z, h, t))[tid] : 0.0f;

  // Conv + SiLU of this thread's channel.
  float xt = 0.0f;
  if (c >= 0) {
    xt = reinterpret_cast<const float*>(row_ptr(p.qkv, t))[c];
    double acc = 0;
#pragma unroll
    for (int i = 0; i < kTaps; ++i) {
      if (i == taps - 1) acc += wt[i] * double(xt);
    }
#pragma unroll
    for (int i = 0; i < kTaps; ++i) {
      if (i < taps - 1) acc += wt[i] * double(hist[i]);
    }
    const float u = silu_f(float(acc));
    if (tid < dk) q_s[tid] = u;
    else if (tid < 2 * dk) k_s[tid - dk] = u;
    else v_s[tid - 2 * dk] = u;
  }
  if (tid == 0) {
    const float bv = reinterpret_cast<const float*>(row_ptr(p.b, kh, t))[r];
    const float av = reinterpret_cast<const float*>(row_ptr(p.a, kh, t))[r];
    gate_s[0] = sigmoid_f(bv);                          // beta
    gate_s[1] = expf(softplus_f(av + dt) * a_coef);  // decay = exp(g)
  }
  // This block has read its old conv history.
  cluster_arrive();
  __syncthreads();

  // q = l2_norm(q) * q_scale (warp 0), k = l2_norm(k) (warp 1), as qk_l2_kernel's rows.
  if (warp < 2) {
    float* vec = warp == 0 ? q_s : k_s;
    float x[kMaxDim / 32];
    float ss = 0.0f;
#pragma unroll
    for (int e = 0; e < kMaxDim / 32; ++e) {
      const int i = lane + 32 * e;
      x[e] = i < dk ? vec[i] : 0.0f;
      ss += x[e] * x[e];
    }
    const float sc = 1.0f / sqrtf(warp_sum(ss) + p.eps);
#pragma unroll
    for (int e = 0; e < kMaxDim / 32; ++e) {
      const int i = lane + 32 * e;
      if (i >= dk) break;
      float o = x[e] * sc;
      if (warp == 0 && p.q_scale != 1.0f) o *= p.q_scale;
      vec[i] = o;
    }
  }
  __syncthreads();

  // k.q, by every warp for itself; the partial read-outs S^T k and S^T q over this thread's rows.
  float kq = 0.0f;
#pragma unroll
  for (int e = 0; e < kMaxDim / 32; ++e) {
    const int i = lane + 32 * e;
    if (i < dk) kq = fmaf(k_s[i], q_s[i], kq);
  }
  kq = warp_sum(kq);
  float4 pa = make_float4(0.0f, 0.0f, 0.0f, 0.0f), pb = pa;
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    const int i = warp + kWarps * j;
    if (i < dk) {
      const float kk = k_s[i], qq = q_s[i];
      pa.x = fmaf(s[j].x, kk, pa.x);
      pa.y = fmaf(s[j].y, kk, pa.y);
      pa.z = fmaf(s[j].z, kk, pa.z);
      pa.w = fmaf(s[j].w, kk, pa.w);
      pb.x = fmaf(s[j].x, qq, pb.x);
      pb.y = fmaf(s[j].y, qq, pb.y);
      pb.z = fmaf(s[j].z, qq, pb.z);
      pb.w = fmaf(s[j].w, qq, pb.w);
    }
  }
  if (col) {
    *reinterpret_cast<float4*>(&part_a[warp][4 * lane]) = pa;
    *reinterpret_cast<float4*>(&part_b[warp][4 * lane]) = pb;
  }
  __syncthreads();

  // Column m = tid: delta = beta (v - decay S^T k); o = decay S^T q + (k.q) delta.
  const float beta = gate_s[0], decay = gate_s[1];
  float o = 0.0f;
  if (tid < dv) {
    float sa = 0.0f, sb = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      sa += part_a[w][tid];
      sb += part_b[w][tid];
    }
    const float delta = beta * (v_s[tid] - decay * sa);
    o = fmaf(decay, sb, kq * delta);
    delta_s[tid] = delta;
  }
  if (warp * 32 < dv) {
    const float ss = warp_sum(o * o);
    if (lane == 0) ss_s[warp] = ss;
  }
  __syncthreads();

  // S = decay S + k delta^T, stored back.
  if (col) {
    const float4 d = *reinterpret_cast<const float4*>(&delta_s[4 * lane]);
#pragma unroll
    for (int j = 0; j < kRows; ++j) {
      const int i = warp + kWarps * j;
      if (i < dk) {
        const float kk = k_s[i];
        float4 v = s[j];
        v.x = fmaf(v.x, decay, kk * d.x);
        v.y = fmaf(v.y, decay, kk * d.y);
        v.z = fmaf(v.z, decay, kk * d.z);
        v.w = fmaf(v.w, decay, kk * d.w);
        *reinterpret_cast<float4*>(s_head + int64_t(i) * dv + 4 * lane) = v;
      }
    }
  }
  // y = rms_norm(o) * norm * silu(z) over the head's d_v outputs.
  if (tid < dv) {
    float ss = 0.0f;
    for (int w = 0; w * 32 < dv; ++w) ss += ss_s[w];
    const float sc = 1.0f / sqrtf(ss / float(dv) + p.eps);
    reinterpret_cast<float*>(row_ptr(p.y, h, t))[tid] = o * sc * (norm_w * silu_f(zv));
  }

  // The new conv history [old 1 .. taps-2, x]: v channels by their own head's block, q and k by
  // the cluster's first block once every block of the cluster has read the old one.
  cluster_wait();
  if (c >= 0 && (tid >= 2 * dk || r == 0)) {
#pragma unroll
    for (int i = 0; i + 1 < kTaps; ++i) {
      if (i + 1 < taps - 1) conv_hist[i * channels + c] = hist[i + 1];
    }
#pragma unroll
    for (int i = 0; i < kTaps; ++i) {
      if (i == taps - 2) conv_hist[i * channels + c] = xt;
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void CudaBackend::do_delta_net_step(const DeltaNetStep& s, const BatchInfo& batch) {
  const int64_t dk = s.q.ne[0], nk = s.q.ne[1], dv = s.y.ne[0], nv = s.y.ne[1], ratio = s.b.ne[0];
  const int64_t taps = s.conv_w.ne[0];
  bool decode = batch.n_runs > 0;
  for (int32_t i = 0; i < batch.n_runs; ++i) decode = decode && batch.runs[i].count == 1;
  // Thread-block clusters (sm_90) for the shared q/k history; float4 rows of the state.
  const bool fits = cc_major_ >= 9 && dk <= kMaxDim && dv <= kMaxDim && dv % 4 == 0 && ratio <= kMaxRatio &&
                    taps <= kMaxTaps && s.ssm_state.nb[1] % 16 == 0 && aligned16(s.ssm_state.data) &&
                    s.conv_state.nb[1] % sizeof(float) == 0;
  if (!decode || !fits) {
    Backend::do_delta_net_step(s, batch);
    return;
  }
  if (skip()) return;
  StepArgs a{};
  a.y = view_of(s.y);
  a.qkv = view_of(s.qkv);
  a.z = view_of(s.z);
  a.b = view_of(s.b);
  a.a = view_of(s.a);
  a.dt_bias = view_of(s.dt_bias);
  a.a_coef = view_of(s.a_coef);
  a.conv_w = view_of(s.conv_w);
  a.conv_state = s.conv_state.as<float>();
  a.ssm_state = s.ssm_state.as<float>();
  a.conv_row = int64_t(s.conv_state.nb[1] / sizeof(float));
  a.ssm_row = int64_t(s.ssm_state.nb[1] / sizeof(float));
  a.norm = s.norm.as<float>();
  a.batch = device_batch(batch);
  a.dk = int(dk);
  a.dv = int(dv);
  a.nk = int(nk);
  a.ratio = int(ratio);
  a.taps = int(taps);
  a.eps = s.eps;
  a.q_scale = s.q_scale;

  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(nv), unsigned(batch.n_runs));
  cfg.blockDim = dim3(kThreads);
  cfg.stream = stream_;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(ratio);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = pdl_enabled() ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 2;
  MOESERVE_CUDA_CHECK(cudaLaunchKernelEx(&cfg, taps == 4 ? delta_step_kernel<4> : delta_step_kernel<0>, a));
}

}  // namespace moeserve::cuda
