// ast.literal_eval for the literals that can become JSON: str (all quote and prefix forms but
// bytes and f-strings), int (decimal, 0x, 0o, 0b, underscores), float, True / False / None, list,
// tuple and dict, with one unary sign on numbers. Sets, bytes and complex numbers are valid
// Python literals but not JSON; they fail here like any syntax error.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "chat/py_parse.h"
#include "core/utf8.h"

namespace moeserve::chat {
namespace {

bool is_ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}

int digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 99;
}

// Digits of `base` (underscores removed) to canonical decimal.
std::string to_decimal(const std::string& digits, int base) {
  std::vector<uint32_t> limbs{0};  // little-endian base 1e9
  for (char c : digits) {
    uint64_t carry = uint64_t(digit_value(c));
    for (uint32_t& limb : limbs) {
      const uint64_t x = uint64_t(limb) * uint64_t(base) + carry;
      limb = uint32_t(x % 1000000000u);
      carry = x / 1000000000u;
    }
    while (carry) {
      limbs.push_back(uint32_t(carry % 1000000000u));
      carry /= 1000000000u;
    }
  }
  std::string out = std::to_string(limbs.back());
  for (size_t i = limbs.size() - 1; i-- > 0;) {
    const std::string part = std::to_string(limbs[i]);
    out.append(9 - part.size(), '0');
    out += part;
  }
  return out;
}

class LiteralReader {
 public:
  explicit LiteralReader(std::string_view s) : s_(s) {}

  std::optional<PyValue> document() {
    // literal_eval strips leading spaces and tabs; blank and comment lines around the expression
    // are fine in eval mode, a line break between tokens at the top level is not.
    skip(true);
    std::optional<PyValue> v = expr(0);
    if (!v) return std::nullopt;
    skip(true);
    if (i_ != s_.size() || broken_) return std::nullopt;
    return v;
  }

 private:
  char peek(size_t k = 0) const { return i_ + k < s_.size() ? s_[i_ + k] : '\0'; }

