// Streaming properties of the reply parser: the same events however the text is chunked (every
// split point, one byte at a time, random chunkings, random tag soup), text released as soon as
// it cannot start a tag, tool calls announced and delivered as early as the format allows, and
// no crash, hang or runaway output on garbage.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "chat/output_parser.h"

namespace moeserve::chat {
namespace {

const char* kTools = R"([
  {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
    "a": {"type": "string"}, "n": {"type": "integer"}, "o": {"type": "object"}, "b": {"type": "boolean"}}}}},
  {"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {}}}}
])";

OutputParserOptions options(ToolCallFormat format, bool reasoning, bool inside) {
  OutputParserOptions o;
  o.tool_format = format;
  o.reasoning = reasoning;
  o.starts_in_reasoning = inside;
  o.tools = ToolSet::from_openai(nlohmann::json::parse(kTools));
  o.id_seed = 1234;
  return o;
}

// Events with runs of text merged: what a client sees once it concatenates the deltas.
std::string render(const EventList& events) {
  std::string out;
  EventKind last = EventKind::note;
  for (const OutputEvent& e : events) {
    const bool text = e.kind == EventKind::content || e.kind == EventKind::reasoning;
    if (!(text && e.kind == last)) out += "\n#" + std::to_string(int(e.kind)) + " ";
    if (text) out += e.text;
    if (e.kind == EventKind::tool_call_begin || e.kind == EventKind::tool_call_end)
      out += std::to_string(e.tool_index) + " " + e.tool_id + " " + e.tool_name + " " + (e.known_tool ? "k " : "u ") + e.arguments;
    if (e.kind == EventKind::note) out += e.text;
    last = e.kind;
  }
  return out;
}

EventList run(const OutputParserOptions& base, const std::vector<std::string_view>& chunks) {
  OutputParserOptions o = base;
  OutputParser parser(std::move(o));
  EventList events;
  for (std::string_view c : chunks) parser.feed(c, events);
  parser.finish(events);
  return events;
}

std::vector<std::string_view> random_chunks(std::string_view text, std::mt19937& rng) {
  std::vector<std::string_view> chunks;
  size_t i = 0;
  while (i < text.size()) {
    const size_t len = std::min(text.size() - i, size_t(1 + rng() % 9));
    chunks.push_back(text.substr(i, len));
    i += len;
  }
  return chunks;
}

struct Sample {
  ToolCallFormat format;
  bool reasoning;
  bool inside;
  std::string text;
};

const std::vector<Sample>& samples() {
  static const std::vector<Sample> s = {
      {ToolCallFormat::qwen3_coder_xml, false, false,
       "Hi there.\n\n<tool_call>\n<function=f>\n<parameter=a>\n42\n</parameter>\n<parameter=n>\n7\n</parameter>\n"
       "</function>\n</tool_call>\n<tool_call>\n<function=g>\n<parameter=x>\n{\"k\": [1, 2]}\n</parameter>\n</function>\n"
       "</tool_call>"},
      {ToolCallFormat::qwen3_coder_xml, false, false,
       "<tool_call>\n<function=f>\n<parameter=a>\nx </parameter> y\n</parameter>\n</parameter>\n<parameter=o>\n"
       "{'k': None}\n<parameter=b>\nTrue\n</function>\n</tool_call> trailing <b>text</b> <tool_ca"},
      {ToolCallFormat::qwen3_coder_xml, false, false,
       "Intro \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\n<function=f>\n<parameter=a>\nbare\n</parameter>\n</function>\n"
       "<tool_call>\n<function={{bad}}>\n</tool_call> and <tool_call> prose"},
      {ToolCallFormat::qwen3_coder_xml, false, false,
       "<tool_call>\n<function=f>\n<parameter=a>\nliteral:\n<tool_call>\n<function=f>\n<parameter=a>\nin\n</parameter>\n"
       "</function>\n</tool_call>\nend\n</parameter>\n</function>\n</tool_call>\nafter"},
      {ToolCallFormat::qwen3_coder_xml, false, false,
       "<tool_call>\n<function=f>\n<parameter=a>\nno close\n<parameter=n>\n3\n</parameter>\n</tool_call>\n<tool_call>\n"
       "<function=unknown_tool>\n<parameter=q>\nz\n"},
      {ToolCallFormat::hermes_json, true, false,
       "  <think>\nplan </think\n> more\n</think>\n\nAnswer <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"}\\\"{\", "
       "\"n\": 1.5e300}}\n</tool_call>\n<tool_call>\n{\"name\": \"f\", \"arguments\": {'bad': 1}}\n</tool_call>\n"
       "<tool_call>{\"name\": \"g\"}</tool_call>"},
      {ToolCallFormat::hermes_json, true, true, "still reasoning </thi\n</think>\nok <tool_call>\n{\"name\": \"g\", \"argu"},
      {ToolCallFormat::none, true, true, "no close tag <think> at all \xE4\xB8\xAD"},
      {ToolCallFormat::qwen3_coder_xml, true, false, "<thinking> is not <think>\n<tool_call>\n<function=g>\n</function>"},
      {ToolCallFormat::qwen3_coder_xml, false, false, "\r\r \f<function=f>\n<parameter=a>\nx\n</parameter>\n</function>\r<function=g>"},
      {ToolCallFormat::hermes_json, false, false, "<tool_call> <tool_call>\n{\"name\": \"g\"}</tool_call><tool_call>x"},
  };
  return s;
}

