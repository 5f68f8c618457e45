// Python's str methods on UTF-8 text (indices and widths in code points), and argument binding for
// built-in functions, shared by the filters, tests and methods.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/jinja/value.h"

namespace moeserve::jinja {

// Binds Python-style arguments to parameter names: Args a(call, "trim", {"value", "chars"}).
class Args {
 public:
  Args(CallArgs& call, std::string_view function, std::initializer_list<const char*> names);
  const Value* get(size_t index) const { return index < bound_.size() && bound_[index] ? &*bound_[index] : nullptr; }
  bool has(size_t index) const { return get(index) != nullptr; }
  Value get_or(size_t index, Value fallback) const { return has(index) ? *get(index) : fallback; }
  bool flag(size_t index, bool fallback) const;           // truthiness of an optional argument
  int64_t integer(size_t index, int64_t fallback) const;  // int (or bool); RuntimeError otherwise
  std::string text(size_t index, std::string fallback) const;  // str(); RuntimeError for non-strings

 private:
  std::string function_;
  std::vector<std::optional<Value>> bound_;
};

namespace pystr {

// chars == nullptr strips Python whitespace.
std::string strip(std::string_view s, const std::string* chars, bool left, bool right);
// sep == nullptr splits on runs of whitespace; maxsplit < 0 is unlimited.
std::vector<std::string> split(std::string_view s, const std::string* sep, int64_t maxsplit);
std::vector<std::string> rsplit(std::string_view s, const std::string* sep, int64_t maxsplit);
std::vector<std::string> splitlines(std::string_view s, bool keepends);
std::string replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count);
std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string title(std::string_view s);       // str.title()
std::string capitalize(std::string_view s);  // str.capitalize()
std::string swapcase(std::string_view s);
std::string center(std::string_view s, int64_t width, char32_t fill);
std::string ljust(std::string_view s, int64_t width, char32_t fill);
std::string rjust(std::string_view s, int64_t width, char32_t fill);
std::string zfill(std::string_view s, int64_t width);
std::string reverse(std::string_view s);
int64_t count(std::string_view s, std::string_view sub);
// find/rfind in code points; -1 when absent. start/end follow Python's slice rules.
int64_t find(std::string_view s, std::string_view sub, std::optional<int64_t> start, std::optional<int64_t> end, bool reverse);
bool starts_with(std::string_view s, std::string_view prefix, std::optional<int64_t> start, std::optional<int64_t> end, bool suffix);

}  // namespace pystr
}  // namespace moeserve::jinja
