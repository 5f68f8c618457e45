// GGUF metadata values (shared/spec/gguf.md §1.2-1.3): scalars, strings and arrays (arrays of
// arrays are readable too, though ggml itself rejects them).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace moeserve::gguf {

enum class ValueType : int32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

const char* value_type_name(ValueType type);  // "u32", "string", "array", ...

struct Value;

struct Array {
  ValueType elem_type = ValueType::UINT8;
  std::vector<Value> items;
};

// One value with its GGUF type kept, so a file can be rewritten unchanged.
struct Value {
  ValueType type = ValueType::UINT8;
  // Unsigned integer types and BOOL -> uint64_t; signed -> int64_t; floats -> double;
  // STRING -> std::string; ARRAY -> shared_ptr<Array> (never null for ARRAY).
  std::variant<uint64_t, int64_t, double, std::string, std::shared_ptr<Array>> data;

  static Value u8(uint8_t v) { return {ValueType::UINT8, uint64_t(v)}; }
  static Value u16(uint16_t v) { return {ValueType::UINT16, uint64_t(v)}; }
  static Value u32(uint32_t v) { return {ValueType::UINT32, uint64_t(v)}; }
  static Value u64(uint64_t v) { return {ValueType::UINT64, v}; }
  static Value i8(int8_t v) { return {ValueType::INT8, int64_t(v)}; }
  static Value i16(int16_t v) { return {ValueType::INT16, int64_t(v)}; }
  static Value i32(int32_t v) { return {ValueType::INT32, int64_t(v)}; }
  static Value i64(int64_t v) { return {ValueType::INT64, v}; }
  static Value f32(float v) { return {ValueType::FLOAT32, double(v)}; }
  static Value f64(double v) { return {ValueType::FLOAT64, v}; }
  static Value boolean(bool v) { return {ValueType::BOOL, uint64_t(v ? 1 : 0)}; }
  static Value string(std::string v) { return {ValueType::STRING, std::move(v)}; }
  static Value array(ValueType elem_type, std::vector<Value> items);
  static Value string_array(const std::vector<std::string>& items);

  bool is_integer() const;  // any signed or unsigned integer type (not BOOL)
  bool is_number() const;   // integer or float
  // Accessors throw moeserve::Error naming the actual type when the value is not of the kind
  // asked for (integers are accepted at any width, as llama.cpp does; range is checked).
  uint64_t as_uint() const;
  int64_t as_int() const;
  double as_float() const;  // any number
  bool as_bool() const;
  const std::string& as_string() const;
  const Array& as_array() const;
};

}  // namespace moeserve::gguf
