#include "chat/jinja/value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "chat/jinja/unicode.h"
#include "chat/py_value.h"

namespace moeserve::jinja {

Value Value::undefined(std::string hint, bool unsafe) {
  Value v;
  v.kind_ = Kind::Undefined;
  v.b_ = unsafe;
  if (!hint.empty()) v.str_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::None;
  return v;
}

Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::Bool;
  v.b_ = b;
  return v;
}

Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::Int;
  v.i_ = i;
  return v;
}

Value Value::number(double d) {
  Value v;
  v.kind_ = Kind::Float;
  v.f_ = d;
  return v;
}

Value Value::string(std::string s, bool safe) {
  Value v;
  v.kind_ = Kind::String;
  v.safe_ = safe;
  v.str_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

uint32_t container_depth(const Value& v) {
  if (v.is_seq()) return v.seq().depth;
  if (v.is_dict()) return v.dict().depth;
  return 0;
}

Value Value::list(std::vector<Value> items, SeqKind kind) {
  auto data = std::make_shared<SeqData>();
  data->kind = kind;
  for (const Value& item : items) data->depth = std::max(data->depth, container_depth(item) + 1);
  if (data->depth > kMaxContainerDepth) throw RuntimeError("containers nested too deeply");
  data->items = std::move(items);
  Value v;
  v.kind_ = Kind::Seq;
  v.obj_ = std::move(data);
  return v;
}

Value Value::range(int64_t start, int64_t stop, int64_t step) {
  std::vector<Value> items;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) items.push_back(integer(i));
  Value v = list(std::move(items), SeqKind::Range);
  SeqData& d = v.seq();
  d.range_start = start;
  d.range_stop = stop;
  d.range_step = step;
  return v;
}

Value Value::dict(std::shared_ptr<DictData> d) {
  Value v;
  v.kind_ = Kind::Dict;
  v.obj_ = std::move(d);
  return v;
}

Value Value::empty_dict() { return dict(std::make_shared<DictData>()); }

Value Value::callable(std::shared_ptr<CallableObject> c) {
  Value v;
  v.kind_ = Kind::Callable;
  v.obj_ = std::move(c);
  return v;
}

Value Value::object(std::shared_ptr<Object> o) {
  Value v;
  v.kind_ = Kind::Object;
  v.obj_ = std::move(o);
  return v;
}

bool Value::is_seq_kind(SeqKind k) const { return kind_ == Kind::Seq && seq().kind == k; }

double Value::as_float() const {
  switch (kind_) {
    case Kind::Float: return f_;
    case Kind::Int: return double(i_);
    case Kind::Bool: return b_ ? 1.0 : 0.0;
    default: return 0.0;
  }
}

SeqData& Value::seq() const { return static_cast<SeqData&>(*obj_); }
DictData& Value::dict() const { return static_cast<DictData&>(*obj_); }
CallableObject& Value::callable() const { return static_cast<CallableObject&>(*obj_); }
Object& Value::object() const { return static_cast<Object&>(*obj_); }

const std::string& Value::undefined_hint() const {
  static const std::string empty;
  return str_ ? *str_ : empty;
}

Value Object::call(Interpreter&, CallArgs&) { throw RuntimeError("'" + repr() + "' object is not callable"); }

Value NamespaceObject::get_attr(Interpreter&, std::string_view name) {
  if (const Value* v = attrs.find(name)) return *v;
  return Value::undefined("'Namespace' object has no attribute '" + std::string(name) + "'");
}

namespace {
std::string repr_dict(const DictData& d);
}

std::string NamespaceObject::repr() const { return "<Namespace " + repr_dict(attrs) + ">"; }

// ---------------------------------------------------------------------------------------------
// dict

const Value* DictData::find(std::string_view key) const {
  auto it = string_index_.find(std::string(key));
  return it == string_index_.end() ? nullptr : &items[it->second].second;
}

const Value* DictData::find(const Value& key) const {
  if (key.is_string()) return find(std::string_view(key.str()));
  for (const auto& kv : items)
    if (!kv.first.is_string() && equals(kv.first, key)) return &kv.second;
  return nullptr;
}

void DictData::set(const Value& key, Value value) {
  depth = std::max(depth, std::max(container_depth(key), container_depth(value)) + 1);
  if (depth > kMaxContainerDepth) throw RuntimeError("containers nested too deeply");
  if (key.is_string()) {
    auto it = string_index_.find(key.str());
    if (it != string_index_.end()) {
      items[it->second].second = std::move(value);
    } else {
      string_index_.emplace(key.str(), items.size());
      items.emplace_back(key, std::move(value));
    }
    return;
  }
  if (!hashable(key)) throw RuntimeError("unhashable type: '" + type_name(key) + "'");
  for (auto& kv : items) {
    if (!kv.first.is_string() && equals(kv.first, key)) {
      kv.second = std::move(value);
      return;
    }
  }
  items.emplace_back(key, std::move(value));
}

