// The two readers the Qwen3-Coder parameter conversion relies on, with the acceptance rules of
// their Python originals: json.loads (strict strings, NaN / Infinity, big integers, duplicate
// keys) and ast.literal_eval (Python literals: quotes of both kinds, True / False / None, tuples,
// hex / octal / binary integers, implicit string concatenation).
#pragma once

#include <optional>
#include <string_view>

#include "chat/py_value.h"

namespace moeserve::chat {

// json.loads(text); nullopt where Python raises (JSONDecodeError, too deep a nesting, ...).
std::optional<PyValue> py_json_loads(std::string_view text);

// ast.literal_eval(text) for the literals json.dumps can print; nullopt where Python raises, and
// also for values json.dumps would reject anyway (bytes, sets, complex numbers).
std::optional<PyValue> py_literal_eval(std::string_view text);

// Nesting limit of both readers: deeper input is rejected (Python would hit its recursion limit).
inline constexpr int kPyMaxDepth = 200;

}  // namespace moeserve::chat
