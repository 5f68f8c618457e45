#include "chat/py_value.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace moeserve::chat {

PyValue PyValue::from_bool(bool b) {
  PyValue v;
  v.kind = Kind::boolean;
  v.boolean = b;
  return v;
}

PyValue PyValue::from_int(std::string decimal) {
  PyValue v;
  v.kind = Kind::integer;
  v.text = std::move(decimal);
  return v;
}

PyValue PyValue::from_float(double f) {
  PyValue v;
  v.kind = Kind::floating;
  v.floating = f;
  return v;
}

PyValue PyValue::from_string(std::string s) {
  PyValue v;
  v.kind = Kind::string;
  v.text = std::move(s);
  return v;
}

PyValue PyValue::list(std::vector<PyValue> items) {
  PyValue v;
  v.kind = Kind::list;
  v.items = std::move(items);
  return v;
}

PyValue PyValue::dict() {
  PyValue v;
  v.kind = Kind::dict;
  return v;
}

void PyValue::dict_set(PyValue key, PyValue value) {
  for (auto& [k, existing] : entries) {
    if (py_key_equal(k, key)) {
      existing = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

namespace {

bool is_number(const PyValue& v) {
  return v.kind == PyValue::Kind::boolean || v.kind == PyValue::Kind::integer || v.kind == PyValue::Kind::floating;
}

// Numeric value of a bool or float (integers compare by their exact decimal text instead).
double as_double(const PyValue& v) { return v.kind == PyValue::Kind::boolean ? (v.boolean ? 1.0 : 0.0) : v.floating; }

}  // namespace

bool py_key_equal(const PyValue& a, const PyValue& b) {
  if (a.kind == PyValue::Kind::none || b.kind == PyValue::Kind::none) return a.kind == b.kind;
  if (a.kind == PyValue::Kind::string || b.kind == PyValue::Kind::string) {
    return a.kind == b.kind && a.text == b.text;
  }
  if (is_number(a) && is_number(b)) {
    if (a.kind == PyValue::Kind::integer && b.kind == PyValue::Kind::integer) return a.text == b.text;
    if (a.kind == PyValue::Kind::integer || b.kind == PyValue::Kind::integer) {
      const PyValue& i = a.kind == PyValue::Kind::integer ? a : b;
      const PyValue& o = a.kind == PyValue::Kind::integer ? b : a;
      if (o.kind == PyValue::Kind::floating) {
        if (!std::isfinite(o.floating) || o.floating != std::floor(o.floating)) return false;
        return i.text == py_integral_double_to_decimal(o.floating);
      }
      return i.text == (o.boolean ? "1" : "0");
    }
    return as_double(a) == as_double(b);
  }
  return false;
}

bool py_json_serializable(const PyValue& v) {
  switch (v.kind) {
    case PyValue::Kind::floating:
      return std::isfinite(v.floating);
    case PyValue::Kind::list:
      for (const PyValue& item : v.items)
        if (!py_json_serializable(item)) return false;
      return true;
    case PyValue::Kind::dict:
      for (const auto& [k, val] : v.entries) {
        if (k.kind == PyValue::Kind::list || k.kind == PyValue::Kind::dict) return false;
        if (!py_json_serializable(k) || !py_json_serializable(val)) return false;
      }
      return true;
    default:
      return true;
  }
}

void py_json_dump_string(std::string_view s, std::string& out) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (c < 0x20) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else if (c == 0xED && i + 2 < s.size() && (static_cast<unsigned char>(s[i + 1]) & 0xE0) == 0xA0) {
      // A lone surrogate: Python would write it raw, which is not valid UTF-8; escape it instead.
      const unsigned cp = 0xD000u | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
                          (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
      out += "\\u";
      out += hex[(cp >> 12) & 15];
      out += hex[(cp >> 8) & 15];
      out += hex[(cp >> 4) & 15];
      out += hex[cp & 15];
      i += 2;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

std::string py_float_repr(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
  // Shortest round-trip digits in scientific form: [-]d[.ddd]e[+-]xx.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string_view sci(buf, size_t(res.ptr - buf));
  std::string out;
  if (!sci.empty() && sci[0] == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e))
    if (c != '.') digits += c;
  const int exp10 = std::atoi(std::string(sci.substr(e + 1)).c_str());
  const int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0.";
      out.append(size_t(-decpt), '0');
      out += digits;
    } else if (size_t(decpt) >= digits.size()) {
      out += digits;
      out.append(size_t(decpt) - digits.size(), '0');
      out += ".0";
    } else {
      out += digits.substr(0, size_t(decpt));
      out += '.';
      out += digits.substr(size_t(decpt));
    }
    return out;
  }
  out += digits[0];
  if (digits.size() > 1) {
    out += '.';
    out += digits.substr(1);
  }
  out += 'e';
  out += exp10 < 0 ? '-' : '+';
  const int mag = exp10 < 0 ? -exp10 : exp10;
  if (mag < 10) out += '0';
  out += std::to_string(mag);
  return out;
}

namespace {

void dump(const PyValue& v, std::string& out) {
  switch (v.kind) {
    case PyValue::Kind::none: out += "null"; return;
    case PyValue::Kind::boolean: out += v.boolean ? "true" : "false"; return;
    case PyValue::Kind::integer: out += v.text; return;
    case PyValue::Kind::floating: out += py_float_repr(v.floating); return;
    case PyValue::Kind::string: py_json_dump_string(v.text, out); return;
    case PyValue::Kind::list:
      out += '[';
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ", ";
        dump(v.items[i], out);
      }
      out += ']';
      return;
    case PyValue::Kind::dict:
      out += '{';
      for (size_t i = 0; i < v.entries.size(); ++i) {
        if (i) out += ", ";
        const PyValue& k = v.entries[i].first;
        // json.dumps turns scalar keys into strings: True -> "true", 1.5 -> "1.5", None -> "null".
        if (k.kind == PyValue::Kind::string) {
          py_json_dump_string(k.text, out);
        } else {
          std::string key;
          dump(k, key);
          py_json_dump_string(key, out);
        }
        out += ": ";
        dump(v.entries[i].second, out);
      }
      out += '}';
      return;
  }
}

}  // namespace

std::string py_json_dumps(const PyValue& v) {
  std::string out;
  dump(v, out);
  return out;
}

bool py_is_space(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}

std::string_view py_strip(std::string_view text) {
  while (!text.empty() && py_is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && py_is_space(text.back())) text.remove_suffix(1);
  return text;
}

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Digits with single underscores strictly between digits (Python's numeric literal rule for
// int() and float() strings). Appends the digits without underscores; false on a bad form.
bool take_digits(std::string_view& s, std::string& out) {
  if (s.empty() || !is_digit(s[0])) return false;
  while (!s.empty()) {
    if (is_digit(s[0])) {
      out += s[0];
      s.remove_prefix(1);
    } else if (s[0] == '_' && s.size() > 1 && is_digit(s[1])) {
      s.remove_prefix(1);
    } else {
      break;
    }
  }
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    if (c != b[i]) return false;
  }
  return true;
}

}  // namespace

