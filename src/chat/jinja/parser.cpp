#include "chat/jinja/parser.h"

#include <algorithm>
#include <initializer_list>

#include "chat/jinja/builtins.h"
#include "chat/jinja/error.h"
#include "chat/jinja/lexer.h"

namespace moeserve::jinja {

namespace {

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseLimits& limits) : tokens_(std::move(tokens)), limits_(limits) {}

  Body parse() {
    Body body = subparse({});
    if (cur().type != TokenType::Eof) fail("unexpected '" + describe(cur()) + "'");
    return body;
  }

 private:
  // ---- token stream ----
  const Token& cur() const { return tokens_[pos_]; }
  const Token& look() const { return tokens_[pos_ + 1 < tokens_.size() ? pos_ + 1 : pos_]; }
  const Token& advance() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool is_op(const char* op) const { return cur().type == TokenType::Operator && cur().value == op; }
  bool is_name(const char* name) const { return cur().type == TokenType::Name && cur().value == name; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(std::string("expected token '") + op + "', got '" + describe(cur()) + "'");
    advance();
  }
  const Token& expect_name() {
    if (cur().type != TokenType::Name) fail("expected token 'name', got '" + describe(cur()) + "'");
    return advance();
  }
  void expect_type(TokenType type, const char* what) {
    if (cur().type != type) fail(std::string("expected token '") + what + "', got '" + describe(cur()) + "'");
    advance();
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case TokenType::Data: return "template data";
      case TokenType::VariableBegin: return "{{";
      case TokenType::VariableEnd: return "end of print statement";
      case TokenType::BlockBegin: return "{%";
      case TokenType::BlockEnd: return "end of statement block";
      case TokenType::Eof: return "end of template";
      case TokenType::String: return "string";
      case TokenType::Integer:
      case TokenType::Float: return t.value;
      default: return t.value;
    }
  }

  [[noreturn]] void fail(const std::string& message) const { fail_at(cur(), message); }
  [[noreturn]] static void fail_at(const Token& t, const std::string& message) {
    throw TemplateError(message, t.line, t.column);
  }

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > p.limits_.max_nesting) p.fail("template nesting too deep");
    }
    ~DepthGuard() { --p.depth_; }
  };

  // Records the height of a finished node and refuses trees the evaluator (which recurses over
  // them) should not have to walk; `a + b + c ...` chains grow height without parser recursion.
  ExprPtr seal(ExprPtr e) {
    int d = 0;
    auto see = [&](const ExprPtr& c) {
      if (c) d = std::max(d, c->depth);
    };
    for (const ExprPtr& c : e->items) see(c);
    for (const ExprPtr& c : e->args.positional) see(c);
    for (const auto& kw : e->args.keyword) see(kw.second);
    see(e->args.dyn_args);
    see(e->args.dyn_kwargs);
    e->depth = d + 1;
    if (e->depth > limits_.max_expr_depth) fail_at_expr(*e, "expression too deeply nested");
    return e;
  }
  [[noreturn]] static void fail_at_expr(const Expr& e, const std::string& message) {
    throw TemplateError(message, e.line, e.column);
  }

  ExprPtr node(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->column = at.column;
    return e;
  }

  // ---- statements ----
  using EndTags = std::initializer_list<const char*>;

  bool at_end_tag(EndTags end_tags) const {
    for (const char* tag : end_tags)
      if (is_name(tag)) return true;
    return false;
  }

  Body subparse(EndTags end_tags) {
    Body body;
    while (cur().type != TokenType::Eof) {
      const Token& t = cur();
      if (t.type == TokenType::Data) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Output;
        s->line = t.line;
        s->column = t.column;
        s->text = t.value;
        body.push_back(std::move(s));
        advance();
      } else if (t.type == TokenType::VariableBegin) {
        advance();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::Print;
        s->line = t.line;
        s->column = t.column;
        s->expr = parse_tuple(true, false, {});
        expect_type(TokenType::VariableEnd, "end of print statement");
        body.push_back(std::move(s));
      } else if (t.type == TokenType::BlockBegin) {
        advance();
        if (end_tags.size() > 0 && at_end_tag(end_tags)) return body;
        parse_statement(body);
        expect_type(TokenType::BlockEnd, "end of statement block");
      } else {
        fail("unexpected '" + describe(t) + "'");
      }
    }
    if (end_tags.size() > 0) {
      std::string expected;
      for (const char* tag : end_tags) expected += (expected.empty() ? "'" : " or '") + std::string(tag) + "'";
      fail("Unexpected end of template. Jinja was looking for the following tags: " + expected + ".");
    }
    return body;
  }

  // Parses the statements up to one of end_tags; leaves the stream at the end tag's name (or past
  // it when drop_needle).
  Body parse_statements(EndTags end_tags, bool drop_needle) {
    DepthGuard guard(*this);
    skip_op(":");
    expect_type(TokenType::BlockEnd, "end of statement block");
    Body body = subparse(end_tags);
    if (drop_needle) advance();
    return body;
  }

  StmtPtr stmt(StmtKind kind, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = at.line;
    s->column = at.column;
    return s;
  }

  void parse_statement(Body& out) {
    const Token& t = cur();
    if (t.type != TokenType::Name) fail("tag name expected");
    const std::string& name = t.value;
    if (name == "for") return out.push_back(parse_for());
    if (name == "if") return out.push_back(parse_if());
    if (name == "set") return out.push_back(parse_set());
    if (name == "macro") return out.push_back(parse_macro());
    if (name == "call") return out.push_back(parse_call_block());
    if (name == "filter") return out.push_back(parse_filter_block());
    if (name == "with") return out.push_back(parse_with());
    if (name == "print") return parse_print(out);
    if (name == "block") return out.push_back(parse_block());
    if (name == "generation") {
      advance();
      auto s = stmt(StmtKind::Scoped, t);
      s->scoped = true;
      s->body = parse_statements({"endgeneration"}, true);
      return out.push_back(std::move(s));
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail("'" + name + "' outside loop");
      auto s = stmt(name == "break" ? StmtKind::Break : StmtKind::Continue, t);
      advance();
      return out.push_back(std::move(s));
    }
    if (name == "extends" || name == "include" || name == "import" || name == "from")
      fail("'" + name + "' needs a template loader, which chat templates do not have");
    if (name == "autoescape") fail("autoescape blocks are not supported");
    fail("Encountered unknown tag '" + name + "'.");
  }

  StmtPtr parse_for() {
    const Token& at = advance();
    auto s = stmt(StmtKind::For, at);
    s->target = parse_assign_target(false, {"in"});
    check_no_loop_target(s->target);
    if (!skip_name("in")) fail("expected token 'in', got '" + describe(cur()) + "'");
    s->expr = parse_tuple(false, false, {"recursive"});
    if (skip_name("if")) s->cond = parse_expression(true);
    s->recursive = skip_name("recursive");
    ++loop_depth_;
    s->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (advance().value != "endfor") s->else_body = parse_statements({"endfor"}, true);
    return s;
  }

  void check_no_loop_target(const Target& t) {
    if (t.kind == Target::Kind::Name && t.name == "loop") fail("Can't assign to special loop variable in for-loop target");
    for (const Target& item : t.items) check_no_loop_target(item);
  }

  StmtPtr parse_if() {
    const Token& at = advance();
    auto s = stmt(StmtKind::If, at);
    while (true) {
      ExprPtr test = parse_tuple(false, false, {});
      Body body = parse_statements({"elif", "else", "endif"}, false);
      s->branches.emplace_back(std::move(test), std::move(body));
      const Token& t = advance();
      if (t.value == "elif") continue;
      if (t.value == "else") s->else_body = parse_statements({"endif"}, true);
      break;
    }
    return s;
  }

  StmtPtr parse_set() {
    const Token& at = advance();
    Target target = parse_assign_target(true, {});
    if (skip_op("=")) {
      auto s = stmt(StmtKind::Set, at);
      s->target = std::move(target);
      s->expr = parse_tuple(true, false, {});
      return s;
    }
    auto s = stmt(StmtKind::SetBlock, at);
    s->target = std::move(target);
    if (is_op("|")) s->filter = parse_filter(nullptr, false);
    s->body = parse_statements({"endset"}, true);
    return s;
  }

  void parse_signature(MacroDef& m) {
    expect_op("(");
    while (!is_op(")")) {
      if (!m.params.empty()) expect_op(",");
      const Token& name = expect_name();
      check_assignable_name(name);
      if (skip_op("=")) {
        m.defaults.push_back(parse_expression(true));
      } else if (!m.defaults.empty()) {
        fail("non-default argument follows default argument");
      }
      m.params.push_back(name.value);
    }
    expect_op(")");
  }

  StmtPtr parse_macro() {
    const Token& at = advance();
    auto s = stmt(StmtKind::Macro, at);
    s->macro = std::make_shared<MacroDef>();
    MacroDef& m = *s->macro;
    m.line = at.line;
    const Token& name = expect_name();
    check_assignable_name(name);
    m.name = name.value;
    parse_signature(m);
    parse_macro_body(m, {"endmacro"});
    return s;
  }

  void parse_macro_body(MacroDef& m, EndTags end) {
    macros_.push_back(&m);
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    m.body = parse_statements(end, true);
    loop_depth_ = saved_loops;
    macros_.pop_back();
  }

  StmtPtr parse_call_block() {
    const Token& at = advance();
    auto s = stmt(StmtKind::CallBlock, at);
    s->macro = std::make_shared<MacroDef>();
    s->macro->name = "caller";
    s->macro->line = at.line;
    if (is_op("(")) parse_signature(*s->macro);
    s->expr = parse_expression(true);
    if (s->expr->kind != ExprKind::Call) fail("expected call");
    parse_macro_body(*s->macro, {"endcall"});
    return s;
  }

  StmtPtr parse_filter_block() {
    const Token& at = advance();
    auto s = stmt(StmtKind::FilterBlock, at);
    s->filter = parse_filter(nullptr, true);
    s->body = parse_statements({"endfilter"}, true);
    return s;
  }

  StmtPtr parse_with() {
    const Token& at = advance();
    auto s = stmt(StmtKind::With, at);
    while (cur().type != TokenType::BlockEnd) {
      if (!s->assignments.empty()) expect_op(",");
      Target target = parse_assign_target(false, {});
      expect_op("=");
      s->assignments.emplace_back(std::move(target), parse_expression(true));
    }
    s->body = parse_statements({"endwith"}, true);
    return s;
  }

  void parse_print(Body& out) {
    const Token& at = advance();
    bool first = true;
    while (cur().type != TokenType::BlockEnd) {
      if (!first) expect_op(",");
      first = false;
      auto s = stmt(StmtKind::Print, at);
      s->expr = parse_expression(true);
      out.push_back(std::move(s));
    }
  }

  StmtPtr parse_block() {
    const Token& at = advance();
    auto s = stmt(StmtKind::Scoped, at);
    const std::string name = expect_name().value;
    s->scoped = skip_name("scoped");
    skip_name("required");
    if (is_op("-")) fail("Block names in Jinja have to be valid Python identifiers and may not contain hyphens, use an underscore instead.");
    for (const std::string& b : block_names_)
      if (b == name) fail("block '" + name + "' defined twice");
    block_names_.push_back(name);
    s->body = parse_statements({"endblock"}, true);
    skip_name(name.c_str());
    return s;
  }

  void check_assignable_name(const Token& t) const {
    static const char* const kConst[] = {"true", "false", "none", "True", "False", "None"};
    for (const char* c : kConst)
      if (t.value == c) fail_at(t, "Can't assign to '" + t.value + "'");
  }

  // set/for/with targets: a name, `ns.attr` (set only), or a tuple of names.
  Target parse_assign_target(bool with_namespace, EndTags extra_end) {
    if (with_namespace && cur().type == TokenType::Name && look().type == TokenType::Operator && look().value == ".") {
      Target t;
      t.kind = Target::Kind::NamespaceAttr;
      t.name = advance().value;
      advance();
      t.attr = expect_name().value;
      return t;
    }
    Target tuple;
    tuple.kind = Target::Kind::Tuple;
    bool is_tuple = false;
    while (true) {
      if (!tuple.items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      if (cur().type == TokenType::Operator && cur().value == "(") {
        advance();
        Target inner = parse_assign_target(false, {});
        expect_op(")");
        tuple.items.push_back(std::move(inner));
      } else {
        if (cur().type != TokenType::Name) fail("can't assign to " + describe(cur()));
        check_assignable_name(cur());
        Target t;
        t.name = advance().value;
        tuple.items.push_back(std::move(t));
      }
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (tuple.items.empty()) fail("Expected an expression, got '" + describe(cur()) + "'");
      return std::move(tuple.items[0]);
    }
    return tuple;
  }

  // ---- expressions ----
  bool is_tuple_end(EndTags extra_end) const {
    if (cur().type == TokenType::VariableEnd || cur().type == TokenType::BlockEnd || cur().type == TokenType::Eof) return true;
    if (is_op(")")) return true;
    return at_end_tag(extra_end);
  }

  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parentheses, EndTags extra_end) {
    const Token& at = cur();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(parse_expression(with_condexpr));
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) fail("Expected an expression, got '" + describe(cur()) + "'");
    }
    auto e = node(ExprKind::Tuple, at);
    e->items = std::move(items);
    return seal(std::move(e));
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    const Token& at = cur();
    ExprPtr expr1 = parse_or();
    while (skip_name("if")) {
      ExprPtr expr2 = parse_or();
      ExprPtr expr3;
      if (skip_name("else")) expr3 = parse_condexpr();
      auto e = node(ExprKind::CondExpr, at);
      e->items.push_back(std::move(expr1));
      e->items.push_back(std::move(expr2));
      e->items.push_back(std::move(expr3));
      expr1 = seal(std::move(e));
    }
    return expr1;
  }

  ExprPtr parse_or() {
    const Token& at = cur();
    ExprPtr left = parse_and();
    while (skip_name("or")) {
      auto e = node(ExprKind::Or, at);
      e->items.push_back(std::move(left));
      e->items.push_back(parse_and());
      left = seal(std::move(e));
    }
    return left;
  }

  ExprPtr parse_and() {
    const Token& at = cur();
    ExprPtr left = parse_not();
    while (skip_name("and")) {
      auto e = node(ExprKind::And, at);
      e->items.push_back(std::move(left));
      e->items.push_back(parse_not());
      left = seal(std::move(e));
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      const Token& at = advance();
      DepthGuard guard(*this);
      auto e = node(ExprKind::Not, at);
      e->items.push_back(parse_not());
      return seal(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& at = cur();
    ExprPtr expr = parse_math1();
    std::vector<CmpOp> ops;
    std::vector<ExprPtr> operands;
    while (true) {
      CmpOp op;
      if (is_op("==")) op = CmpOp::Eq;
      else if (is_op("!=")) op = CmpOp::Ne;
      else if (is_op("<")) op = CmpOp::Lt;
      else if (is_op("<=")) op = CmpOp::Le;
      else if (is_op(">")) op = CmpOp::Gt;
      else if (is_op(">=")) op = CmpOp::Ge;
      else if (is_name("in")) op = CmpOp::In;
      else if (is_name("not") && look().type == TokenType::Name && look().value == "in") {
        advance();
        op = CmpOp::NotIn;
      } else {
        break;
      }
      advance();
      ops.push_back(op);
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return expr;
    auto e = node(ExprKind::Compare, at);
    e->items.push_back(std::move(expr));
    for (auto& o : operands) e->items.push_back(std::move(o));
    e->cmp_ops = std::move(ops);
    return seal(std::move(e));
  }

  ExprPtr binary(BinOp op, ExprPtr left, ExprPtr right, const Token& at) {
    auto e = node(ExprKind::Binary, at);
    e->op = op;
    e->items.push_back(std::move(left));
    e->items.push_back(std::move(right));
    return seal(std::move(e));
  }

  ExprPtr parse_math1() {
    const Token& at = cur();
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const BinOp op = cur().value == "+" ? BinOp::Add : BinOp::Sub;
      advance();
      left = binary(op, std::move(left), parse_concat(), at);
    }
    return left;
  }

  ExprPtr parse_concat() {
    const Token& at = cur();
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto e = node(ExprKind::Concat, at);
    e->items.push_back(std::move(first));
    while (skip_op("~")) e->items.push_back(parse_math2());
    return seal(std::move(e));
  }

  ExprPtr parse_math2() {
    const Token& at = cur();
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string& v = cur().value;
      const BinOp op = v == "*" ? BinOp::Mul : v == "/" ? BinOp::Div : v == "//" ? BinOp::FloorDiv : BinOp::Mod;
      advance();
      left = binary(op, std::move(left), parse_pow(), at);
    }
    return left;
  }

  ExprPtr parse_pow() {
    const Token& at = cur();
    ExprPtr left = parse_unary(true);
    while (skip_op("**")) left = binary(BinOp::Pow, std::move(left), parse_unary(true), at);
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    const Token& at = cur();
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const bool neg = cur().value == "-";
      advance();
      e = node(neg ? ExprKind::Neg : ExprKind::Pos, at);
      e->items.push_back(parse_unary(false));
      e = seal(std::move(e));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    if (t.type == TokenType::Name) {
      advance();
      if (t.value == "true" || t.value == "True" || t.value == "false" || t.value == "False") {
        auto e = node(ExprKind::Const, t);
        e->value = Value::boolean(t.value == "true" || t.value == "True");
        return e;
      }
      if (t.value == "none" || t.value == "None") {
        auto e = node(ExprKind::Const, t);
        e->value = Value::none();
        return e;
      }
      auto e = node(ExprKind::Name, t);
      e->name = t.value;
      if (t.value == "varargs" || t.value == "kwargs" || t.value == "caller") {
        for (MacroDef* m : macros_) {
          if (t.value == "varargs") m->uses_varargs = true;
          if (t.value == "kwargs") m->uses_kwargs = true;
          if (t.value == "caller") m->uses_caller = true;
        }
      }
      return e;
    }
    if (t.type == TokenType::String) {
      std::string s;
      while (cur().type == TokenType::String) s += advance().value;
      auto e = node(ExprKind::Const, t);
      e->value = Value::string(std::move(s));
      return e;
    }
    if (t.type == TokenType::Integer || t.type == TokenType::Float) {
      advance();
      auto e = node(ExprKind::Const, t);
      e->value = t.type == TokenType::Integer ? Value::integer(t.int_value) : Value::number(t.float_value);
      return e;
    }
    if (is_op("(")) {
      advance();
      ExprPtr e = parse_tuple(true, true, {});
      expect_op(")");
      return e;
    }
    if (is_op("[")) return parse_list();
    if (is_op("{")) return parse_dict();
    fail("unexpected '" + describe(t) + "'");
  }

  ExprPtr parse_list() {
    const Token& at = advance();
    auto e = node(ExprKind::List, at);
    while (!is_op("]")) {
      if (!e->items.empty()) expect_op(",");
      if (is_op("]")) break;
      e->items.push_back(parse_expression(true));
    }
    expect_op("]");
    return seal(std::move(e));
  }

  ExprPtr parse_dict() {
    const Token& at = advance();
    auto e = node(ExprKind::Dict, at);
    while (!is_op("}")) {
      if (!e->items.empty()) expect_op(",");
      if (is_op("}")) break;
      e->items.push_back(parse_expression(true));
      expect_op(":");
      e->items.push_back(parse_expression(true));
    }
    expect_op("}");
    return seal(std::move(e));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter(std::move(e), false);
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr subject) {
    const Token& t = advance();
    if (t.value == ".") {
      const Token& attr = cur();
      advance();
      if (attr.type == TokenType::Name) {
        auto e = node(ExprKind::GetAttr, t);
        e->name = attr.value;
        e->items.push_back(std::move(subject));
        return seal(std::move(e));
      }
      if (attr.type != TokenType::Integer) fail_at(attr, "expected name or number");
      auto e = node(ExprKind::GetItem, t);
      e->items.push_back(std::move(subject));
      auto index = node(ExprKind::Const, attr);
      index->value = Value::integer(attr.int_value);
      e->items.push_back(std::move(index));
      return seal(std::move(e));
    }
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    auto e = node(ExprKind::GetItem, t);
    e->items.push_back(std::move(subject));
    if (args.size() == 1) {
      e->items.push_back(std::move(args[0]));
    } else {
      auto tuple = node(ExprKind::Tuple, t);
      tuple->items = std::move(args);
      e->items.push_back(seal(std::move(tuple)));
    }
    return seal(std::move(e));
  }

  ExprPtr parse_subscribed() {
    const Token& at = cur();
    std::vector<ExprPtr> args;
    if (is_op(":")) {
      advance();
      args.push_back(nullptr);
    } else {
      ExprPtr e = parse_expression(true);
      if (!is_op(":")) return e;
      advance();
      args.push_back(std::move(e));
    }
    if (is_op(":")) {
      args.push_back(nullptr);
    } else if (!is_op("]") && !is_op(",")) {
      args.push_back(parse_expression(true));
    } else {
      args.push_back(nullptr);
    }
    if (is_op(":")) {
      advance();
      if (!is_op("]") && !is_op(",")) args.push_back(parse_expression(true));
      else args.push_back(nullptr);
    } else {
      args.push_back(nullptr);
    }
    auto e = node(ExprKind::Slice, at);
    e->items = std::move(args);
    return seal(std::move(e));
  }

  void parse_call_args(CallSiteArgs& out) {
    expect_op("(");
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) fail("invalid syntax for function call expression");
    };
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*")) {
        ensure(!out.dyn_args && !out.dyn_kwargs);
        advance();
        out.dyn_args = parse_expression(true);
      } else if (is_op("**")) {
        ensure(!out.dyn_kwargs);
        advance();
        out.dyn_kwargs = parse_expression(true);
      } else if (cur().type == TokenType::Name && look().type == TokenType::Operator && look().value == "=") {
        ensure(!out.dyn_kwargs);
        std::string key = advance().value;
        advance();
        out.keyword.emplace_back(std::move(key), parse_expression(true));
      } else {
        ensure(!out.dyn_args && !out.dyn_kwargs && out.keyword.empty());
        out.positional.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    DepthGuard guard(*this);
    auto e = node(ExprKind::Call, cur());
    e->items.push_back(std::move(callee));
    parse_call_args(e->args);
    return seal(std::move(e));
  }

  ExprPtr parse_filter(ExprPtr subject, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) advance();
      start_inline = false;
      const Token& name_token = expect_name();
      std::string name = name_token.value;
      while (skip_op(".")) name += "." + expect_name().value;
      auto e = node(ExprKind::Filter, name_token);
      e->name = name;
      e->filter = find_filter(name);
      if (!e->filter) fail_at(name_token, "No filter named '" + name + "'.");
      e->items.push_back(std::move(subject));
      if (is_op("(")) parse_call_args(e->args);
      subject = seal(std::move(e));
    }
    return subject;
  }

  ExprPtr parse_test(ExprPtr subject) {
    advance();  // 'is'
    const bool negated = skip_name("not");
    const Token& name_token = expect_name();
    std::string name = name_token.value;
    while (skip_op(".")) name += "." + expect_name().value;
    auto e = node(ExprKind::Test, name_token);
    e->name = name;
    e->test = find_test(name);
    if (!e->test) fail_at(name_token, "No test named '" + name + "'.");
    e->items.push_back(std::move(subject));
    const Token& t = cur();
    if (is_op("(")) {
      parse_call_args(e->args);
    } else if ((t.type == TokenType::Name || t.type == TokenType::String || t.type == TokenType::Integer ||
                t.type == TokenType::Float || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("You cannot chain multiple tests with is");
      e->args.positional.push_back(parse_postfix(parse_primary()));
    }
    e = seal(std::move(e));
    if (!negated) return e;
    auto n = node(ExprKind::Not, name_token);
    n->items.push_back(std::move(e));
    return seal(std::move(n));
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  ParseLimits limits_;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<MacroDef*> macros_;
  std::vector<std::string> block_names_;
};

}  // namespace

Body parse_template(std::string_view source, const ParseLimits& limits) {
  return Parser(tokenize(source), limits).parse();
}

}  // namespace moeserve::jinja
