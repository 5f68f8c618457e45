// Hermes / Qwen3 JSON tool calls (shared/spec/qwen3-coder-tools.md §6): the body is a JSON object
// read with json.loads semantics; arguments are re-printed as Python's json.dumps does.
#include <gtest/gtest.h>

#include "chat/output_parser.h"

namespace moeserve::chat {
namespace {

ParsedReply parse(std::string_view text, ToolCallFormat format = ToolCallFormat::hermes_json) {
  OutputParserOptions o;
  o.tool_format = format;
  o.tools = ToolSet::from_openai(nlohmann::json::parse(R"([{"type": "function", "function": {"name": "search",
      "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}}}}])"));
  return OutputParser::parse(std::move(o), text);
}

TEST(HermesJson, TemplateShapedCall) {
  const ParsedReply r = parse("Searching.\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"caf\xC3\xA9\", \"n\": 3}}\n</tool_call>");
  EXPECT_EQ(r.content, "Searching.");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].name, "search");
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"q\": \"caf\xC3\xA9\", \"n\": 3}");
  EXPECT_TRUE(r.tool_calls[0].known_tool);
  EXPECT_TRUE(r.notes.empty());
}

TEST(HermesJson, CompactJsonIsReprintedWithPythonSeparators) {
  const ParsedReply r = parse("<tool_call>{\"name\":\"search\",\"arguments\":{\"q\":[1,2.50,{\"a\":null}]}}</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"q\": [1, 2.5, {\"a\": null}]}");
}

TEST(HermesJson, SeveralCallsBracesInStrings) {
  const ParsedReply r = parse(
      "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"}{ \\\" </tool_call>\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"other\", \"arguments\": {}}\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"q\": \"}{ \\\" </tool_call>\"}");
  EXPECT_FALSE(r.tool_calls[1].known_tool);
  EXPECT_EQ(r.content, "");
}

TEST(HermesJson, ArgumentsGivenAsAJsonString) {
  const ParsedReply r = parse("<tool_call>\n{\"name\": \"search\", \"arguments\": \"{\\\"q\\\": \\\"x\\\"}\"}\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"q\": \"x\"}");
}

TEST(HermesJson, MissingArgumentsMeansNone) {
  const ParsedReply r = parse("<tool_call>\n{\"name\": \"search\"}\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{}");
}

TEST(HermesJson, MalformedJsonFallsBackToContent) {
  for (const char* text : {"<tool_call>\n{\"name\": \"search\", \"arguments\": {'q': 1}}\n</tool_call>",
                           "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": 1}\n</tool_call>",
                           "<tool_call>\n{\"arguments\": {}}\n</tool_call>",
                           "<tool_call>\n{\"name\": \"search\", \"arguments\": [1]}\n</tool_call>",
                           "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"q\": \"unterminated}\n</tool_call>"}) {
    const ParsedReply r = parse(text);
    EXPECT_TRUE(r.tool_calls.empty()) << text;
    EXPECT_EQ(r.content, text) << text;
    EXPECT_FALSE(r.notes.empty()) << text;
  }
}

TEST(HermesJson, MalformedCallDoesNotSwallowTheNextOne) {
  const ParsedReply r = parse("<tool_call>\n{\"name\": 1}\n</tool_call>\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"n\": 1}}\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"n\": 1}");
  EXPECT_EQ(r.content, "<tool_call>\n{\"name\": 1}\n</tool_call>");
}

TEST(HermesJson, CutOffAtEndOfStreamIsContent) {
  const ParsedReply r = parse("Let me look.\n<tool_call>\n{\"name\": \"search\", \"argu");
  EXPECT_TRUE(r.tool_calls.empty());
  EXPECT_EQ(r.content, "Let me look.\n<tool_call>\n{\"name\": \"search\", \"argu");
}

TEST(HermesJson, XmlBodyIsAcceptedToo) {
  const ParsedReply r = parse("<tool_call>\n<function=search>\n<parameter=n>\n4\n</parameter>\n</function>\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"n\": 4}");
}

TEST(HermesJson, QwenCoderFormatAcceptsJsonBodies) {
  const ParsedReply r = parse("<tool_call>\n{\"name\": \"search\", \"arguments\": {\"n\": 4}}\n</tool_call>",
                              ToolCallFormat::qwen3_coder_xml);
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"n\": 4}");
}

TEST(HermesJson, NoToolFormatLeavesEverythingAsContent) {
  const char* text = "<tool_call>\n{\"name\": \"search\", \"arguments\": {}}\n</tool_call>";
  const ParsedReply r = parse(text, ToolCallFormat::none);
  EXPECT_TRUE(r.tool_calls.empty());
  EXPECT_EQ(r.content, text);
}

}  // namespace
}  // namespace moeserve::chat
