// jinja2's built-in tests (`x is defined`, `x is divisibleby 3`, ...), as Python evaluates them.
#include "chat/jinja/builtins.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/pystr.h"

namespace moeserve::jinja {

namespace {

void no_arguments(CallArgs& c, const char* name) { Args a(c, name, {}); }

bool t_defined(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "defined");
  return !v.is_undefined();
}

bool t_undefined(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "undefined");
  return v.is_undefined();
}

bool t_none(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "none");
  return v.is_none();
}

bool t_boolean(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "boolean");
  return v.is_bool();
}

bool t_false(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "false");
  return v.is_bool() && !v.as_bool();
}

bool t_true(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "true");
  return v.is_bool() && v.as_bool();
}

bool t_integer(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "integer");
  return v.is_int();
}

bool t_float(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "float");
  return v.is_float();
}

bool t_number(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "number");
  return v.is_number();
}

bool t_string(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "string");
  return v.is_string();
}

bool t_mapping(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "mapping");
  return v.is_dict();
}

bool t_escaped(Interpreter&, const Value& v, CallArgs& c) {
  no_arguments(c, "escaped");
  return v.is_string() && v.safe();
}

bool t_iterable(Interpreter&, const Value& v, CallArgs& c) {
  Args a(c, "iterable", {});
  return v.is_undefined() || v.is_string() || v.is_seq() || v.is_dict();
}

bool t_sequence(Interpreter&, const Value& v, CallArgs& c) {
  Args a(c, "sequence", {});
  if (v.is_undefined() || v.is_string() || v.is_dict()) return true;
  if (!v.is_seq()) return false;
  const SeqKind k = v.seq().kind;
  return k == SeqKind::List || k == SeqKind::Tuple || k == SeqKind::Range;
}

bool t_callable(Interpreter&, const Value& v, CallArgs& c) {
  Args a(c, "callable", {});
  return v.is_undefined() || v.is_callable_kind() || (v.is_object() && v.object().is_callable());
}

bool t_sameas(Interpreter&, const Value& v, CallArgs& c) {
  Args a(c, "sameas", {"other"});
  const Value other = a.get_or(0, Value::undefined());
  if (v.kind() != other.kind()) return false;
  switch (v.kind()) {
    case Kind::None: return true;
    case Kind::Bool: return v.as_bool() == other.as_bool();
    case Kind::Int: return v.as_int() == other.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
    case Kind::Float: return false;
    case Kind::String: return v.str_ptr() == other.str_ptr();
    case Kind::Undefined: return false;
    default: return v.heap() == other.heap();
  }
}

bool t_in(Interpreter&, const Value& v, CallArgs& c) {
  Args a(c, "in", {"seq"});
  if (!a.has(0)) throw RuntimeError("test_in() missing 1 required positional argument: 'seq'");
  return contains(*a.get(0), v);
}

bool compare_test(Interpreter& interp, const Value& v, CallArgs& c, const char* name, CmpOp op) {
  Args a(c, name, {"other"});
  if (!a.has(0)) throw RuntimeError(std::string(name) + "() missing 1 required positional argument: 'b'");
  const Value& other = *a.get(0);
  if (op == CmpOp::Eq) return equals(v, other);
  if (op == CmpOp::Ne) return !equals(v, other);
  const int r = compare(v, other);
  if (r == 2) return false;
  switch (op) {
    case CmpOp::Lt: return r < 0;
    case CmpOp::Le: return r <= 0;
    case CmpOp::Gt: return r > 0;
    case CmpOp::Ge: return r >= 0;
    default: return false;
  }
  (void)interp;
}

bool t_eq(Interpreter& i, const Value& v, CallArgs& c) { return compare_test(i, v, c, "eq", CmpOp::Eq); }
bool t_ne(Interpreter& i, const Value& v, CallArgs& c) { return compare_test(i, v, c, "ne", CmpOp::Ne); }
bool t_lt(Interpreter& i, const Value& v, CallArgs& c) { return compare_test(i, v, c, "lt", CmpOp::Lt); }
bool t_le(Interpreter& i, const Value& v, CallArgs& c) { return compare_test(i, v, c, "le", CmpOp::Le); }
bool t_gt(Interpreter& i, const Value& v, CallArgs& c) { return compare_test(i, v, c, "gt", CmpOp::Gt); }
bool t_ge(Interpreter& i, const Value& v, CallArgs& c) { return compare_test(i, v, c, "ge", CmpOp::Ge); }

bool t_odd(Interpreter& interp, const Value& v, CallArgs& c) {
  Args a(c, "odd", {});
  return equals(interp.binary_op(BinOp::Mod, v, Value::integer(2)), Value::integer(1));
}

bool t_even(Interpreter& interp, const Value& v, CallArgs& c) {
  Args a(c, "even", {});
  return equals(interp.binary_op(BinOp::Mod, v, Value::integer(2)), Value::integer(0));
}

bool t_divisibleby(Interpreter& interp, const Value& v, CallArgs& c) {
  Args a(c, "divisibleby", {"num"});
  if (!a.has(0)) throw RuntimeError("test_divisibleby() missing 1 required positional argument: 'num'");
  return equals(interp.binary_op(BinOp::Mod, v, *a.get(0)), Value::integer(0));
}

bool t_lower(Interpreter& interp, const Value& v, CallArgs& c) {
  Args a(c, "lower", {});
  CallArgs none;
  return truthy(interp.call(bind_method(Value::string(to_str(v)), "islower"), none));
}

bool t_upper(Interpreter& interp, const Value& v, CallArgs& c) {
  Args a(c, "upper", {});
  CallArgs none;
  return truthy(interp.call(bind_method(Value::string(to_str(v)), "isupper"), none));
}

bool t_filter(Interpreter&, const Value& v, CallArgs& c) {
  Args a(c, "filter", {});
  return v.is_string() && find_filter(v.str()) != nullptr;
}

bool t_test(Interpreter&, const Value& v, CallArgs& c) {
  Args a(c, "test", {});
  return v.is_string() && find_test(v.str()) != nullptr;
}

struct TestEntry {
  const char* name;
  TestFn fn;
};

constexpr TestEntry kTests[] = {
    {"boolean", t_boolean}, {"callable", t_callable}, {"defined", t_defined},   {"divisibleby", t_divisibleby},
    {"eq", t_eq},           {"equalto", t_eq},       {"==", t_eq},             {"escaped", t_escaped},
    {"even", t_even},       {"false", t_false},      {"filter", t_filter},     {"float", t_float},
    {"ge", t_ge},           {">=", t_ge},            {"gt", t_gt},             {"greaterthan", t_gt},
    {">", t_gt},            {"in", t_in},            {"integer", t_integer},   {"iterable", t_iterable},
    {"le", t_le},           {"<=", t_le},            {"lower", t_lower},       {"lt", t_lt},
    {"lessthan", t_lt},     {"<", t_lt},             {"mapping", t_mapping},   {"ne", t_ne},
    {"!=", t_ne},           {"none", t_none},        {"number", t_number},     {"odd", t_odd},
    {"sameas", t_sameas},   {"sequence", t_sequence}, {"string", t_string},    {"test", t_test},
    {"true", t_true},       {"undefined", t_undefined}, {"upper", t_upper},
};

}  // namespace

TestFn find_test(std::string_view name) {
  for (const TestEntry& t : kTests)
    if (name == t.name) return t.fn;
  return nullptr;
}

}  // namespace moeserve::jinja
