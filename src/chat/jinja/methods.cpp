// Methods of Python's str, list, tuple and dict as templates call them (`s.strip()`, `d.items()`),
// with jinja2's ImmutableSandboxedEnvironment refusing the ones that modify lists and dicts.
#include <algorithm>
#include <cstring>

#include "chat/jinja/builtins.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/pyformat.h"
#include "chat/jinja/pystr.h"
#include "chat/jinja/unicode.h"

namespace moeserve::jinja {

namespace {

bool listed(std::string_view name, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (name == n) return true;
  return false;
}

constexpr std::initializer_list<const char*> kStrMethods = {
    "capitalize", "casefold", "center", "count", "endswith", "find", "format", "index", "isalnum", "isalpha",
    "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isspace", "istitle", "isupper",
    "join", "ljust", "lower", "lstrip", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
    "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title",
    "upper", "zfill"};
constexpr std::initializer_list<const char*> kListSafe = {"count", "index", "copy"};
constexpr std::initializer_list<const char*> kListUnsafe = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"};
constexpr std::initializer_list<const char*> kTupleSafe = {"count", "index"};
constexpr std::initializer_list<const char*> kDictSafe = {"get", "items", "keys", "values", "copy"};
constexpr std::initializer_list<const char*> kDictUnsafe = {"pop", "popitem", "setdefault", "update", "clear"};

std::optional<int64_t> opt_index(const Args& a, size_t i) {
  const Value* v = a.get(i);
  if (!v || v->is_none()) return std::nullopt;
  return a.integer(i, 0);
}

// A string argument of a str method. Markup escapes the arguments that end up in its result
// (`escape`: replace's new text, fill characters), as markupsafe 3 does.
std::string str_arg(const Value& self, const Value& arg, const char* method, bool escape = false) {
  if (!arg.is_string()) {
    if (arg.is_undefined()) raise_undefined(arg);
    throw RuntimeError(std::string(method) + "() argument must be str, not " + type_name(arg));
  }
  return (escape && self.safe() && !arg.safe()) ? html_escape(arg.str()) : arg.str();
}

// The fill character; Markup escapes it first, so only a character escaping leaves alone fits.
char32_t fill_char(const Value& self, const Args& a, size_t index, const char* method) {
  const Value* v = a.get(index);
  if (!v) return ' ';
  const std::string fill = v->is_string() ? str_arg(self, *v, method, true) : std::string();
  if (!v->is_string() || utf8::length(fill) != 1)
    throw RuntimeError(std::string("The fill character must be exactly one character long (") + method + ")");
  size_t i = 0;
  return utf8::decode(fill, i);
}

template <typename Pred>
bool all_chars(const std::string& s, Pred pred) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();)
    if (!pred(utf8::decode(s, i))) return false;
  return true;
}

Value str_list(const Value& self, std::vector<std::string> parts, SeqKind kind = SeqKind::List) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (std::string& p : parts) items.push_back(Value::string(std::move(p), self.safe()));
  return Value::list(std::move(items), kind);
}

