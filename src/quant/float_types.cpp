#include <cstring>

#include "core/fp16.h"
#include "quant/quants.h"

namespace moeserve {

void dequantize_row_f32(const void* blocks, float* out, int64_t n) {
  std::memcpy(out, blocks, size_t(n) * sizeof(float));
}

void quantize_row_f32(const float* in, void* blocks, int64_t n) {
  std::memcpy(blocks, in, size_t(n) * sizeof(float));
}

void dequantize_row_f16(const void* blocks, float* out, int64_t n) {
  const auto* h = static_cast<const uint16_t*>(blocks);
  for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(h[i]);
}

void quantize_row_f16(const float* in, void* blocks, int64_t n) {
  auto* h = static_cast<uint16_t*>(blocks);
  for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(in[i]);
}

void dequantize_row_bf16(const void* blocks, float* out, int64_t n) {
  const auto* h = static_cast<const uint16_t*>(blocks);
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(h[i]);
}

void quantize_row_bf16(const float* in, void* blocks, int64_t n) {
  auto* h = static_cast<uint16_t*>(blocks);
  for (int64_t i = 0; i < n; ++i) h[i] = fp32_to_bf16(in[i]);
}

// Float dot products: each product rounded to float, the sum kept in double (as ggml does), so
// long rows lose no precision to the accumulator.
float vec_dot_f32_f32(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const float*>(w);
  const auto* y = static_cast<const float*>(a);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double(x[i] * y[i]);
  return float(sum);
}

float vec_dot_f16_f16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const uint16_t*>(a);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double(fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]));
  return float(sum);
}

float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const uint16_t*>(a);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
  return float(sum);
}

}  // namespace moeserve
