// `moeserve parse-output`: runs the server's reply parser (reasoning, content, tool calls) on a
// model reply read from stdin and prints what a client would receive. For checking how a given
// model output is understood, and for tests that drive the parser from another language.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/output_parser.h"
#include "commands.h"
#include "core/error.h"

namespace moeserve::cli {
namespace {

using chat::EventKind;
using chat::ToolCallFormat;

constexpr const char* kUsage =
    "usage: moeserve parse-output [options] < reply.txt\n\n"
    "Parses a model reply the way the server does and prints it as JSON:\n"
    "  {\"content\", \"reasoning_content\", \"tool_calls\": [{\"id\", \"name\", \"arguments\", \"known\"}], \"notes\"}\n\n"
    "options:\n"
    "  --format F             tool-call format: qwen3-coder (default), hermes or none\n"
    "  --tools FILE           the request's tools (OpenAI JSON array); parameter types drive conversion\n"
    "  --reasoning            split <think>...</think> reasoning from the answer\n"
    "  --starts-in-reasoning  the prompt already opened <think>\n"
    "  --chunk N              feed the reply N bytes at a time (default: all at once)\n"
    "  --seed N               seed of the tool-call ids (default 0)\n"
    "  --events               print each event (one JSON object per line) instead of the reply\n"
    "  --jsonl                read one case per line, {\"text\", \"tools\", \"format\", \"reasoning\",\n"
    "                         \"starts_in_reasoning\", \"chunk\"}, and print one reply per line\n";

ToolCallFormat parse_format(const std::string& name) {
  if (name == "qwen3-coder") return ToolCallFormat::qwen3_coder_xml;
  if (name == "hermes") return ToolCallFormat::hermes_json;
  if (name == "none") return ToolCallFormat::none;
  fail("--format: unknown format '", name, "' (expected qwen3-coder, hermes or none)");
}

size_t parse_size(const char* flag, const std::string& text) {
  size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || text[0] == '-') fail(flag, ": expected a non-negative integer, got '", text, "'");
  return size_t(v);
}

struct Case {
  chat::OutputParserOptions options;
  size_t chunk = 0;
  std::string text;
};

chat::EventList run(Case c) {
  chat::OutputParser parser(std::move(c.options));
  chat::EventList events;
  const std::string_view text = c.text;
  const size_t step = c.chunk ? c.chunk : std::max<size_t>(text.size(), 1);
  for (size_t i = 0; i < text.size(); i += step) parser.feed(text.substr(i, step), events);
  parser.finish(events);
  return events;
}

nlohmann::ordered_json reply_json(const chat::EventList& events) {
  const chat::ParsedReply r = chat::assemble_reply(events);
  nlohmann::ordered_json out;
  out["content"] = r.content;
  out["reasoning_content"] = r.reasoning;
  out["tool_calls"] = nlohmann::ordered_json::array();
  for (const chat::ParsedToolCall& call : r.tool_calls)
    out["tool_calls"].push_back({{"id", call.id}, {"name", call.name}, {"arguments", call.arguments}, {"known", call.known_tool}});
  out["notes"] = r.notes;
  return out;
}

nlohmann::ordered_json event_json(const chat::OutputEvent& e) {
  static const char* kinds[] = {"content", "reasoning", "tool_call_begin", "tool_call_end", "note"};
  nlohmann::ordered_json j;
  j["kind"] = kinds[int(e.kind)];
  if (e.kind == EventKind::tool_call_begin || e.kind == EventKind::tool_call_end) {
    j["index"] = e.tool_index;
    j["id"] = e.tool_id;
    j["name"] = e.tool_name;
    j["known"] = e.known_tool;
    if (e.kind == EventKind::tool_call_end) j["arguments"] = e.arguments;
  } else {
    j["text"] = e.text;
  }
  return j;
}

std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Case case_from_line(const std::string& line, size_t line_no, uint64_t seed) {
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail("stdin line ", line_no, ": expected a JSON object");
  const auto text = j.find("text");
  if (text == j.end() || !text->is_string()) fail("stdin line ", line_no, ": \"text\" must be a string");
  Case c;
  c.text = text->get<std::string>();
  c.options.id_seed = seed;
  c.options.tool_format = parse_format(j.value("format", std::string("qwen3-coder")));
  c.options.reasoning = j.value("reasoning", false);
  c.options.starts_in_reasoning = j.value("starts_in_reasoning", false);
  c.chunk = j.value("chunk", size_t(0));
  if (j.contains("tools")) c.options.tools = chat::ToolSet::from_openai(j["tools"]);
  return c;
}

}  // namespace

int cmd_parse_output(int argc, char** argv) {
  Case base;
  base.options.tool_format = ToolCallFormat::qwen3_coder_xml;
  bool events = false;
  bool jsonl = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(arg, ": missing value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--format") {
      base.options.tool_format = parse_format(value());
    } else if (arg == "--tools") {
      const std::string path = value();
      std::ifstream in(path);
      if (!in) fail("--tools: cannot open ", path);
      const nlohmann::json tools = nlohmann::json::parse(in, nullptr, false);
      if (tools.is_discarded()) fail("--tools: ", path, " is not valid JSON");
      base.options.tools = chat::ToolSet::from_openai(tools);
    } else if (arg == "--reasoning") {
      base.options.reasoning = true;
    } else if (arg == "--starts-in-reasoning") {
      base.options.reasoning = true;
      base.options.starts_in_reasoning = true;
    } else if (arg == "--chunk") {
      base.chunk = parse_size("--chunk", value());
    } else if (arg == "--seed") {
      base.options.id_seed = parse_size("--seed", value());
    } else if (arg == "--events") {
      events = true;
    } else if (arg == "--jsonl") {
      jsonl = true;
    } else {
      fail("unknown argument '", arg, "' (see moeserve parse-output --help)");
    }
  }
  if (jsonl) {
    std::string line;
    size_t line_no = 0;
    while (std::getline(std::cin, line)) {
      ++line_no;
      if (line.empty()) continue;
      std::printf("%s\n", dump(reply_json(run(case_from_line(line, line_no, base.options.id_seed)))).c_str());
    }
    return 0;
  }
  base.text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  const chat::EventList list = run(std::move(base));
  if (events) {
    for (const chat::OutputEvent& e : list) std::printf("%s\n", dump(event_json(e)).c_str());
  } else {
    std::printf("%s\n", dump(reply_json(list)).c_str());
  }
  return 0;
}

}  // namespace moeserve::cli
