// Chat templates as Hugging Face transformers applies them: the template sees `messages`, `tools`
// (None when no tools are given), `documents` (None), `add_generation_prompt`, the special tokens
// and any extra variables, rendered by our Jinja interpreter byte for byte as jinja2 would.
#pragma once

#include <ctime>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/jinja/template.h"

namespace moeserve::chat {

struct ChatInputs {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  std::optional<nlohmann::ordered_json> tools;  // unset: the template sees tools = None
  bool add_generation_prompt = true;
  std::optional<std::string> bos_token;  // unset: undefined in the template (as for tokenizers without one)
  std::optional<std::string> eos_token;
  // Extra template variables (enable_thinking, reasoning_effort, ...), a JSON object. They may
  // override bos_token/eos_token/documents but not messages, tools or add_generation_prompt.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  std::optional<std::tm> now;  // what strftime_now() reports; the local clock when unset
};

class ChatTemplate {
 public:
  // Compiles the template; throws jinja::TemplateError (line, column) on syntax errors.
  explicit ChatTemplate(std::string source);

  // Throws jinja::TemplateError for failures while rendering (including the template's own
  // raise_exception), moeserve::Error for malformed inputs.
  std::string render(const ChatInputs& inputs, const jinja::RenderLimits& limits = {}) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  jinja::Template template_;
};

// Parses "YYYY-MM-DDTHH:MM:SS" (or "YYYY-MM-DD") as a local wall-clock time for ChatInputs::now.
std::tm parse_fixed_time(const std::string& text);

}  // namespace moeserve::chat
