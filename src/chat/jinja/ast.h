// The parsed template: expression and statement trees, as jinja2's parser builds them.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja/value.h"

namespace moeserve::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

using FilterFn = Value (*)(Interpreter& interp, const Value& subject, CallArgs& args);
using TestFn = bool (*)(Interpreter& interp, const Value& subject, CallArgs& args);

enum class ExprKind : uint8_t {
  Const,
  Name,
  List,
  Tuple,
  Dict,      // items: key, value, key, value, ...
  GetAttr,   // items[0].name
  GetItem,   // items[0][items[1]]
  Slice,     // items: start, stop, step (each may be null)
  Call,      // items[0](args)
  Filter,    // items[0] | name(args); items[0] is null for the body of a filter block
  Test,      // items[0] is name(args)
  Not,
  Neg,
  Pos,
  Binary,    // items[0] op items[1]
  Concat,    // items joined with ~
  Compare,   // items[0] ops[0] items[1] ops[1] items[2] ...
  And,
  Or,
  CondExpr,  // items: then, test, else (else may be null)
};

enum class BinOp : uint8_t { Add, Sub, Mul, Div, FloorDiv, Mod, Pow };
enum class CmpOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

struct CallSiteArgs {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
  ExprPtr dyn_args;    // *args
  ExprPtr dyn_kwargs;  // **kwargs
};

struct Expr {
  ExprKind kind = ExprKind::Const;
  int line = 0;
  int column = 0;
  int depth = 1;               // height of this subtree (the parser bounds it)
  Value value;                 // Const
  std::string name;            // Name, GetAttr, Filter, Test
  std::vector<ExprPtr> items;
  BinOp op = BinOp::Add;
  std::vector<CmpOp> cmp_ops;
  CallSiteArgs args;           // Call, Filter, Test
  FilterFn filter = nullptr;
  TestFn test = nullptr;
};

// Assignment targets: a name, a tuple of targets, or `ns.attr` (set only).
struct Target {
  enum class Kind : uint8_t { Name, Tuple, NamespaceAttr };
  Kind kind = Kind::Name;
  std::string name;
  std::string attr;
  std::vector<Target> items;
};

struct MacroDef {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // for the last defaults.size() params
  Body body;
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
  int line = 0;
};

enum class StmtKind : uint8_t {
  Output,       // literal text
  Print,        // {{ expr }}
  If,           // branches (test, body), else_body
  For,          // target in expr [if cond] [recursive]: body, else_body
  Set,          // target = expr
  SetBlock,     // {% set target | filter %}body{% endset %}
  Macro,
  CallBlock,    // {% call(params) expr %}body (a macro named caller){% endcall %}
  FilterBlock,  // {% filter chain %}body{% endfilter %}
  With,         // assignments, body
  Break,
  Continue,
  Scoped,       // {% block %} / {% generation %}: body rendered in place in its own scope
};

struct Stmt {
  StmtKind kind = StmtKind::Output;
  int line = 0;
  int column = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr cond;
  ExprPtr filter;
  Target target;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  bool recursive = false;
  bool scoped = true;  // Scoped: whether the body sees the enclosing local variables
  std::shared_ptr<MacroDef> macro;
  std::vector<std::pair<Target, ExprPtr>> assignments;
};

}  // namespace moeserve::jinja
