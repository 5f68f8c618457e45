#include "chat/jinja/interpreter.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

#include "chat/jinja/builtins.h"
#include "chat/jinja/error.h"
#include "chat/jinja/pyformat.h"
#include "chat/jinja/unicode.h"

namespace moeserve::jinja {

// ---------------------------------------------------------------------------------------------
// scopes, macros, loops

const Value* Scope::find(std::string_view name) const {
  for (const Scope* s = this; s; s = s->parent.get())
    for (const auto& kv : s->vars)
      if (kv.first == name) return &kv.second;
  return nullptr;
}

void Scope::set(std::string_view name, Value value) {
  for (auto& kv : vars) {
    if (kv.first == name) {
      kv.second = std::move(value);
      return;
    }
  }
  vars.emplace_back(std::string(name), std::move(value));
}

namespace {

// A macro closes over the scope it was defined in. The reference is weak so that the scope holding
// the macro does not keep itself alive; a macro that outlives its scope falls back to the globals.
struct MacroObject : CallableObject {
  MacroObject(const MacroDef* d, std::weak_ptr<Scope> c, std::weak_ptr<Scope> g)
      : def(d), closure(std::move(c)), fallback(std::move(g)) {}
  Value call(Interpreter& interp, CallArgs& args) override {
    std::shared_ptr<Scope> scope = closure.lock();
    if (!scope) scope = fallback.lock();
    return interp.call_macro(*def, scope, args);
  }
  std::string repr() const override { return "<Macro '" + def->name + "'>"; }

  const MacroDef* def;
  std::weak_ptr<Scope> closure;
  std::weak_ptr<Scope> fallback;
};

struct LoopObject;

struct LoopMethod : CallableObject {
  LoopMethod(std::shared_ptr<LoopObject> l, bool c) : loop(std::move(l)), cycle(c) {}
  Value call(Interpreter& interp, CallArgs& args) override;
  std::string repr() const override { return cycle ? "<bound method LoopContext.cycle>" : "<bound method LoopContext.changed>"; }
  std::shared_ptr<LoopObject> loop;
  bool cycle;
};

struct LoopObject : Object, std::enable_shared_from_this<LoopObject> {
  std::shared_ptr<const std::vector<Value>> items;
  int64_t index0 = 0;
  int64_t depth0 = 0;
  const Stmt* recursive_stmt = nullptr;
  std::weak_ptr<Scope> scope;
  bool has_changed_value = false;
  std::vector<Value> changed_value;

  int64_t length() const { return int64_t(items->size()); }