std::optional<std::string> py_parse_int(std::string_view text) {
  std::string_view s = py_strip(text);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  std::string digits;
  if (!take_digits(s, digits) || !s.empty()) return std::nullopt;
  if (digits.size() > 4300) return std::nullopt;  // CPython's int max_str_digits
  const size_t nz = digits.find_first_not_of('0');
  if (nz == std::string::npos) return std::string("0");
  return (negative ? "-" : "") + digits.substr(nz);
}

std::optional<double> py_parse_float(std::string_view text) {
  std::string_view s = py_strip(text);
  std::string clean;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    clean += s[0];
    s.remove_prefix(1);
  }
  const bool negative = !clean.empty() && clean[0] == '-';
  if (iequals(s, "inf") || iequals(s, "infinity")) return negative ? -HUGE_VAL : HUGE_VAL;
  if (iequals(s, "nan")) return std::nan("");
  bool have_digits = false;
  if (!s.empty() && is_digit(s[0])) {
    if (!take_digits(s, clean)) return std::nullopt;
    have_digits = true;
  }
  if (!s.empty() && s[0] == '.') {
    clean += '.';
    s.remove_prefix(1);
    if (!s.empty() && is_digit(s[0])) {
      if (!take_digits(s, clean)) return std::nullopt;
      have_digits = true;
    }
  }
  if (!have_digits) return std::nullopt;
  if (!s.empty() && (s[0] == 'e' || s[0] == 'E')) {
    clean += 'e';
    s.remove_prefix(1);
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
      clean += s[0];
      s.remove_prefix(1);
    }
    if (!take_digits(s, clean)) return std::nullopt;
  }
  if (!s.empty()) return std::nullopt;
  // strtod rounds correctly and gives +-inf on overflow, as Python's float() does.
  return std::strtod(clean.c_str(), nullptr);
}

std::string py_integral_double_to_decimal(double f) {
  if (f == 0) return "0";
  const bool negative = f < 0;
  int exp2 = 0;
  const double mant = std::frexp(std::fabs(f), &exp2);  // |f| = mant * 2^exp2, mant in [0.5, 1)
  uint64_t m = static_cast<uint64_t>(std::ldexp(mant, 53));
  int shift = exp2 - 53;
  while (shift < 0) {  // integral, so the low bits shifted out are zero
    m >>= 1;
    ++shift;
  }
  // Little-endian base-1e9 limbs: m, then doubled `shift` times.
  std::vector<uint32_t> limbs;
  while (m) {
    limbs.push_back(uint32_t(m % 1000000000u));
    m /= 1000000000u;
  }
  for (int i = 0; i < shift; ++i) {
    uint32_t carry = 0;
    for (uint32_t& limb : limbs) {
      const uint64_t x = uint64_t(limb) * 2 + carry;
      limb = uint32_t(x % 1000000000u);
      carry = uint32_t(x / 1000000000u);
    }
    if (carry) limbs.push_back(carry);
  }
  std::string out = negative ? "-" : "";
  out += std::to_string(limbs.back());
  for (size_t i = limbs.size() - 1; i-- > 0;) {
    const std::string part = std::to_string(limbs[i]);
    out.append(9 - part.size(), '0');
    out += part;
  }
  return out;
}

}  // namespace moeserve::chat
