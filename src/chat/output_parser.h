// The whole reply parser the server runs on detokenized text: reasoning split first
// (reasoning_parser.h), then content and tool calls (tool_call_parser.h). Feed it chunks of any
// size (down to one byte), call finish() when generation stops, and send the events on.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "chat/output_events.h"
#include "chat/reasoning_parser.h"
#include "chat/tool_call_parser.h"
#include "chat/tool_schema.h"

namespace moeserve::chat {

struct OutputParserOptions {
  bool reasoning = false;            // split <think>...</think> from the answer
  bool starts_in_reasoning = false;  // the prompt opened <think> (prompt_opens_reasoning)
  ToolCallFormat tool_format = ToolCallFormat::none;
  ToolSet tools;                     // the request's tools (value conversion, known names)
  uint64_t id_seed = 0;              // tool-call ids: the request seed, or a random one
};

class OutputParser {
 public:
  explicit OutputParser(OutputParserOptions options);
  OutputParser(const OutputParser&) = delete;
  OutputParser& operator=(const OutputParser&) = delete;

  void feed(std::string_view text, EventList& out);
  void finish(EventList& out);

  // Parses a complete reply at once (the non-streaming path).
  static ParsedReply parse(OutputParserOptions options, std::string_view text);

 private:
  const ToolSet tools_;
  std::optional<ReasoningParser> reasoning_;
  ToolCallParser calls_;
  std::string answer_;
};

}  // namespace moeserve::chat
