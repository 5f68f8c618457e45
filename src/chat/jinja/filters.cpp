// jinja2's built-in filters, with transformers' `tojson` (json.dumps with
// ensure_ascii=False, indent, separators and sort_keys passed through).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "chat/jinja/builtins.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/pyformat.h"
#include "chat/jinja/pystr.h"
#include "chat/jinja/unicode.h"

namespace moeserve::jinja {

namespace {

// soft_str(): str() of the value, keeping Markup.
Value soft_str(const Value& v) {
  if (v.is_string()) return v;
  return Value::string(to_str(v));
}

Value iterator(std::vector<Value> items) { return Value::list(std::move(items), SeqKind::Iterator); }

// Filters that call str methods on their input directly (no str() conversion) fail for others.
const Value& require_str(const Value& v, const char* filter) {
  if (v.is_string()) return v;
  if (v.is_undefined()) raise_undefined(v);
  throw RuntimeError(std::string(filter) + ": expected a string, got '" + type_name(v) + "'");
}

// Filters that are generators in jinja2: they produce into `out`, and an error becomes the
// iterator's deferred error (raised only if the template reads that far).
using GeneratorFn = void (*)(Interpreter& interp, const Value& subject, CallArgs& args, std::vector<Value>& out);

template <GeneratorFn Fn>
Value generator(Interpreter& interp, const Value& subject, CallArgs& args) {
  std::vector<Value> out;
  std::exception_ptr error;
  try {
    Fn(interp, subject, args, out);
  } catch (const RuntimeError&) {
    error = std::current_exception();
  }
  Value v = iterator(std::move(out));
  v.seq().deferred_error = error;
  return v;
}

std::string lower_key(const Value& v) { return pystr::lower(v.str()); }

// Sort/compare key: strings lower-cased unless case_sensitive (jinja2's ignore_case postprocess).
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(lower_key(v));
  return v;
}

// make_attrgetter: "a.b.0" walks items (getitem, so dict keys first); default replaces undefined.
Value attr_path(Interpreter& interp, Value item, const Value& attribute, const Value* fallback) {
  if (attribute.is_int()) {
    item = interp.get_item(item, attribute);
  } else {
    const std::string path = to_str(attribute);
    size_t pos = 0;
    while (true) {
      const size_t dot = path.find('.', pos);
      const std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
      const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
      item = interp.get_item(item, numeric ? Value::integer(std::strtoll(part.c_str(), nullptr, 10)) : Value::string(part));
      if (fallback && item.is_undefined()) item = *fallback;
      if (dot == std::string::npos) break;
      pos = dot + 1;
    }
  }
  return item;
}

int compare_checked(const Value& a, const Value& b) {
  const int c = compare(a, b);
  return c == 2 ? 0 : c;
}

// ---- filters ----

Value f_abs(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "abs", {});
  if (v.is_float()) return Value::number(std::fabs(v.as_float()));
  if (v.is_int() || v.is_bool()) {
    const int64_t i = v.as_int();
    if (i == INT64_MIN) throw RuntimeError("integer overflow (the value needs more than 64 bits)");
    return Value::integer(i < 0 ? -i : i);
  }
  if (v.is_undefined()) raise_undefined(v);
  throw RuntimeError("bad operand type for abs(): '" + type_name(v) + "'");
}

Value f_attr(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "attr", {"name"});
  const std::string name = to_str(a.get_or(0, Value::string("")));
  if (v.is_object()) return interp.get_attr(v, name);
  if (v.is_undefined()) raise_undefined(v);
  const MethodLookup m = find_method(v, name);
  if (m == MethodLookup::Safe) return bind_method(v, name);
  if (m == MethodLookup::Unsafe) return Value::undefined("access to attribute '" + name + "' is unsafe.", true);
  return Value::undefined("'" + type_name(v) + " object' has no attribute '" + name + "'");
}

