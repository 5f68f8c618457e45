// Renders a parsed template: jinja2's scoping (a fresh scope per loop iteration, macro, call block,
// filter/set block; `if` shares its scope), its sandboxed attribute rules, and bounded work: output
// size, steps (loop iterations, calls, per-item filter work) and call depth are capped so a hostile
// template cannot hang or exhaust memory or the stack.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/jinja/ast.h"
#include "chat/jinja/value.h"

namespace moeserve::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t(64) << 20;  // also the largest string a template may build
  uint64_t max_steps = 20'000'000;
  int max_call_depth = 100;                     // nested macro calls and recursive loops
  int max_nesting = 1000;                       // nested evaluation frames: bounds the stack used
};

// raise_exception(msg) from a template.
class RaisedError : public RuntimeError {
 public:
  explicit RaisedError(const std::string& message) : RuntimeError(message) {}
};

// A frame of variables; lookups fall back to the parent.
struct Scope {
  explicit Scope(std::shared_ptr<Scope> p) : parent(std::move(p)) {}
  const Value* find(std::string_view name) const;
  void set(std::string_view name, Value value);

  std::shared_ptr<Scope> parent;
  std::vector<std::pair<std::string, Value>> vars;
};

class Interpreter {
 public:
  // `now` fixes the wall-clock time strftime_now() sees (local time otherwise).
  Interpreter(const RenderLimits& limits, std::optional<std::tm> now);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders `body` with `globals` below `context`; throws TemplateError.
  std::string render(const Body& body, const DictData& globals, const DictData& context);

  // Operations the built-ins share with the evaluator.
  Value get_attr(const Value& obj, std::string_view name);
  Value get_item(const Value& obj, const Value& key);
  Value call(const Value& callee, CallArgs& args);
  Value call_macro(const MacroDef& macro, const std::shared_ptr<Scope>& closure, CallArgs& args);
  void step(uint64_t n = 1);
  void check_size(size_t bytes) const;
  const RenderLimits& limits() const { return limits_; }
  std::tm now() const;
  Value binary_op(BinOp op, const Value& a, const Value& b);
  void register_namespace(const std::shared_ptr<Object>& ns) { namespaces_.push_back(ns); }

  // Recursive loops: renders `loop` again over `iterable` one level deeper.
  Value run_loop(const Stmt& loop, const std::shared_ptr<Scope>& scope, const Value& iterable, int64_t depth0);

 private:
  enum class Flow : uint8_t { Normal, Break, Continue };

  Flow exec_body(const Body& body, const std::shared_ptr<Scope>& scope);
  Flow exec(const Stmt& s, const std::shared_ptr<Scope>& scope);
  Flow exec_for(const Stmt& s, const std::shared_ptr<Scope>& scope, const Value& iterable, int64_t depth0);
  void exec_call_block(const Stmt& s, const std::shared_ptr<Scope>& scope);
  std::string capture(const Body& body, const std::shared_ptr<Scope>& scope, Flow* flow = nullptr);
  void emit(std::string_view text);

  Value eval(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_filter(const Expr& e, const std::shared_ptr<Scope>& scope, const Value* input);
  void eval_args(const CallSiteArgs& site, const std::shared_ptr<Scope>& scope, CallArgs& out);
  Value eval_slice(const Value& subject, const Expr& slice, const std::shared_ptr<Scope>& scope);
  bool compare_op(CmpOp op, const Value& a, const Value& b);
  void assign(const Target& target, const Value& value, Scope& scope);
  void set_position(int line, int column) {
    line_ = line;
    column_ = column;
  }

  RenderLimits limits_;
  std::optional<std::tm> now_;
  std::string* out_ = nullptr;
  size_t output_total_ = 0;
  uint64_t steps_ = 0;
  int call_depth_ = 0;
  int nesting_ = 0;
  int line_ = 1;
  int column_ = 1;
  std::vector<std::weak_ptr<Object>> namespaces_;
};

bool contains(const Value& container, const Value& item);  // Python's `item in container`

}  // namespace moeserve::jinja
