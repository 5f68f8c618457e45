#include "gguf/gguf_value.h"

#include <limits>

#include "core/error.h"

namespace moeserve::gguf {

const char* value_type_name(ValueType type) {
  switch (type) {
    case ValueType::UINT8: return "u8";
    case ValueType::INT8: return "i8";
    case ValueType::UINT16: return "u16";
    case ValueType::INT16: return "i16";
    case ValueType::UINT32: return "u32";
    case ValueType::INT32: return "i32";
    case ValueType::FLOAT32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::UINT64: return "u64";
    case ValueType::INT64: return "i64";
    case ValueType::FLOAT64: return "f64";
  }
  return "unknown";
}

namespace {

bool is_unsigned_type(ValueType t) {
  return t == ValueType::UINT8 || t == ValueType::UINT16 || t == ValueType::UINT32 || t == ValueType::UINT64;
}
bool is_signed_type(ValueType t) {
  return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 || t == ValueType::INT64;
}

// "array[string]" rather than just "array", so a message says what was found.
std::string describe(const Value& v) {
  if (v.type != ValueType::ARRAY) return value_type_name(v.type);
  return str_cat("array[", value_type_name(v.as_array().elem_type), "]");
}

}  // namespace

Value Value::array(ValueType elem_type, std::vector<Value> items) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].type != elem_type) {
      fail("array of ", value_type_name(elem_type), ": item ", i, " is ", value_type_name(items[i].type));
    }
  }
  auto a = std::make_shared<Array>();
  a->elem_type = elem_type;
  a->items = std::move(items);
  return {ValueType::ARRAY, std::move(a)};
}

Value Value::string_array(const std::vector<std::string>& items) {
  std::vector<Value> values;
  values.reserve(items.size());
  for (const std::string& s : items) values.push_back(Value::string(s));
  return array(ValueType::STRING, std::move(values));
}

bool Value::is_integer() const { return is_unsigned_type(type) || is_signed_type(type); }

bool Value::is_number() const { return is_integer() || type == ValueType::FLOAT32 || type == ValueType::FLOAT64; }

uint64_t Value::as_uint() const {
  if (is_unsigned_type(type)) return std::get<uint64_t>(data);
  if (is_signed_type(type)) {
    const int64_t v = std::get<int64_t>(data);
    if (v < 0) fail("value ", v, " is negative, expected an unsigned integer");
    return uint64_t(v);
  }
  fail("expected an integer, found ", describe(*this));
}

int64_t Value::as_int() const {
  if (is_signed_type(type)) return std::get<int64_t>(data);
  if (is_unsigned_type(type)) {
    const uint64_t v = std::get<uint64_t>(data);
    if (v > uint64_t(std::numeric_limits<int64_t>::max())) fail("value ", v, " does not fit a signed 64-bit integer");
    return int64_t(v);
  }
  fail("expected an integer, found ", describe(*this));
}

double Value::as_float() const {
  if (type == ValueType::FLOAT32 || type == ValueType::FLOAT64) return std::get<double>(data);
  if (is_unsigned_type(type)) return double(std::get<uint64_t>(data));
  if (is_signed_type(type)) return double(std::get<int64_t>(data));
  fail("expected a number, found ", describe(*this));
}

bool Value::as_bool() const {
  if (type != ValueType::BOOL) fail("expected a bool, found ", describe(*this));
  return std::get<uint64_t>(data) != 0;
}

const std::string& Value::as_string() const {
  if (type != ValueType::STRING) fail("expected a string, found ", describe(*this));
  return std::get<std::string>(data);
}

const Array& Value::as_array() const {
  if (type != ValueType::ARRAY) fail("expected an array, found ", value_type_name(type));
  return *std::get<std::shared_ptr<Array>>(data);
}

}  // namespace moeserve::gguf
