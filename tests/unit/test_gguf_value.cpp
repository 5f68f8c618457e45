#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "core/error.h"
#include "gguf/gguf_text.h"
#include "gguf/gguf_value.h"

namespace moeserve::gguf {
namespace {

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(GgufValue, IntegersAreReadAtAnyWidthWithRangeChecks) {
  EXPECT_EQ(Value::u8(200).as_uint(), 200u);
  EXPECT_EQ(Value::u8(200).as_int(), 200);
  EXPECT_EQ(Value::i8(-5).as_int(), -5);
  EXPECT_EQ(Value::i32(7).as_uint(), 7u);
  EXPECT_EQ(Value::u64(std::numeric_limits<uint64_t>::max()).as_uint(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(Value::i64(std::numeric_limits<int64_t>::min()).as_int(), std::numeric_limits<int64_t>::min());
  EXPECT_NE(error_of([] { Value::i16(-3).as_uint(); }).find("-3 is negative"), std::string::npos);
  EXPECT_NE(error_of([] { Value::u64(uint64_t(1) << 63).as_int(); }).find("does not fit"), std::string::npos);
  EXPECT_DOUBLE_EQ(Value::u16(9).as_float(), 9.0);
  EXPECT_DOUBLE_EQ(Value::i64(-9).as_float(), -9.0);
  EXPECT_FLOAT_EQ(float(Value::f32(1e-6f).as_float()), 1e-6f);
}

TEST(GgufValue, KindPredicates) {
  EXPECT_TRUE(Value::u32(1).is_integer());
  EXPECT_TRUE(Value::i8(1).is_integer());
  EXPECT_FALSE(Value::boolean(true).is_integer());
  EXPECT_FALSE(Value::f64(1).is_integer());
  EXPECT_TRUE(Value::f64(1).is_number());
  EXPECT_FALSE(Value::string("1").is_number());
}

TEST(GgufValue, WrongKindNamesWhatWasFound) {
  EXPECT_EQ(error_of([] { Value::u32(1).as_string(); }), "expected a string, found u32");
  EXPECT_EQ(error_of([] { Value::string("x").as_uint(); }), "expected an integer, found string");
  EXPECT_EQ(error_of([] { Value::u8(1).as_bool(); }), "expected a bool, found u8");
  EXPECT_EQ(error_of([] { Value::boolean(true).as_float(); }), "expected a number, found bool");
  EXPECT_EQ(error_of([] { Value::string_array({"a"}).as_int(); }), "expected an integer, found array[string]");
  EXPECT_EQ(error_of([] { Value::f32(1).as_array(); }), "expected an array, found f32");
  EXPECT_TRUE(Value::boolean(true).as_bool());
  EXPECT_FALSE(Value::boolean(false).as_bool());
}

TEST(GgufValue, ArraysCheckTheirItems) {
  const Value a = Value::array(ValueType::UINT16, {Value::u16(1), Value::u16(2)});
  EXPECT_EQ(a.as_array().elem_type, ValueType::UINT16);
  EXPECT_EQ(a.as_array().items.size(), 2u);
  EXPECT_EQ(error_of([] { Value::array(ValueType::UINT16, {Value::u16(1), Value::u32(2)}); }),
            "array of u16: item 1 is u32");
  const Value nested = Value::array(ValueType::ARRAY, {a, Value::string_array({"x", "y"})});
  EXPECT_EQ(nested.as_array().items[1].as_array().items[1].as_string(), "y");
}

TEST(GgufText, PrintableEscapesAndCutsAtUtf8Boundaries) {
  EXPECT_EQ(printable("a\nb\t\"c\"\\\x01\x7f"), "a\\nb\\t\\\"c\\\"\\\\\\x01\\x7f");
  EXPECT_EQ(printable("abcdef", 3), "abc...");
  // "é" is two bytes (C3 A9): a cut after its first byte steps back before it.
  EXPECT_EQ(printable("ab\xC3\xA9z", 3), "ab...");
  EXPECT_EQ(printable("ab\xC3\xA9z", 4), "ab\xC3\xA9...");
}

}  // namespace
}  // namespace moeserve::gguf
