// The Hermes / Qwen3 JSON tool-call body, parsed as it streams in:
//
//   <tool_call>
//   {"name": "NAME", "arguments": {...}}
//   </tool_call>
//
// The body is the first complete JSON value after `<tool_call>` (braces counted outside strings).
// It is read with json.loads semantics (as vLLM's hermes parser does) and must be an object with a
// string `name`; `arguments` (or `parameters`) must be an object, or a string holding one; a
// missing one means no arguments. Anything else (a syntax error, a `</tool_call>` before the value
// closes, the end of the output) is malformed: the caller keeps the raw text as content.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace moeserve::chat {

struct JsonCallResult {
  size_t end = 0;        // bytes of the body that belong to the call (the JSON value, or for a
                         // malformed call everything through its `</tool_call>`)
  bool ok = false;
  std::string name;
  std::string arguments;  // JSON object text, as Python's json.dumps prints it
  std::string problem;    // why a malformed call was kept as content
};

class HermesCallBody {
 public:
  // `body` starts at the opening `{` and only grows between calls. Returns once decided; with
  // `final` (the output has ended) it always returns.
  std::optional<JsonCallResult> advance(std::string_view body, bool final);

 private:
  JsonCallResult decode(std::string_view value) const;

  size_t pos_ = 0;
  int depth_ = 0;
  bool in_string_ = false;
  bool escape_ = false;
};

}  // namespace moeserve::chat
