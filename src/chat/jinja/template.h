// A compiled Jinja template: compile once, render many times (rendering is const and thread-safe;
// each render has its own interpreter state).
#pragma once

#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "chat/jinja/ast.h"
#include "chat/jinja/error.h"
#include "chat/jinja/interpreter.h"
#include "chat/jinja/value.h"

namespace moeserve::jinja {

struct RenderOptions {
  RenderLimits limits;
  std::optional<std::tm> now;  // the local time strftime_now() reports; the clock when unset
};

class Template {
 public:
  // Throws TemplateError (with line and column) for syntax errors.
  static Template compile(std::string_view source);

  // Renders with `context` as the template's variables (over the built-in globals).
  std::string render(const DictData& context, const RenderOptions& options = {}) const;

 private:
  explicit Template(std::shared_ptr<const Body> body) : body_(std::move(body)) {}
  std::shared_ptr<const Body> body_;
};

// JSON -> template value (objects keep their key order). Throws moeserve::Error for input nested
// deeper than kMaxJsonDepth or integers beyond 64 bits.
constexpr int kMaxJsonDepth = 256;
Value from_json(const nlohmann::ordered_json& json);

}  // namespace moeserve::jinja