TEST(ChatStreaming, EverySplitPointGivesTheSameEvents) {
  for (const Sample& s : samples()) {
    const OutputParserOptions o = options(s.format, s.reasoning, s.inside);
    const std::string whole = render(run(o, {s.text}));
    for (size_t cut = 0; cut <= s.text.size(); ++cut) {
      const std::string_view t = s.text;
      ASSERT_EQ(render(run(o, {t.substr(0, cut), t.substr(cut)})), whole) << s.text << "\ncut at " << cut;
    }
  }
}

TEST(ChatStreaming, OneByteAtATimeAndRandomChunkings) {
  std::mt19937 rng(7);
  for (const Sample& s : samples()) {
    const OutputParserOptions o = options(s.format, s.reasoning, s.inside);
    const std::string whole = render(run(o, {s.text}));
    std::vector<std::string_view> bytes;
    for (size_t i = 0; i < s.text.size(); ++i) bytes.push_back(std::string_view(s.text).substr(i, 1));
    ASSERT_EQ(render(run(o, bytes)), whole) << s.text;
    for (int k = 0; k < 50; ++k) ASSERT_EQ(render(run(o, random_chunks(s.text, rng))), whole) << s.text;
  }
}

TEST(ChatStreaming, EventsAreValidUtf8WhenChunksSplitCharacters) {
  const std::string text = "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 ok";
  OutputParser p(options(ToolCallFormat::qwen3_coder_xml, true, true));
  EventList events;
  for (char c : text) {
    p.feed(std::string_view(&c, 1), events);
    for (const OutputEvent& e : events) {
      const nlohmann::json j = e.text;  // throws on invalid UTF-8 when dumped
      EXPECT_NO_THROW((void)j.dump()) << e.text;
    }
  }
}

// The text emitted so far, by kind, after feeding `prefix` only.
std::string emitted(std::string_view prefix, EventKind kind, ToolCallFormat format = ToolCallFormat::qwen3_coder_xml) {
  OutputParser p(options(format, false, false));
  EventList events;
  for (char c : prefix) p.feed(std::string_view(&c, 1), events);
  std::string out;
  for (const OutputEvent& e : events)
    if (e.kind == kind) out += e.text;
  return out;
}

TEST(ChatStreaming, PartialTagsAreHeldBackOtherTextIsNot) {
  EXPECT_EQ(emitted("Hello <tool_", EventKind::content), "Hello");
  EXPECT_EQ(emitted("Hello <", EventKind::content), "Hello");
  EXPECT_EQ(emitted("Hello <b", EventKind::content), "Hello <b");
  EXPECT_EQ(emitted("Hello <tool_x", EventKind::content), "Hello <tool_x");
  EXPECT_EQ(emitted("a\n<func", EventKind::content), "a");         // bare <function= at a line start
  EXPECT_EQ(emitted("a <func", EventKind::content), "a <func");    // ... but not mid-line
  EXPECT_EQ(emitted("a <func", EventKind::content, ToolCallFormat::hermes_json), "a <func");
  EXPECT_EQ(emitted("x\xE2\x82", EventKind::content), "x");         // incomplete UTF-8
}

