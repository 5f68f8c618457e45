// Qwen3-Coder XML tool calls: the format and the vLLM qwen3_coder semantics stated in
// shared/spec/qwen3-coder-tools.md (§3 output format, §4 value conversion and structure), and the
// model slips the spec lists. Arguments are compared as text: they must be exactly what vLLM's
// json.dumps(..., ensure_ascii=False) prints.
#include <gtest/gtest.h>

#include <string>

#include "chat/output_parser.h"

namespace moeserve::chat {
namespace {

const char* kWeatherTools = R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}, "temp": {"type": "number"},
    "metric": {"type": "boolean"}, "opts": {"type": "object"}, "hours": {"type": "array"},
    "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    "pair": {"type": "tuple"}, "free": {"description": "no type"}}}}},
  {"type": "function", "function": {"name": "write_file", "parameters": {"type": "object", "properties": {
    "path": {"type": "string"}, "content": {"type": "string"}}}}},
  {"type": "function", "function": {"name": "no_params", "parameters": {"type": "object", "properties": {}}}}
])";

ParsedReply parse(std::string_view text, const char* tools = kWeatherTools) {
  OutputParserOptions o;
  o.tool_format = ToolCallFormat::qwen3_coder_xml;
  o.tools = ToolSet::from_openai(nlohmann::json::parse(tools));
  return OutputParser::parse(std::move(o), text);
}

std::string call(std::string_view name, std::string_view params_xml) {
  return "<tool_call>\n<function=" + std::string(name) + ">\n" + std::string(params_xml) + "</function>\n</tool_call>";
}

std::string param(std::string_view name, std::string_view value) {
  return "<parameter=" + std::string(name) + ">\n" + std::string(value) + "\n</parameter>\n";
}

// The argument JSON of a single get_weather call with one parameter.
std::string one(std::string_view name, std::string_view value) {
  const ParsedReply r = parse(call("get_weather", param(name, value)));
  EXPECT_EQ(r.tool_calls.size(), 1u);
  return r.tool_calls.empty() ? "" : r.tool_calls[0].arguments;
}

TEST(Qwen3CoderXml, SpecOutputExample) {  // §3
  const std::string text =
      "Some optional reasoning text.\n\n"
      "<tool_call>\n<function=get_weather>\n<parameter=city>\nvalue text, raw (not JSON-escaped), possibly\n"
      "spanning several lines\n</parameter>\n<parameter=opts>\n{\"json\": \"for objects/arrays\"}\n</parameter>\n"
      "</function>\n</tool_call>\n<tool_call>\n<function=write_file>\n<parameter=path>\na.txt\n</parameter>\n"
      "</function>\n</tool_call>";
  const ParsedReply r = parse(text);
  EXPECT_EQ(r.content, "Some optional reasoning text.");
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.tool_calls[0].arguments,
            "{\"city\": \"value text, raw (not JSON-escaped), possibly\\nspanning several lines\", "
            "\"opts\": {\"json\": \"for objects/arrays\"}}");
  EXPECT_EQ(r.tool_calls[1].name, "write_file");
  EXPECT_EQ(r.tool_calls[1].arguments, "{\"path\": \"a.txt\"}");
  EXPECT_TRUE(r.tool_calls[0].known_tool);
  EXPECT_NE(r.tool_calls[0].id, r.tool_calls[1].id);
  EXPECT_EQ(r.tool_calls[0].id.size(), 5u + 24u);  // call_ + 24 hex
  EXPECT_EQ(r.tool_calls[0].id.rfind("call_", 0), 0u);
  EXPECT_TRUE(r.notes.empty());
}

TEST(Qwen3CoderXml, NoFunctionTagMeansPlainContent) {  // §4.1
  const ParsedReply r = parse("Just an answer with <b>markup</b> and a <tool_call> mention.");
  EXPECT_TRUE(r.tool_calls.empty());
  EXPECT_EQ(r.content, "Just an answer with <b>markup</b> and a <tool_call> mention.");
}

TEST(Qwen3CoderXml, StringTypesStayStrings) {  // §4.7
  EXPECT_EQ(one("city", "42"), "{\"city\": \"42\"}");
  EXPECT_EQ(one("city", "null"), "{\"city\": \"null\"}");
  EXPECT_EQ(one("city", "true"), "{\"city\": \"true\"}");
  EXPECT_EQ(one("city", "  padded  "), "{\"city\": \"  padded  \"}");
  EXPECT_EQ(one("free", "12"), "{\"free\": \"12\"}");           // no type: string
  EXPECT_EQ(one("unknown", "12"), "{\"unknown\": \"12\"}");     // not in the schema: string
}

