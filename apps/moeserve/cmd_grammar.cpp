// `moeserve grammar`: checks texts against the grammars of constrained output (a JSON schema, any
// JSON object, or tool calls), the way the server's sampler constraint sees them, byte by byte.
// For checking what a schema allows and for tests that compare it with other implementations.
#include <iostream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "grammar/constrained_output.h"

namespace moeserve::cli {
namespace {

using json = nlohmann::ordered_json;

constexpr const char* kUsage =
    "usage: moeserve grammar < cases.jsonl\n\n"
    "Reads one case per line and prints one result per line:\n"
    "  {\"text\": T, \"schema\": S}                       JSON matching schema S\n"
    "  {\"text\": T, \"json_object\": true}               any JSON object\n"
    "  {\"text\": T, \"tools\": [...], \"format\": F,        tool calls (F: qwen3-coder or hermes),\n"
    "   \"allowed\": [names], \"parallel\": bool}\n"
    "  optional \"reasoning_end\": free text up to this tag comes first\n"
    "-> {\"accepted\": bool, \"consumed\": bytes before the first refused byte}, or {\"error\": message}\n";

std::shared_ptr<const grammar::Grammar> grammar_of(const json& c) {
  grammar::ReplyShape shape;
  shape.reasoning_end = c.value("reasoning_end", "");
  if (c.contains("schema")) return grammar::json_reply_grammar(c["schema"], shape);
  if (c.value("json_object", false)) return grammar::json_reply_grammar(nullptr, shape);
  if (c.contains("tools")) {
    const std::string format = c.value("format", "qwen3-coder");
    if (format != "qwen3-coder" && format != "hermes") fail("format '", format, "' is not qwen3-coder or hermes");
    std::vector<std::string> allowed;
    if (c.contains("allowed")) allowed = c["allowed"].get<std::vector<std::string>>();
    return grammar::tool_call_grammar(format == "hermes" ? grammar::ToolSyntax::hermes_json : grammar::ToolSyntax::qwen3_coder_xml,
                                      c["tools"], allowed, c.value("parallel", true), shape);
  }
  fail("a case needs \"schema\", \"json_object\" or \"tools\"");
}

}  // namespace

int cmd_grammar(int argc, char** argv) {
  if (argc > 1) {
    std::cout << kUsage;
    return std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ? 0 : 2;
  }
  std::map<std::string, std::shared_ptr<const grammar::Grammar>> compiled;  // by the case minus its text
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    json c = json::parse(line, nullptr, false);
    if (c.is_discarded() || !c.is_object() || !c.contains("text") || !c["text"].is_string()) fail("each line must be a JSON object with a \"text\" string");
    const std::string text = c["text"].get<std::string>();
    c.erase("text");
    json out;
    try {
      auto& g = compiled[c.dump()];
      if (!g) g = grammar_of(c);
      grammar::GrammarState state(g);
      size_t consumed = 0;
      while (consumed < text.size() && state.advance(uint8_t(text[consumed]))) ++consumed;
      out = {{"accepted", consumed == text.size() && state.complete()}, {"consumed", consumed}};
    } catch (const Error& e) {
      out = {{"error", e.what()}};
    }
    std::cout << out.dump() << '\n' << std::flush;
  }
  return 0;
}

}  // namespace moeserve::cli
