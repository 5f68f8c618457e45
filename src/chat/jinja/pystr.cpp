#include "chat/jinja/pystr.h"

#include <algorithm>

#include "chat/jinja/unicode.h"

namespace moeserve::jinja {

Args::Args(CallArgs& call, std::string_view function, std::initializer_list<const char*> names)
    : function_(function), bound_(names.size()) {
  if (call.positional.size() > names.size())
    throw RuntimeError(function_ + "() takes at most " + std::to_string(names.size()) + " arguments (" +
                       std::to_string(call.positional.size()) + " given)");
  for (size_t i = 0; i < call.positional.size(); ++i) bound_[i] = call.positional[i];
  for (auto& kw : call.keyword) {
    size_t index = 0;
    bool found = false;
    for (const char* n : names) {
      if (kw.first == n) {
        found = true;
        break;
      }
      ++index;
    }
    if (!found) throw RuntimeError(function_ + "() got an unexpected keyword argument '" + kw.first + "'");
    if (bound_[index]) throw RuntimeError(function_ + "() got multiple values for argument '" + kw.first + "'");
    bound_[index] = kw.second;
  }
}

bool Args::flag(size_t index, bool fallback) const { return has(index) ? truthy(*get(index)) : fallback; }

int64_t Args::integer(size_t index, int64_t fallback) const {
  const Value* v = get(index);
  if (!v) return fallback;
  if (v->is_int() || v->is_bool()) return v->as_int();
  if (v->is_undefined()) raise_undefined(*v);
  throw RuntimeError(function_ + "(): '" + type_name(*v) + "' object cannot be interpreted as an integer");
}

std::string Args::text(size_t index, std::string fallback) const {
  const Value* v = get(index);
  if (!v) return fallback;
  if (v->is_string()) return v->str();
  if (v->is_undefined()) raise_undefined(*v);
  throw RuntimeError(function_ + "(): argument must be str, not " + type_name(*v));
}

namespace pystr {

namespace {

bool in_chars(char32_t c, const std::u32string& set) { return set.find(c) != std::u32string::npos; }

std::u32string pad(size_t n, char32_t fill) { return std::u32string(n, fill); }

// Python slice-style clamping of start/end over n code points.
void clamp(std::optional<int64_t> start, std::optional<int64_t> end, int64_t n, int64_t& lo, int64_t& hi) {
  lo = start.value_or(0);
  hi = end.value_or(n);
  if (lo < 0) lo = std::max<int64_t>(0, lo + n);
  if (hi < 0) hi = std::max<int64_t>(0, hi + n);
  lo = std::min(lo, n);
  hi = std::min(hi, n);
}

bool is_cased(char32_t c) { return utf8::is_upper(c) || utf8::is_lower(c); }

}  // namespace

std::string strip(std::string_view s, const std::string* chars, bool left, bool right) {
  const std::u32string u = utf8::to_u32(s);
  const std::u32string set = chars ? utf8::to_u32(*chars) : std::u32string();
  auto strip_it = [&](char32_t c) { return chars ? in_chars(c, set) : utf8::is_space(c); };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip_it(u[b])) ++b;
  if (right)
    while (e > b && strip_it(u[e - 1])) --e;
  return utf8::from_u32(std::u32string_view(u).substr(b, e - b));
}

std::vector<std::string> split(std::string_view s, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) throw RuntimeError("empty separator");
    size_t pos = 0;
    while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
      const size_t at = s.find(*sep, pos);
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, at - pos));
      pos = at + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  const std::u32string u = utf8::to_u32(s);
  size_t i = 0;
  const size_t n = u.size();
  while (true) {
    while (i < n && utf8::is_space(u[i])) ++i;
    if (i >= n) break;
    if (maxsplit >= 0 && int64_t(out.size()) >= maxsplit) {
      size_t e = n;
      while (e > i && utf8::is_space(u[e - 1])) --e;
      out.push_back(utf8::from_u32(std::u32string_view(u).substr(i, e - i)));
      break;
    }
    size_t j = i;
    while (j < n && !utf8::is_space(u[j])) ++j;
    out.push_back(utf8::from_u32(std::u32string_view(u).substr(i, j - i)));
    i = j;
  }
  return out;
}