  void skip(bool newlines) {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\f') {
        ++i_;
      } else if ((c == '\n' || c == '\r') && (newlines || nesting_ > 0)) {
        ++i_;
      } else if (c == '\\' && (peek(1) == '\n' || (peek(1) == '\r' && peek(2) == '\n'))) {
        i_ += peek(1) == '\n' ? 2 : 3;
        // A continuation must lead somewhere: Python rejects one followed only by blank space.
        size_t j = i_;
        while (j < s_.size() && (s_[j] == ' ' || s_[j] == '\t' || s_[j] == '\f' || s_[j] == '\n' || s_[j] == '\r')) ++j;
        if (j == s_.size()) broken_ = true;
      } else if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n' && s_[i_] != '\r') ++i_;
      } else {
        break;
      }
    }
  }

  bool eat(char c) {
    skip(false);
    if (peek() != c) return false;
    ++i_;
    return true;
  }

  std::optional<PyValue> expr(int depth) {
    if (depth > kPyMaxDepth) return std::nullopt;
    skip(false);
    const char c = peek();
    if (c == '+' || c == '-') {
      ++i_;
      skip(false);
      std::optional<PyValue> v = number();
      if (!v) return std::nullopt;
      if (c == '-') {
        if (v->kind == PyValue::Kind::floating) v->floating = -v->floating;
        else if (v->text != "0") v->text.insert(v->text.begin(), '-');
      }
      return v;
    }
    if (c == '[') return sequence(depth, ']');
    if (c == '(') return sequence(depth, ')');
    if (c == '{') return braces(depth);
    if ((c >= '0' && c <= '9') || (c == '.' && peek(1) >= '0' && peek(1) <= '9')) return number();
    if (c == '\'' || c == '"') return strings();
    if (is_ident_char(c)) return name_or_prefixed_string();
    return std::nullopt;
  }

  std::optional<PyValue> name_or_prefixed_string() {
    size_t j = i_;
    while (j < s_.size() && is_ident_char(s_[j])) ++j;
    const std::string_view name = s_.substr(i_, j - i_);
    if (j < s_.size() && (s_[j] == '\'' || s_[j] == '"') && name.size() <= 2) return strings();
    i_ = j;
    if (name == "True") return PyValue::from_bool(true);
    if (name == "False") return PyValue::from_bool(false);
    if (name == "None") return PyValue::none();
    return std::nullopt;  // other names, set(), calls: not JSON literals
  }

  // One or more adjacent string literals (implicit concatenation).
  std::optional<PyValue> strings() {
    std::string out;
    bool any = false;
    while (true) {
      skip(false);
      size_t j = i_;
      while (j < s_.size() && is_ident_char(s_[j]) && j - i_ < 3) ++j;
      if (j >= s_.size() || (s_[j] != '\'' && s_[j] != '"')) break;
      std::string prefix;
      for (size_t k = i_; k < j; ++k) prefix += char(s_[k] | 0x20);
      bool raw = false;
      if (prefix == "r") raw = true;
      else if (!prefix.empty() && prefix != "u") return std::nullopt;  // bytes, f-strings, garbage
      i_ = j;
      if (!string_body(raw, out)) return std::nullopt;
      any = true;
    }
    if (!any) return std::nullopt;
    return PyValue::from_string(std::move(out));
  }

  bool string_body(bool raw, std::string& out) {
    const char q = s_[i_];
    const bool triple = peek(1) == q && peek(2) == q;
    i_ += triple ? 3 : 1;
    while (true) {
      if (i_ >= s_.size()) return false;
      const char c = s_[i_];
      if (c == q && (!triple || (peek(1) == q && peek(2) == q))) {
        i_ += triple ? 3 : 1;
        return true;
      }
      if ((c == '\n' || c == '\r') && !triple) return false;
      if (c != '\\') {
        out += c;
        ++i_;
        continue;
      }
      if (i_ + 1 >= s_.size()) return false;
      const char e = s_[i_ + 1];
      if (raw) {  // the backslash stays, and it only keeps the next character from ending the string
        out += c;
        out += e;
        i_ += 2;
        continue;
      }
      i_ += 2;
      switch (e) {
        case '\n': break;
        case '\r': if (peek() == '\n') ++i_; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': case 'u': case 'U': {
          const int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          unsigned cp = 0;
          for (int k = 0; k < len; ++k) {
            const int d = digit_value(peek());
            if (d > 15) return false;
            cp = cp * 16 + unsigned(d);
            ++i_;
          }
          if (cp > 0x10FFFF) return false;
          append_utf8(out, cp);
          break;
        }
        case 'N': return false;  // named escapes need the Unicode name table
        default:
          if (e >= '0' && e <= '7') {
            unsigned cp = unsigned(e - '0');
            for (int k = 0; k < 2 && peek() >= '0' && peek() <= '7'; ++k) cp = cp * 8 + unsigned(s_[i_++] - '0');
            append_utf8(out, cp);
          } else {  // unknown escapes are kept verbatim
            out += '\\';
            out += e;
          }
      }
    }
  }

  // Digits with single underscores between them; false on a misplaced underscore.
  bool digits(std::string& out, int base) {
    if (digit_value(peek()) >= base) return false;
    while (true) {
      if (digit_value(peek()) < base) {
        out += s_[i_++];
      } else if (peek() == '_' && digit_value(peek(1)) < base) {
        ++i_;
      } else {
        return true;
      }
    }
  }

  std::optional<PyValue> number() {
    std::string text;
    const char radix = char(peek(1) | 0x20);
    const int base = radix == 'x' ? 16 : radix == 'o' ? 8 : radix == 'b' ? 2 : 10;
    if (peek() == '0' && base != 10) {
      i_ += 2;
      if (peek() == '_') ++i_;
      if (!digits(text, base) || is_ident_char(peek())) return std::nullopt;
      return PyValue::from_int(to_decimal(text, base));
    }
    bool is_float = false;
    if (peek() != '.' && !digits(text, 10)) return std::nullopt;
    if (peek() == '.') {
      is_float = true;
      text += s_[i_++];
      if (peek() >= '0' && peek() <= '9' && !digits(text, 10)) return std::nullopt;
    }
    if ((peek() | 0x20) == 'e' &&
        ((peek(1) >= '0' && peek(1) <= '9') || ((peek(1) == '+' || peek(1) == '-') && peek(2) >= '0' && peek(2) <= '9'))) {
      is_float = true;
      text += 'e';
      ++i_;
      if (peek() == '+' || peek() == '-') text += s_[i_++];
      if (!digits(text, 10)) return std::nullopt;
    }
    if (is_ident_char(peek())) return std::nullopt;  // 1j (complex), 1abc, ...
    if (is_float) return PyValue::from_float(std::strtod(text.c_str(), nullptr));
    // Decimal integers may not have leading zeros, except for zero itself ("00" is fine).
    if (text.size() > 1 && text[0] == '0' && text.find_first_not_of('0') != std::string::npos) return std::nullopt;
    std::optional<std::string> decimal = py_parse_int(text);
    if (!decimal) return std::nullopt;
    return PyValue::from_int(std::move(*decimal));
  }

  // [a, b, ...] or (a, b, ...); a parenthesised single value without a comma is that value.
  std::optional<PyValue> sequence(int depth, char close) {
    ++i_;
    ++nesting_;
    PyValue list = PyValue::list();
    bool saw_comma = false;
    while (true) {
      if (eat(close)) break;
      std::optional<PyValue> v = expr(depth + 1);
      if (!v) return std::nullopt;
      list.items.push_back(std::move(*v));
      if (eat(close)) break;
      if (!eat(',')) return std::nullopt;
      saw_comma = true;
    }
    --nesting_;
    if (close == ')' && list.items.size() == 1 && !saw_comma) return std::move(list.items[0]);
    return list;
  }

  std::optional<PyValue> braces(int depth) {
    ++i_;
    ++nesting_;
    PyValue d = PyValue::dict();
    while (true) {
      if (eat('}')) break;
      std::optional<PyValue> k = expr(depth + 1);
      if (!k) return std::nullopt;
      if (!eat(':')) return std::nullopt;  // a set, or garbage
      if (k->kind == PyValue::Kind::list || k->kind == PyValue::Kind::dict) return std::nullopt;  // unhashable
      std::optional<PyValue> v = expr(depth + 1);
      if (!v) return std::nullopt;
      d.dict_set(std::move(*k), std::move(*v));
      if (eat('}')) break;
      if (!eat(',')) return std::nullopt;
    }
    --nesting_;
    return d;
  }

  std::string_view s_;
  size_t i_ = 0;
  int nesting_ = 0;
  bool broken_ = false;
};

}  // namespace

std::optional<PyValue> py_literal_eval(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  return LiteralReader(text).document();
}

}  // namespace moeserve::chat