void f_batch(Interpreter& interp, const Value& v, CallArgs& call, std::vector<Value>& out) {
  Args a(call, "batch", {"linecount", "fill_with"});
  const int64_t n = a.integer(0, 0);
  if (n <= 0) throw RuntimeError("batch size must be positive");
  std::vector<Value> tmp;
  for (Value& item : iterate(v)) {
    interp.step();
    if (int64_t(tmp.size()) == n) {
      out.push_back(Value::list(std::move(tmp)));
      tmp.clear();
    }
    tmp.push_back(std::move(item));
  }
  if (!tmp.empty()) {
    if (a.has(1) && !a.get(1)->is_none())
      while (int64_t(tmp.size()) < n) tmp.push_back(*a.get(1));
    out.push_back(Value::list(std::move(tmp)));
  }
  return;
}

Value f_capitalize(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "capitalize", {});
  const Value s = soft_str(v);
  return Value::string(pystr::capitalize(s.str()), s.safe());
}

Value f_center(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "center", {"width"});
  const int64_t width = a.integer(0, 80);
  interp.check_size(size_t(std::max<int64_t>(0, width)) * 4);
  const Value s = soft_str(v);
  return Value::string(pystr::center(s.str(), width, ' '), s.safe());
}

Value f_default(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "default", {"default_value", "boolean"});
  if (v.is_undefined() || (a.flag(1, false) && !truthy(v))) return a.get_or(0, Value::string(""));
  return v;
}

Value f_dictsort(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "dictsort", {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) throw RuntimeError("dictsort requires a mapping, not " + type_name(v));
  const bool case_sensitive = a.flag(0, false);
  const std::string by = a.text(1, "key");
  if (by != "key" && by != "value") throw RuntimeError("You can only sort by either 'key' or 'value'");
  const size_t pos = by == "key" ? 0 : 1;
  std::vector<Value> items;
  for (const auto& kv : v.dict().items) items.push_back(Value::tuple({kv.first, kv.second}));
  interp.step(1 + items.size());
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    return compare_checked(sort_key(x.seq().items[pos], case_sensitive), sort_key(y.seq().items[pos], case_sensitive)) < 0;
  });
  if (a.flag(2, false)) {
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
      return compare_checked(sort_key(y.seq().items[pos], case_sensitive), sort_key(x.seq().items[pos], case_sensitive)) < 0;
    });
  }
  return Value::list(std::move(items));
}

Value f_escape(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "escape", {});
  if (v.is_string() && v.safe()) return v;
  return Value::string(html_escape(to_str(v)), true);
}

Value f_forceescape(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "forceescape", {});
  return Value::string(html_escape(to_str(v)), true);
}

Value f_first(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "first", {});
  if (v.is_seq() && v.seq().kind == SeqKind::Iterator) {
    SeqData& s = v.seq();
    if (s.consumed < s.items.size()) return s.items[s.consumed++];
    if (s.deferred_error) std::rethrow_exception(s.deferred_error);
  } else if (v.is_seq() && !v.seq().items.empty()) {
    return v.seq().items.front();
  } else if (v.is_dict() && v.dict().size()) {
    return v.dict().items.front().first;
  } else if (v.is_string() && !v.str().empty()) {
    size_t i = 0;
    utf8::decode(v.str(), i);
    return Value::string(v.str().substr(0, i), v.safe());
  } else if (!v.is_seq() && !v.is_dict() && !v.is_string() && !v.is_undefined()) {
    iterate(v);
  }
  return Value::undefined("No first item, sequence was empty.");
}

Value f_last(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "last", {});
  if (v.is_seq() && v.seq().kind == SeqKind::Iterator) throw RuntimeError("'generator' object is not reversible");
  if (v.is_seq() && !v.seq().items.empty()) return v.seq().items.back();
  if (v.is_dict() && v.dict().size()) return v.dict().items.back().first;
  if (v.is_string() && !v.str().empty()) {
    const std::u32string u = utf8::to_u32(v.str());
    return Value::string(utf8::from_u32(std::u32string(1, u.back())), v.safe());
  }
  if (!v.is_seq() && !v.is_dict() && !v.is_string() && !v.is_undefined())
    throw RuntimeError("'" + type_name(v) + "' object is not reversible");
  return Value::undefined("No last item, sequence was empty.");
}

