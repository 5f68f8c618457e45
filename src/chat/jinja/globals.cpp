// Global functions of the environment transformers builds: jinja2's range/dict/namespace/cycler/
// joiner plus transformers' raise_exception(message) and strftime_now(format).
#include <cstring>
#include <ctime>
#include <functional>

#include "chat/jinja/builtins.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/pystr.h"

namespace moeserve::jinja {

namespace {

struct Function : CallableObject {
  using Fn = Value (*)(Interpreter&, CallArgs&);
  Function(const char* n, Fn f) : name(n), fn(f) {}
  Value call(Interpreter& interp, CallArgs& args) override { return fn(interp, args); }
  std::string repr() const override { return "<function " + std::string(name) + ">"; }
  const char* name;
  Fn fn;
};

// The sandbox refuses ranges longer than this (jinja2.sandbox.MAX_RANGE).
constexpr int64_t kMaxRange = 100000;

Value g_range(Interpreter& interp, CallArgs& call) {
  if (!call.keyword.empty()) throw RuntimeError("range() takes no keyword arguments");
  std::vector<int64_t> v;
  for (const Value& a : call.positional) {
    if (a.is_undefined()) raise_undefined(a);
    if (!a.is_int() && !a.is_bool()) throw RuntimeError("'" + type_name(a) + "' object cannot be interpreted as an integer");
    v.push_back(a.as_int());
  }
  int64_t start = 0, stop = 0, stride = 1;
  if (v.size() == 1) stop = v[0];
  else if (v.size() == 2 || v.size() == 3) {
    start = v[0];
    stop = v[1];
    if (v.size() == 3) stride = v[2];
  } else {
    throw RuntimeError("range expected at most 3 arguments, got " + std::to_string(v.size()));
  }
  if (stride == 0) throw RuntimeError("range() arg 3 must not be zero");
  const long double len = stride > 0 ? ((long double)stop - start + stride - 1) / stride : ((long double)start - stop - stride - 1) / -stride;
  if (len > kMaxRange) throw RuntimeError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  interp.step(1 + uint64_t(std::max<long double>(0, len)) / 16);
  return Value::range(start, stop, stride);
}

// dict(*args, **kwargs): a mapping or an iterable of pairs, then keyword arguments.
std::shared_ptr<DictData> build_dict(CallArgs& call, const char* name) {
  if (call.positional.size() > 1)
    throw RuntimeError(std::string(name) + " expected at most 1 argument, got " + std::to_string(call.positional.size()));
  auto d = std::make_shared<DictData>();
  if (!call.positional.empty()) {
    const Value& src = call.positional[0];
    if (src.is_dict()) {
      for (const auto& kv : src.dict().items) d->set(kv.first, kv.second);
    } else {
      for (const Value& pair : iterate(src)) {
        const std::vector<Value> kv = iterate(pair);
        if (kv.size() != 2) throw RuntimeError("dictionary update sequence element has length " + std::to_string(kv.size()) + "; 2 is required");
        d->set(kv[0], kv[1]);
      }
    }
  }
  for (auto& kw : call.keyword) d->set(Value::string(kw.first), kw.second);
  return d;
}

Value g_dict(Interpreter&, CallArgs& call) { return Value::dict(build_dict(call, "dict")); }

Value g_namespace(Interpreter& interp, CallArgs& call) {
  auto ns = std::make_shared<NamespaceObject>();
  ns->attrs = *build_dict(call, "namespace");
  interp.register_namespace(ns);
  return Value::object(ns);
}

Value g_raise_exception(Interpreter&, CallArgs& call) {
  Args a(call, "raise_exception", {"message"});
  throw RaisedError(to_str(a.get_or(0, Value::undefined())));
}

// datetime.now().strftime(fmt): the C library's strftime, except the directives Python handles
// itself for a naive datetime (%f microseconds, %z and %Z empty).
Value g_strftime_now(Interpreter& interp, CallArgs& call) {
  Args a(call, "strftime_now", {"format"});
  const Value* f = a.get(0);
  if (!f) throw RuntimeError("strftime_now() missing 1 required positional argument: 'format'");
  if (!f->is_string()) throw RuntimeError("strftime() argument 1 must be str, not " + type_name(*f));
  std::tm tm = interp.now();
  const std::string& fmt = f->str();
  std::string prepared;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] == '%' && i + 1 < fmt.size()) {
      const char d = fmt[i + 1];
      if (d == 'f') {
        prepared += "000000";
        ++i;
        continue;
      }
      if (d == 'z' || d == 'Z') {
        ++i;
        continue;
      }
      prepared += fmt[i];
      prepared += d;
      ++i;
      continue;
    }
    prepared += fmt[i];
  }
  if (prepared.empty()) return Value::string("");
  interp.check_size(prepared.size() * 16);
  std::string out(prepared.size() * 16 + 64, '\0');
  const size_t n = std::strftime(out.data(), out.size(), prepared.c_str(), &tm);
  out.resize(n);
  return Value::string(std::move(out));
}

struct Cycler : Object, std::enable_shared_from_this<Cycler> {
  std::vector<Value> items;
  size_t pos = 0;
  struct Method : CallableObject {
    Method(std::shared_ptr<Cycler> c, bool n) : cycler(std::move(c)), next(n) {}
    Value call(Interpreter&, CallArgs& args) override {
      Args a(args, next ? "next" : "reset", {});
      if (!next) {
        cycler->pos = 0;
        return Value::none();
      }
      Value v = cycler->items[cycler->pos];
      cycler->pos = (cycler->pos + 1) % cycler->items.size();
      return v;
    }
    std::string repr() const override { return next ? "<bound method Cycler.next>" : "<bound method Cycler.reset>"; }
    std::shared_ptr<Cycler> cycler;
    bool next;
  };
  Value get_attr(Interpreter&, std::string_view name) override {
    if (name == "current") return items[pos];
    if (name == "next" || name == "reset") return Value::callable(std::make_shared<Method>(shared_from_this(), name == "next"));
    return Value::undefined("'Cycler' object has no attribute '" + std::string(name) + "'");
  }
  std::string repr() const override { return "<Cycler>"; }
};

Value g_cycler(Interpreter&, CallArgs& call) {
  if (call.positional.empty()) throw RuntimeError("at least one item has to be provided");
  auto c = std::make_shared<Cycler>();
  c->items = call.positional;
  return Value::object(c);
}

struct Joiner : CallableObject {
  explicit Joiner(std::string s) : sep(std::move(s)) {}
  Value call(Interpreter&, CallArgs& args) override {
    Args a(args, "joiner", {});
    if (!used) {
      used = true;
      return Value::string("");
    }
    return Value::string(sep);
  }
  std::string repr() const override { return "<Joiner>"; }
  std::string sep;
  bool used = false;
};

Value g_joiner(Interpreter&, CallArgs& call) {
  Args a(call, "joiner", {"sep"});
  return Value::callable(std::make_shared<Joiner>(to_str(a.get_or(0, Value::string(", ")))));
}

}  // namespace

void add_globals(DictData& globals) {
  auto add = [&](const char* name, Function::Fn fn) {
    globals.set(Value::string(name), Value::callable(std::make_shared<Function>(name, fn)));
  };
  add("range", g_range);
  add("dict", g_dict);
  add("namespace", g_namespace);
  add("cycler", g_cycler);
  add("joiner", g_joiner);
  add("raise_exception", g_raise_exception);
  add("strftime_now", g_strftime_now);
}

}  // namespace moeserve::jinja
