// Splits `<think>...</think>` reasoning from the answer as the reply streams in (Qwen3 hybrid and
// thinking models). Three situations:
// * the chat template left the think block closed or absent: a `<think>` opening the reply
//   (after whitespace) starts reasoning, anything else is all answer;
// * the template opened `<think>` in the prompt (thinking templates, Qwen3 with thinking on in
//   some revisions): the reply starts inside the reasoning and `</think>` ends it — see
//   prompt_opens_reasoning();
// * thinking disabled by the template (`<think>\n\n</think>\n\n` in the prompt): the reply is
//   answer only, which the first case handles.
// Reasoning text is trimmed; without `</think>` the whole reply is reasoning. Partial tags and
// incomplete UTF-8 characters are held back until decided.
#pragma once

#include <string>
#include <string_view>

#include "chat/output_events.h"

namespace moeserve::chat {

class ReasoningParser {
 public:
  explicit ReasoningParser(bool starts_inside) : state_(starts_inside ? State::reasoning : State::start) {}

  // Reasoning goes to `out`; the answer's text is appended to `answer` for the next stage.
  void feed(std::string_view text, EventList& out, std::string& answer);
  void finish(EventList& out, std::string& answer);

 private:
  enum class State { start, reasoning, answer };

  bool step(bool final, EventList& out, std::string& answer);
  void emit_reasoning(std::string_view text, EventList& out);

  State state_;
  std::string buf_;
  bool skip_space_ = true;
  std::string pending_space_;
};

// True when a rendered prompt ends inside an open think block (its last non-space text is
// `<think>`), so the model's reply starts with reasoning.
bool prompt_opens_reasoning(std::string_view prompt);

}  // namespace moeserve::chat
