// The grammars of constrained replies: a JSON value (json_object / json_schema response formats)
// or tool calls in the model's own format (tool_choice required or naming a function), with an
// optional free reasoning part first when the prompt opened one.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "grammar/grammar.h"

namespace moeserve::grammar {

enum class ToolSyntax { qwen3_coder_xml, hermes_json };

struct ReplyShape {
  // Free text up to and including this closing tag comes first (e.g. "</think>"); empty: none.
  std::string reasoning_end;
};

// `schema` null: any JSON object (json_object mode).
std::shared_ptr<const Grammar> json_reply_grammar(const nlohmann::ordered_json& schema, const ReplyShape& shape);

// `tools`: OpenAI-form tools ([{type: function, function: {name, parameters}}]); only those named in
// `allowed` (all when empty) may be called; `parallel`: one or more calls, else exactly one.
std::shared_ptr<const Grammar> tool_call_grammar(ToolSyntax syntax, const nlohmann::ordered_json& tools,
                                                 const std::vector<std::string>& allowed, bool parallel,
                                                 const ReplyShape& shape);

}  // namespace moeserve::grammar
