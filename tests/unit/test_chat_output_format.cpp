// The parser configuration read off the spec's chat templates (tests/fixtures/spec/templates).
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "chat/output_format.h"

namespace moeserve::chat {
namespace {

std::string read_template(const char* name) {
  std::ifstream in(std::string(MOESERVE_SOURCE_DIR) + "/tests/fixtures/spec/templates/" + name);
  EXPECT_TRUE(in) << name;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(OutputFormat, QwenCoderTemplateMeansXmlCallsWithoutReasoning) {
  const std::string t = read_template("qwen3-coder.jinja");
  EXPECT_EQ(tool_call_format_of_template(t), ToolCallFormat::qwen3_coder_xml);
  EXPECT_FALSE(template_has_reasoning(t));
}

TEST(OutputFormat, Qwen3TemplateMeansJsonCallsWithReasoning) {
  const std::string t = read_template("qwen3.jinja");
  EXPECT_EQ(tool_call_format_of_template(t), ToolCallFormat::hermes_json);
  EXPECT_TRUE(template_has_reasoning(t));
}

TEST(OutputFormat, TemplateWithoutToolsOrThinking) {
  const char* chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
  EXPECT_EQ(tool_call_format_of_template(chatml), ToolCallFormat::none);
  EXPECT_FALSE(template_has_reasoning(chatml));
}

}  // namespace
}  // namespace moeserve::chat
