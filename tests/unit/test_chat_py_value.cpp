// Python value semantics the tool-call parsers reproduce. Expected strings are what CPython 3.11
// prints for the same input (repr, json.dumps(ensure_ascii=False), int(), float(), json.loads,
// ast.literal_eval); the Python round-trip test (tests/scripts/qwen3_coder_roundtrip.py) checks
// the same functions against a live interpreter on generated data.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "chat/py_parse.h"
#include "chat/py_value.h"

namespace moeserve::chat {
namespace {

TEST(PyValue, FloatReprMatchesPython) {
  const std::pair<double, const char*> cases[] = {
      {0.1, "0.1"},
      {1e16, "1e+16"},
      {1e-05, "1e-05"},
      {0.0001, "0.0001"},
      {1234567890123456.0, "1234567890123456.0"},
      {12345678901234567.0, "1.2345678901234568e+16"},
      {1.5e-07, "1.5e-07"},
      {-2.5, "-2.5"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {100.0, "100.0"},
      {0.30000000000000004, "0.30000000000000004"},
      {-0.0, "-0.0"},
      {3.14159, "3.14159"},
      {1152921504606846976.0, "1.152921504606847e+18"},
  };
  for (const auto& [f, repr] : cases) EXPECT_EQ(py_float_repr(f), repr) << repr;
}

TEST(PyValue, DumpsLikeJsonDumpsEnsureAsciiFalse) {
  PyValue d = PyValue::dict();
  d.dict_set(PyValue::from_string("a"), PyValue::from_string("\xC3\xA9\n\t\"\\\x01\xE2\x80\xA8"));
  d.dict_set(PyValue::from_string("b"), PyValue::list({PyValue::from_int("1"), PyValue::from_float(2.5), PyValue::none(),
                                                       PyValue::from_bool(true)}));
  d.dict_set(PyValue::from_string("c"), PyValue::dict());
  EXPECT_EQ(py_json_dumps(d), "{\"a\": \"\xC3\xA9\\n\\t\\\"\\\\\\u0001\xE2\x80\xA8\", \"b\": [1, 2.5, null, true], \"c\": {}}");
}

TEST(PyValue, IntAndFloatParsing) {
  EXPECT_EQ(py_parse_int(" -0_1 "), "-1");
  EXPECT_EQ(py_parse_int("007"), "7");
  EXPECT_EQ(py_parse_int("-0"), "0");
  EXPECT_EQ(py_parse_int("123456789012345678901234567890"), "123456789012345678901234567890");
  EXPECT_FALSE(py_parse_int("1_"));
  EXPECT_FALSE(py_parse_int("1__0"));
  EXPECT_FALSE(py_parse_int("1.0"));
  EXPECT_FALSE(py_parse_int("0x10"));
  EXPECT_FALSE(py_parse_int(""));
  EXPECT_FALSE(py_parse_int(std::string(4301, '1')));

  EXPECT_EQ(py_parse_float(" 1_0.5 "), 10.5);
  EXPECT_EQ(py_parse_float("1."), 1.0);
  EXPECT_EQ(py_parse_float(".5e1"), 5.0);
  EXPECT_EQ(py_parse_float("-InFiNiTy"), -HUGE_VAL);
  EXPECT_EQ(py_parse_float("1e400"), HUGE_VAL);
  EXPECT_TRUE(std::isnan(*py_parse_float("nan")));
  EXPECT_FALSE(py_parse_float("."));
  EXPECT_FALSE(py_parse_float("1e"));
  EXPECT_FALSE(py_parse_float("0x1p3"));
  EXPECT_FALSE(py_parse_float("1,5"));
}

TEST(PyValue, IntegralDoubleToDecimalIsExact) {
  EXPECT_EQ(py_integral_double_to_decimal(1180591620717411303424.0), "1180591620717411303424");  // int(2**70 * 1.0)
  EXPECT_EQ(py_integral_double_to_decimal(1e20), "100000000000000000000");
  EXPECT_EQ(py_integral_double_to_decimal(-5.0), "-5");
  EXPECT_EQ(py_integral_double_to_decimal(1e300).size(), 301u);
}

TEST(PyValue, JsonLoadsKeepsFirstPositionOfDuplicateKeys) {
  const auto v = py_json_loads("{\"a\": 1, \"b\": 2, \"a\": 3}");
  ASSERT_TRUE(v);
  EXPECT_EQ(py_json_dumps(*v), "{\"a\": 3, \"b\": 2}");
}

TEST(PyValue, JsonLoadsAcceptsWhatPythonAccepts) {
  EXPECT_EQ(py_json_dumps(*py_json_loads(" [NaN, -Infinity, 1E2, -0, 12345678901234567890123] ")),
            "[NaN, -Infinity, 100.0, 0, 12345678901234567890123]");
  EXPECT_EQ(py_json_dumps(*py_json_loads("\"\\ud83d\\ude00 \\u00e9\"")), "\"\xF0\x9F\x98\x80 \xC3\xA9\"");
  EXPECT_EQ(py_json_dumps(*py_json_loads("\"\\ud800\"")), "\"\\ud800\"");  // lone surrogate kept, escaped on output
  EXPECT_FALSE(py_json_loads("{'a': 1}"));
  EXPECT_FALSE(py_json_loads("[1,]"));
  EXPECT_FALSE(py_json_loads("\"a\nb\""));  // strict: raw control characters
  EXPECT_FALSE(py_json_loads("01"));
  EXPECT_FALSE(py_json_loads("1 2"));
  EXPECT_FALSE(py_json_loads(std::string(300, '[') + std::string(300, ']')));
}

TEST(PyValue, LiteralEvalAcceptsPythonLiterals) {
  const auto v = py_literal_eval("{'k': (1, 2), 'n': None, 'x': 0x1F, 'y': -1e3, 'z': 'a' 'b', 1: True}");
  ASSERT_TRUE(v);
  EXPECT_EQ(py_json_dumps(*v), "{\"k\": [1, 2], \"n\": null, \"x\": 31, \"y\": -1000.0, \"z\": \"ab\", \"1\": true}");
  EXPECT_EQ(py_json_dumps(*py_literal_eval("{True: 1, 1: 2}")), "{\"true\": 2}");
  EXPECT_EQ(py_json_dumps(*py_literal_eval("\n[1,\n 2,]  # comment\n")), "[1, 2]");
  EXPECT_EQ(py_json_dumps(*py_literal_eval("r'\\d'")), "\"\\\\d\"");
}

TEST(PyValue, LiteralEvalRejectsWhatPythonRejects) {
  for (const char* bad : {"--1", "007", "\"a\"\n\"b\"", "1 \\\n", "f'x'", "b'x'", "{1, 2}", "set()", "1j", "1+2",
                          "name", "[1", "'abc", "\"\\N{BULLET}\""}) {
    EXPECT_FALSE(py_literal_eval(bad)) << bad;
  }
  for (const char* good : {"\n1", "1\n", " 1", "\t1\n\n", "1 # c", "# c\n1", "(1)", "00", "1.", ".5", "u'x'",
                           "'''a\nb'''", "[1,]", "\\\n1", "-0x10", "+1.5", "0b101", "0o17", "1_000"}) {
    EXPECT_TRUE(py_literal_eval(good)) << good;
  }
  EXPECT_EQ(py_json_dumps(*py_literal_eval("'\\d\\x41\\u00e9\\101'")), "\"\\\\dA\xC3\xA9" "A\"");
}

}  // namespace
}  // namespace moeserve::chat