Value str_method(Interpreter& interp, const Value& self, const std::string& name, CallArgs& call) {
  const std::string& s = self.str();
  const bool safe = self.safe();
  auto result = [&](std::string text) {
    interp.check_size(text.size());
    interp.step(1 + text.size() / 256);
    return Value::string(std::move(text), safe);
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Args a(call, name, {"chars"});
    std::string chars;
    const bool have = a.has(0) && !a.get(0)->is_none();
    if (have) chars = str_arg(self, *a.get(0), name.c_str());
    return result(pystr::strip(s, have ? &chars : nullptr, name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    Args a(call, name, {"sep", "maxsplit"});
    std::string sep;
    const bool have = a.has(0) && !a.get(0)->is_none();
    if (have) sep = str_arg(self, *a.get(0), name.c_str());
    const int64_t maxsplit = a.integer(1, -1);
    interp.step(1 + s.size() / 256);
    return str_list(self, name == "split" ? pystr::split(s, have ? &sep : nullptr, maxsplit)
                                           : pystr::rsplit(s, have ? &sep : nullptr, maxsplit));
  }
  if (name == "splitlines") {
    Args a(call, name, {"keepends"});
    return str_list(self, pystr::splitlines(s, a.flag(0, false)));
  }
  if (name == "startswith" || name == "endswith") {
    Args a(call, name, {"prefix", "start", "end"});
    const Value* p = a.get(0);
    if (!p) throw RuntimeError(name + "() takes at least 1 argument (0 given)");
    const auto start = opt_index(a, 1), end = opt_index(a, 2);
    const bool suffix = name == "endswith";
    if (p->is_list_or_tuple() && p->seq().kind == SeqKind::Tuple) {
      for (const Value& item : p->seq().items) {
        if (!item.is_string()) throw RuntimeError("tuple for " + name + " must only contain str, not " + type_name(item));
        if (pystr::starts_with(s, item.str(), start, end, suffix)) return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (!p->is_string())
      throw RuntimeError(name + " first arg must be str or a tuple of str, not " + type_name(*p));
    return Value::boolean(pystr::starts_with(s, p->str(), start, end, suffix));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    Args a(call, name, {"sub", "start", "end"});
    if (!a.has(0)) throw RuntimeError(name + "() takes at least 1 argument (0 given)");
    const std::string sub = str_arg(self, *a.get(0), name.c_str());
    const auto start = opt_index(a, 1), end = opt_index(a, 2);
    if (name == "count") {
      if (start || end) {
        const int64_t n = int64_t(utf8::length(s));
        int64_t lo = start.value_or(0), hi = end.value_or(n);
        if (lo < 0) lo = std::max<int64_t>(0, lo + n);
        if (hi < 0) hi = std::max<int64_t>(0, hi + n);
        lo = std::min(lo, n);
        hi = std::min(hi, n);
        if (lo > hi) return Value::integer(0);
        const size_t b = utf8::byte_offset(s, size_t(lo)), e = utf8::byte_offset(s, size_t(hi));
        return Value::integer(pystr::count(std::string_view(s).substr(b, e - b), sub));
      }
      return Value::integer(pystr::count(s, sub));
    }
    const int64_t at = pystr::find(s, sub, start, end, name[0] == 'r');
    if (at < 0 && (name == "index" || name == "rindex")) throw RuntimeError("substring not found");
    return Value::integer(at);
  }
  if (name == "replace") {
    Args a(call, name, {"old", "new", "count"});
    if (!a.has(0) || !a.has(1)) throw RuntimeError("replace() takes at least 2 arguments");
    return result(pystr::replace(s, str_arg(self, *a.get(0), "replace"), str_arg(self, *a.get(1), "replace", true),
                                 a.integer(2, -1)));
  }
  if (name == "upper" || name == "lower" || name == "casefold" || name == "title" || name == "capitalize" ||
      name == "swapcase") {
    Args none(call, name, {});
    if (name == "upper") return result(pystr::upper(s));
    if (name == "title") return result(pystr::title(s));
    if (name == "capitalize") return result(pystr::capitalize(s));
    if (name == "swapcase") return result(pystr::swapcase(s));
    return result(pystr::lower(s));
  }
  if (name == "center" || name == "ljust" || name == "rjust") {
    Args a(call, name, {"width", "fillchar"});
    if (!a.has(0)) throw RuntimeError(name + "() takes at least 1 argument (0 given)");
    const int64_t width = a.integer(0, 0);
    interp.check_size(size_t(std::max<int64_t>(0, width)) * 4);
    const char32_t fill = fill_char(self, a, 1, name.c_str());
    return result(name == "center" ? pystr::center(s, width, fill)
                                   : name == "ljust" ? pystr::ljust(s, width, fill) : pystr::rjust(s, width, fill));
  }
  if (name == "zfill") {
    Args a(call, name, {"width"});
    const int64_t width = a.integer(0, 0);
    interp.check_size(size_t(std::max<int64_t>(0, width)));
    return result(pystr::zfill(s, width));
  }
  if (name == "join") {
    Args a(call, name, {"iterable"});
    if (!a.has(0)) throw RuntimeError("join() takes exactly one argument (0 given)");
    std::string out;
    size_t index = 0;
    for (const Value& item : iterate(*a.get(0))) {
      // Markup.join escapes each item (any value, via str()); str.join wants strings.
      if (!item.is_string() && !safe)
        throw RuntimeError("sequence item " + std::to_string(index) + ": expected str instance, " + type_name(item) + " found");
      if (index++ > 0) out += s;
      out += (safe && !(item.is_string() && item.safe())) ? html_escape(to_str(item)) : item.str();
      interp.check_size(out.size());
    }
    return result(std::move(out));
  }
  if (name == "partition" || name == "rpartition") {
    Args a(call, name, {"sep"});
    if (!a.has(0)) throw RuntimeError(name + "() takes exactly one argument (0 given)");
    const std::string sep = str_arg(self, *a.get(0), name.c_str());
    if (sep.empty()) throw RuntimeError("empty separator");
    const size_t at = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (at == std::string::npos)
      return str_list(self, name == "partition" ? std::vector<std::string>{s, "", ""} : std::vector<std::string>{"", "", s},
                      SeqKind::Tuple);
    return str_list(self, {s.substr(0, at), sep, s.substr(at + sep.size())}, SeqKind::Tuple);
  }
  if (name == "removeprefix" || name == "removesuffix") {
    Args a(call, name, {"affix"});
    if (!a.has(0)) throw RuntimeError(name + "() takes exactly one argument (0 given)");
    const std::string affix = str_arg(self, *a.get(0), name.c_str());
    if (name == "removeprefix")
      return result(s.compare(0, affix.size(), affix) == 0 ? s.substr(affix.size()) : s);
    return result(s.size() >= affix.size() && s.compare(s.size() - affix.size(), affix.size(), affix) == 0
                      ? s.substr(0, s.size() - affix.size())
                      : s);
  }
  if (name == "format") {
    std::string out = str_format(interp, s, call, safe);
    return result(std::move(out));
  }
  Args none(call, name, {});
  if (name == "isalnum") return Value::boolean(all_chars(s, utf8::is_alnum));
  if (name == "isalpha") return Value::boolean(all_chars(s, utf8::is_alpha));
  if (name == "isascii") return Value::boolean(utf8::is_ascii(s));
  if (name == "isdecimal") return Value::boolean(all_chars(s, utf8::is_decimal));
  if (name == "isdigit" || name == "isnumeric") return Value::boolean(all_chars(s, utf8::is_digit));
  if (name == "isspace") return Value::boolean(all_chars(s, utf8::is_space));
  if (name == "isidentifier") {
    bool first = true;
    return Value::boolean(all_chars(s, [&](char32_t c) {
      const bool ok = first ? (c == '_' || utf8::is_alpha(c)) : utf8::is_word(c);
      first = false;
      return ok;
    }));
  }
  if (name == "islower" || name == "isupper") {
    bool cased = false;
    for (size_t i = 0; i < s.size();) {
      const char32_t c = utf8::decode(s, i);
      if (name == "islower" ? utf8::is_upper(c) : utf8::is_lower(c)) return Value::boolean(false);
      if (utf8::is_upper(c) || utf8::is_lower(c)) cased = true;
    }
    return Value::boolean(cased);
  }
  if (name == "istitle") return Value::boolean(!s.empty() && pystr::title(s) == s && pystr::lower(s) != s);
  throw RuntimeError("'str' object has no attribute '" + name + "'");
}

Value seq_method(const Value& self, const std::string& name, CallArgs& call) {
  const std::vector<Value>& items = self.seq().items;
  if (name == "count") {
    Args a(call, name, {"value"});
    if (!a.has(0)) throw RuntimeError("count() takes exactly one argument (0 given)");
    int64_t n = 0;
    for (const Value& v : items)
      if (equals(v, *a.get(0))) ++n;
    return Value::integer(n);
  }
  if (name == "index") {
    Args a(call, name, {"value", "start", "stop"});
    if (!a.has(0)) throw RuntimeError("index expected at least 1 argument, got 0");
    const int64_t n = int64_t(items.size());
    int64_t lo = a.integer(1, 0), hi = a.integer(2, n);
    if (lo < 0) lo = std::max<int64_t>(0, lo + n);
    if (hi < 0) hi = std::max<int64_t>(0, hi + n);
    for (int64_t i = lo; i < std::min(hi, n); ++i)
      if (equals(items[size_t(i)], *a.get(0))) return Value::integer(i);
    throw RuntimeError(type_name(self) + ".index(x): x not in " + type_name(self));
  }
  if (name == "copy") {
    Args a(call, name, {});
    return Value::list(items, SeqKind::List);
  }
  throw RuntimeError("'" + type_name(self) + "' object has no attribute '" + name + "'");
}

Value dict_method(const Value& self, const std::string& name, CallArgs& call) {
  const DictData& d = self.dict();
  if (name == "get") {
    Args a(call, name, {"key", "default"});
    if (!a.has(0)) throw RuntimeError("get expected at least 1 argument, got 0");
    if (!hashable(*a.get(0))) throw RuntimeError("unhashable type: '" + type_name(*a.get(0)) + "'");
    if (const Value* v = d.find(*a.get(0))) return *v;
    return a.get_or(1, Value::none());
  }
  Args none(call, name, {});
  std::vector<Value> out;
  out.reserve(d.size());
  if (name == "keys") {
    for (const auto& kv : d.items) out.push_back(kv.first);
    return Value::list(std::move(out), SeqKind::DictKeys);
  }
  if (name == "values") {
    for (const auto& kv : d.items) out.push_back(kv.second);
    return Value::list(std::move(out), SeqKind::DictValues);
  }
  if (name == "items") {
    for (const auto& kv : d.items) out.push_back(Value::tuple({kv.first, kv.second}));
    return Value::list(std::move(out), SeqKind::DictItems);
  }
  if (name == "copy") return Value::dict(std::make_shared<DictData>(d));
  throw RuntimeError("'dict' object has no attribute '" + name + "'");
}

struct BoundMethod : CallableObject {
  BoundMethod(Value s, std::string n) : self(std::move(s)), name(std::move(n)) {}
  Value call(Interpreter& interp, CallArgs& args) override {
    switch (self.kind()) {
      case Kind::String: return str_method(interp, self, name, args);
      case Kind::Seq: return seq_method(self, name, args);
      case Kind::Dict: return dict_method(self, name, args);
      default: throw RuntimeError("'" + type_name(self) + "' object has no attribute '" + name + "'");
    }
  }
  std::string repr() const override { return "<built-in method " + name + " of " + type_name(self) + " object>"; }
  Value self;
  std::string name;
};

}  // namespace

MethodLookup find_method(const Value& self, std::string_view name) {
  switch (self.kind()) {
    case Kind::String: return listed(name, kStrMethods) ? MethodLookup::Safe : MethodLookup::None;
    case Kind::Seq:
      if (self.seq().kind == SeqKind::List) {
        if (listed(name, kListSafe)) return MethodLookup::Safe;
        if (listed(name, kListUnsafe)) return MethodLookup::Unsafe;
      } else if ((self.seq().kind == SeqKind::Tuple || self.seq().kind == SeqKind::Range) && listed(name, kTupleSafe)) {
        return MethodLookup::Safe;
      }
      return MethodLookup::None;
    case Kind::Dict:
      if (listed(name, kDictSafe)) return MethodLookup::Safe;
      if (listed(name, kDictUnsafe)) return MethodLookup::Unsafe;
      return MethodLookup::None;
    default: return MethodLookup::None;
  }
}

Value bind_method(const Value& self, std::string_view name) {
  return Value::callable(std::make_shared<BoundMethod>(self, std::string(name)));
}

}  // namespace moeserve::jinja
