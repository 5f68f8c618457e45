// json.loads with the default decoder: JSON plus NaN / Infinity / -Infinity, integers of any
// length (up to CPython's 4300-digit limit), strict strings (no raw control characters) and
// \u escapes where an unpaired surrogate is kept as is.
#include <cmath>
#include <cstdlib>
#include <string>

#include "chat/py_parse.h"
#include "core/utf8.h"

namespace moeserve::chat {
namespace {

class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  std::optional<PyValue> document() {
    skip_ws();
    std::optional<PyValue> v = value(0);
    if (!v) return std::nullopt;
    skip_ws();
    if (i_ != s_.size()) return std::nullopt;  // "Extra data"
    return v;
  }

 private:
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  std::optional<PyValue> value(int depth) {
    if (depth > kPyMaxDepth || i_ >= s_.size()) return std::nullopt;
    const char c = s_[i_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') {
      std::string text;
      if (!string(text)) return std::nullopt;
      return PyValue::from_string(std::move(text));
    }
    if (literal("null")) return PyValue::none();
    if (literal("true")) return PyValue::from_bool(true);
    if (literal("false")) return PyValue::from_bool(false);
    if (literal("NaN")) return PyValue::from_float(std::nan(""));
    if (literal("Infinity")) return PyValue::from_float(HUGE_VAL);
    if (literal("-Infinity")) return PyValue::from_float(-HUGE_VAL);
    return number();
  }

  std::optional<PyValue> object(int depth) {
    ++i_;
    PyValue d = PyValue::dict();
    skip_ws();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return d;
    }
    while (true) {
      skip_ws();
      if (i_ >= s_.size() || s_[i_] != '"') return std::nullopt;
      std::string key;
      if (!string(key)) return std::nullopt;
      skip_ws();
      if (i_ >= s_.size() || s_[i_] != ':') return std::nullopt;
      ++i_;
      skip_ws();
      std::optional<PyValue> v = value(depth + 1);
      if (!v) return std::nullopt;
      d.dict_set(PyValue::from_string(std::move(key)), std::move(*v));
      skip_ws();
      if (i_ >= s_.size()) return std::nullopt;
      if (s_[i_] == '}') {
        ++i_;
        return d;
      }
      if (s_[i_] != ',') return std::nullopt;
      ++i_;
    }
  }

  std::optional<PyValue> array(int depth) {
    ++i_;
    PyValue list = PyValue::list();
    skip_ws();
    if (i_ < s_.size() && s_[i_] == ']') {
      ++i_;
      return list;
    }
    while (true) {
      skip_ws();
      std::optional<PyValue> v = value(depth + 1);
      if (!v) return std::nullopt;
      list.items.push_back(std::move(*v));
      skip_ws();
      if (i_ >= s_.size()) return std::nullopt;
      if (s_[i_] == ']') {
        ++i_;
        return list;
      }
      if (s_[i_] != ',') return std::nullopt;
      ++i_;
    }
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  bool hex4(unsigned& out) {
    if (i_ + 4 > s_.size()) return false;
    out = 0;
    for (int k = 0; k < 4; ++k) {
      const int h = hex_value(s_[i_ + size_t(k)]);
      if (h < 0) return false;
      out = out * 16 + unsigned(h);
    }
    i_ += 4;
    return true;
  }

  bool string(std::string& out) {
    ++i_;  // opening quote
    while (true) {
      if (i_ >= s_.size()) return false;
      const char c = s_[i_];
      if (c == '"') {
        ++i_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;  // strict=True
      if (c != '\\') {
        out += c;
        ++i_;
        continue;
      }
      if (++i_ >= s_.size()) return false;
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00 && s_.substr(i_, 2) == "\\u") {
            const size_t save = i_;
            i_ += 2;
            unsigned low = 0;
            if (hex4(low) && low >= 0xDC00 && low < 0xE000) {
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else {
              i_ = save;  // not a pair: the high surrogate stands alone
            }
          }
          append_utf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
  }

  std::optional<PyValue> number() {
    const size_t start = i_;
    bool is_float = false;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ >= s_.size()) return std::nullopt;
    if (s_[i_] == '0') {
      ++i_;
    } else if (s_[i_] >= '1' && s_[i_] <= '9') {
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    } else {
      return std::nullopt;
    }
    // Python's scanner takes a fraction / exponent only when complete; otherwise the number ends
    // before it (and the leftover makes the document invalid).
    if (i_ + 1 < s_.size() && s_[i_] == '.' && s_[i_ + 1] >= '0' && s_[i_ + 1] <= '9') {
      is_float = true;
      i_ += 2;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      size_t j = i_ + 1;
      if (j < s_.size() && (s_[j] == '+' || s_[j] == '-')) ++j;
      if (j < s_.size() && s_[j] >= '0' && s_[j] <= '9') {
        is_float = true;
        while (j < s_.size() && s_[j] >= '0' && s_[j] <= '9') ++j;
        i_ = j;
      }
    }
    const std::string_view text = s_.substr(start, i_ - start);
    if (is_float) return PyValue::from_float(std::strtod(std::string(text).c_str(), nullptr));
    std::optional<std::string> decimal = py_parse_int(text);
    if (!decimal) return std::nullopt;
    return PyValue::from_int(std::move(*decimal));
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

std::optional<PyValue> py_json_loads(std::string_view text) { return JsonReader(text).document(); }

}  // namespace moeserve::chat
