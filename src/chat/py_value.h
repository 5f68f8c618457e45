// Values as Python's json / ast modules produce them, so that tool-call arguments come out exactly
// as the reference parser (vLLM, written in Python) prints them: arbitrary-precision integers,
// float repr, dicts that keep first-insertion order while later duplicates overwrite, and
// json.dumps(ensure_ascii=False) formatting with ", " and ": " separators.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moeserve::chat {

struct PyValue {
  enum class Kind { none, boolean, integer, floating, string, list, dict };

  Kind kind = Kind::none;
  bool boolean = false;
  double floating = 0.0;
  // integer: canonical decimal digits with optional leading '-' (no size limit);
  // string: UTF-8, where a lone surrogate (possible in Python strings) is kept as its 3-byte form.
  std::string text;
  std::vector<PyValue> items;                           // list (also Python tuples)
  std::vector<std::pair<PyValue, PyValue>> entries;     // dict, in insertion order

  static PyValue none() { return {}; }
  static PyValue from_bool(bool b);
  static PyValue from_int(std::string decimal);
  static PyValue from_float(double f);
  static PyValue from_string(std::string s);
  static PyValue list(std::vector<PyValue> items = {});
  static PyValue dict();

  // Python dict assignment d[key] = value: replaces the value of an equal key in place, else appends.
  void dict_set(PyValue key, PyValue value);

  bool is_string() const { return kind == Kind::string; }
};

// Python equality of hashable scalars (1 == 1.0 == True); containers compare unequal.
bool py_key_equal(const PyValue& a, const PyValue& b);

// True when the value (recursively) holds nothing json.dumps would refuse or print as non-JSON:
// non-finite floats, or dict keys that are containers.
bool py_json_serializable(const PyValue& v);

// json.dumps(v, ensure_ascii=False). Non-finite floats print as Python does (NaN, Infinity);
// callers that need strict JSON check py_json_serializable first.
std::string py_json_dumps(const PyValue& v);
void py_json_dump_string(std::string_view utf8, std::string& out);

// repr(float): the shortest text that reads back to the same double, in Python's layout.
std::string py_float_repr(double f);

// int(text) for a str: surrounding whitespace, sign, decimal digits with single underscores
// between them. nullopt where Python raises ValueError (including more than 4300 digits).
std::optional<std::string> py_parse_int(std::string_view text);

// float(text) for a str: whitespace, sign, decimal / exponent forms with underscores, inf,
// infinity and nan in any case. nullopt where Python raises ValueError.
std::optional<double> py_parse_float(std::string_view text);

// The exact decimal digits of an integral, finite double (what int(f) gives in Python).
std::string py_integral_double_to_decimal(double f);

// Python's str.isspace() for ASCII bytes (what str.strip() removes).
bool py_is_space(char c);
std::string_view py_strip(std::string_view text);

}  // namespace moeserve::chat