TEST(Qwen3CoderXml, IntegerConversion) {
  EXPECT_EQ(one("days", "7"), "{\"days\": 7}");
  EXPECT_EQ(one("days", " -0_42 "), "{\"days\": -42}");
  EXPECT_EQ(one("days", "123456789012345678901234567890"), "{\"days\": 123456789012345678901234567890}");
  EXPECT_EQ(one("days", "7.5"), "{\"days\": \"7.5\"}");  // int() fails: the string stays
  EXPECT_EQ(one("days", "seven"), "{\"days\": \"seven\"}");
  EXPECT_EQ(one("days", "None"), "{\"days\": null}");
  EXPECT_EQ(one("days", "NULL"), "{\"days\": null}");
}

TEST(Qwen3CoderXml, NumberConversion) {
  EXPECT_EQ(one("temp", "2.5"), "{\"temp\": 2.5}");
  EXPECT_EQ(one("temp", "5.0"), "{\"temp\": 5}");  // no fractional part: emitted as an integer
  EXPECT_EQ(one("temp", "1e3"), "{\"temp\": 1000}");
  EXPECT_EQ(one("temp", "1e-7"), "{\"temp\": 1e-07}");
  EXPECT_EQ(one("temp", "nan"), "{\"temp\": \"nan\"}");
  EXPECT_EQ(one("temp", "inf"), "{\"temp\": \"inf\"}");
  EXPECT_EQ(one("temp", "warm"), "{\"temp\": \"warm\"}");
}

TEST(Qwen3CoderXml, BooleanConversion) {
  EXPECT_EQ(one("metric", "true"), "{\"metric\": true}");
  EXPECT_EQ(one("metric", "True"), "{\"metric\": true}");
  EXPECT_EQ(one("metric", "FALSE"), "{\"metric\": false}");
  EXPECT_EQ(one("metric", "yes"), "{\"metric\": false}");  // anything but "true" is false
}

TEST(Qwen3CoderXml, ContainerConversion) {
  EXPECT_EQ(one("opts", "{\"a\": [1, 2.50, null], \"b\": \"\xC3\xA9\"}"), "{\"opts\": {\"a\": [1, 2.5, null], \"b\": \"\xC3\xA9\"}}");
  EXPECT_EQ(one("opts", "{'a': True, 'b': None}"), "{\"opts\": {\"a\": true, \"b\": null}}");  // Python literal
  EXPECT_EQ(one("opts", "\"{'k': 'v'}\""), "{\"opts\": {\"k\": \"v\"}}");  // JSON-encoded repr
  EXPECT_EQ(one("hours", "[1, 2, 3]"), "{\"hours\": [1, 2, 3]}");
  EXPECT_EQ(one("hours", "(1, 2)"), "{\"hours\": [1, 2]}");
  EXPECT_EQ(one("hours", "[1, 2"), "{\"hours\": \"[1, 2\"}");
  EXPECT_EQ(one("opts", "{\"a\": NaN}"), "{\"opts\": \"{\\\"a\\\": NaN}\"}");  // not printable as JSON
  EXPECT_EQ(one("pair", "(1, 'x')"), "{\"pair\": [1, \"x\"]}");  // other types: Python literal
  EXPECT_EQ(one("pair", "not python"), "{\"pair\": \"not python\"}");
}

TEST(Qwen3CoderXml, NullableSchemas) {
  EXPECT_EQ(one("note", "null"), "{\"note\": null}");   // anyOf with null: null even for strings
  EXPECT_EQ(one("note", "None"), "{\"note\": null}");
  EXPECT_EQ(one("note", "42"), "{\"note\": \"42\"}");
  EXPECT_EQ(one("limit", "5"), "{\"limit\": 5}");
  EXPECT_EQ(one("limit", "none"), "{\"limit\": null}");
}

TEST(Qwen3CoderXml, OneNewlineStrippedOnEachSide) {  // §4.6
  EXPECT_EQ(one("city", "\nParis\n"), "{\"city\": \"\\nParis\\n\"}");
  EXPECT_EQ(one("city", ""), "{\"city\": \"\"}");
  EXPECT_EQ(one("city", " \tx\t "), "{\"city\": \" \\tx\\t \"}");
  const ParsedReply r = parse("<tool_call>\n<function=get_weather>\n<parameter=city>Paris</parameter>\n</function>\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"city\": \"Paris\"}");
}

TEST(Qwen3CoderXml, RepeatedParameterKeepsFirstPositionLastValue) {
  const ParsedReply r = parse(call("get_weather", param("days", "1") + param("city", "A") + param("days", "2")));
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"days\": 2, \"city\": \"A\"}");
}

TEST(Qwen3CoderXml, ParallelCallsAndTextAround) {
  const std::string text = "Let me do two things.\n" + call("write_file", param("path", "a")) + "\n\n" +
                           call("write_file", param("path", "b")) + "\nDone.  \n";
  const ParsedReply r = parse(text);
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[1].arguments, "{\"path\": \"b\"}");
  EXPECT_EQ(r.content, "Let me do two things.Done.");
}

TEST(Qwen3CoderXml, NoParameters) {
  const ParsedReply r = parse("<tool_call>\n<function=no_params>\n</function>\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{}");
}

