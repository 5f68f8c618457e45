#include "chat/jinja/pyformat.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "chat/jinja/interpreter.h"
#include "chat/jinja/unicode.h"

namespace moeserve::jinja {

// ---------------------------------------------------------------------------------------------
// json.dumps

namespace {

void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      switch (b) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (b < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(b));
            out += buf;
          } else {
            out += char(b);
          }
      }
      continue;
    }
    const size_t start = i;
    const char32_t c = utf8::decode(s, i);
    if (!ensure_ascii) {
      out.append(s.substr(start, i - start));
    } else {
      char buf[16];
      if (c < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(c));
      } else {
        const char32_t v = c - 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", unsigned(0xD800 | (v >> 10)), unsigned(0xDC00 | (v & 0x3FF)));
      }
      out += buf;
    }
  }
  out += '"';
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return format_float(d);
}

[[noreturn]] void not_serializable(const Value& v) {
  throw RuntimeError("Object of type " + type_name(v) + " is not JSON serializable");
}

class JsonWriter {
 public:
  JsonWriter(const JsonDumpOptions& o, std::string& out) : o_(o), out_(out) {}

  void write(const Value& v, int level) {
    if (level > 1000) throw RuntimeError("maximum recursion depth exceeded while encoding a JSON object");
    switch (v.kind()) {
      case Kind::None: out_ += "null"; return;
      case Kind::Bool: out_ += v.as_bool() ? "true" : "false"; return;
      case Kind::Int: out_ += std::to_string(v.as_int()); return;
      case Kind::Float: out_ += json_float(v.as_float()); return;
      case Kind::String: json_string(out_, v.str(), o_.ensure_ascii); return;
      case Kind::Seq: {
        const SeqData& s = v.seq();
        if (s.kind != SeqKind::List && s.kind != SeqKind::Tuple) not_serializable(v);
        if (s.items.empty()) {
          out_ += "[]";
          return;
        }
        out_ += '[';
        for (size_t i = 0; i < s.items.size(); ++i) {
          if (i > 0) out_ += o_.item_separator;
          newline(level + 1);
          write(s.items[i], level + 1);
        }
        newline(level);
        out_ += ']';
        return;
      }
      case Kind::Dict: write_dict(v.dict(), level); return;
      default: not_serializable(v);
    }
  }

 private:
  void newline(int level) {
    if (!o_.indent_set) return;
    out_ += '\n';
    for (int i = 0; i < level; ++i) out_ += o_.indent;
  }

  std::string key_text(const Value& k) {
    switch (k.kind()) {
      case Kind::String: return k.str();
      case Kind::Bool: return k.as_bool() ? "true" : "false";
      case Kind::None: return "null";
      case Kind::Int: return std::to_string(k.as_int());
      case Kind::Float: return json_float(k.as_float());
      default: throw RuntimeError("keys must be str, int, float, bool or None, not " + type_name(k));
    }
  }

  void write_dict(const DictData& d, int level) {
    if (d.size() == 0) {
      out_ += "{}";
      return;
    }
    std::vector<const std::pair<Value, Value>*> items;
    for (const auto& kv : d.items) items.push_back(&kv);
    if (o_.sort_keys) {
      std::stable_sort(items.begin(), items.end(),
                       [](const auto* a, const auto* b) { return compare(a->first, b->first) < 0; });
    }
    out_ += '{';
    bool first = true;
    for (const auto* kv : items) {
      if (!first) out_ += o_.item_separator;
      first = false;
      newline(level + 1);
      json_string(out_, key_text(kv->first), o_.ensure_ascii);
      out_ += o_.key_separator;
      write(kv->second, level + 1);
    }
    newline(level);
    out_ += '}';
  }

  const JsonDumpOptions& o_;
  std::string& out_;
};

}  // namespace