// float() of a string as Python parses it (whitespace and underscores allowed, inf/nan words).
bool parse_float(const std::string& text, double& out) {
  std::string s = pystr::strip(text, nullptr, true, true);
  std::string lowered = pystr::lower(s);
  std::string body = lowered;
  bool neg = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    neg = body[0] == '-';
    body = body.substr(1);
  }
  if (body == "inf" || body == "infinity") {
    out = neg ? -INFINITY : INFINITY;
    return true;
  }
  if (body == "nan") {
    out = NAN;
    return true;
  }
  std::string clean;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (i == 0 || i + 1 >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(s[i + 1])))
        return false;
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-') return false;
    clean += c;
  }
  if (clean.empty()) return false;
  char* end = nullptr;
  out = std::strtod(clean.c_str(), &end);
  return end && *end == '\0' && clean.find_first_of("0123456789") != std::string::npos;
}

bool parse_int(const std::string& text, int64_t base, int64_t& out) {
  std::string s = pystr::strip(text, nullptr, true, true);
  bool neg = false;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  if (base == 0 || base == 16 || base == 8 || base == 2) {
    if (i + 1 < s.size() && s[i] == '0') {
      const char p = char(s[i + 1] | 0x20);
      const int64_t b = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
      if (b && (base == 0 || base == b)) {
        base = b;
        i += 2;
        if (i < s.size() && s[i] == '_') ++i;
      }
    }
    if (base == 0) base = 10;
  }
  if (i >= s.size()) return false;
  uint64_t v = 0;
  bool last_underscore = true;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (last_underscore) return false;
      last_underscore = true;
      continue;
    }
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'z') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'Z') d = c - 'A' + 10;
    else return false;
    if (d >= base) return false;
    if (v > (uint64_t(INT64_MAX) - uint64_t(d)) / uint64_t(base)) throw RuntimeError("integer too large");
    v = v * uint64_t(base) + uint64_t(d);
    last_underscore = false;
  }
  if (last_underscore) return false;
  out = neg ? -int64_t(v) : int64_t(v);
  return true;
}

Value f_float(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "float", {"default"});
  if (v.is_undefined()) raise_undefined(v);  // float(Undefined) raises UndefinedError
  if (v.is_number()) return Value::number(v.as_float());
  double d;
  if (v.is_string() && parse_float(v.str(), d)) return Value::number(d);
  return a.get_or(0, Value::number(0.0));
}

Value f_int(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "int", {"default", "base"});
  const Value fallback = a.get_or(0, Value::integer(0));
  if (v.is_undefined()) raise_undefined(v);  // int(Undefined) raises UndefinedError
  if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
  if (v.is_float()) {
    const double d = v.as_float();
    if (std::isnan(d)) throw RuntimeError("cannot convert float NaN to integer");
    if (std::isinf(d)) throw RuntimeError("cannot convert float infinity to integer");
    if (std::fabs(d) >= 9.2e18) throw RuntimeError("integer too large");
    return Value::integer(int64_t(d));
  }
  if (v.is_string()) {
    int64_t i;
    if (parse_int(v.str(), a.integer(1, 10), i)) return Value::integer(i);
    double d;
    if (parse_float(v.str(), d)) {
      if (std::isnan(d)) throw RuntimeError("cannot convert float NaN to integer");
      if (std::isinf(d)) throw RuntimeError("cannot convert float infinity to integer");
      if (std::fabs(d) >= 9.2e18) throw RuntimeError("integer too large");
      return Value::integer(int64_t(d));
    }
  }
  return fallback;
}

Value f_format(Interpreter&, const Value& v, CallArgs& call) {
  if (!call.positional.empty() && !call.keyword.empty())
    throw RuntimeError("can't handle positional and keyword arguments at the same time");
  const Value s = soft_str(v);
  Value args;
  if (!call.keyword.empty()) {
    auto d = std::make_shared<DictData>();
    for (auto& kw : call.keyword) d->set(Value::string(kw.first), kw.second);
    args = Value::dict(std::move(d));
  } else {
    args = Value::tuple(call.positional);
  }
  return Value::string(percent_format(s.str(), args, s.safe()), s.safe());
}

