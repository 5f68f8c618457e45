// Python's string formatting as templates reach it: json.dumps (transformers' `tojson`),
// printf-style `str % args`, `str.format`, and markupsafe's HTML escaping.
#pragma once

#include <string>
#include <string_view>

#include "chat/jinja/value.h"

namespace moeserve::jinja {

struct JsonDumpOptions {
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool indent_set = false;  // indent=None leaves everything on one line
  std::string indent;
  bool separators_set = false;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
};

// json.dumps(value, ...) byte for byte; RuntimeError for what Python cannot serialize.
std::string json_dumps(const Value& value, const JsonDumpOptions& options);

// markupsafe.escape applied to text.
std::string html_escape(std::string_view s);

// `fmt % args` (printf-style). `escape_args` applies markupsafe's rules when fmt is Markup.
std::string percent_format(const std::string& fmt, const Value& args, bool escape_args);

// `fmt.format(*args, **kwargs)`.
std::string str_format(Interpreter& interp, const std::string& fmt, const CallArgs& args, bool escape_args);

// format(value, spec) for the built-in types.
std::string format_value(const Value& value, std::string_view spec);

}  // namespace moeserve::jinja