// ---------------------------------------------------------------------------------------------
// Python semantics

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return v.as_bool();
    case Kind::Int: return v.as_int() != 0;
    case Kind::Float: return v.as_float() != 0.0;
    case Kind::String: return !v.str().empty();
    case Kind::Seq: {
      const SeqData& s = v.seq();
      return s.kind == SeqKind::Iterator || !s.items.empty();
    }
    case Kind::Dict: return v.dict().size() != 0;
    case Kind::Callable:
    case Kind::Object: return true;
  }
  return false;
}

namespace {

// Exact comparison of two Python numbers (int64 is exact in long double's 64-bit mantissa).
int compare_numbers(const Value& a, const Value& b) {
  if (!a.is_float() && !b.is_float()) {
    const int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  const long double x = a.is_float() ? (long double)a.as_float() : (long double)a.as_int();
  const long double y = b.is_float() ? (long double)b.as_float() : (long double)b.as_int();
  if (std::isnan(x) || std::isnan(y)) return 2;
  return x < y ? -1 : x > y ? 1 : 0;
}

bool sequence_like(const Value& v) { return v.is_seq() && v.seq().kind != SeqKind::Iterator; }

}  // namespace

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return compare_numbers(a, b) == 0;
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::Undefined:
    case Kind::None: return true;
    case Kind::String: return a.str() == b.str();
    case Kind::Seq: {
      const SeqData& x = a.seq();
      const SeqData& y = b.seq();
      if (&x == &y) return true;
      if (x.kind == SeqKind::Iterator || y.kind == SeqKind::Iterator) return false;
      const bool x_list = x.kind == SeqKind::List, y_list = y.kind == SeqKind::List;
      const bool x_tuple = x.kind == SeqKind::Tuple, y_tuple = y.kind == SeqKind::Tuple;
      if (x_list != y_list || x_tuple != y_tuple) return false;
      if (x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!equals(x.items[i], y.items[i])) return false;
      return true;
    }
    case Kind::Dict: {
      const DictData& x = a.dict();
      const DictData& y = b.dict();
      if (x.size() != y.size()) return false;
      for (const auto& kv : x.items) {
        const Value* other = y.find(kv.first);
        if (!other || !equals(kv.second, *other)) return false;
      }
      return true;
    }
    default: return a.heap() == b.heap();
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return compare_numbers(a, b);
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());  // UTF-8 byte order is code-point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (sequence_like(a) && sequence_like(b) && a.seq().kind == b.seq().kind &&
      (a.seq().kind == SeqKind::List || a.seq().kind == SeqKind::Tuple)) {
    const auto& x = a.seq().items;
    const auto& y = b.seq().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i])) continue;
      return compare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  if (a.is_undefined() || b.is_undefined()) raise_undefined(a.is_undefined() ? a : b);
  throw RuntimeError("'<' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return v.safe() ? "Markup" : "str";
    case Kind::Seq:
      switch (v.seq().kind) {
        case SeqKind::List: return "list";
        case SeqKind::Tuple: return "tuple";
        case SeqKind::Range: return "range";
        case SeqKind::DictKeys: return "dict_keys";
        case SeqKind::DictValues: return "dict_values";
        case SeqKind::DictItems: return "dict_items";
        case SeqKind::Iterator: return "generator";
      }
      return "list";
    case Kind::Dict: return "dict";
    case Kind::Callable: return "function";
    case Kind::Object: return v.object().is_namespace() ? "Namespace" : "LoopContext";
  }
  return "object";
}

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  return chat::py_float_repr(d);  // finite: the same shortest round-trip layout as json.dumps
}

std::string repr_string(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out;
  out.reserve(s.size() + 2);
  out += quote;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = utf8::decode(s, i);
    if (c == char32_t(quote) || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", unsigned(c));
      out += buf;
    } else if (c < 0x7F || utf8::is_printable(c)) {
      utf8::append(out, c);
    } else {
      char buf[16];
      if (c <= 0xFF)
        std::snprintf(buf, sizeof(buf), "\\x%02x", unsigned(c));
      else if (c <= 0xFFFF)
        std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(c));
      else
        std::snprintf(buf, sizeof(buf), "\\U%08x", unsigned(c));
      out += buf;
    }
  }
  out += quote;
  return out;
}

