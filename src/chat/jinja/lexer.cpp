#include "chat/jinja/lexer.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "chat/jinja/error.h"
#include "chat/jinja/unicode.h"

namespace moeserve::jinja {

namespace {

// jinja2 splits the source on \r\n, \r and \n, drops one trailing empty line and rejoins with \n.
std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

size_t prev_cp_start(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

// Length of `s` without trailing Python whitespace.
size_t rstrip_len(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    const size_t start = prev_cp_start(s, end);
    size_t i = start;
    if (!utf8::is_space(utf8::decode(s, i))) break;
    end = start;
  }
  return end;
}

bool all_space(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();)
    if (!utf8::is_space(utf8::decode(s, i))) return false;
  return true;
}

// Position after the Python whitespace starting at `pos`.
size_t skip_space(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    size_t i = pos;
    if (!utf8::is_space(utf8::decode(s, i))) break;
    pos = i;
  }
  return pos;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(normalize_newlines(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    const size_t n = src_.size();
    while (pos < n) {
      size_t start = find_tag(pos);
      if (start == std::string::npos) {
        emit_data(pos, std::string_view(src_).substr(pos));
        break;
      }
      const char kind = src_[start + 1];
      const char sign = (start + 2 < n && (src_[start + 2] == '-' || src_[start + 2] == '+')) ? src_[start + 2] : 0;
      size_t raw_end = 0;
      const bool raw = kind == '%' && match_raw_begin(start, raw_end);
      std::string_view text = std::string_view(src_).substr(pos, start - pos);
      text = strip_before_tag(text, sign, kind != '{', line_starting);
      emit_data(pos, text);
      if (raw) {
        pos = lex_raw(raw_end, line_starting);
        continue;
      }
      if (kind == '#') {
        pos = lex_comment(start, sign, line_starting);
        continue;
      }
      pos = lex_tag(start, kind, sign, line_starting);
    }
    Token eof;
    eof.type = TokenType::Eof;
    set_pos(eof, n);
    tokens_.push_back(std::move(eof));
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(size_t offset, const std::string& message) {
    Token t;
    pos_offset_ = SIZE_MAX;  // recompute from the line table
    set_pos(t, offset);
    throw TemplateError(message, t.line, t.column);
  }

  // Line and column of `offset`. Tokens come in source order, so positions advance from the last
  // one (keeping long single-line templates linear); earlier offsets are found from the line table.
  void set_pos(Token& t, size_t offset) {
    if (offset < pos_offset_) {
      auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
      const size_t line_index = size_t(it - line_starts_.begin()) - 1;
      t.line = int(line_index + 1);
      const size_t line_start = line_starts_[line_index];
      t.column = int(utf8::length(std::string_view(src_).substr(line_start, offset - line_start)) + 1);
      return;
    }
    for (; pos_offset_ < offset && pos_offset_ < src_.size(); ++pos_offset_) {
      const unsigned char c = static_cast<unsigned char>(src_[pos_offset_]);
      if (c == '\n') {
        ++pos_line_;
        pos_column_ = 1;
      } else if ((c & 0xC0) != 0x80) {
        ++pos_column_;
      }
    }
    t.line = pos_line_;
    t.column = pos_column_;
  }

  size_t find_tag(size_t pos) const {
    for (size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  // `{%` [-+]? \s* raw \s* (-%} \s* | %})
  bool match_raw_begin(size_t start, size_t& end) const {
    size_t p = start + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = skip_space(src_, p);
    if (src_.compare(p, 3, "raw") != 0) return false;
    p = skip_space(src_, p + 3);
    if (src_.compare(p, 3, "-%}") == 0) {
      end = skip_space(src_, p + 3);
      return true;
    }
    if (src_.compare(p, 2, "%}") == 0) {
      end = p + 2;
      return true;
    }
    return false;
  }

  std::string_view strip_before_tag(std::string_view text, char sign, bool lstrip_applies, bool line_starting) const {
    if (sign == '-') return text.substr(0, rstrip_len(text));
    if (sign != '+' && lstrip_applies) {
      const size_t nl = text.rfind('\n');
      const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting) && all_space(text.substr(l_pos))) return text.substr(0, l_pos);
    }
    return text;
  }

  void emit_data(size_t offset, std::string_view text) {
    if (text.empty()) return;
    Token t;
    t.type = TokenType::Data;
    t.value = std::string(text);
    set_pos(t, offset);
    tokens_.push_back(std::move(t));
  }

  size_t lex_raw(size_t body, bool& line_starting) {
    // (.*?) {% [-+]? \s* endraw \s* (+%} | -%} \s* | %} \n?)
    for (size_t i = src_.find("{%", body); i != std::string::npos; i = src_.find("{%", i + 1)) {
      size_t p = i + 2;
      const char sign = (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ? src_[p] : 0;
      if (sign) ++p;
      p = skip_space(src_, p);
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p = skip_space(src_, p + 6);
      size_t end;
      if (src_.compare(p, 3, "+%}") == 0) {
        end = p + 3;
      } else if (src_.compare(p, 3, "-%}") == 0) {
        end = skip_space(src_, p + 3);
      } else if (src_.compare(p, 2, "%}") == 0) {
        end = p + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;
      } else {
        continue;
      }
      // The raw state's match starts after `{% raw %}`, whose text ends with '\n' only via `-%}`.
      const bool raw_line_starting = body > 0 && src_[body - 1] == '\n';
      std::string_view text = std::string_view(src_).substr(body, i - body);
      emit_data(body, strip_before_tag(text, sign, true, raw_line_starting));
      line_starting = src_[end - 1] == '\n';
      return end;
    }
    fail(body, "Missing end of raw directive");
  }

  size_t lex_comment(size_t start, char sign, bool& line_starting) {
    const size_t body = start + 2 + (sign ? 1 : 0);
    const size_t close = src_.find("#}", body);
    if (close == std::string::npos) fail(start, "Missing end of comment tag");
    size_t end;
    if (close > body && src_[close - 1] == '-') {
      end = skip_space(src_, close + 2);
    } else if (close > body && src_[close - 1] == '+') {
      end = close + 2;
    } else {
      end = close + 2;
      if (end < src_.size() && src_[end] == '\n') ++end;
    }
    line_starting = src_[end - 1] == '\n';
    return end;
  }

  size_t lex_tag(size_t start, char kind, char sign, bool& line_starting) {
    const bool block = kind == '%';
    Token begin;
    begin.type = block ? TokenType::BlockBegin : TokenType::VariableBegin;
    set_pos(begin, start);
    tokens_.push_back(std::move(begin));
    size_t p = start + 2 + (sign ? 1 : 0);
    std::vector<char> balance;
    const size_t n = src_.size();
    while (true) {
      if (p >= n) fail(start, block ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'");
      if (balance.empty()) {
        size_t end = 0;
        if (block) {
          if (src_.compare(p, 3, "+%}") == 0) {
            end = p + 3;
          } else if (src_.compare(p, 3, "-%}") == 0) {
            end = skip_space(src_, p + 3);
          } else if (src_.compare(p, 2, "%}") == 0) {
            end = p + 2;
            if (end < n && src_[end] == '\n') ++end;
          }
        } else {
          if (src_.compare(p, 3, "-}}") == 0) {
            end = skip_space(src_, p + 3);
          } else if (src_.compare(p, 2, "}}") == 0) {
            end = p + 2;
          }
        }
        if (end) {
          Token t;
          t.type = block ? TokenType::BlockEnd : TokenType::VariableEnd;
          set_pos(t, p);
          tokens_.push_back(std::move(t));
          line_starting = src_[end - 1] == '\n';
          return end;
        }
      }
      const size_t ws_end = skip_space(src_, p);
      if (ws_end != p) {
        p = ws_end;
        continue;
      }
      p = lex_expression_token(p, balance);
    }
  }

  size_t lex_expression_token(size_t p, std::vector<char>& balance) {
    const size_t n = src_.size();
    Token t;
    set_pos(t, p);
    const char c = src_[p];
    if (is_digit(c)) {
      size_t end;
      if (!(p > 0 && src_[p - 1] == '.') && match_float(p, end)) {
        std::string digits;
        for (size_t i = p; i < end; ++i)
          if (src_[i] != '_') digits += src_[i];
        t.type = TokenType::Float;
        t.float_value = std::strtod(digits.c_str(), nullptr);
        t.value = src_.substr(p, end - p);
        tokens_.push_back(std::move(t));
        return end;
      }
      end = match_integer(p, t);
      t.type = TokenType::Integer;
      t.value = src_.substr(p, end - p);
      tokens_.push_back(std::move(t));
      return end;
    }
    size_t i = p;
    const char32_t cp = utf8::decode(src_, i);
    if (cp == '_' || utf8::is_alpha(cp)) {
      size_t end = i;
      while (end < n) {
        size_t k = end;
        if (!utf8::is_word(utf8::decode(src_, k))) break;
        end = k;
      }
      t.type = TokenType::Name;
      t.value = src_.substr(p, end - p);
      tokens_.push_back(std::move(t));
      return end;
    }
    if (c == '\'' || c == '"') {
      size_t k = p + 1;
      while (k < n && src_[k] != c) {
        if (src_[k] == '\\') ++k;
        ++k;
      }
      if (k >= n) fail(p, std::string("unexpected char '") + c + "'");
      t.type = TokenType::String;
      t.value = decode_string(p + 1, k);
      tokens_.push_back(std::move(t));
      return k + 1;
    }
    static const char* const kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[",
                                             "]",  "(",  ")",  "{",  "}",  "<",  ">", "=", ".", ":", "|", ",", ";"};
    for (const char* op : kOperators) {
      const size_t len = std::char_traits<char>::length(op);
      if (src_.compare(p, len, op) != 0) continue;
      if (len == 1) {
        if (c == '(' || c == '[' || c == '{') {
          balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
        } else if (c == ')' || c == ']' || c == '}') {
          if (balance.empty()) fail(p, std::string("unexpected '") + c + "'");
          if (balance.back() != c) fail(p, std::string("unexpected '") + c + "', expected '" + balance.back() + "'");
          balance.pop_back();
        }
      }
      t.type = TokenType::Operator;
      t.value = op;
      tokens_.push_back(std::move(t));
      return p + len;
    }
    fail(p, "unexpected char " + repr_char(p));
  }

  std::string repr_char(size_t p) const {
    size_t i = p;
    utf8::decode(src_, i);
    return "'" + src_.substr(p, i - p) + "'";
  }

  // (\d+_)*\d+  from p; returns end or npos.
  size_t match_digits(size_t p) const {
    if (p >= src_.size() || !is_digit(src_[p])) return std::string::npos;
    size_t i = p;
    while (true) {
      while (i < src_.size() && is_digit(src_[i])) ++i;
      if (i + 1 < src_.size() && src_[i] == '_' && is_digit(src_[i + 1])) {
        ++i;
        continue;
      }
      return i;
    }
  }

  // (\d+_)*\d+ ((\.(\d+_)*\d+)? e[+-]?(\d+_)*\d+ | \.(\d+_)*\d+)
  bool match_float(size_t p, size_t& end) const {
    size_t i = match_digits(p);
    if (i == std::string::npos) return false;
    bool fraction = false;
    if (i < src_.size() && src_[i] == '.') {
      const size_t f = match_digits(i + 1);
      if (f != std::string::npos) {
        i = f;
        fraction = true;
      }
    }
    if (i < src_.size() && (src_[i] == 'e' || src_[i] == 'E')) {
      size_t e = i + 1;
      if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
      const size_t x = match_digits(e);
      if (x != std::string::npos) {
        end = x;
        return true;
      }
    }
    if (fraction) {
      end = i;
      return true;
    }
    return false;
  }

  // 0b.. | 0o.. | 0x.. | [1-9](_?\d)* | 0(_?0)*
  size_t match_integer(size_t p, Token& t) {
    auto prefixed = [&](int base, size_t q) -> size_t {
      size_t i = q;
      uint64_t value = 0;
      bool any = false;
      while (i < src_.size()) {
        size_t k = i;
        if (src_[k] == '_') ++k;
        if (k >= src_.size()) break;
        const int d = hex_value(src_[k]);
        if (d < 0 || d >= base) break;
        if (value > (uint64_t(INT64_MAX) - uint64_t(d)) / uint64_t(base)) fail(p, "integer literal too large");
        value = value * uint64_t(base) + uint64_t(d);
        any = true;
        i = k + 1;
      }
      if (!any) return 0;
      t.int_value = int64_t(value);
      return i;
    };
    if (src_[p] == '0' && p + 1 < src_.size()) {
      const char x = char(src_[p + 1] | 0x20);
      const int base = x == 'b' ? 2 : x == 'o' ? 8 : x == 'x' ? 16 : 0;
      if (base) {
        const size_t end = prefixed(base, p + 2);
        if (end) return end;
      }
    }
    size_t i = p;
    uint64_t value = 0;
    if (src_[p] == '0') {
      ++i;
      while (i + 1 < src_.size() && ((src_[i] == '_' && src_[i + 1] == '0') || src_[i] == '0')) i += src_[i] == '_' ? 2 : 1;
      if (i < src_.size() && src_[i] == '0') ++i;
      t.int_value = 0;
      return i;
    }
    while (i < src_.size()) {
      size_t k = i;
      if (src_[k] == '_' && k > p) ++k;
      if (k >= src_.size() || !is_digit(src_[k])) break;
      const uint64_t d = uint64_t(src_[k] - '0');
      if (value > (uint64_t(INT64_MAX) - d) / 10) fail(p, "integer literal too large");
      value = value * 10 + d;
      i = k + 1;
    }
    t.int_value = int64_t(value);
    return i;
  }

  // Python's unicode-escape decoding of a literal's body (jinja2 decodes string literals so).
  std::string decode_string(size_t begin, size_t end) {
    std::string out;
    for (size_t i = begin; i < end;) {
      if (src_[i] != '\\') {
        size_t k = i;
        utf8::decode(src_, k);
        out.append(src_, i, k - i);
        i = k;
        continue;
      }
      const size_t esc = i;
      ++i;
      const char e = src_[i];
      auto read_hex = [&](size_t digits) -> char32_t {
        char32_t v = 0;
        for (size_t k = 0; k < digits; ++k) {
          const int h = (i + 1 + k < end) ? hex_value(src_[i + 1 + k]) : -1;
          if (h < 0) fail(esc, std::string("truncated \\") + e + " escape in string literal");
          v = v * 16 + char32_t(h);
        }
        i += 1 + digits;
        return v;
      };
      auto put = [&](char32_t cp) {
        if (cp > 0x10FFFF) fail(esc, "illegal Unicode character in string literal");
        if (cp >= 0xD800 && cp <= 0xDFFF) fail(esc, "surrogate code points are not supported in string literals");
        utf8::append(out, cp);
      };
      switch (e) {
        case '\n': ++i; break;
        case '\\': out += '\\'; ++i; break;
        case '\'': out += '\''; ++i; break;
        case '"': out += '"'; ++i; break;
        case 'a': out += '\a'; ++i; break;
        case 'b': out += '\b'; ++i; break;
        case 'f': out += '\f'; ++i; break;
        case 'n': out += '\n'; ++i; break;
        case 'r': out += '\r'; ++i; break;
        case 't': out += '\t'; ++i; break;
        case 'v': out += '\v'; ++i; break;
        case 'x': put(read_hex(2)); break;
        case 'u': put(read_hex(4)); break;
        case 'U': put(read_hex(8)); break;
        case 'N': fail(esc, "\\N{...} escapes are not supported in string literals");
        default:
          if (e >= '0' && e <= '7') {
            char32_t v = 0;
            size_t k = 0;
            while (k < 3 && i < end && src_[i] >= '0' && src_[i] <= '7') {
              v = v * 8 + char32_t(src_[i] - '0');
              ++i;
              ++k;
            }
            put(v);
          } else if (static_cast<unsigned char>(e) >= 0x80) {
            // backslashreplace turns the character into its escape text, kept literally.
            size_t k = i;
            const char32_t cp = utf8::decode(src_, k);
            char buf[16];
            if (cp <= 0xFF) std::snprintf(buf, sizeof(buf), "\\x%02x", unsigned(cp));
            else if (cp <= 0xFFFF) std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(cp));
            else std::snprintf(buf, sizeof(buf), "\\U%08x", unsigned(cp));
            out += buf;
            i = k;
          } else {
            out += '\\';
            out += e;
            ++i;
          }
      }
    }
    return out;
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t pos_offset_ = 0;
  int pos_line_ = 1;
  int pos_column_ = 1;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) {
  if (!utf8::valid(source)) throw TemplateError("template is not valid UTF-8", 1, 1);
  return Lexer(source).run();
}

}  // namespace moeserve::jinja
