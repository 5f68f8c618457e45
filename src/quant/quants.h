// Reference (scalar) conversions between float and every ggml block format, written from
// shared/spec/quants.md. They define the formats: fast kernels are tested against them.
#pragma once

#include <cstdint>

namespace moeserve {

void dequantize_row_f32(const void* blocks, float* out, int64_t n);
void quantize_row_f32(const float* in, void* blocks, int64_t n);
void dequantize_row_f16(const void* blocks, float* out, int64_t n);
void quantize_row_f16(const float* in, void* blocks, int64_t n);
void dequantize_row_bf16(const void* blocks, float* out, int64_t n);
void quantize_row_bf16(const float* in, void* blocks, int64_t n);

}  // namespace moeserve