Value f_indent(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "indent", {"width", "first", "blank"});
  std::string indention;
  const Value width = a.get_or(0, Value::integer(4));
  if (width.is_string()) {
    indention = width.str();
  } else {
    const int64_t w = a.integer(0, 4);
    interp.check_size(size_t(std::max<int64_t>(0, w)));
    indention.assign(size_t(std::max<int64_t>(0, w)), ' ');
  }
  const Value s = require_str(v, "indent");
  const std::string text = s.str() + "\n";
  const std::vector<std::string> lines = pystr::splitlines(text, false);
  std::string rv;
  if (a.flag(2, false)) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + indention;
      rv += lines[i];
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n";
      if (!lines[i].empty()) rv += indention;
      rv += lines[i];
    }
  }
  if (a.flag(1, false)) rv = indention + rv;
  interp.check_size(rv.size());
  return Value::string(std::move(rv), s.safe());
}

void f_items(Interpreter&, const Value& v, CallArgs& call, std::vector<Value>& out) {
  Args a(call, "items", {});
  if (v.is_undefined()) return;
  if (!v.is_dict()) throw RuntimeError("Can only get item pairs from a mapping.");
  for (const auto& kv : v.dict().items) out.push_back(Value::tuple({kv.first, kv.second}));
  return;
}

Value f_join(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "join", {"d", "attribute"});
  const std::string sep = to_str(a.get_or(0, Value::string("")));
  std::string out;
  bool first = true;
  for (const Value& item : iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += to_str(a.has(1) ? attr_path(interp, item, *a.get(1), nullptr) : item);
    interp.check_size(out.size());
  }
  interp.step(1 + out.size() / 256);
  return Value::string(std::move(out));
}

Value f_length(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "length", {});
  return Value::integer(length(v));
}

Value f_list(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "list", {});
  std::vector<Value> items = iterate(v);
  interp.step(1 + items.size() / 16);
  return Value::list(std::move(items));
}

Value f_lower(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "lower", {});
  const Value s = soft_str(v);
  return Value::string(pystr::lower(s.str()), s.safe());
}

Value f_upper(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "upper", {});
  const Value s = soft_str(v);
  return Value::string(pystr::upper(s.str()), s.safe());
}

Value call_named_filter(Interpreter& interp, const std::string& name, const Value& item, CallArgs args) {
  const FilterFn f = find_filter(name);
  if (!f) throw RuntimeError("No filter named '" + name + "'.");
  return f(interp, item, args);
}

void f_map(Interpreter& interp, const Value& v, CallArgs& call, std::vector<Value>& out) {
  if (!truthy(v)) return;  // jinja2 yields nothing for a falsy input (None included)
  if (call.positional.empty()) {
    Value attribute, fallback;
    bool have_attribute = false, have_default = false;
    for (auto& kw : call.keyword) {
      if (kw.first == "attribute") {
        attribute = kw.second;
        have_attribute = true;
      } else if (kw.first == "default") {
        fallback = kw.second;
        have_default = true;
      } else {
        throw RuntimeError("Unexpected keyword argument '" + kw.first + "'");
      }
    }
    if (!have_attribute) throw RuntimeError("map requires a filter argument");
    for (const Value& item : iterate(v)) {
      interp.step();
      out.push_back(attr_path(interp, item, attribute, have_default && !fallback.is_none() ? &fallback : nullptr));
    }
    return;
  }
  const std::string name = to_str(call.positional[0]);
  CallArgs rest;
  rest.positional.assign(call.positional.begin() + 1, call.positional.end());
  rest.keyword = call.keyword;
  for (const Value& item : iterate(v)) {
    interp.step();
    out.push_back(call_named_filter(interp, name, item, rest));
  }
  return;
}

Value min_max(Interpreter& interp, const Value& v, CallArgs& call, bool want_max) {
  Args a(call, want_max ? "max" : "min", {"case_sensitive", "attribute"});
  const bool case_sensitive = a.flag(0, false);
  std::vector<Value> items = iterate(v);
  interp.step(1 + items.size());
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  auto key = [&](const Value& item) {
    return sort_key(a.has(1) ? attr_path(interp, item, *a.get(1), nullptr) : item, case_sensitive);
  };
  size_t best = 0;
  Value best_key = key(items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = key(items[i]);
    const int c = compare(k, best_key);
    if (c != 2 && (want_max ? c > 0 : c < 0)) {
      best = i;
      best_key = std::move(k);
    }
  }
  return items[best];
}