std::string json_dumps(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  JsonWriter(options, out).write(value, 0);
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\'': out += "&#39;"; break;
      case '"': out += "&#34;"; break;
      default: out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// shared number formatting

namespace {

std::string pad(std::string s, size_t width, char align, char32_t fill) {
  const size_t len = utf8::length(s);
  if (len >= width) return s;
  const size_t total = width - len;
  std::string f;
  utf8::append(f, fill);
  auto rep = [&](size_t n) {
    std::string r;
    for (size_t i = 0; i < n; ++i) r += f;
    return r;
  };
  if (align == '<') return s + rep(total);
  if (align == '^') return rep(total / 2) + s + rep(total - total / 2);
  return rep(total) + s;
}

std::string group_digits(const std::string& digits, char sep, size_t every) {
  std::string out;
  const size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 && (n - i) % every == 0) out += sep;
    out += digits[i];
  }
  return out;
}

std::string int_digits(uint64_t mag, char type) {
  if (mag == 0) return "0";
  std::string out;
  const unsigned base = type == 'b' ? 2 : type == 'o' ? 8 : (type == 'x' || type == 'X') ? 16 : 10;
  const char* chars = type == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
  while (mag) {
    out += chars[mag % base];
    mag /= base;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// printf-style float formatting through the C library (exact, like Python's).
std::string c_float(double d, char type, int precision, bool alternate) {
  if (std::isnan(d)) return (type == 'E' || type == 'F' || type == 'G') ? "NAN" : "nan";
  if (std::isinf(d)) {
    const char* s = (type == 'E' || type == 'F' || type == 'G') ? "INF" : "inf";
    return d < 0 ? std::string("-") + s : s;
  }
  char fmt[16];
  std::snprintf(fmt, sizeof(fmt), "%%%s.%d%c", alternate ? "#" : "", precision, type);
  char buf[512];
  const int n = std::snprintf(buf, sizeof(buf), fmt, d);
  if (n >= 0 && size_t(n) < sizeof(buf)) return buf;
  std::string big(size_t(n) + 1, '\0');
  std::snprintf(big.data(), big.size(), fmt, d);
  big.resize(size_t(n));
  return big;
}

int64_t to_int_arg(const Value& v, char conv) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  if (v.is_float()) {
    if (conv == 'x' || conv == 'X' || conv == 'o' || conv == 'c')
      throw RuntimeError(std::string("%") + conv + " format: an integer is required, not float");
    const double d = v.as_float();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) throw RuntimeError("cannot convert float to integer");
    return int64_t(d);
  }
  throw RuntimeError(std::string("%") + conv + " format: a real number is required, not " + type_name(v));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// printf-style

std::string percent_format(const std::string& fmt, const Value& args, bool escape_args) {
  std::vector<Value> positional;
  const DictData* mapping = nullptr;
  if (args.is_seq_kind(SeqKind::Tuple)) {
    positional = args.seq().items;
  } else {
    positional.push_back(args);
    if (args.is_dict()) mapping = &args.dict();
  }
  size_t next_arg = 0;
  bool used_mapping = false;
  auto take = [&]() -> const Value& {
    if (next_arg >= positional.size()) throw RuntimeError("not enough arguments for format string");
    return positional[next_arg++];
  };
  std::string out;
  const size_t n = fmt.size();
  for (size_t i = 0; i < n; ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= n) throw RuntimeError("incomplete format");
    const Value* keyed = nullptr;
    if (fmt[i] == '(') {
      if (!mapping) throw RuntimeError("format requires a mapping");
      int depth = 1;
      size_t j = i + 1;
      for (; j < n && depth > 0; ++j) {
        if (fmt[j] == '(') ++depth;
        if (fmt[j] == ')') --depth;
      }
      if (depth != 0) throw RuntimeError("incomplete format key");
      const std::string key = fmt.substr(i + 1, j - i - 2);
      keyed = mapping->find(std::string_view(key));
      if (!keyed) throw RuntimeError("KeyError: " + repr_string(key));
      used_mapping = true;
      i = j;
    }
    bool left = false, zero = false, plus = false, space = false, alt = false;
    for (; i < n; ++i) {
      const char c = fmt[i];
      if (c == '-') left = true;
      else if (c == '0') zero = true;
      else if (c == '+') plus = true;
      else if (c == ' ') space = true;
      else if (c == '#') alt = true;
      else break;
    }
    size_t width = 0;
    if (i < n && fmt[i] == '*') {
      width = size_t(std::max<int64_t>(0, to_int_arg(take(), '*')));
      ++i;
    } else {
      while (i < n && fmt[i] >= '0' && fmt[i] <= '9') width = std::min<size_t>(width * 10 + size_t(fmt[i++] - '0'), 100000);
    }
    int precision = -1;
    if (i < n && fmt[i] == '.') {
      ++i;
      precision = 0;
      if (i < n && fmt[i] == '*') {
        precision = int(std::max<int64_t>(0, to_int_arg(take(), '*')));
        ++i;
      } else {
        while (i < n && fmt[i] >= '0' && fmt[i] <= '9') precision = std::min(precision * 10 + (fmt[i++] - '0'), 10000);
      }
    }
    while (i < n && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
    if (i >= n) throw RuntimeError("incomplete format");
    const char conv = fmt[i];
    if (conv == '%') {
      out += '%';
      continue;
    }
    const Value& arg = keyed ? *keyed : take();
    std::string body;
    bool numeric = false;
    switch (conv) {
      case 's':
      case 'r':
      case 'a': {
        body = conv == 's' ? to_str(arg) : repr(arg);
        if (escape_args && !(arg.is_string() && arg.safe())) body = html_escape(body);
        if (precision >= 0) body = body.substr(0, utf8::byte_offset(body, size_t(precision)));
        break;
      }
      case 'c': {
        if (arg.is_string()) {
          if (utf8::length(arg.str()) != 1) throw RuntimeError("%c requires int or char");
          body = arg.str();
        } else {
          const int64_t cp = to_int_arg(arg, 'c');
          if (cp < 0 || cp > 0x10FFFF) throw RuntimeError("%c arg not in range(0x110000)");
          utf8::append(body, char32_t(cp));
        }
        break;
      }
      case 'd': case 'i': case 'u': case 'o': case 'x': case 'X': {
        numeric = true;
        const int64_t v = to_int_arg(arg, conv);
        const uint64_t mag = v < 0 ? uint64_t(0) - uint64_t(v) : uint64_t(v);
        const char type = (conv == 'd' || conv == 'i' || conv == 'u') ? 'd' : conv;
        std::string digits = int_digits(mag, type);
        if (precision >= 0 && digits.size() < size_t(precision)) digits.insert(0, size_t(precision) - digits.size(), '0');
        std::string prefix = v < 0 ? "-" : plus ? "+" : space ? " " : "";
        if (alt && conv == 'o') prefix += "0o";
        if (alt && conv == 'x') prefix += "0x";
        if (alt && conv == 'X') prefix += "0X";
        if (zero && !left && width > prefix.size() + digits.size()) digits.insert(0, width - prefix.size() - digits.size(), '0');
        body = prefix + digits;
        break;
      }
      case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': {
        numeric = true;
        if (!arg.is_number()) throw RuntimeError(std::string("must be real number, not ") + type_name(arg));
        const double d = arg.as_float();
        std::string s = c_float(std::fabs(d), conv, precision < 0 ? 6 : precision, alt);
        std::string prefix = std::signbit(d) && !std::isnan(d) ? "-" : plus ? "+" : space ? " " : "";
        if (zero && !left && std::isfinite(d) && width > prefix.size() + s.size()) s.insert(0, width - prefix.size() - s.size(), '0');
        body = prefix + s;
        break;
      }
      default: throw RuntimeError(std::string("unsupported format character '") + conv + "'");
    }
    (void)numeric;
    out += pad(body, width, left ? '<' : '>', ' ');
  }
  // Python skips this check when the single argument supports subscription (a "mapping" to
  // str.__mod__): dicts, but also lists, ranges and jinja2's Undefined.
  const bool mapping_like = !args.is_seq_kind(SeqKind::Tuple) &&
                            (args.is_dict() || args.is_undefined() || args.is_seq_kind(SeqKind::List) ||
                             args.is_seq_kind(SeqKind::Range));
  (void)used_mapping;
  if (!mapping_like && next_arg < positional.size()) throw RuntimeError("not all arguments converted during string formatting");
  return out;
}

