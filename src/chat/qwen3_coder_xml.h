// The Qwen3-Coder XML tool-call body, parsed as it streams in:
//
//   <function=NAME>
//   <parameter=P>
//   VALUE (raw text, any number of lines)
//   </parameter>
//   ...
//   </function>
//
// Semantics follow vLLM's qwen3_coder parser (shared/spec/qwen3-coder-tools.md §4), restated so
// that every decision depends only on text already seen, which makes the result independent of
// how the output is chunked:
//
// * A value ends at a *structural* `</parameter>`: one followed (after whitespace) by
//   `<parameter=N>` with N a declared parameter (any N if the tool declares none), `</function>`,
//   `</tool_call>`, another `</parameter>` (a duplicated close), or the end of the output.
//   `<parameter=` at the start of a line inside a value opens a nested literal (code that talks
//   about this format) whose `</parameter>` is balanced, not structural.
// * Missing `</parameter>` is tolerated: the value also ends before a line-start
//   `<parameter=N>` with N declared and not yet given (any new N if none are declared), before a
//   structural `</function>` (followed by `</tool_call>`, `<tool_call>` or the end) outside any
//   nested literal, before a `</tool_call>` followed by `<tool_call>` or the end, or at the end.
// * One leading and one trailing newline of each value are removed; the value is then converted
//   with the parameter's schema type (param_convert.h).
// * Text between parameters that is not a tag is ignored; a stray `</parameter>` there (a
//   duplicated close) too. The body ends at `</function>`, or where a `</tool_call>` /
//   `<tool_call>` / the end of the output shows that `</function>` was left out.
//
// Where vLLM would have to see the whole output first (it splits blocks at `</tool_call>` before
// parsing them), this reading decides from the function body outward; they agree on well-formed
// output and on the malformations listed in the spec.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/tool_schema.h"

namespace moeserve::chat {

// Function names that are accepted (vLLM rejects names with template or markup characters,
// whitespace or quotes, and empty ones: they come from the model echoing template syntax).
inline constexpr size_t kMaxToolNameBytes = 256;
bool valid_function_name_char(char c);

struct XmlCallResult {
  size_t end = 0;          // bytes of the body that belong to the call (through `</function>` if present)
  std::string arguments;   // JSON object text, as vLLM prints it
  std::vector<std::string> notes;
};

class Qwen3CoderFunctionBody {
 public:
  // `tool` is null when the name is not among the request's tools.
  Qwen3CoderFunctionBody(std::string name, const ToolSchema* tool) : name_(std::move(name)), tool_(tool) {}

  // `body` is all text after `<function=NAME>` seen so far; it only grows between calls. Returns
  // the call once its end is known; with `final` (the output has ended) it always returns.
  std::optional<XmlCallResult> advance(std::string_view body, bool final);

 private:
  enum class Decision { yes, no, wait };

  bool schema_known() const { return tool_ && tool_->has_properties(); }
  bool seen(std::string_view param) const;
  Decision read_name(std::string_view s, size_t p, bool final, std::string_view& name, size_t& gt) const;
  Decision param_close_is_structural(std::string_view s, size_t after, bool final);
  Decision end_follows(std::string_view s, size_t after, bool final, bool allow_call_close);
  // skip_tag_space() that remembers how far a run of whitespace was already scanned, so that a
  // lookahead waiting at the end of a long run does not rescan it on every new chunk.
  size_t skip_space_once(std::string_view s, size_t from);
  bool implicit_end_at(std::string_view name) const;
  // Scans the current value from pos_; true when it ended (in_value_ cleared), false to wait.
  bool scan_value(std::string_view s, bool final);
  void finish_value(std::string_view s, size_t end, const char* missing_close_reason);
  XmlCallResult result(size_t end, bool closed);

  std::string name_;
  const ToolSchema* tool_;
  size_t pos_ = 0;
  bool in_value_ = false;
  std::string param_;
  size_t value_begin_ = 0;
  int depth_ = 0;   // nested literal <parameter=...> opened inside the value
  int fdepth_ = 0;  // nested literal <function=...> opened inside the value
  size_t space_from_ = 0;  // s[space_from_, space_to_) is known to be whitespace
  size_t space_to_ = 0;
  std::vector<std::pair<std::string, std::string>> raw_params_;
  std::vector<std::string> notes_;
};

}  // namespace moeserve::chat