Value f_max(Interpreter& interp, const Value& v, CallArgs& call) { return min_max(interp, v, call, true); }
Value f_min(Interpreter& interp, const Value& v, CallArgs& call) { return min_max(interp, v, call, false); }

bool call_named_test(Interpreter& interp, const std::string& name, const Value& item, CallArgs args) {
  const TestFn t = find_test(name);
  if (!t) throw RuntimeError("No test named '" + name + "'.");
  return t(interp, item, args);
}

void select_reject(Interpreter& interp, const Value& v, CallArgs& call, bool select, bool by_attribute,
                   std::vector<Value>& out) {
  if (!truthy(v)) return;  // jinja2 yields nothing for a falsy input (None included)
  Value attribute;
  size_t next = 0;
  if (by_attribute) {
    if (call.positional.empty()) throw RuntimeError("Missing parameter for attribute name");
    attribute = call.positional[0];
    next = 1;
  }
  std::string test_name;
  CallArgs test_args;
  const bool has_test = call.positional.size() > next;
  if (has_test) {
    test_name = to_str(call.positional[next]);
    if (!find_test(test_name)) throw RuntimeError("No test named '" + test_name + "'.");
    test_args.positional.assign(call.positional.begin() + std::ptrdiff_t(next) + 1, call.positional.end());
    test_args.keyword = call.keyword;
  } else if (!call.keyword.empty()) {
    throw RuntimeError("unexpected keyword argument");
  }
  for (Value& item : iterate(v)) {
    interp.step();
    const Value subject = by_attribute ? attr_path(interp, item, attribute, nullptr) : item;
    const bool ok = has_test ? call_named_test(interp, test_name, subject, test_args) : truthy(subject);
    if (ok == select) out.push_back(std::move(item));
  }
  return;
}

void f_select(Interpreter& i, const Value& v, CallArgs& c, std::vector<Value>& out) { select_reject(i, v, c, true, false, out); }
void f_reject(Interpreter& i, const Value& v, CallArgs& c, std::vector<Value>& out) { select_reject(i, v, c, false, false, out); }
void f_selectattr(Interpreter& i, const Value& v, CallArgs& c, std::vector<Value>& out) { select_reject(i, v, c, true, true, out); }
void f_rejectattr(Interpreter& i, const Value& v, CallArgs& c, std::vector<Value>& out) { select_reject(i, v, c, false, true, out); }

Value f_replace(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "replace", {"old", "new", "count"});
  const Value* count = a.get(2);
  std::string out = pystr::replace(to_str(v), to_str(a.get_or(0, Value::string(""))), to_str(a.get_or(1, Value::string(""))),
                                   count && !count->is_none() ? a.integer(2, -1) : -1);
  interp.check_size(out.size());
  interp.step(1 + out.size() / 256);
  return Value::string(std::move(out));
}

Value f_reverse(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "reverse", {});
  if (v.is_string()) return Value::string(pystr::reverse(v.str()), v.safe());
  std::vector<Value> items = iterate(v);
  std::reverse(items.begin(), items.end());
  if (v.is_seq() && v.seq().kind == SeqKind::Iterator) return Value::list(std::move(items));
  return iterator(std::move(items));
}

// Python's round(x, n): correctly rounded, ties to even.
double py_round(double x, int64_t n) {
  if (!std::isfinite(x)) return x;
  if (n > 300) return x;
  if (n >= 0) {
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%.*f", int(n), x);
    return std::strtod(buf, nullptr);
  }
  const double p = std::pow(10.0, double(-n));
  const double y = x / p;
  double r = std::nearbyint(y);
  if (std::fabs(y - std::trunc(y)) == 0.5) r = 2.0 * std::nearbyint(y / 2.0);
  return r * p;
}

