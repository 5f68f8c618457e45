#include "chat/param_convert.h"

#include <cmath>
#include <string>

#include "chat/py_parse.h"

namespace moeserve::chat {
namespace {

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

struct ParamType {
  std::string type = "string";
  bool nullable = false;
};

std::string type_name(const nlohmann::json& t) {
  std::string s = t.is_string() ? t.get<std::string>() : t.dump();
  return ascii_lower(py_strip(s));
}

// The schema's type as vLLM reads it: `type` (lower-cased), or the first non-null member of
// `anyOf`, a null member making the parameter nullable. A `type` list (["integer", "null"]) is
// read like an anyOf here; vLLM would stringify the list and fall back to literal parsing.
ParamType param_type(const nlohmann::json& schema) {
  ParamType out;
  if (!schema.is_object()) return out;
  const auto members_of = [&](const nlohmann::json& list, auto type_of) {
    bool picked = false;
    for (const nlohmann::json& member : list) {
      const std::optional<std::string> t = type_of(member);
      if (!t) continue;
      if (*t == "null") out.nullable = true;
      else if (!picked) {
        out.type = *t;
        picked = true;
      }
    }
  };
  if (const auto t = schema.find("type"); t != schema.end()) {
    if (t->is_array()) {
      members_of(*t, [](const nlohmann::json& m) -> std::optional<std::string> { return type_name(m); });
    } else {
      out.type = type_name(*t);
      out.nullable = out.type == "null";
    }
  } else if (const auto any = schema.find("anyOf"); any != schema.end() && any->is_array()) {
    members_of(*any, [](const nlohmann::json& m) -> std::optional<std::string> {
      if (!m.is_object() || !m.contains("type")) return std::nullopt;
      return type_name(m["type"]);
    });
  }
  return out;
}

PyValue keep(std::string_view raw) { return PyValue::from_string(std::string(raw)); }

// A converted value must print as strict JSON; otherwise the raw text is the honest answer.
PyValue checked(PyValue v, std::string_view raw) { return py_json_serializable(v) ? std::move(v) : keep(raw); }

}  // namespace

PyValue convert_param_value(std::string_view raw, std::string_view param_name, const ToolSchema* tool) {
  const nlohmann::json* schema = tool ? tool->param_schema(param_name) : nullptr;
  if (!schema) return keep(raw);
  const ParamType pt = param_type(*schema);
  const std::string lower = ascii_lower(raw);
  const bool is_null_word = lower == "null" || lower == "none";
  if (pt.nullable && is_null_word) return PyValue::none();
  const std::string& t = pt.type;
  if (t == "string" || t == "str" || t == "text" || t == "varchar" || t == "char" || t == "enum") return keep(raw);
  if (is_null_word) return PyValue::none();

  if (starts_with(t, "int") || starts_with(t, "uint") || starts_with(t, "long") || starts_with(t, "short") ||
      starts_with(t, "unsigned")) {
    std::optional<std::string> i = py_parse_int(raw);
    return i ? PyValue::from_int(std::move(*i)) : keep(raw);
  }
  if (starts_with(t, "num") || starts_with(t, "float")) {
    const std::optional<double> f = py_parse_float(raw);
    // NaN: int(nan) raises ValueError in vLLM, which keeps the string. Infinity: int(inf) raises
    // OverflowError there, which vLLM does not catch; the string is the sane answer.
    if (!f || !std::isfinite(*f)) return keep(raw);
    if (*f == std::trunc(*f)) return PyValue::from_int(py_integral_double_to_decimal(*f));
    return PyValue::from_float(*f);
  }
  if (t == "boolean" || t == "bool" || t == "binary") return PyValue::from_bool(lower == "true");

  const bool container = t == "object" || t == "array" || t == "arr" || starts_with(t, "dict") || starts_with(t, "list");
  if (container) {
    if (std::optional<PyValue> v = py_json_loads(raw)) {
      // A value json-encoded from a Python repr ("{'k': 'v'}" in quotes) gets one more parse.
      if (v->is_string()) {
        if (std::optional<PyValue> inner = py_literal_eval(v->text)) return checked(std::move(*inner), raw);
      }
      return checked(std::move(*v), raw);
    }
  }
  std::optional<PyValue> v = py_literal_eval(raw);
  if (!v) return keep(raw);
  if (container && v->is_string()) {
    if (std::optional<PyValue> inner = py_literal_eval(v->text)) return checked(std::move(*inner), raw);
  }
  return checked(std::move(*v), raw);
}

}  // namespace moeserve::chat