// ---------------------------------------------------------------------------------------------
// format(value, spec)

std::string format_value(const Value& value, std::string_view spec) {
  if (spec.empty()) return to_str(value);
  // [[fill]align][sign]['z']['#']['0'][width][grouping]['.' precision][type]
  std::u32string s = utf8::to_u32(spec);
  size_t i = 0;
  char32_t fill = ' ';
  char align = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (s.size() >= 2 && is_align(s[1])) {
    fill = s[0];
    align = char(s[1]);
    i = 2;
  } else if (!s.empty() && is_align(s[0])) {
    align = char(s[0]);
    i = 1;
  }
  char sign = '-';
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) sign = char(s[i++]);
  if (i < s.size() && s[i] == 'z') ++i;
  bool alt = false;
  if (i < s.size() && s[i] == '#') {
    alt = true;
    ++i;
  }
  if (i < s.size() && s[i] == '0') {
    if (!align) {
      fill = '0';
      align = '=';
    }
    ++i;
  }
  size_t width = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') width = std::min<size_t>(width * 10 + size_t(s[i++] - '0'), 100000);
  char grouping = 0;
  if (i < s.size() && (s[i] == ',' || s[i] == '_')) grouping = char(s[i++]);
  int precision = -1;
  if (i < s.size() && s[i] == '.') {
    ++i;
    precision = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') precision = std::min(precision * 10 + int(s[i++] - '0'), 10000);
  }
  char type = 0;
  if (i < s.size()) type = char(s[i++]);
  if (i != s.size()) throw RuntimeError("Invalid format specifier '" + std::string(spec) + "'");

  if (value.is_string()) {
    if (type && type != 's') throw RuntimeError(std::string("Unknown format code '") + type + "' for object of type 'str'");
    if (align == '=') throw RuntimeError("'=' alignment not allowed in string format specifier");
    std::string body = value.str();
    if (precision >= 0) body = body.substr(0, utf8::byte_offset(body, size_t(precision)));
    return pad(body, width, align ? align : '<', fill);
  }
  if (!value.is_number()) throw RuntimeError("unsupported format string passed to " + type_name(value) + ".__format__");

  const bool as_int = (value.is_int() || value.is_bool()) && (type == 0 || std::strchr("bcdoxXn", type));
  std::string prefix, body;
  if (as_int) {
    if (precision >= 0) throw RuntimeError("Precision not allowed in integer format specifier");
    const int64_t v = value.as_int();
    const uint64_t mag = v < 0 ? uint64_t(0) - uint64_t(v) : uint64_t(v);
    if (type == 'c') {
      utf8::append(body, char32_t(v));
    } else {
      const char t = (type == 0 || type == 'n') ? 'd' : type;
      body = int_digits(mag, t);
      if (grouping) body = group_digits(body, grouping, t == 'd' ? 3 : 4);
      if (alt && t != 'd') prefix = std::string("0") + (t == 'X' ? 'X' : t);
    }
    const std::string sgn = v < 0 ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
    prefix = sgn + prefix;
  } else {
    if (type && !std::strchr("eEfFgGn%", type)) throw RuntimeError(std::string("Unknown format code '") + type + "' for object of type 'float'");
    double d = value.as_float();
    const std::string sgn = (std::signbit(d) && !std::isnan(d)) ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
    d = std::fabs(d);
    if (type == 0 && precision < 0) {
      body = format_float(d);
    } else if (type == '%') {
      body = c_float(d * 100.0, 'f', precision < 0 ? 6 : precision, alt) + "%";
    } else if (type == 0 || type == 'n') {
      body = c_float(d, 'g', precision < 0 ? 12 : std::max(precision, 1), alt);
      if (type == 0 && body.find_first_of(".einf") == std::string::npos) body += ".0";
    } else {
      body = c_float(d, type, precision < 0 ? 6 : precision, alt);
    }
    if (grouping) {
      const size_t end = body.find_first_not_of("0123456789");
      body = group_digits(body.substr(0, end), grouping, 3) + (end == std::string::npos ? "" : body.substr(end));
    }
    prefix = sgn;
  }
  if (align == '=' || (!align && fill == '0')) {
    const size_t len = prefix.size() + utf8::length(body);
    if (len < width) {
      std::string f;
      utf8::append(f, fill);
      std::string padding;
      for (size_t k = 0; k < width - len; ++k) padding += f;
      return prefix + padding + body;
    }
    return prefix + body;
  }
  return pad(prefix + body, width, align ? align : '>', fill);
}