Value f_round(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "round", {"precision", "method"});
  const int64_t precision = a.integer(0, 0);
  const std::string method = a.text(1, "common");
  if (method != "common" && method != "ceil" && method != "floor")
    throw RuntimeError("method must be common, ceil or floor");
  if (!v.is_number()) {
    if (v.is_undefined()) raise_undefined(v);
    throw RuntimeError("type " + type_name(v) + " doesn't define __round__ method");
  }
  if (method == "common") {
    if (!v.is_float()) {
      if (precision >= 0) return Value::integer(v.as_int());
      const double r = py_round(double(v.as_int()), precision);
      return Value::integer(int64_t(r));
    }
    return Value::number(py_round(v.as_float(), precision));
  }
  const double scale = std::pow(10.0, double(precision));
  const double x = v.as_float() * scale;
  const double r = method == "ceil" ? std::ceil(x) : std::floor(x);
  return Value::number(r / scale);
}

Value f_groupby(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "groupby", {"attribute", "default", "case_sensitive"});
  if (!a.has(0)) throw RuntimeError("sync_do_groupby() missing 1 required positional argument: 'attribute'");
  const Value attribute = *a.get(0);
  const Value* fallback = a.has(1) && !a.get(1)->is_none() ? a.get(1) : nullptr;
  const bool case_sensitive = a.flag(2, false);
  std::vector<Value> items = iterate(v);
  interp.step(1 + items.size());
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) keyed.emplace_back(sort_key(attr_path(interp, item, attribute, fallback), case_sensitive), item);
  std::stable_sort(keyed.begin(), keyed.end(), [](const auto& x, const auto& y) { return compare_checked(x.first, y.first) < 0; });
  std::vector<Value> out;
  for (size_t i = 0; i < keyed.size();) {
    size_t j = i;
    std::vector<Value> group;
    while (j < keyed.size() && equals(keyed[j].first, keyed[i].first)) group.push_back(keyed[j++].second);
    // The group is named by the first member's own (not lower-cased) value.
    Value grouper = case_sensitive ? keyed[i].first : attr_path(interp, group[0], attribute, fallback);
    Value t = Value::tuple({std::move(grouper), Value::list(std::move(group))});
    t.seq().group_tuple = true;
    out.push_back(std::move(t));
    i = j;
  }
  return Value::list(std::move(out));
}

Value f_safe(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "safe", {});
  if (v.is_string()) return Value::string(v.str(), true);
  return Value::string(to_str(v), true);
}

void f_slice(Interpreter& interp, const Value& v, CallArgs& call, std::vector<Value>& out) {
  Args a(call, "slice", {"slices", "fill_with"});
  const int64_t slices = a.integer(0, 0);
  if (slices <= 0) throw RuntimeError("slices must be positive");
  const std::vector<Value> seq = iterate(v);
  interp.step(1 + seq.size());
  const int64_t length = int64_t(seq.size());
  const int64_t items_per_slice = length / slices;
  const int64_t slices_with_extra = length % slices;
  int64_t offset = 0;
  for (int64_t i = 0; i < slices; ++i) {
    const int64_t start = offset + i * items_per_slice;
    if (i < slices_with_extra) ++offset;
    const int64_t end = offset + (i + 1) * items_per_slice;
    std::vector<Value> tmp(seq.begin() + start, seq.begin() + end);
    if (a.has(1) && !a.get(1)->is_none() && i >= slices_with_extra) tmp.push_back(*a.get(1));
    out.push_back(Value::list(std::move(tmp)));
  }
  return;
}

Value f_sort(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "sort", {"reverse", "case_sensitive", "attribute"});
  const bool reverse = a.flag(0, false);
  const bool case_sensitive = a.flag(1, false);
  std::vector<Value> items = iterate(v);
  interp.step(1 + items.size());
  std::vector<std::pair<Value, Value>> keyed;
  keyed.reserve(items.size());
  for (Value& item : items) {
    Value k = sort_key(a.has(2) ? attr_path(interp, item, *a.get(2), nullptr) : item, case_sensitive);
    keyed.emplace_back(std::move(k), std::move(item));
  }
  if (reverse) {
    std::stable_sort(keyed.begin(), keyed.end(), [](const auto& x, const auto& y) { return compare_checked(y.first, x.first) < 0; });
  } else {
    std::stable_sort(keyed.begin(), keyed.end(), [](const auto& x, const auto& y) { return compare_checked(x.first, y.first) < 0; });
  }
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return Value::list(std::move(out));
}