TEST(Qwen3CoderXml, LiteralTagsInsideValues) {
  // Code that talks about the format: closing tags followed by more text are not structural.
  const std::string code = "x = '</parameter>'\ny = \"</function>\" + '</tool_call>'\n</parameter> is a tag";
  const ParsedReply r = parse(call("write_file", param("path", "t.py") + param("content", code)));
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments,
            "{\"path\": \"t.py\", \"content\": \"x = '</parameter>'\\ny = \\\"</function>\\\" + '</tool_call>'\\n"
            "</parameter> is a tag\"}");
}

TEST(Qwen3CoderXml, NestedLiteralToolCallInsideAValue) {
  // A file whose text is itself a complete tool call (vLLM's nested-literal case).
  const std::string inner = "Example:\n" + call("get_weather", param("city", "Rome")) + "\nend of example";
  const ParsedReply r = parse(call("write_file", param("path", "doc.md") + param("content", inner)) + "\nAfter.");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].name, "write_file");
  nlohmann::json args = nlohmann::json::parse(r.tool_calls[0].arguments);
  EXPECT_EQ(args["content"], inner);
  EXPECT_EQ(r.content, "After.");
}

TEST(Qwen3CoderXml, DuplicatedClosingParameter) {
  const ParsedReply r = parse("<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</parameter>\n"
                              "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"city\": \"Oslo\", \"days\": 3}");
}

TEST(Qwen3CoderXml, MissingClosingParameterBeforeNextParameter) {  // §3 malformations
  const ParsedReply r = parse("<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n<parameter=days>\n3\n"
                              "</parameter>\n</function>\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"city\": \"Oslo\", \"days\": 3}");
  EXPECT_FALSE(r.notes.empty());
}

TEST(Qwen3CoderXml, MissingFinalClosingParameter) {
  const ParsedReply r = parse("<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</function>\n</tool_call>Bye");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"city\": \"Oslo\"}");
  EXPECT_EQ(r.content, "Bye");
}

TEST(Qwen3CoderXml, MissingClosersAtEndOfStream) {
  for (const char* text : {"<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</function>\n",
                           "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n",
                           "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n",
                           "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</param",
                           "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</func"}) {
    const ParsedReply r = parse(text);
    ASSERT_EQ(r.tool_calls.size(), 1u) << text;
    EXPECT_EQ(r.tool_calls[0].arguments, "{\"city\": \"Oslo\"}") << text;
    EXPECT_EQ(r.content, "") << text;
  }
}

TEST(Qwen3CoderXml, MissingClosingFunctionBeforeNextCall) {
  const ParsedReply r = parse("<tool_call>\n<function=write_file>\n<parameter=path>\na\n</parameter>\n</tool_call>\n" +
                              call("write_file", param("path", "b")));
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"path\": \"a\"}");
  EXPECT_EQ(r.tool_calls[1].arguments, "{\"path\": \"b\"}");
}

TEST(Qwen3CoderXml, BareFunctionBlockWithoutWrapper) {  // §4.2 "bare <function= blocks still parse"
  const ParsedReply r = parse("I'll check.\n<function=get_weather>\n<parameter=days>\n2\n</parameter>\n</function>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"days\": 2}");
  EXPECT_EQ(r.content, "I'll check.");
}

TEST(Qwen3CoderXml, RepeatedOpeningTagIsOneCall) {
  const ParsedReply r = parse("<tool_call>\n<tool_call>\n<function=write_file>\n<parameter=path>\na\n</parameter>\n"
                              "</function>\n</tool_call>");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.content, "");
}

TEST(Qwen3CoderXml, UnknownToolIsKeptAndFlagged) {
  const ParsedReply r = parse(call("launch_rocket", param("when", "now") + param("count", "3")));
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_FALSE(r.tool_calls[0].known_tool);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"when\": \"now\", \"count\": \"3\"}");  // no schema: strings
}

TEST(Qwen3CoderXml, TemplateSyntaxEchoIsNotACall) {  // §4.3 rejected names
  const ParsedReply r = parse("<tool_call>\n<function={{ tool.name }}>\n</function>\n</tool_call>");
  EXPECT_TRUE(r.tool_calls.empty());
  EXPECT_EQ(r.content, "<tool_call>\n<function={{ tool.name }}>\n</function>\n</tool_call>");
}

TEST(Qwen3CoderXml, UndeclaredNameAfterDeclaredParameterIsLiteral) {
  // vLLM only treats `</parameter>` as structural before a *declared* parameter, so a value may
  // contain `</parameter>\n<parameter=x>` literally.
  // A line-start `<parameter=` inside a value opens a nested literal whose `</parameter>` pairs with it.
  const std::string value = "a\n</parameter>\n<parameter=x>\nb\n</parameter>\nc";
  const ParsedReply r = parse(call("write_file", param("content", value) + param("path", "p")));
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(r.tool_calls[0].arguments), nlohmann::json({{"content", value}, {"path", "p"}}));
}

}  // namespace
}  // namespace moeserve::chat