std::vector<std::string> rsplit(std::string_view s, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) throw RuntimeError("empty separator");
    size_t end = s.size();
    while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t at = s.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    out.emplace_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
  }
  const std::u32string u = utf8::to_u32(s);
  size_t e = u.size();
  while (true) {
    while (e > 0 && utf8::is_space(u[e - 1])) --e;
    if (e == 0) break;
    if (maxsplit >= 0 && int64_t(out.size()) >= maxsplit) {
      size_t b = 0;
      while (b < e && utf8::is_space(u[b])) ++b;
      out.push_back(utf8::from_u32(std::u32string_view(u).substr(b, e - b)));
      break;
    }
    size_t b = e;
    while (b > 0 && !utf8::is_space(u[b - 1])) --b;
    out.push_back(utf8::from_u32(std::u32string_view(u).substr(b, e - b)));
    e = b;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> splitlines(std::string_view s, bool keepends) {
  const std::u32string u = utf8::to_u32(s);
  std::vector<std::string> out;
  size_t i = 0, start = 0;
  const size_t n = u.size();
  auto is_break = [](char32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
  };
  while (i < n) {
    if (!is_break(u[i])) {
      ++i;
      continue;
    }
    size_t eol = i + 1;
    if (u[i] == '\r' && eol < n && u[eol] == '\n') ++eol;
    out.push_back(utf8::from_u32(std::u32string_view(u).substr(start, (keepends ? eol : i) - start)));
    start = i = eol;
  }
  if (start < n) out.push_back(utf8::from_u32(std::u32string_view(u).substr(start)));
  return out;
}

std::string replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count) {
  std::string out;
  if (old.empty()) {
    // Inserts repl before every code point and at the end, up to count times.
    int64_t done = 0;
    size_t i = 0;
    while (i <= s.size()) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      if (i == s.size()) break;
      const size_t start = i;
      utf8::decode(s, i);
      out.append(s.substr(start, i - start));
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old, pos);
    if (at == std::string_view::npos) break;
    out.append(s.substr(pos, at - pos));
    out.append(repl);
    pos = at + old.size();
    ++done;
  }
  out.append(s.substr(pos));
  return out;
}

std::string upper(std::string_view s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) utf8::append_upper(out, utf8::decode(s, i));
  return utf8::from_u32(out);
}

namespace {

// Lower-cases u[i]; a capital sigma takes its final form at the end of a word, as Python does.
void append_lower_at(std::u32string& out, const std::u32string& u, size_t i) {
  if (u[i] != 0x3A3) {
    utf8::append_lower(out, u[i]);
    return;
  }
  auto ignorable = [](char32_t c) { return c == '\'' || c == 0x2019 || c == 0xAD || c == '.' || c == ':'; };
  bool before = false, after = false;
  for (size_t k = i; k-- > 0;) {
    if (is_cased(u[k])) {
      before = true;
      break;
    }
    if (!ignorable(u[k])) break;
  }
  for (size_t k = i + 1; k < u.size(); ++k) {
    if (is_cased(u[k])) {
      after = true;
      break;
    }
    if (!ignorable(u[k])) break;
  }
  out += (before && !after) ? char32_t(0x3C2) : char32_t(0x3C3);
}

}  // namespace

std::string lower(std::string_view s) {
  const std::u32string u = utf8::to_u32(s);
  std::u32string out;
  for (size_t i = 0; i < u.size(); ++i) append_lower_at(out, u, i);
  return utf8::from_u32(out);
}

std::string title(std::string_view s) {
  const std::u32string u = utf8::to_u32(s);
  std::u32string out;
  bool previous_cased = false;
  for (size_t i = 0; i < u.size(); ++i) {
    const char32_t c = u[i];
    if (is_cased(c)) {
      if (previous_cased) append_lower_at(out, u, i);
      else utf8::append_upper(out, c);
      previous_cased = true;
    } else {
      out += c;
      previous_cased = false;
    }
  }
  return utf8::from_u32(out);
}