TEST(ChatStreaming, ToolCallAnnouncedAtNameDeliveredAtClose) {
  const std::string call = "<tool_call>\n<function=f>\n<parameter=n>\n5\n</parameter>\n</function>\n</tool_call>";
  const auto count = [&](size_t len, EventKind kind) {
    OutputParser p(options(ToolCallFormat::qwen3_coder_xml, false, false));
    EventList events;
    p.feed(std::string_view(call).substr(0, len), events);
    size_t n = 0;
    for (const OutputEvent& e : events) n += e.kind == kind;
    return n;
  };
  const size_t name_end = call.find("<function=f>") + 12;
  EXPECT_EQ(count(name_end - 1, EventKind::tool_call_begin), 0u);
  EXPECT_EQ(count(name_end, EventKind::tool_call_begin), 1u);
  const size_t fn_end = call.find("</function>") + 11;
  EXPECT_EQ(count(fn_end - 1, EventKind::tool_call_end), 0u);
  EXPECT_EQ(count(fn_end, EventKind::tool_call_end), 1u);
}

TEST(ChatStreaming, IdsFollowTheSeed) {
  const std::string text = "<tool_call>\n<function=g>\n</function>\n</tool_call>";
  OutputParserOptions a = options(ToolCallFormat::qwen3_coder_xml, false, false);
  OutputParserOptions b = options(ToolCallFormat::qwen3_coder_xml, false, false);
  OutputParserOptions c = options(ToolCallFormat::qwen3_coder_xml, false, false);
  c.id_seed = 99;
  const std::string id_a = OutputParser::parse(std::move(a), text).tool_calls.at(0).id;
  EXPECT_EQ(id_a, OutputParser::parse(std::move(b), text).tool_calls.at(0).id);
  EXPECT_NE(id_a, OutputParser::parse(std::move(c), text).tool_calls.at(0).id);
}

// Random mixes of tag fragments: no crash, no hang, output bounded by the input, and the same
// events for random chunkings as for the whole text.
TEST(ChatStreaming, SeededTagSoupFuzz) {
  static const char* fragments[] = {
      "<tool_call>", "</tool_call>", "<function=", "</function>", "<parameter=", "</parameter>", "<think>", "</think>",
      "<tool_", "</param", "<func", "f>", "g>", "a>", "n>", "o>", "b>", "x>", ">", "<", "\n", " ", "\t", "{", "}", "[",
      "]", "\"", "\\", ":", ",", "'", "42", "5.0", "1e999", "nan", "True", "None", "null", "{\"name\": \"f\", ",
      "\"arguments\": {", "\"a\": ", "text", "\xC3\xA9", "\xF0\x9F", "\x98\x80", "\xFF", "{{x}}", "\r\n"};
  std::mt19937 rng(20240601);
  for (int iter = 0; iter < 1500; ++iter) {
    std::string text;
    const int n = int(rng() % 60);
    for (int k = 0; k < n; ++k) text += fragments[rng() % (sizeof fragments / sizeof *fragments)];
    const auto format = static_cast<ToolCallFormat>(rng() % 3);
    const bool reasoning = rng() % 2;
    const OutputParserOptions o = options(format, reasoning, reasoning && rng() % 2);
    const EventList events = run(o, {text});
    size_t out_bytes = 0;
    size_t calls = 0;
    for (const OutputEvent& e : events) {
      out_bytes += e.text.size() + e.arguments.size();
      calls += e.kind == EventKind::tool_call_end;
    }
    ASSERT_LE(out_bytes, 8 * text.size() + 1024 * (calls + 1)) << text;
    const std::string whole = render(events);
    ASSERT_EQ(render(run(o, random_chunks(text, rng))), whole) << text;
  }
}

}  // namespace
}  // namespace moeserve::chat