Value f_string(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "string", {});
  return soft_str(v);
}

Value f_sum(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "sum", {"attribute", "start"});
  Value total = a.get_or(1, Value::integer(0));
  for (const Value& item : iterate(v)) {
    interp.step();
    total = interp.binary_op(BinOp::Add, total, a.has(0) ? attr_path(interp, item, *a.get(0), nullptr) : item);
  }
  return total;
}

Value f_title(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "title", {});
  // jinja2's title: split at runs of [-\s({\[<] and capitalize each piece.
  const Value s = soft_str(v);
  const std::u32string u = utf8::to_u32(s.str());
  auto is_sep = [](char32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || utf8::is_space(c); };
  std::string out;
  size_t i = 0;
  while (i < u.size()) {
    size_t j = i;
    const bool sep = is_sep(u[i]);
    while (j < u.size() && is_sep(u[j]) == sep) ++j;
    const std::string piece = utf8::from_u32(std::u32string_view(u).substr(i, j - i));
    if (sep) {
      out += piece;
    } else {
      std::u32string p = utf8::to_u32(piece);
      std::u32string t;
      utf8::append_upper(t, p[0]);
      out += utf8::from_u32(t) + pystr::lower(utf8::from_u32(std::u32string_view(p).substr(1)));
    }
    i = j;
  }
  return Value::string(std::move(out), s.safe());
}

Value f_tojson(Interpreter& interp, const Value& v, CallArgs& call) {
  Args a(call, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonDumpOptions o;
  o.ensure_ascii = a.flag(0, false);
  o.sort_keys = a.flag(3, false);
  if (const Value* indent = a.get(1); indent && !indent->is_none()) {
    o.indent_set = true;
    if (indent->is_string()) {
      o.indent = indent->str();
    } else {
      const int64_t n = a.integer(1, 0);
      interp.check_size(size_t(std::max<int64_t>(0, n)));
      o.indent.assign(size_t(std::max<int64_t>(0, n)), ' ');
    }
    o.item_separator = ",";
  }
  if (const Value* sep = a.get(2); sep && !sep->is_none()) {
    const std::vector<Value> parts = iterate(*sep);
    if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_string())
      throw RuntimeError("separators must be a pair of strings");
    o.item_separator = parts[0].str();
    o.key_separator = parts[1].str();
  }
  std::string out = json_dumps(v, o);
  interp.check_size(out.size());
  interp.step(1 + out.size() / 256);
  return Value::string(std::move(out));
}

Value f_trim(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "trim", {"chars"});
  const Value s = soft_str(v);
  const Value* chars = a.get(0);
  if (chars && !chars->is_none()) {
    if (!chars->is_string()) throw RuntimeError("strip arg must be None or str");
    return Value::string(pystr::strip(s.str(), &chars->str(), true, true), s.safe());
  }
  return Value::string(pystr::strip(s.str(), nullptr, true, true), s.safe());
}

Value f_truncate(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "truncate", {"length", "killwords", "end", "leeway"});
  const int64_t len = a.integer(0, 255);
  const std::string end = a.text(2, "...");
  const int64_t leeway = a.has(3) && !a.get(3)->is_none() ? a.integer(3, 5) : 5;
  const int64_t end_len = int64_t(utf8::length(end));
  if (len < end_len) throw RuntimeError("expected length >= " + std::to_string(end_len) + ", got " + std::to_string(len));
  if (leeway < 0) throw RuntimeError("expected leeway >= 0, got " + std::to_string(leeway));
  // jinja2 measures the value with len() and only then treats it as a string.
  if (length(v) <= len + leeway) return v;
  if (!v.is_string()) throw RuntimeError("'" + type_name(v) + "' object has no attribute 'rsplit'");
  const std::string& s = v.str();
  const std::string head = s.substr(0, utf8::byte_offset(s, size_t(len - end_len)));
  if (a.flag(1, false)) return Value::string(head + end);
  const size_t space = head.rfind(' ');
  return Value::string((space == std::string::npos ? head : head.substr(0, space)) + end);
}