// ---------------------------------------------------------------------------------------------
// str.format

std::string str_format(Interpreter& interp, const std::string& fmt, const CallArgs& args, bool escape_args) {
  std::string out;
  size_t auto_index = 0;
  bool used_auto = false, used_manual = false;
  auto resolve_field = [&](const std::string& field) -> Value {
    size_t i = 0;
    while (i < field.size() && field[i] != '.' && field[i] != '[') ++i;
    const std::string first = field.substr(0, i);
    Value v;
    if (first.empty()) {
      if (used_manual) throw RuntimeError("cannot switch from manual field specification to automatic field numbering");
      used_auto = true;
      if (auto_index >= args.positional.size()) throw RuntimeError("Replacement index " + std::to_string(auto_index) + " out of range for positional args tuple");
      v = args.positional[auto_index++];
    } else if (std::all_of(first.begin(), first.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      if (used_auto) throw RuntimeError("cannot switch from automatic field numbering to manual field specification");
      used_manual = true;
      const size_t idx = size_t(std::stoull(first.substr(0, 9)));
      if (idx >= args.positional.size()) throw RuntimeError("Replacement index " + first + " out of range for positional args tuple");
      v = args.positional[idx];
    } else {
      bool found = false;
      for (const auto& kw : args.keyword) {
        if (kw.first == first) {
          v = kw.second;
          found = true;
        }
      }
      if (!found) throw RuntimeError("KeyError: " + repr_string(first));
    }
    while (i < field.size()) {
      if (field[i] == '.') {
        size_t j = ++i;
        while (j < field.size() && field[j] != '.' && field[j] != '[') ++j;
        v = interp.get_attr(v, field.substr(i, j - i));
        i = j;
      } else {
        const size_t close = field.find(']', i);
        if (close == std::string::npos) throw RuntimeError("Missing ']' in format string");
        const std::string key = field.substr(i + 1, close - i - 1);
        const bool numeric = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
        v = interp.get_item(v, numeric ? Value::integer(std::stoll(key.substr(0, 18))) : Value::string(key));
        i = close + 1;
      }
    }
    if (v.is_undefined()) raise_undefined(v);
    return v;
  };
  const size_t n = fmt.size();
  for (size_t i = 0; i < n; ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < n && fmt[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      throw RuntimeError("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < n && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    // Find the matching '}' (nested replacement fields may appear in the format spec).
    int depth = 1;
    size_t j = i + 1;
    for (; j < n && depth > 0; ++j) {
      if (fmt[j] == '{') ++depth;
      if (fmt[j] == '}') --depth;
    }
    if (depth != 0) throw RuntimeError("expected '}' before end of string");
    const std::string inner = fmt.substr(i + 1, j - i - 2);
    i = j - 1;
    size_t k = 0;
    int bracket = 0;
    while (k < inner.size() && (bracket > 0 || (inner[k] != '!' && inner[k] != ':'))) {
      if (inner[k] == '[') ++bracket;
      if (inner[k] == ']') --bracket;
      ++k;
    }
    const std::string field = inner.substr(0, k);
    char conversion = 0;
    std::string spec;
    if (k < inner.size() && inner[k] == '!') {
      if (k + 1 >= inner.size()) throw RuntimeError("end of string while looking for conversion specifier");
      conversion = inner[k + 1];
      k += 2;
      if (k < inner.size() && inner[k] != ':') throw RuntimeError("expected ':' after conversion specifier");
    }
    if (k < inner.size() && inner[k] == ':') spec = inner.substr(k + 1);
    if (spec.find('{') != std::string::npos) spec = str_format(interp, spec, args, false);
    Value v = resolve_field(field);
    std::string text;
    if (conversion == 'r' || conversion == 'a') {
      text = format_value(Value::string(repr(v)), spec);
    } else if (conversion == 's' || conversion == 0) {
      text = conversion == 's' ? format_value(Value::string(to_str(v)), spec) : format_value(v, spec);
    } else {
      throw RuntimeError(std::string("Unknown conversion specifier ") + conversion);
    }
    if (escape_args && !(v.is_string() && v.safe())) text = html_escape(text);
    out += text;
  }
  return out;
}

}  // namespace moeserve::jinja
