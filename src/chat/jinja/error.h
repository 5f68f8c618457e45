// Template errors: syntax errors from compiling and failures while rendering, with the 1-based line
// and column in the template source. `raised()` marks errors the template raised on purpose via
// raise_exception(msg), whose message() is the template's own text.
#pragma once

#include <string>

#include "core/error.h"

namespace moeserve::jinja {

class TemplateError : public Error {
 public:
  TemplateError(const std::string& message, int line, int column, bool raised = false)
      : Error(raised ? str_cat("chat template raised an exception (line ", line, "): ", message)
                     : str_cat("chat template line ", line, ", column ", column, ": ", message)),
        message_(message),
        line_(line),
        column_(column),
        raised_(raised) {}

  const std::string& message() const { return message_; }
  int line() const { return line_; }
  int column() const { return column_; }
  bool raised() const { return raised_; }

 private:
  std::string message_;
  int line_;
  int column_;
  bool raised_;
};

}  // namespace moeserve::jinja