namespace {

// Python's repr guards: a container met again while being printed shows as [...] or {...} (only
// namespaces can close such a cycle), and runaway depth raises instead of exhausting the stack.
thread_local std::vector<const void*> repr_active;

struct ReprGuard {
  explicit ReprGuard(const void* p) : recursive(false) {
    for (const void* a : repr_active)
      if (a == p) recursive = true;
    if (repr_active.size() > 2000) throw RuntimeError("maximum recursion depth exceeded while getting the repr of an object");
    repr_active.push_back(p);
  }
  ~ReprGuard() { repr_active.pop_back(); }
  bool recursive;
};

void join_repr(std::string& out, const std::vector<Value>& items, size_t from = 0) {
  for (size_t i = from; i < items.size(); ++i) {
    if (i > from) out += ", ";
    out += repr(items[i]);
  }
}

std::string repr_seq(const SeqData& s) {
  ReprGuard guard(&s);
  if (guard.recursive) return s.kind == SeqKind::Tuple ? "(...)" : "[...]";
  std::string out;
  switch (s.kind) {
    case SeqKind::List:
      out = "[";
      join_repr(out, s.items);
      return out + "]";
    case SeqKind::Tuple:
      out = "(";
      join_repr(out, s.items);
      return out + (s.items.size() == 1 ? ",)" : ")");
    case SeqKind::Range:
      out = "range(" + std::to_string(s.range_start) + ", " + std::to_string(s.range_stop);
      if (s.range_step != 1) out += ", " + std::to_string(s.range_step);
      return out + ")";
    case SeqKind::DictKeys:
      out = "dict_keys([";
      join_repr(out, s.items);
      return out + "])";
    case SeqKind::DictValues:
      out = "dict_values([";
      join_repr(out, s.items);
      return out + "])";
    case SeqKind::DictItems:
      out = "dict_items([";
      join_repr(out, s.items);
      return out + "])";
    case SeqKind::Iterator: return "<generator object>";
  }
  return out;
}

std::string repr_dict(const DictData& d) {
  ReprGuard guard(&d);
  if (guard.recursive) return "{...}";
  std::string out = "{";
  bool first = true;
  for (const auto& kv : d.items) {
    if (!first) out += ", ";
    first = false;
    out += repr(kv.first);
    out += ": ";
    out += repr(kv.second);
  }
  return out + "}";
}

}  // namespace

std::string to_str(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined: return "";
    case Kind::String: return v.str();
    default: return repr(v);
  }
}

std::string repr(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "None";
    case Kind::Bool: return v.as_bool() ? "True" : "False";
    case Kind::Int: return std::to_string(v.as_int());
    case Kind::Float: return format_float(v.as_float());
    case Kind::String: return v.safe() ? "Markup(" + repr_string(v.str()) + ")" : repr_string(v.str());
    case Kind::Seq: return repr_seq(v.seq());
    case Kind::Dict: return repr_dict(v.dict());
    case Kind::Callable: return v.callable().repr();
    case Kind::Object: return v.object().repr();
  }
  return "";
}

bool hashable(const Value& v) {
  switch (v.kind()) {
    case Kind::Dict: return false;
    case Kind::Seq: {
      const SeqData& s = v.seq();
      if (s.kind == SeqKind::Tuple) {
        for (const Value& item : s.items)
          if (!hashable(item)) return false;
        return true;
      }
      return s.kind == SeqKind::Range || s.kind == SeqKind::Iterator;
    }
    default: return true;
  }
}

void raise_undefined(const Value& v) {
  const std::string& hint = v.undefined_hint();
  if (v.undefined_unsafe()) throw RuntimeError(hint.empty() ? "access to an unsafe attribute" : hint);
  throw RuntimeError(hint.empty() ? "value is undefined" : hint);
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined: return {};
    case Kind::String: {
      std::vector<Value> out;
      const std::string& s = v.str();
      for (size_t i = 0; i < s.size();) {
        const size_t start = i;
        utf8::decode(s, i);
        out.push_back(Value::string(s.substr(start, i - start), v.safe()));
      }
      return out;
    }
    case Kind::Seq: {
      SeqData& s = v.seq();
      if (s.kind != SeqKind::Iterator) return s.items;
      std::vector<Value> out(s.items.begin() + std::ptrdiff_t(s.consumed), s.items.end());
      s.consumed = s.items.size();
      if (s.deferred_error) std::rethrow_exception(s.deferred_error);
      return out;
    }
    case Kind::Dict: {
      std::vector<Value> out;
      out.reserve(v.dict().size());
      for (const auto& kv : v.dict().items) out.push_back(kv.first);
      return out;
    }
    default: throw RuntimeError("'" + type_name(v) + "' object is not iterable");
  }
}

int64_t length(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined: return 0;
    case Kind::String: return int64_t(utf8::length(v.str()));
    case Kind::Seq:
      if (v.seq().kind == SeqKind::Iterator) throw RuntimeError("object of type 'generator' has no len()");
      return int64_t(v.seq().items.size());
    case Kind::Dict: return int64_t(v.dict().size());
    default: throw RuntimeError("object of type '" + type_name(v) + "' has no len()");
  }
}

}  // namespace moeserve::jinja
