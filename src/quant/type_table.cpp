#include "core/ggml_type.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "quant/quants.h"

namespace moeserve {
namespace {

// clang-format off
// type, name, block, bytes, quantized, dequantize, quantize, vec_dot_type, vec_dot
constexpr TypeTraits kTypes[] = {
  {GgmlType::F32, "F32", 1, 4, false, dequantize_row_f32, quantize_row_f32, GgmlType::F32, vec_dot_f32_f32},
  {GgmlType::F16, "F16", 1, 2, false, dequantize_row_f16, quantize_row_f16, GgmlType::F16, vec_dot_f16_f16},
  {GgmlType::Q4_0, "Q4_0", 32, 18, true, dequantize_row_q4_0, quantize_row_q4_0, GgmlType::Q8_0, vec_dot_q4_0_q8_0},
  {GgmlType::Q4_1, "Q4_1", 32, 20, true, dequantize_row_q4_1, quantize_row_q4_1, GgmlType::Q8_1, vec_dot_q4_1_q8_1},
  {GgmlType::Q5_0, "Q5_0", 32, 22, true, dequantize_row_q5_0, quantize_row_q5_0, GgmlType::Q8_0, vec_dot_q5_0_q8_0},
  {GgmlType::Q5_1, "Q5_1", 32, 24, true, dequantize_row_q5_1, quantize_row_q5_1, GgmlType::Q8_1, vec_dot_q5_1_q8_1},
  {GgmlType::Q8_0, "Q8_0", 32, 34, true, dequantize_row_q8_0, quantize_row_q8_0, GgmlType::Q8_0, vec_dot_q8_0_q8_0},
  {GgmlType::Q8_1, "Q8_1", 32, 36, true, dequantize_row_q8_1, quantize_row_q8_1, GgmlType::Q8_1, nullptr},
  {GgmlType::Q2_K, "Q2_K", 256, 84, true, dequantize_row_q2_K, quantize_row_q2_K, GgmlType::Q8_K, vec_dot_q2_K_q8_K},
  {GgmlType::Q3_K, "Q3_K", 256, 110, true, dequantize_row_q3_K, quantize_row_q3_K, GgmlType::Q8_K, vec_dot_q3_K_q8_K},
  {GgmlType::Q4_K, "Q4_K", 256, 144, true, dequantize_row_q4_K, quantize_row_q4_K, GgmlType::Q8_K, vec_dot_q4_K_q8_K},
  {GgmlType::Q5_K, "Q5_K", 256, 176, true, dequantize_row_q5_K, quantize_row_q5_K, GgmlType::Q8_K, vec_dot_q5_K_q8_K},
  {GgmlType::Q6_K, "Q6_K", 256, 210, true, dequantize_row_q6_K, quantize_row_q6_K, GgmlType::Q8_K, vec_dot_q6_K_q8_K},
  {GgmlType::Q8_K, "Q8_K", 256, 292, true, dequantize_row_q8_K, quantize_row_q8_K, GgmlType::Q8_K, nullptr},
  {GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66, true, dequantize_row_iq2_xxs, quantize_row_iq2_xxs, GgmlType::Q8_K, vec_dot_iq2_xxs_q8_K},
  {GgmlType::IQ2_XS, "IQ2_XS", 256, 74, true, dequantize_row_iq2_xs, quantize_row_iq2_xs, GgmlType::Q8_K, vec_dot_iq2_xs_q8_K},
  {GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98, true, dequantize_row_iq3_xxs, quantize_row_iq3_xxs, GgmlType::Q8_K, vec_dot_iq3_xxs_q8_K},
  {GgmlType::IQ1_S, "IQ1_S", 256, 50, true, dequantize_row_iq1_s, quantize_row_iq1_s, GgmlType::Q8_K, vec_dot_iq1_s_q8_K},
  {GgmlType::IQ4_NL, "IQ4_NL", 32, 18, true, dequantize_row_iq4_nl, quantize_row_iq4_nl, GgmlType::Q8_0, vec_dot_iq4_nl_q8_0},
  {GgmlType::IQ3_S, "IQ3_S", 256, 110, true, dequantize_row_iq3_s, quantize_row_iq3_s, GgmlType::Q8_K, vec_dot_iq3_s_q8_K},
  {GgmlType::IQ2_S, "IQ2_S", 256, 82, true, dequantize_row_iq2_s, quantize_row_iq2_s, GgmlType::Q8_K, vec_dot_iq2_s_q8_K},
  {GgmlType::IQ4_XS, "IQ4_XS", 256, 136, true, dequantize_row_iq4_xs, quantize_row_iq4_xs, GgmlType::Q8_K, vec_dot_iq4_xs_q8_K},
  {GgmlType::I8, "I8", 1, 1, false, nullptr, nullptr, GgmlType::I8, nullptr},
  {GgmlType::I16, "I16", 1, 2, false, nullptr, nullptr, GgmlType::I16, nullptr},
  {GgmlType::I32, "I32", 1, 4, false, nullptr, nullptr, GgmlType::I32, nullptr},
  {GgmlType::I64, "I64", 1, 8, false, nullptr, nullptr, GgmlType::I64, nullptr},
  {GgmlType::F64, "F64", 1, 8, false, nullptr, nullptr, GgmlType::F64, nullptr},
  {GgmlType::IQ1_M, "IQ1_M", 256, 56, true, dequantize_row_iq1_m, quantize_row_iq1_m, GgmlType::Q8_K, vec_dot_iq1_m_q8_K},
  {GgmlType::BF16, "BF16", 1, 2, false, dequantize_row_bf16, quantize_row_bf16, GgmlType::BF16, vec_dot_bf16_bf16},
  {GgmlType::TQ1_0, "TQ1_0", 256, 54, true, nullptr, nullptr, GgmlType::Q8_K, nullptr},
  {GgmlType::TQ2_0, "TQ2_0", 256, 66, true, nullptr, nullptr, GgmlType::Q8_K, nullptr},
  {GgmlType::MXFP4, "MXFP4", 32, 17, true, dequantize_row_mxfp4, quantize_row_mxfp4, GgmlType::Q8_0, vec_dot_mxfp4_q8_0},
};
// clang-format on

}  // namespace

const TypeTraits* find_type(int32_t id) {
  for (const TypeTraits& t : kTypes) {
    if (int32_t(t.type) == id) return &t;
  }
  return nullptr;
}

const TypeTraits& type_traits(GgmlType type) {
  const TypeTraits* t = find_type(int32_t(type));
  if (!t) fail("internal: unregistered ggml type id ", int32_t(type));
  return *t;
}

std::optional<GgmlType> type_from_name(std::string_view name) {
  for (const TypeTraits& t : kTypes) {
    std::string_view candidate = t.name;
    if (candidate.size() == name.size() &&
        std::equal(candidate.begin(), candidate.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        })) {
      return t.type;
    }
  }
  return std::nullopt;
}

TypeTable all_types() { return {std::begin(kTypes), std::end(kTypes)}; }

}  // namespace moeserve
