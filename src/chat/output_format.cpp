#include "chat/output_format.h"

#include "chat/tag_match.h"

namespace moeserve::chat {

ToolCallFormat tool_call_format_of_template(std::string_view t) {
  if (t.find(kToolCallOpen) == std::string_view::npos) return ToolCallFormat::none;
  if (t.find(kFunctionOpen) != std::string_view::npos && t.find(kParameterOpen) != std::string_view::npos)
    return ToolCallFormat::qwen3_coder_xml;
  return ToolCallFormat::hermes_json;
}

bool template_has_reasoning(std::string_view t) { return t.find(kThinkClose) != std::string_view::npos; }

}  // namespace moeserve::chat
