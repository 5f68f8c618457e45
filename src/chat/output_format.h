// Which reply parser a model needs, read off its chat template: the template shows the model the
// tool-call format it was trained on (Qwen3-Coder: `<function=NAME>` inside `<tool_call>`; Qwen3,
// Hermes: a JSON object inside `<tool_call>`) and whether it reasons in `<think>` blocks.
#pragma once

#include <string_view>

#include "chat/tool_call_parser.h"

namespace moeserve::chat {

ToolCallFormat tool_call_format_of_template(std::string_view chat_template);
bool template_has_reasoning(std::string_view chat_template);

}  // namespace moeserve::chat