  Value get_attr(Interpreter&, std::string_view name) override {
    const int64_t n = length();
    if (name == "index") return Value::integer(index0 + 1);
    if (name == "index0") return Value::integer(index0);
    if (name == "revindex") return Value::integer(n - index0);
    if (name == "revindex0") return Value::integer(n - index0 - 1);
    if (name == "first") return Value::boolean(index0 == 0);
    if (name == "last") return Value::boolean(index0 == n - 1);
    if (name == "length") return Value::integer(n);
    if (name == "depth") return Value::integer(depth0 + 1);
    if (name == "depth0") return Value::integer(depth0);
    if (name == "previtem") {
      if (index0 == 0) return Value::undefined("there is no previous item");
      return (*items)[size_t(index0 - 1)];
    }
    if (name == "nextitem") {
      if (index0 + 1 >= n) return Value::undefined("there is no next item");
      return (*items)[size_t(index0 + 1)];
    }
    if (name == "cycle" || name == "changed")
      return Value::callable(std::make_shared<LoopMethod>(shared_from_this(), name == "cycle"));
    return Value::undefined("'LoopContext' object has no attribute '" + std::string(name) + "'");
  }
  std::string repr() const override {
    return "<LoopContext " + std::to_string(index0 + 1) + "/" + std::to_string(length()) + ">";
  }
  bool is_callable() const override { return true; }
  Value call(Interpreter& interp, CallArgs& args) override {
    if (!recursive_stmt) throw RuntimeError("Tried to call non recursive loop. Maybe you forgot the 'recursive' modifier.");
    if (args.positional.size() != 1 || !args.keyword.empty()) throw RuntimeError("loop() takes exactly one argument");
    std::shared_ptr<Scope> s = scope.lock();
    if (!s) throw RuntimeError("the loop this refers to has ended");
    return interp.run_loop(*recursive_stmt, s, args.positional[0], depth0 + 1);
  }
};

Value LoopMethod::call(Interpreter&, CallArgs& args) {
  if (!args.keyword.empty()) throw RuntimeError("unexpected keyword argument");
  if (cycle) {
    if (args.positional.empty()) throw RuntimeError("no items for cycling given");
    return args.positional[size_t(loop->index0) % args.positional.size()];
  }
  bool changed = !loop->has_changed_value || loop->changed_value.size() != args.positional.size();
  for (size_t i = 0; !changed && i < args.positional.size(); ++i)
    if (!equals(loop->changed_value[i], args.positional[i])) changed = true;
  loop->has_changed_value = true;
  loop->changed_value = args.positional;
  return Value::boolean(changed);
}

std::string object_type_repr(const Value& v) {
  if (v.is_none()) return "None";
  return type_name(v) + " object";
}

Value missing_attribute(const Value& obj, std::string_view name) {
  return Value::undefined("'" + object_type_repr(obj) + "' has no attribute '" + std::string(name) + "'");
}

Value missing_item(const Value& obj, const Value& key) {
  if (key.is_string()) return missing_attribute(obj, key.str());
  return Value::undefined(object_type_repr(obj) + " has no element " + repr(key));
}

Value unsafe_attribute(const Value& obj, std::string_view name) {
  return Value::undefined("access to attribute '" + std::string(name) + "' of '" + type_name(obj) + "' object is unsafe.", true);
}

bool is_dunder(std::string_view name) {
  return name.size() > 4 && name.substr(0, 2) == "__" && name.substr(name.size() - 2) == "__";
}

Value method_or(const Value& obj, std::string_view name, Value fallback) {
  switch (find_method(obj, name)) {
    case MethodLookup::Safe: return bind_method(obj, name);
    case MethodLookup::Unsafe: return unsafe_attribute(obj, name);
    case MethodLookup::None: break;
  }
  return fallback;
}

[[noreturn]] void unsupported(const char* op, const Value& a, const Value& b) {
  if (a.is_undefined()) raise_undefined(a);
  if (b.is_undefined()) raise_undefined(b);
  throw RuntimeError(std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}

int64_t checked(bool overflow, int64_t v) {
  if (overflow) throw RuntimeError("integer overflow (the value needs more than 64 bits)");
  return v;
}

int64_t slice_index(const Value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  throw RuntimeError(std::string("slice indices must be integers or None or have an __index__ method (") + what + ")");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// interpreter

Interpreter::Interpreter(const RenderLimits& limits, std::optional<std::tm> now) : limits_(limits), now_(now) {}

Interpreter::~Interpreter() {
  // Namespaces are the only mutable containers, so the only way to build reference cycles or long
  // chains; emptying them all (while all are held) frees everything without deep recursion.
  std::vector<std::shared_ptr<Object>> live;
  for (auto& w : namespaces_)
    if (auto p = w.lock()) live.push_back(std::move(p));
  for (auto& p : live) static_cast<NamespaceObject&>(*p).attrs = DictData();
}

std::tm Interpreter::now() const {
  if (now_) return *now_;
  const std::time_t t = std::time(nullptr);
  std::tm local{};
  localtime_r(&t, &local);
  return local;
}

void Interpreter::step(uint64_t n) {
  steps_ += n;
  if (steps_ > limits_.max_steps) throw RuntimeError("template exceeded its work limit (too many loop iterations or calls)");
}

void Interpreter::check_size(size_t bytes) const {
  if (bytes > limits_.max_output_bytes) throw RuntimeError("template built a string larger than the output limit");
}

std::string Interpreter::render(const Body& body, const DictData& globals, const DictData& context) {
  auto global_scope = std::make_shared<Scope>(nullptr);
  for (const auto& kv : globals.items)
    if (kv.first.is_string()) global_scope->set(kv.first.str(), kv.second);
  auto root = std::make_shared<Scope>(global_scope);
  for (const auto& kv : context.items)
    if (kv.first.is_string()) root->set(kv.first.str(), kv.second);
  std::string out;
  out_ = &out;
  try {
    exec_body(body, root);
  } catch (const RaisedError& e) {
    throw TemplateError(e.what(), line_, column_, true);
  } catch (const RuntimeError& e) {
    throw TemplateError(e.what(), line_, column_);
  } catch (const std::bad_alloc&) {
    throw TemplateError("out of memory while rendering", line_, column_);
  }
  out_ = nullptr;
  return out;
}

void Interpreter::emit(std::string_view text) {
  if (text.empty()) return;
  step(1 + text.size() / 256);
  check_size(out_->size() + text.size());
  out_->append(text);
}

std::string Interpreter::capture(const Body& body, const std::shared_ptr<Scope>& scope, Flow* flow) {
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  struct Restore {
    std::string*& target;
    std::string* value;
    ~Restore() { target = value; }
  } restore{out_, saved};
  const Flow f = exec_body(body, scope);
  if (flow) *flow = f;
  return buffer;
}

Interpreter::Flow Interpreter::exec_body(const Body& body, const std::shared_ptr<Scope>& scope) {
  for (const StmtPtr& s : body) {
    const Flow f = exec(*s, scope);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

namespace {

// Counts nested exec/eval frames; deep templates fail cleanly instead of overflowing the stack.
struct NestingGuard {
  NestingGuard(int& n, int limit) : nesting(n) {
    if (++nesting > limit) {
      --nesting;
      throw RuntimeError("maximum recursion depth exceeded (the template nests too deeply)");
    }
  }
  ~NestingGuard() { --nesting; }
  int& nesting;
};

}  // namespace

Interpreter::Flow Interpreter::exec(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  NestingGuard guard(nesting_, limits_.max_nesting);
  set_position(s.line, s.column);
  switch (s.kind) {
    case StmtKind::Output: emit(s.text); return Flow::Normal;
    case StmtKind::Print: {
      const Value v = eval(*s.expr, scope);
      if (v.is_string()) emit(v.str());
      else emit(to_str(v));
      return Flow::Normal;
    }
    case StmtKind::If:
      for (const auto& branch : s.branches)
        if (truthy(eval(*branch.first, scope))) return exec_body(branch.second, scope);
      return exec_body(s.else_body, scope);
    case StmtKind::For: {
      const Value iterable = eval(*s.expr, scope);
      return exec_for(s, scope, iterable, 0);
    }
    case StmtKind::Set: assign(s.target, eval(*s.expr, scope), *scope); return Flow::Normal;
    case StmtKind::SetBlock: {
      Value v = Value::string(capture(s.body, std::make_shared<Scope>(scope)));
      if (s.filter) v = eval_filter(*s.filter, scope, &v);
      assign(s.target, v, *scope);
      return Flow::Normal;
    }
    case StmtKind::Macro: {
      std::weak_ptr<Scope> root;
      for (std::shared_ptr<Scope> p = scope; p; p = p->parent)
        if (p->parent && !p->parent->parent) root = p;
      scope->set(s.macro->name, Value::callable(std::make_shared<MacroObject>(s.macro.get(), scope, root)));
      return Flow::Normal;
    }
    case StmtKind::CallBlock: exec_call_block(s, scope); return Flow::Normal;
    case StmtKind::FilterBlock: {
      Flow flow = Flow::Normal;
      const Value text = Value::string(capture(s.body, std::make_shared<Scope>(scope), &flow));
      const Value v = eval_filter(*s.filter, scope, &text);
      emit(to_str(v));
      return flow;
    }
    case StmtKind::With: {
      auto inner = std::make_shared<Scope>(scope);
      for (const auto& a : s.assignments) assign(a.first, eval(*a.second, scope), *inner);
      return exec_body(s.body, inner);
    }
    case StmtKind::Break: return Flow::Break;
    case StmtKind::Continue: return Flow::Continue;
    case StmtKind::Scoped: {
      std::shared_ptr<Scope> parent = scope;
      if (!s.scoped)
        while (parent->parent && parent->parent->parent) parent = parent->parent;
      return exec_body(s.body, std::make_shared<Scope>(parent));
    }
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s, const std::shared_ptr<Scope>& scope, const Value& iterable, int64_t depth0) {
  auto loop = std::make_shared<LoopObject>();
  const bool shareable = iterable.is_seq() && iterable.seq().kind != SeqKind::Iterator && !s.cond;
  if (shareable) {
    // Loop over the sequence's own items (kept alive by the alias) instead of a copy.
    loop->items = std::shared_ptr<const std::vector<Value>>(iterable.heap(), &iterable.seq().items);
  } else {
    std::vector<Value> items = iterate(iterable);
    if (s.cond) {
      std::vector<Value> kept;
      for (Value& item : items) {
        step();
        auto test_scope = std::make_shared<Scope>(scope);
        assign(s.target, item, *test_scope);
        if (truthy(eval(*s.cond, test_scope))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    loop->items = std::make_shared<const std::vector<Value>>(std::move(items));
  }
  loop->depth0 = depth0;
  if (s.recursive) {
    loop->recursive_stmt = &s;
    loop->scope = scope;
  }
  const Value loop_value = Value::object(loop);
  const std::vector<Value>& list = *loop->items;
  for (size_t i = 0; i < list.size(); ++i) {
    step();
    loop->index0 = int64_t(i);
    auto iteration = std::make_shared<Scope>(scope);
    assign(s.target, list[i], *iteration);
    iteration->set("loop", loop_value);
    const Flow f = exec_body(s.body, iteration);
    if (f == Flow::Break) break;
  }
  if (list.empty() && !s.else_body.empty()) exec_body(s.else_body, std::make_shared<Scope>(scope));
  return Flow::Normal;
}

Value Interpreter::run_loop(const Stmt& loop, const std::shared_ptr<Scope>& scope, const Value& iterable, int64_t depth0) {
  if (++call_depth_ > limits_.max_call_depth) {
    --call_depth_;
    throw RuntimeError("maximum recursion depth exceeded in a recursive loop");
  }
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  struct Restore {
    Interpreter& in;
    std::string* value;
    ~Restore() {
      in.out_ = value;
      --in.call_depth_;
    }
  } restore{*this, saved};
  exec_for(loop, scope, iterable, depth0);
  return Value::string(std::move(buffer));
}

void Interpreter::exec_call_block(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  const Expr& call_expr = *s.expr;
  Value callee = eval(*call_expr.items[0], scope);
  CallArgs args;
  eval_args(call_expr.args, scope, args);
  args.keyword.emplace_back("caller", Value::callable(std::make_shared<MacroObject>(s.macro.get(), scope, scope)));
  set_position(call_expr.line, call_expr.column);
  emit(to_str(call(callee, args)));
}

Value Interpreter::call_macro(const MacroDef& macro, const std::shared_ptr<Scope>& closure, CallArgs& args) {
  if (++call_depth_ > limits_.max_call_depth) {
    --call_depth_;
    throw RuntimeError("maximum recursion depth exceeded calling macro '" + macro.name + "'");
  }
  struct Depth {
    int& d;
    ~Depth() { --d; }
  } depth{call_depth_};
  step();
  auto scope = std::make_shared<Scope>(closure);
  const size_t n_params = macro.params.size();
  const size_t n_pos = args.positional.size();
  std::vector<std::pair<std::string, Value>> kwargs = args.keyword;
  std::vector<std::optional<Value>> bound(n_params);
  for (size_t i = 0; i < n_params && i < n_pos; ++i) bound[i] = args.positional[i];
  bool explicit_caller = false;
  for (const std::string& p : macro.params)
    if (p == "caller") explicit_caller = true;
  bool found_caller = false;
  if (n_pos < n_params) {
    for (size_t i = n_pos; i < n_params; ++i) {
      for (auto it = kwargs.begin(); it != kwargs.end(); ++it) {
        if (it->first == macro.params[i]) {
          bound[i] = std::move(it->second);
          kwargs.erase(it);
          break;
        }
      }
      if (macro.params[i] == "caller") found_caller = true;
    }
  } else {
    found_caller = explicit_caller;
  }
  const size_t first_default = n_params - macro.defaults.size();
  for (size_t i = 0; i < n_params; ++i) {
    if (bound[i]) {
      scope->set(macro.params[i], std::move(*bound[i]));
    } else if (i >= first_default) {
      scope->set(macro.params[i], eval(*macro.defaults[i - first_default], scope));
    } else {
      scope->set(macro.params[i], Value::undefined("parameter '" + macro.params[i] + "' was not provided"));
    }
  }
  if (macro.uses_caller && !explicit_caller && !found_caller) {
    Value caller = Value::undefined("No caller defined");
    for (auto it = kwargs.begin(); it != kwargs.end(); ++it) {
      if (it->first == "caller") {
        caller = std::move(it->second);
        kwargs.erase(it);
        break;
      }
    }
    scope->set("caller", std::move(caller));
  }
  if (macro.uses_kwargs) {
    auto d = std::make_shared<DictData>();
    for (auto& kv : kwargs) d->set(Value::string(kv.first), std::move(kv.second));
    scope->set("kwargs", Value::dict(std::move(d)));
  } else if (!kwargs.empty()) {
    for (const auto& kv : kwargs)
      if (kv.first == "caller")
        throw RuntimeError("macro '" + macro.name + "' was invoked with two values for the special caller argument. This is most likely a bug.");
    throw RuntimeError("macro '" + macro.name + "' takes no keyword argument '" + kwargs.front().first + "'");
  }
  if (macro.uses_varargs) {
    std::vector<Value> extra;
    for (size_t i = n_params; i < n_pos; ++i) extra.push_back(args.positional[i]);
    scope->set("varargs", Value::tuple(std::move(extra)));
  } else if (n_pos > n_params) {
    throw RuntimeError("macro '" + macro.name + "' takes not more than " + std::to_string(n_params) + " argument(s)");
  }
  return Value::string(capture(macro.body, scope));
}

void Interpreter::assign(const Target& target, const Value& value, Scope& scope) {
  switch (target.kind) {
    case Target::Kind::Name: scope.set(target.name, value); return;
    case Target::Kind::Tuple: {
      const std::vector<Value> items = iterate(value);
      if (items.size() > target.items.size())
        throw RuntimeError("too many values to unpack (expected " + std::to_string(target.items.size()) + ")");
      if (items.size() < target.items.size())
        throw RuntimeError("not enough values to unpack (expected " + std::to_string(target.items.size()) + ", got " +
                           std::to_string(items.size()) + ")");
      for (size_t i = 0; i < items.size(); ++i) assign(target.items[i], items[i], scope);
      return;
    }
    case Target::Kind::NamespaceAttr: {
      const Value* ns = scope.find(target.name);
      if (!ns || !ns->is_object() || !ns->object().is_namespace())
        throw RuntimeError("cannot assign attribute on non-namespace object");
      static_cast<NamespaceObject&>(ns->object()).attrs.set(Value::string(target.attr), value);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// attribute and item access (jinja2's ImmutableSandboxedEnvironment rules)

Value Interpreter::get_attr(const Value& obj, std::string_view name) {
  if (obj.is_undefined()) raise_undefined(obj);
  if (is_dunder(name)) return unsafe_attribute(obj, name);
  switch (obj.kind()) {
    case Kind::Dict: {
      const MethodLookup m = find_method(obj, name);
      if (m == MethodLookup::Safe) return bind_method(obj, name);
      if (m == MethodLookup::Unsafe) return unsafe_attribute(obj, name);
      if (const Value* v = obj.dict().find(name)) return *v;
      return missing_attribute(obj, name);
    }
    case Kind::Object: return obj.object().get_attr(*this, name);
    case Kind::Seq:
      if (obj.seq().group_tuple && (name == "grouper" || name == "list"))
        return obj.seq().items[name == "grouper" ? 0 : 1];
      return method_or(obj, name, missing_attribute(obj, name));
    default: return method_or(obj, name, missing_attribute(obj, name));
  }
}

Value Interpreter::get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) raise_undefined(obj);
  switch (obj.kind()) {
    case Kind::Dict: {
      if (hashable(key))
        if (const Value* v = obj.dict().find(key)) return *v;
      if (key.is_string() && !is_dunder(key.str())) return method_or(obj, key.str(), missing_item(obj, key));
      return missing_item(obj, key);
    }
    case Kind::Seq: {
      const SeqData& s = obj.seq();
      const bool indexable = s.kind == SeqKind::List || s.kind == SeqKind::Tuple || s.kind == SeqKind::Range;
      if (indexable && (key.is_int() || key.is_bool())) {
        int64_t i = key.as_int();
        const int64_t n = int64_t(s.items.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return missing_item(obj, key);
        return s.items[size_t(i)];
      }
      break;
    }
    case Kind::String: {
      if (key.is_int() || key.is_bool()) {
        const std::string& str = obj.str();
        int64_t i = key.as_int();
        const int64_t n = int64_t(utf8::length(str));
        if (i < 0) i += n;
        if (i < 0 || i >= n) return missing_item(obj, key);
        size_t b = utf8::byte_offset(str, size_t(i));
        size_t e = b;
        utf8::decode(str, e);
        return Value::string(str.substr(b, e - b), obj.safe());
      }
      break;
    }
    case Kind::Object:
      if (key.is_string()) return obj.object().get_attr(*this, key.str());
      return missing_item(obj, key);
    default: break;
  }
  if (key.is_string() && !is_dunder(key.str())) {
    if (obj.is_seq() && obj.seq().group_tuple && (key.str() == "grouper" || key.str() == "list"))
      return obj.seq().items[key.str() == "grouper" ? 0 : 1];
    return method_or(obj, key.str(), missing_item(obj, key));
  }
  return missing_item(obj, key);
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  switch (callee.kind()) {
    case Kind::Callable: return callee.callable().call(*this, args);
    case Kind::Object:
      if (callee.object().is_callable()) return callee.object().call(*this, args);
      break;
    case Kind::Undefined: raise_undefined(callee);
    default: break;
  }
  throw RuntimeError("'" + type_name(callee) + "' object is not callable");
}

// ---------------------------------------------------------------------------------------------
// expressions

void Interpreter::eval_args(const CallSiteArgs& site, const std::shared_ptr<Scope>& scope, CallArgs& out) {
  for (const ExprPtr& e : site.positional) out.positional.push_back(eval(*e, scope));
  for (const auto& kw : site.keyword) out.keyword.emplace_back(kw.first, eval(*kw.second, scope));
  if (site.dyn_args) {
    for (Value& v : iterate(eval(*site.dyn_args, scope))) out.positional.push_back(std::move(v));
  }
  if (site.dyn_kwargs) {
    const Value d = eval(*site.dyn_kwargs, scope);
    if (!d.is_dict()) throw RuntimeError("argument after ** must be a mapping, not " + type_name(d));
    for (const auto& kv : d.dict().items) {
      if (!kv.first.is_string()) throw RuntimeError("keywords must be strings");
      out.keyword.emplace_back(kv.first.str(), kv.second);
    }
  }
}

Value Interpreter::eval_filter(const Expr& e, const std::shared_ptr<Scope>& scope, const Value* input) {
  Value subject = e.items[0] ? (e.items[0]->kind == ExprKind::Filter ? eval_filter(*e.items[0], scope, input)
                                                                       : eval(*e.items[0], scope))
                             : *input;
  CallArgs args;
  eval_args(e.args, scope, args);
  set_position(e.line, e.column);
  return e.filter(*this, subject, args);
}

Value Interpreter::eval_slice(const Value& subject, const Expr& slice, const std::shared_ptr<Scope>& scope) {
  Value parts[3];
  for (int i = 0; i < 3; ++i)
    if (slice.items[size_t(i)]) parts[i] = eval(*slice.items[size_t(i)], scope);
  if (subject.is_undefined()) raise_undefined(subject);
  const bool is_str = subject.is_string();
  const bool is_seq = subject.is_seq() && (subject.seq().kind == SeqKind::List || subject.seq().kind == SeqKind::Tuple ||
                                          subject.seq().kind == SeqKind::Range);
  // jinja2 compiles slices to plain Python subscription (not the sandbox's getitem), so errors raise.
  if (subject.is_dict()) throw RuntimeError("unhashable type: 'slice'");
  if (!is_str && !is_seq) throw RuntimeError("'" + type_name(subject) + "' object is not subscriptable");
  int64_t stride = 1;
  if (!parts[2].is_undefined() && !parts[2].is_none()) stride = slice_index(parts[2], "step");
  if (stride == 0) throw RuntimeError("slice step cannot be zero");
  std::u32string chars;
  int64_t n;
  if (is_str) {
    chars = utf8::to_u32(subject.str());
    n = int64_t(chars.size());
  } else {
    n = int64_t(subject.seq().items.size());
  }
  // PySlice_AdjustIndices
  int64_t start, stop;
  auto adjust = [&](const Value& v, int64_t dflt, bool is_start) -> int64_t {
    if (v.is_undefined() || v.is_none()) return dflt;
    int64_t i = slice_index(v, is_start ? "start" : "stop");
    if (i < 0) {
      i += n;
      if (i < 0) i = stride < 0 ? -1 : 0;
    } else if (i >= n) {
      i = stride < 0 ? n - 1 : n;
    }
    return i;
  };
  start = adjust(parts[0], stride < 0 ? n - 1 : 0, true);
  stop = adjust(parts[1], stride < 0 ? -1 : n, false);
  std::vector<size_t> picks;
  if (stride > 0) {
    for (int64_t i = start; i < stop; i += stride) picks.push_back(size_t(i));
  } else {
    for (int64_t i = start; i > stop; i += stride) picks.push_back(size_t(i));
  }
  step(1 + picks.size() / 16);
  if (is_str) {
    std::u32string out;
    for (size_t i : picks) out += chars[i];
    return Value::string(utf8::from_u32(out), subject.safe());
  }
  const SeqData& seq = subject.seq();
  if (seq.kind == SeqKind::Range) {
    // range slicing gives a range: start + i*step for the adjusted slice bounds.
    return Value::range(seq.range_start + start * seq.range_step, seq.range_start + stop * seq.range_step,
                        seq.range_step * stride);
  }
  std::vector<Value> out;
  for (size_t i : picks) out.push_back(seq.items[i]);
  return Value::list(std::move(out), seq.kind == SeqKind::Tuple ? SeqKind::Tuple : SeqKind::List);
}

Value Interpreter::eval(const Expr& e, const std::shared_ptr<Scope>& scope) {
  NestingGuard guard(nesting_, limits_.max_nesting);
  set_position(e.line, e.column);
  switch (e.kind) {
    case ExprKind::Const: return e.value;
    case ExprKind::Name: {
      if (const Value* v = scope->find(e.name)) return *v;
      return Value::undefined("'" + e.name + "' is undefined");
    }
    case ExprKind::List:
    case ExprKind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.items.size());
      for (const ExprPtr& item : e.items) items.push_back(eval(*item, scope));
      return Value::list(std::move(items), e.kind == ExprKind::Tuple ? SeqKind::Tuple : SeqKind::List);
    }
    case ExprKind::Dict: {
      auto d = std::make_shared<DictData>();
      for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
        Value k = eval(*e.items[i], scope);
        Value v = eval(*e.items[i + 1], scope);
        d->set(k, std::move(v));
      }
      return Value::dict(std::move(d));
    }
    case ExprKind::GetAttr: {
      const Value obj = eval(*e.items[0], scope);
      set_position(e.line, e.column);
      return get_attr(obj, e.name);
    }
    case ExprKind::GetItem: {
      const Value obj = eval(*e.items[0], scope);
      if (e.items[1]->kind == ExprKind::Slice) return eval_slice(obj, *e.items[1], scope);
      const Value key = eval(*e.items[1], scope);
      set_position(e.line, e.column);
      return get_item(obj, key);
    }
    case ExprKind::Slice: throw RuntimeError("slice used outside a subscript");
    case ExprKind::Call: {
      const Value callee = eval(*e.items[0], scope);
      CallArgs args;
      eval_args(e.args, scope, args);
      set_position(e.line, e.column);
      return call(callee, args);
    }
    case ExprKind::Filter: return eval_filter(e, scope, nullptr);
    case ExprKind::Test: {
      const Value subject = eval(*e.items[0], scope);
      CallArgs args;
      eval_args(e.args, scope, args);
      set_position(e.line, e.column);
      return Value::boolean(e.test(*this, subject, args));
    }
    case ExprKind::Not: return Value::boolean(!truthy(eval(*e.items[0], scope)));
    case ExprKind::Neg:
    case ExprKind::Pos: {
      const Value v = eval(*e.items[0], scope);
      set_position(e.line, e.column);
      if (v.is_undefined()) raise_undefined(v);
      const bool neg = e.kind == ExprKind::Neg;
      if (v.is_float()) return Value::number(neg ? -v.as_float() : v.as_float());
      if (v.is_int() || v.is_bool()) {
        const int64_t i = v.as_int();
        if (!neg) return Value::integer(i);
        if (i == std::numeric_limits<int64_t>::min()) checked(true, 0);
        return Value::integer(-i);
      }
      throw RuntimeError(std::string("bad operand type for unary ") + (neg ? "-" : "+") + ": '" + type_name(v) + "'");
    }
    case ExprKind::Binary: {
      const Value a = eval(*e.items[0], scope);
      const Value b = eval(*e.items[1], scope);
      set_position(e.line, e.column);
      return binary_op(e.op, a, b);
    }
    case ExprKind::Concat: {
      std::string out;
      for (const ExprPtr& item : e.items) {
        const Value v = eval(*item, scope);
        out += to_str(v);
        check_size(out.size());
      }
      step(1 + out.size() / 256);
      return Value::string(std::move(out));
    }
    case ExprKind::Compare: {
      Value left = eval(*e.items[0], scope);
      for (size_t i = 0; i < e.cmp_ops.size(); ++i) {
        Value right = eval(*e.items[i + 1], scope);
        set_position(e.line, e.column);
        if (!compare_op(e.cmp_ops[i], left, right)) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    case ExprKind::And: {
      Value left = eval(*e.items[0], scope);
      if (!truthy(left)) return left;
      return eval(*e.items[1], scope);
    }
    case ExprKind::Or: {
      Value left = eval(*e.items[0], scope);
      if (truthy(left)) return left;
      return eval(*e.items[1], scope);
    }
    case ExprKind::CondExpr: {
      if (truthy(eval(*e.items[1], scope))) return eval(*e.items[0], scope);
      if (e.items[2]) return eval(*e.items[2], scope);
      return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                              " evaluated to false and no else section was defined.");
    }
  }
  return Value();
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Kind::Undefined: return false;
    case Kind::String:
      if (!item.is_string())
        throw RuntimeError("'in <string>' requires string as left operand, not " + type_name(item));
      return container.str().find(item.str()) != std::string::npos;
    case Kind::Dict:
      if (!hashable(item)) throw RuntimeError("unhashable type: '" + type_name(item) + "'");
      return container.dict().find(item) != nullptr;
    case Kind::Seq: {
      SeqData& s = container.seq();
      if (s.kind == SeqKind::Iterator) {
        while (s.consumed < s.items.size())
          if (equals(s.items[s.consumed++], item)) return true;
        if (s.deferred_error) std::rethrow_exception(s.deferred_error);
        return false;
      }
      if (s.kind == SeqKind::DictItems || s.kind == SeqKind::DictKeys) {
        for (const Value& v : s.items)
          if (equals(v, item)) return true;
        return false;
      }
      for (const Value& v : s.items)
        if (equals(v, item)) return true;
      return false;
    }
    default: throw RuntimeError("argument of type '" + type_name(container) + "' is not iterable");
  }
}

bool Interpreter::compare_op(CmpOp op, const Value& a, const Value& b) {
  switch (op) {
    case CmpOp::Eq: return equals(a, b);
    case CmpOp::Ne: return !equals(a, b);
    case CmpOp::In: return contains(b, a);
    case CmpOp::NotIn: return !contains(b, a);
    default: break;
  }
  const int c = compare(a, b);
  if (c == 2) return false;
  switch (op) {
    case CmpOp::Lt: return c < 0;
    case CmpOp::Le: return c <= 0;
    case CmpOp::Gt: return c > 0;
    case CmpOp::Ge: return c >= 0;
    default: return false;
  }
}

Value Interpreter::binary_op(BinOp op, const Value& a, const Value& b) {
  const bool nums = a.is_number() && b.is_number();
  const bool ints = nums && !a.is_float() && !b.is_float();
  switch (op) {
    case BinOp::Add: {
      if (ints) {
        int64_t r = 0;
        const bool overflow = __builtin_add_overflow(a.as_int(), b.as_int(), &r);
        return Value::integer(checked(overflow, r));
      }
      if (nums) return Value::number(a.as_float() + b.as_float());
      if (a.is_string() && b.is_string()) {
        const bool safe = a.safe() || b.safe();
        std::string out = (safe && !a.safe()) ? html_escape(a.str()) : a.str();
        out += (safe && !b.safe()) ? html_escape(b.str()) : b.str();
        check_size(out.size());
        step(1 + out.size() / 256);
        return Value::string(std::move(out), safe);
      }
      if (a.is_seq() && b.is_seq() && a.seq().kind == b.seq().kind &&
          (a.seq().kind == SeqKind::List || a.seq().kind == SeqKind::Tuple)) {
        std::vector<Value> items = a.seq().items;
        items.insert(items.end(), b.seq().items.begin(), b.seq().items.end());
        step(1 + items.size() / 16);
        return Value::list(std::move(items), a.seq().kind);
      }
      if (a.is_string() && !b.is_undefined())
        throw RuntimeError("can only concatenate str (not \"" + type_name(b) + "\") to str");
      if (a.is_list_or_tuple() && !b.is_undefined())
        throw RuntimeError("can only concatenate " + type_name(a) + " (not \"" + type_name(b) + "\") to " + type_name(a));
      unsupported("+", a, b);
    }
    case BinOp::Sub:
      if (ints) {
        int64_t r = 0;
        const bool overflow = __builtin_sub_overflow(a.as_int(), b.as_int(), &r);
        return Value::integer(checked(overflow, r));
      }
      if (nums) return Value::number(a.as_float() - b.as_float());
      unsupported("-", a, b);
    case BinOp::Mul: {
      if (ints) {
        int64_t r = 0;
        const bool overflow = __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
        return Value::integer(checked(overflow, r));
      }
      if (nums) return Value::number(a.as_float() * b.as_float());
      const Value* seq = nullptr;
      const Value* count = nullptr;
      if ((a.is_int() || a.is_bool()) && (b.is_string() || b.is_list_or_tuple())) {
        seq = &b;
        count = &a;
      } else if ((b.is_int() || b.is_bool()) && (a.is_string() || a.is_list_or_tuple())) {
        seq = &a;
        count = &b;
      }
      if (!seq) unsupported("*", a, b);
      const int64_t times = std::max<int64_t>(0, count->as_int());
      if (seq->is_string()) {
        const std::string& s = seq->str();
        if (!s.empty() && uint64_t(times) > limits_.max_output_bytes / s.size()) check_size(limits_.max_output_bytes + 1);
        std::string out;
        out.reserve(s.size() * size_t(times));
        for (int64_t i = 0; i < times; ++i) out += s;
        step(1 + out.size() / 256);
        return Value::string(std::move(out), seq->safe());
      }
      const auto& items = seq->seq().items;
      if (!items.empty() && uint64_t(times) * items.size() > limits_.max_steps) step(limits_.max_steps + 1);
      std::vector<Value> out;
      for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
      step(1 + out.size() / 16);
      return Value::list(std::move(out), seq->seq().kind);
    }
    case BinOp::Div:
      if (nums) {
        if (b.as_float() == 0.0) throw RuntimeError("division by zero");
        if (ints) return Value::number(double(a.as_int()) / double(b.as_int()));
        return Value::number(a.as_float() / b.as_float());
      }
      unsupported("/", a, b);
    case BinOp::FloorDiv:
    case BinOp::Mod: {
      const bool div = op == BinOp::FloorDiv;
      if (!div && a.is_string()) {
        std::string out = percent_format(a.str(), b, a.safe());
        check_size(out.size());
        return Value::string(std::move(out), a.safe());
      }
      if (ints) {
        const int64_t x = a.as_int(), y = b.as_int();
        if (y == 0) throw RuntimeError("integer division or modulo by zero");
        if (x == std::numeric_limits<int64_t>::min() && y == -1) {
          if (div) checked(true, 0);
          return Value::integer(0);
        }
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          m += y;
          q -= 1;
        }
        return Value::integer(div ? q : m);
      }
      if (nums) {
        const double x = a.as_float(), y = b.as_float();
        if (y == 0.0) throw RuntimeError(div ? "float floor division by zero" : "float modulo");
        double mod = std::fmod(x, y);
        double d = (x - mod) / y;
        if (mod != 0.0) {
          if ((y < 0) != (mod < 0)) {
            mod += y;
            d -= 1.0;
          }
        } else {
          mod = std::copysign(0.0, y);
        }
        if (!div) return Value::number(mod);
        double fd;
        if (d != 0.0) {
          fd = std::floor(d);
          if (d - fd > 0.5) fd += 1.0;
        } else {
          fd = std::copysign(0.0, x / y);
        }
        return Value::number(fd);
      }
      unsupported(div ? "//" : "%", a, b);
    }
    case BinOp::Pow: {
      if (ints && b.as_int() >= 0) {
        int64_t base = a.as_int(), exp = b.as_int(), result = 1;
        while (exp > 0) {
          if (exp & 1) checked(__builtin_mul_overflow(result, base, &result), 0);
          exp >>= 1;
          if (exp > 0) checked(__builtin_mul_overflow(base, base, &base), 0);
        }
        return Value::integer(result);
      }
      if (nums) {
        const double x = a.as_float(), y = b.as_float();
        if (x == 0.0 && y < 0) throw RuntimeError("0.0 cannot be raised to a negative power");
        if (x < 0 && y != std::floor(y)) throw RuntimeError("negative number raised to a fractional power gives a complex number");
        return Value::number(std::pow(x, y));
      }
      unsupported("** or pow()", a, b);
    }
  }
  return Value();
}

}  // namespace moeserve::jinja