void f_unique(Interpreter& interp, const Value& v, CallArgs& call, std::vector<Value>& out) {
  Args a(call, "unique", {"case_sensitive", "attribute"});
  const bool case_sensitive = a.flag(0, false);
  std::vector<Value> seen;
  for (Value& item : iterate(v)) {
    Value key = sort_key(a.has(1) ? attr_path(interp, item, *a.get(1), nullptr) : item, case_sensitive);
    if (!hashable(key)) throw RuntimeError("unhashable type: '" + type_name(key) + "'");
    bool found = false;
    for (const Value& s : seen) {
      interp.step();
      if (equals(s, key)) {
        found = true;
        break;
      }
    }
    if (found) continue;
    seen.push_back(std::move(key));
    out.push_back(std::move(item));
  }
  return;
}

Value f_wordcount(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "wordcount", {});
  const std::string s = to_str(v);
  int64_t n = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    const bool w = utf8::is_word(utf8::decode(s, i));
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::integer(n);
}

Value f_striptags(Interpreter&, const Value& v, CallArgs& call) {
  Args a(call, "striptags", {});
  // Markup.striptags(): drop comments and tags, unescape entities of the common kind, collapse whitespace.
  std::string s = to_str(v), out;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 4, "<!--") == 0) {
      const size_t end = s.find("-->", i + 4);
      if (end == std::string::npos) break;
      i = end + 3;
    } else if (s[i] == '<') {
      const size_t end = s.find('>', i + 1);
      if (end == std::string::npos) {
        out += s.substr(i);
        break;
      }
      i = end + 1;
    } else {
      out += s[i++];
    }
  }
  const std::vector<std::string> words = pystr::split(out, nullptr, -1);
  std::string joined;
  for (size_t i = 0; i < words.size(); ++i) joined += (i ? " " : "") + words[i];
  joined = pystr::replace(joined, "&lt;", "<", -1);
  joined = pystr::replace(joined, "&gt;", ">", -1);
  joined = pystr::replace(joined, "&#34;", "\"", -1);
  joined = pystr::replace(joined, "&#39;", "'", -1);
  joined = pystr::replace(joined, "&quot;", "\"", -1);
  joined = pystr::replace(joined, "&amp;", "&", -1);
  return Value::string(std::move(joined));
}

struct FilterEntry {
  const char* name;
  FilterFn fn;
};


constexpr FilterEntry kFilters[] = {
    {"abs", f_abs},           {"attr", f_attr},         {"batch", generator<f_batch>},         {"capitalize", f_capitalize},
    {"center", f_center},     {"count", f_length},      {"d", f_default},           {"default", f_default},
    {"dictsort", f_dictsort}, {"e", f_escape},          {"escape", f_escape},       {"first", f_first},
    {"float", f_float},       {"forceescape", f_forceescape}, {"format", f_format}, {"groupby", f_groupby},     {"indent", f_indent},
    {"int", f_int},           {"items", generator<f_items>},       {"join", f_join},           {"last", f_last},
    {"length", f_length},     {"list", f_list},         {"lower", f_lower},         {"map", generator<f_map>},
    {"max", f_max},           {"min", f_min},           {"reject", generator<f_reject>},       {"rejectattr", generator<f_rejectattr>},
    {"replace", f_replace},   {"reverse", f_reverse},   {"round", f_round},         {"safe", f_safe},
    {"select", generator<f_select>},     {"selectattr", generator<f_selectattr>}, {"slice", generator<f_slice>},     {"sort", f_sort},
    {"string", f_string},     {"striptags", f_striptags}, {"sum", f_sum},           {"title", f_title},
    {"tojson", f_tojson},     {"trim", f_trim},         {"truncate", f_truncate},   {"unique", generator<f_unique>},
    {"upper", f_upper},       {"wordcount", f_wordcount},
};


}  // namespace

FilterFn find_filter(std::string_view name) {
  for (const FilterEntry& f : kFilters)
    if (name == f.name) return f.fn;
  return nullptr;
}


}  // namespace moeserve::jinja
