// Parser: tokens -> statement tree, following jinja2's grammar and operator precedence (including
// its quirks: `~` binds tighter than `+`, `**` is left-associative, filters and tests bind to the
// unary operand). Unknown filters and tests are compile errors, as in jinja2.
#pragma once

#include <string_view>

#include "chat/jinja/ast.h"

namespace moeserve::jinja {

struct ParseLimits {
  int max_nesting = 200;     // block and parenthesis nesting (bounds the parser's recursion)
  int max_expr_depth = 300;  // height of an expression tree, long operator chains included
};

// Throws TemplateError (with line and column) for syntax errors.
Body parse_template(std::string_view source, const ParseLimits& limits = {});

}  // namespace moeserve::jinja
