// Reference (scalar) conversions between float and every ggml block format, written from
// shared/spec/quants.md. They define the formats: fast kernels are tested against them.
//
// dequantize_row_<t>(blocks, out, n) / quantize_row_<t>(in, blocks, n): n elements, a multiple of
// the block size. Quantizers reproduce ggml's reference (*_ref) quantizers bit for bit.
// vec_dot_<w>_<a>(n, w, a): dot product of a weight row of type w with an activation row already
// quantized to a = w's vec_dot_type (quants.md §4), accumulated exactly in integers per block.
#pragma once

#include <cstdint>

namespace moeserve {

// Float types (float_types.cpp).
void dequantize_row_f32(const void* blocks, float* out, int64_t n);
void quantize_row_f32(const float* in, void* blocks, int64_t n);
void dequantize_row_f16(const void* blocks, float* out, int64_t n);
void quantize_row_f16(const float* in, void* blocks, int64_t n);
void dequantize_row_bf16(const void* blocks, float* out, int64_t n);
void quantize_row_bf16(const float* in, void* blocks, int64_t n);
float vec_dot_f32_f32(int64_t n, const void* w, const void* a);
float vec_dot_f16_f16(int64_t n, const void* w, const void* a);
float vec_dot_bf16_bf16(int64_t n, const void* w, const void* a);

// Legacy 32-element blocks (legacy.cpp).
void dequantize_row_q4_0(const void* blocks, float* out, int64_t n);
void dequantize_row_q4_1(const void* blocks, float* out, int64_t n);
void dequantize_row_q5_0(const void* blocks, float* out, int64_t n);
void dequantize_row_q5_1(const void* blocks, float* out, int64_t n);
void dequantize_row_q8_0(const void* blocks, float* out, int64_t n);
void dequantize_row_q8_1(const void* blocks, float* out, int64_t n);
void quantize_row_q4_0(const float* in, void* blocks, int64_t n);
void quantize_row_q4_1(const float* in, void* blocks, int64_t n);
void quantize_row_q5_0(const float* in, void* blocks, int64_t n);
void quantize_row_q5_1(const float* in, void* blocks, int64_t n);
void quantize_row_q8_0(const float* in, void* blocks, int64_t n);
void quantize_row_q8_1(const float* in, void* blocks, int64_t n);
float vec_dot_q4_0_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_q4_1_q8_1(int64_t n, const void* w, const void* a);
float vec_dot_q5_0_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_q5_1_q8_1(int64_t n, const void* w, const void* a);
float vec_dot_q8_0_q8_0(int64_t n, const void* w, const void* a);

// K-quants, 256-element super-blocks (k_quants.cpp: dequantize + dot; k_quantize.cpp: quantize).
void dequantize_row_q2_K(const void* blocks, float* out, int64_t n);
void dequantize_row_q3_K(const void* blocks, float* out, int64_t n);
void dequantize_row_q4_K(const void* blocks, float* out, int64_t n);
void dequantize_row_q5_K(const void* blocks, float* out, int64_t n);
void dequantize_row_q6_K(const void* blocks, float* out, int64_t n);
void dequantize_row_q8_K(const void* blocks, float* out, int64_t n);
void quantize_row_q2_K(const float* in, void* blocks, int64_t n);
void quantize_row_q3_K(const float* in, void* blocks, int64_t n);
void quantize_row_q4_K(const float* in, void* blocks, int64_t n);
void quantize_row_q5_K(const float* in, void* blocks, int64_t n);
void quantize_row_q6_K(const float* in, void* blocks, int64_t n);
void quantize_row_q8_K(const float* in, void* blocks, int64_t n);
float vec_dot_q2_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q3_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q4_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q5_K_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_q6_K_q8_K(int64_t n, const void* w, const void* a);

// I-quants (i_quants.cpp: dequantize; i_quants_dot.cpp: dot).
void dequantize_row_iq2_xxs(const void* blocks, float* out, int64_t n);
void dequantize_row_iq2_xs(const void* blocks, float* out, int64_t n);
void dequantize_row_iq2_s(const void* blocks, float* out, int64_t n);
void dequantize_row_iq3_xxs(const void* blocks, float* out, int64_t n);
void dequantize_row_iq3_s(const void* blocks, float* out, int64_t n);
void dequantize_row_iq1_s(const void* blocks, float* out, int64_t n);
void dequantize_row_iq1_m(const void* blocks, float* out, int64_t n);
void dequantize_row_iq4_nl(const void* blocks, float* out, int64_t n);
void dequantize_row_iq4_xs(const void* blocks, float* out, int64_t n);
float vec_dot_iq2_xxs_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_iq2_xs_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_iq2_s_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_iq3_xxs_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_iq3_s_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_iq1_s_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_iq1_m_q8_K(int64_t n, const void* w, const void* a);
float vec_dot_iq4_nl_q8_0(int64_t n, const void* w, const void* a);
float vec_dot_iq4_xs_q8_K(int64_t n, const void* w, const void* a);

// I-quant quantizers (iq_grid_quantize.cpp, iq1_quantize.cpp, iq4_quantize.cpp). Without an
// importance matrix they give what ggml_quantize_chunk gives without one; IQ2_XXS, IQ2_XS and
// IQ1_S, which ggml only quantizes with one, weigh every column the same (an imatrix of ones).
void quantize_row_iq2_xxs(const float* in, void* blocks, int64_t n);
void quantize_row_iq2_xs(const float* in, void* blocks, int64_t n);
void quantize_row_iq2_s(const float* in, void* blocks, int64_t n);
void quantize_row_iq3_xxs(const float* in, void* blocks, int64_t n);
void quantize_row_iq3_s(const float* in, void* blocks, int64_t n);
void quantize_row_iq1_s(const float* in, void* blocks, int64_t n);
void quantize_row_iq1_m(const float* in, void* blocks, int64_t n);
void quantize_row_iq4_nl(const float* in, void* blocks, int64_t n);
void quantize_row_iq4_xs(const float* in, void* blocks, int64_t n);

// Quantizers with importance weights (ggml's quantize_<t>(..., quant_weights)): one row of n
// elements; `weights` holds one weight per column of the row (an importance matrix's mean squared
// activations) or is null, in which case they equal the quantizers above.
void quantize_row_q4_0_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_q4_1_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_q5_0_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_q5_1_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_q2_K_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_q3_K_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_q4_K_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_q5_K_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_q6_K_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_iq2_xxs_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_iq2_xs_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_iq2_s_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_iq3_xxs_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_iq3_s_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_iq1_s_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_iq1_m_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_iq4_nl_imatrix(const float* in, void* blocks, int64_t n, const float* weights);
void quantize_row_iq4_xs_imatrix(const float* in, void* blocks, int64_t n, const float* weights);

// MXFP4 (mxfp4.cpp).
void dequantize_row_mxfp4(const void* blocks, float* out, int64_t n);
void quantize_row_mxfp4(const float* in, void* blocks, int64_t n);
float vec_dot_mxfp4_q8_0(int64_t n, const void* w, const void* a);

}  // namespace moeserve
