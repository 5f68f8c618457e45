// RoPE, NeoX (pairs i, i + n_rot/2) or normal (pairs 2i, 2i+1), over the first n_rot dims of each
// head; the rest pass through. The angle as the reference computes it: a float inverse
// frequency, float(pos) * inv_freq in float, then cos/sin and the rotation in double (decode
// rotates a few thousand values, so double costs nothing measurable).
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"

namespace moeserve::cuda {
namespace {

// Block per (head, token); thread per pair, then per passed-through element.
__global__ void rope_kernel(View dst, View src, DeviceBatch batch, int n_rot, float freq_base, bool neox) {
  const int64_t h = blockIdx.x, t = blockIdx.y, hd = src.ne[0], half = n_rot / 2;
  const float* x = reinterpret_cast<const float*>(row_ptr(src, h, t));
  float* y = reinterpret_cast<float*>(row_ptr(dst, h, t));
  const float pos = float(batch.pos[t]);
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    const float inv_freq = float(pow(double(freq_base), -2.0 * double(i) / double(n_rot)));
    const double theta = double(__fmul_rn(pos, inv_freq));
    double s, c;
    sincos(theta, &s, &c);
    const int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    const double x0 = x[i0], x1 = x[i1];
    y[i0] = float(x0 * c - x1 * s);
    y[i1] = float(x0 * s + x1 * c);
  }
  for (int64_t i = n_rot + threadIdx.x; i < hd; i += blockDim.x) y[i] = x[i];
}

}  // namespace

void CudaBackend::do_rope(const Tensor& dst, const Tensor& src, const BatchInfo& batch, const RopeParams& p) {
  if (skip()) return;
  if (batch.n_tokens == 0 || src.ne[1] == 0) return;
  const DeviceBatch db = device_batch(batch);
  const dim3 grid(unsigned(src.ne[1]), unsigned(batch.n_tokens));
  rope_kernel<<<grid, 64, 0, stream_>>>(view_of(dst), view_of(src), db, p.n_rot, p.freq_base, p.neox);
  MOESERVE_CUDA_CHECK_LAUNCH();
}

}  // namespace moeserve::cuda
