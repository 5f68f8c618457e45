// libFuzzer target: the input is a chat template. Compiling and rendering it against a sample
// conversation must end in output or a moeserve::Error, within the work limits, whatever the bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"

namespace {

const moeserve::chat::ChatInputs& sample_inputs() {
  static const moeserve::chat::ChatInputs inputs = [] {
    moeserve::chat::ChatInputs in;
    in.messages = nlohmann::ordered_json::parse(R"([
      {"role": "system", "content": "sys"},
      {"role": "user", "content": "hi <b>"},
      {"role": "assistant", "content": "", "reasoning_content": "think", "tool_calls": [{"id": "abcdefghi",
        "type": "function", "function": {"name": "f", "arguments": {"a": [1, 2.5, null, true], "b": "s"}}}]},
      {"role": "tool", "tool_call_id": "abcdefghi", "content": "ok"},
      {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image"}]}])");
    in.tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "f",
      "description": "d", "parameters": {"type": "object", "properties": {"a": {"type": "array"},
      "b": {"type": "string"}}, "required": ["b"]}}}])");
    in.bos_token = "<s>";
    in.eos_token = "</s>";
    in.now = moeserve::chat::parse_fixed_time("2024-07-26T10:30:15");
    return in;
  }();
  return inputs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moeserve::jinja::RenderLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_steps = 100'000;
  limits.max_call_depth = 30;
  try {
    const moeserve::chat::ChatTemplate tmpl(std::string(reinterpret_cast<const char*>(data), size));
    tmpl.render(sample_inputs(), limits);
  } catch (const moeserve::Error&) {
  }
  return 0;
}
