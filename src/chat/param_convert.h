// Schema-driven conversion of a raw Qwen3-Coder parameter value (the text between
// `<parameter=NAME>\n` and `\n</parameter>`) to a JSON value, with vLLM's qwen3_coder rules
// (shared/spec/qwen3-coder-tools.md §4.7): strings stay strings even when they look like numbers,
// integers / numbers / booleans / objects / arrays are converted, null / None map to null for
// non-string types, and anything that fails to convert is kept as the raw string.
#pragma once

#include <string_view>

#include "chat/py_value.h"
#include "chat/tool_schema.h"

namespace moeserve::chat {

// `tool` may be null (unknown tool): every value is then a string.
PyValue convert_param_value(std::string_view raw, std::string_view param_name, const ToolSchema* tool);

}  // namespace moeserve::chat
