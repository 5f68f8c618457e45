// Device-side helpers shared by the CUDA op kernels: tensors passed by value (dims, byte strides),
// the step's batch data in device memory, element conversions of the KV/copy types, and warp
// reductions. Conversions follow the reference's rounding (round to nearest even for F16/BF16,
// ggml's Q8_0/Q4_0 quantizers with no fused multiply-adds), so quantized results match bit for bit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "backend/backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/pdl.cuh"

namespace moeserve::cuda {

// A tensor as a kernel argument.
struct View {
  char* data;
  int64_t ne[4];
  int64_t nb[4];
};

inline View view_of(const Tensor& t) {
  View v{};
  v.data = static_cast<char*>(t.data);
  for (int d = 0; d < 4; ++d) {
    v.ne[d] = t.ne[d];
    v.nb[d] = int64_t(t.nb[d]);
  }
  return v;
}

// The batch of the step, in device memory (refreshed by the backend before each step).
struct DeviceBatch {
  const int32_t* pos;
  const int32_t* seq;
  const SeqRun* runs;
};

__device__ __forceinline__ char* row_ptr(const View& v, int64_t i1, int64_t i2 = 0, int64_t i3 = 0) {
  return v.data + i1 * v.nb[1] + i2 * v.nb[2] + i3 * v.nb[3];
}

// Row r counted over dims 1..3.
__device__ __forceinline__ char* flat_row_ptr(const View& v, int64_t r) {
  const int64_t i1 = r % v.ne[1], rest = r / v.ne[1];
  return row_ptr(v, i1, rest % v.ne[2], rest / v.ne[2]);
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float softplus_f(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float x) {
  __shared__ float partial[32];
  x = warp_sum(x);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
  __syncthreads();  // partial may still be read from a previous call
  if (lane == 0) partial[warp] = x;
  __syncthreads();
  x = lane < n_warps ? partial[lane] : 0.0f;
  return warp_sum(x);
}

// ---- element formats -----------------------------------------------------------------------
// Type codes of the formats the KV cache and copies support on the device.
enum class Fmt : int { f32, f16, bf16, q8_0, q4_0 };

constexpr int kQK = 32;  // elements per Q8_0 / Q4_0 block
constexpr int kQ8Bytes = 34, kQ4Bytes = 18;

__device__ __forceinline__ float half_at(const char* p) {
  return __half2float(*reinterpret_cast<const __half*>(p));
}

// Element i of a row of format f.
__device__ __forceinline__ float load_elem(Fmt f, const char* row, int64_t i) {
  switch (f) {
    case Fmt::f32: return reinterpret_cast<const float*>(row)[i];
    case Fmt::f16: return __half2float(reinterpret_cast<const __half*>(row)[i]);
    case Fmt::bf16: return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(row)[i]);
    case Fmt::q8_0: {
      const char* b = row + (i / kQK) * kQ8Bytes;
      return float(reinterpret_cast<const int8_t*>(b + 2)[i % kQK]) * half_at(b);
    }
    case Fmt::q4_0: {
      const char* b = row + (i / kQK) * kQ4Bytes;
      const int j = int(i % kQK);
      const uint8_t q = reinterpret_cast<const uint8_t*>(b + 2)[j % 16];
      return float(int(j < 16 ? (q & 0xF) : (q >> 4)) - 8) * half_at(b);
    }
  }
  return 0.0f;
}

// The value x takes once rounded to the F16 / BF16 grid (what the reference's activation
// conversion gives before a dot product).
__device__ __forceinline__ float round_f16(float x) { return __half2float(__float2half_rn(x)); }
__device__ __forceinline__ float round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// Quantizes the 32 values of one block, one per lane (lane j holds element j), and writes the
// block at `b` (one 16-byte-or-less store per lane). Float operations as ggml's reference
// quantizers, with explicit rounding intrinsics so no multiply-add gets fused.
__device__ __forceinline__ void quantize_block_q8_0(float x, char* b, int lane) {
  const float amax = warp_max(fabsf(x));
  const float d = __fdiv_rn(amax, 127.0f);
  const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
  const int q = int(roundf(__fmul_rn(x, id)));
  reinterpret_cast<int8_t*>(b + 2)[lane] = int8_t(q);
  if (lane == 0) *reinterpret_cast<__half*>(b) = __float2half_rn(d);
}

__device__ __forceinline__ void quantize_block_q4_0(float x, char* b, int lane) {
  // The element of largest magnitude, sign kept, the first one on ties.
  float best = fabsf(x);
  int best_lane = lane;
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o);
    const int ol = __shfl_xor_sync(0xffffffffu, best_lane, o);
    if (ob > best || (ob == best && ol < best_lane)) {
      best = ob;
      best_lane = ol;
    }
  }
  const float max = __shfl_sync(0xffffffffu, x, best_lane);
  const float d = __fdiv_rn(max, -8.0f);
  const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
  const int q = min(15, int(__fadd_rn(__fmul_rn(x, id), 8.5f)));
  // Element j < 16 is the low nibble of byte j, element j + 16 its high nibble.
  const int hi = __shfl_down_sync(0xffffffffu, q, 16);
  if (lane < 16) reinterpret_cast<uint8_t*>(b + 2)[lane] = uint8_t(q | (hi << 4));
  if (lane == 0) *reinterpret_cast<__half*>(b) = __float2half_rn(d);
}

// Stores a row of n F32 values (x(i) gives element i) in format f; called by a whole warp with
// lane = threadIdx.x % 32, n a multiple of 32 for the block formats.
template <typename Get>
__device__ __forceinline__ void store_row_warp(Fmt f, char* dst, int64_t n, int lane, Get x) {
  switch (f) {
    case Fmt::f32:
      for (int64_t i = lane; i < n; i += 32) reinterpret_cast<float*>(dst)[i] = x(i);
      break;
    case Fmt::f16:
      for (int64_t i = lane; i < n; i += 32) reinterpret_cast<__half*>(dst)[i] = __float2half_rn(x(i));
      break;
    case Fmt::bf16:
      for (int64_t i = lane; i < n; i += 32) reinterpret_cast<__nv_bfloat16*>(dst)[i] = __float2bfloat16_rn(x(i));
      break;
    case Fmt::q8_0:
      for (int64_t b = 0; b < n / kQK; ++b) quantize_block_q8_0(x(b * kQK + lane), dst + b * kQ8Bytes, lane);
      break;
    case Fmt::q4_0:
      for (int64_t b = 0; b < n / kQK; ++b) quantize_block_q4_0(x(b * kQK + lane), dst + b * kQ4Bytes, lane);
      break;
  }
}

// store_row_warp for a whole block: element formats a thread per element, block formats a warp
// per 32-block.
template <typename Get>
__device__ __forceinline__ void store_row_block(Fmt f, char* dst, int64_t n, Get x) {
  if (f == Fmt::q8_0 || f == Fmt::q4_0) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    for (int64_t b = warp; b < n / kQK; b += n_warps) {
      const float v = x(b * kQK + lane);
      if (f == Fmt::q8_0) quantize_block_q8_0(v, dst + b * kQ8Bytes, lane);
      else quantize_block_q4_0(v, dst + b * kQ4Bytes, lane);
    }
    return;
  }
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    switch (f) {
      case Fmt::f32: reinterpret_cast<float*>(dst)[i] = x(i); break;
      case Fmt::f16: reinterpret_cast<__half*>(dst)[i] = __float2half_rn(x(i)); break;
      default: reinterpret_cast<__nv_bfloat16*>(dst)[i] = __float2bfloat16_rn(x(i)); break;
    }
  }
}

}  // namespace moeserve::cuda
