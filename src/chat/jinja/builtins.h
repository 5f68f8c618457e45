// Built-in filters, tests and Python methods of the template environment transformers sets up.
#pragma once

#include <string_view>

#include "chat/jinja/ast.h"
#include "chat/jinja/value.h"

namespace moeserve::jinja {

FilterFn find_filter(std::string_view name);
TestFn find_test(std::string_view name);

// Python attribute lookup for methods of built-in types, as jinja2's ImmutableSandboxedEnvironment
// allows it: Safe methods become bound callables, Unsafe ones (those that would modify a list or
// dict) an undefined that raises SecurityError when used, None means the type has no such attribute.
enum class MethodLookup : uint8_t { None, Safe, Unsafe };
MethodLookup find_method(const Value& self, std::string_view name);
Value bind_method(const Value& self, std::string_view name);

// Global functions: range, namespace, dict, raise_exception, strftime_now, cycler, joiner.
void add_globals(DictData& globals);

}  // namespace moeserve::jinja
