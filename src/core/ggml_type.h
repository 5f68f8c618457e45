// The ggml tensor types, one registry row each (shared/spec/gguf.md §3, block layouts in quants.md).
// Quant types are data: code asks the registry for block size, bytes and reference conversions
// instead of switching on the type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace moeserve {

enum class GgmlType : int32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

// Reference conversions of n elements (n a multiple of block_size), laid out as in a tensor row.
using DequantizeRowFn = void (*)(const void* blocks, float* out, int64_t n);
using QuantizeRowFn = void (*)(const float* in, void* blocks, int64_t n);
// Dot product of n elements: a weight row (blocks of its type) with an activation row already
// quantized to the weight type's vec_dot_type (n a multiple of both block sizes).
using VecDotFn = float (*)(int64_t n, const void* w_blocks, const void* a_blocks);

struct TypeTraits {
  GgmlType type;
  const char* name;         // as ggml prints it: "F32", "Q4_K", "IQ2_XS", ...
  int64_t block_size;       // elements per block
  size_t block_bytes;       // bytes per block
  bool quantized;           // block-quantized (not a plain float/int element type)
  DequantizeRowFn dequantize;  // null where we have no reference (integer types, TQ*)
  QuantizeRowFn quantize;      // null where reference quantization is not provided
  // Type the activation row is quantized to for dot products with this type as the weight
  // (quants.md §4); the type itself for the activation-only Q8_1/Q8_K and the integer types.
  GgmlType vec_dot_type;
  VecDotFn vec_dot;            // null where no dot product is defined (activation-only, integer)
};

// Row for a type id read from a file; nullptr for ids that are unknown or removed (4, 5, 31-33, ...).
const TypeTraits* find_type(int32_t id);
const TypeTraits& type_traits(GgmlType type);
// Case-insensitive lookup by name ("q8_0", "IQ2_XS").
std::optional<GgmlType> type_from_name(std::string_view name);
inline const char* type_name(GgmlType type) { return type_traits(type).name; }

// Bytes of a row of n elements; n must be a multiple of the block size (checked by callers that
// read untrusted shapes, e.g. the GGUF reader).
inline size_t row_bytes(GgmlType type, int64_t n) {
  const TypeTraits& t = type_traits(type);
  return size_t(n / t.block_size) * t.block_bytes;
}

// Every registered row, in id order, for listings and exhaustive tests.
struct TypeTable {
  const TypeTraits* begin;
  const TypeTraits* end;
};
TypeTable all_types();

}  // namespace moeserve
