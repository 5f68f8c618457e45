// Splits a reply's answer text into content and tool calls as it streams in, for the Qwen3 tool
// formats: `<tool_call>` blocks whose body is either Qwen3-Coder XML (`<function=NAME>...`,
// qwen3_coder_xml.h) or Hermes JSON (`{"name": ...}`, hermes_json.h), whichever the model wrote;
// with the XML format also bare `<function=NAME>` blocks at the start of a line (a known slip:
// the `<tool_call>` wrapper left out).
//
// Streaming guarantees: text is emitted as soon as it cannot be the start of a tag (a partial tag
// such as `<tool_` is held back, as is an incomplete UTF-8 character); a tool call is announced
// (tool_call_begin) once its name is known and delivered (tool_call_end) once complete; the
// concatenated events are the same however the text is split into chunks.
//
// Text before, between and after tool calls is content (as vLLM streams it; its non-streaming
// path drops text after the calls). Content is trimmed: whitespace at the start of the reply,
// around tool calls and at the end is dropped (the chat template trims it when the reply goes back
// into a prompt). `<tool_call>` followed by anything but a call body (after whitespace) is text.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "chat/hermes_json.h"
#include "chat/output_events.h"
#include "chat/qwen3_coder_xml.h"
#include "chat/tool_schema.h"

namespace moeserve::chat {

enum class ToolCallFormat {
  none,             // no tool calls: everything is content
  qwen3_coder_xml,  // Qwen3-Coder / Qwen3-Coder-Next (JSON bodies are accepted too)
  hermes_json,      // Qwen3 / Qwen3-Next / Hermes (XML bodies are accepted too)
};

class ToolCallParser {
 public:
  // `tools` must outlive the parser (null: no tools, every call is flagged unknown). Tool-call
  // ids come from a generator seeded with `id_seed`, so a seeded request is reproducible.
  ToolCallParser(ToolCallFormat format, const ToolSet* tools, uint64_t id_seed);

  void feed(std::string_view text, EventList& out);
  // The output has ended: decide everything still pending (calls missing their closing tags are
  // completed, a call that never got a name falls back to content).
  void finish(EventList& out);

 private:
  enum class State { content, call_open, function_name, xml_body, json_body, after_call };

  bool step(bool final, EventList& out);
  bool step_content(bool final, EventList& out);
  bool step_call_open(bool final, EventList& out);
  bool step_function_name(bool final, EventList& out);
  bool step_xml_body(bool final, EventList& out);
  bool step_json_body(bool final, EventList& out);
  bool step_after_call(bool final, EventList& out);

  void emit_content(std::string_view text, EventList& out);
  // The `<tool_call>` / `<function=` at call_start_ was not a call: its text up to `end` is content.
  void fall_back_to_content(size_t end, EventList& out);
  // Emits tool_call_begin; returns the tool's schema (null when the name is unknown).
  const ToolSchema* begin_call(std::string name, EventList& out);
  std::string new_call_id();
  void compact();

  ToolCallFormat format_;
  const ToolSet* tools_;
  std::mt19937_64 id_rng_;

  State state_ = State::content;
  std::string buf_;
  size_t pos_ = 0;          // first byte of buf_ not consumed yet
  size_t call_start_ = 0;   // where the current `<tool_call>` or bare `<function=` began
  size_t body_start_ = 0;   // where the current call's body began
  bool wrapped_ = false;    // the current call began with `<tool_call>`
  bool skip_space_ = true;  // drop whitespace before the next content
  bool line_start_ = true;  // pos_ is at the start of a line (for bare `<function=`)
  std::string pending_space_;  // trailing whitespace of the content, emitted only if text follows

  int next_index_ = 0;
  OutputEvent current_;     // tool_call_begin of the call being parsed
  std::optional<Qwen3CoderFunctionBody> xml_;
  std::optional<HermesCallBody> json_;
};

}  // namespace moeserve::chat