std::string capitalize(std::string_view s) {
  const std::u32string u = utf8::to_u32(s);
  std::u32string out;
  for (size_t i = 0; i < u.size(); ++i) {
    if (i == 0) utf8::append_upper(out, u[i]);
    else append_lower_at(out, u, i);
  }
  return utf8::from_u32(out);
}

std::string swapcase(std::string_view s) {
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = utf8::decode(s, i);
    if (utf8::is_upper(c)) utf8::append_lower(out, c);
    else if (utf8::is_lower(c)) utf8::append_upper(out, c);
    else out += c;
  }
  return utf8::from_u32(out);
}

std::string center(std::string_view s, int64_t width, char32_t fill) {
  const int64_t n = int64_t(utf8::length(s));
  if (width <= n) return std::string(s);
  const int64_t marg = width - n;
  const int64_t left = marg / 2 + (marg & width & 1);
  std::u32string out = pad(size_t(left), fill) + utf8::to_u32(s) + pad(size_t(marg - left), fill);
  return utf8::from_u32(out);
}

std::string ljust(std::string_view s, int64_t width, char32_t fill) {
  const int64_t n = int64_t(utf8::length(s));
  if (width <= n) return std::string(s);
  return std::string(s) + utf8::from_u32(pad(size_t(width - n), fill));
}

std::string rjust(std::string_view s, int64_t width, char32_t fill) {
  const int64_t n = int64_t(utf8::length(s));
  if (width <= n) return std::string(s);
  return utf8::from_u32(pad(size_t(width - n), fill)) + std::string(s);
}

std::string zfill(std::string_view s, int64_t width) {
  const int64_t n = int64_t(utf8::length(s));
  if (width <= n) return std::string(s);
  std::string zeros(size_t(width - n), '0');
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) return std::string(1, s[0]) + zeros + std::string(s.substr(1));
  return zeros + std::string(s);
}

std::string reverse(std::string_view s) {
  std::u32string u = utf8::to_u32(s);
  std::reverse(u.begin(), u.end());
  return utf8::from_u32(u);
}

int64_t count(std::string_view s, std::string_view sub) {
  if (sub.empty()) return int64_t(utf8::length(s)) + 1;
  int64_t n = 0;
  for (size_t pos = s.find(sub); pos != std::string_view::npos; pos = s.find(sub, pos + sub.size())) ++n;
  return n;
}

int64_t find(std::string_view s, std::string_view sub, std::optional<int64_t> start, std::optional<int64_t> end, bool reverse) {
  const int64_t n = int64_t(utf8::length(s));
  int64_t lo, hi;
  clamp(start, end, n, lo, hi);
  if (lo > hi || (start && *start > n)) return -1;
  const size_t b = utf8::byte_offset(s, size_t(lo));
  const size_t e = utf8::byte_offset(s, size_t(hi));
  const std::string_view window = s.substr(b, e - b);
  const size_t at = reverse ? window.rfind(sub) : window.find(sub);
  if (at == std::string_view::npos) return -1;
  return lo + int64_t(utf8::length(window.substr(0, at)));
}

bool starts_with(std::string_view s, std::string_view prefix, std::optional<int64_t> start, std::optional<int64_t> end, bool suffix) {
  const int64_t n = int64_t(utf8::length(s));
  int64_t lo, hi;
  clamp(start, end, n, lo, hi);
  if (start && *start > n) return false;
  if (lo > hi) return false;
  const size_t b = utf8::byte_offset(s, size_t(lo));
  const size_t e = utf8::byte_offset(s, size_t(hi));
  const std::string_view window = s.substr(b, e - b);
  if (prefix.size() > window.size()) return false;
  return suffix ? window.substr(window.size() - prefix.size()) == prefix : window.substr(0, prefix.size()) == prefix;
}

}  // namespace pystr
}  // namespace moeserve::jinja
