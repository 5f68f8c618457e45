// The reply parser on arbitrary model output: never crashes or hangs, its output stays bounded by
// its input, and feeding the text in chunks gives the same events as feeding it whole.
// Input layout: byte 0 picks the configuration, byte 1 seeds the chunking, the rest is the text.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "chat/output_parser.h"

namespace {

using moeserve::chat::EventKind;
using moeserve::chat::EventList;
using moeserve::chat::OutputParser;
using moeserve::chat::OutputParserOptions;

const moeserve::chat::ToolSet& tools() {
  static const moeserve::chat::ToolSet set = moeserve::chat::ToolSet::from_openai(nlohmann::json::parse(R"([
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
      "a": {"type": "string"}, "n": {"type": "integer"}, "x": {"type": "number"}, "o": {"type": "object"},
      "l": {"type": "array"}, "b": {"type": "boolean"}, "z": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}}},
    {"type": "function", "function": {"name": "g"}}])"));
  return set;
}

OutputParserOptions options(uint8_t config) {
  OutputParserOptions o;
  o.tool_format = static_cast<moeserve::chat::ToolCallFormat>(config % 3);
  o.reasoning = (config >> 2) & 1;
  o.starts_in_reasoning = (config >> 3) & 1;
  o.tools = tools();
  o.id_seed = config;
  return o;
}

std::string render(const EventList& events, size_t& bytes) {
  std::string out;
  EventKind last = EventKind::note;
  bytes = 0;
  for (const auto& e : events) {
    const bool text = e.kind == EventKind::content || e.kind == EventKind::reasoning;
    if (!(text && e.kind == last)) out += "\n#" + std::to_string(int(e.kind)) + " ";
    out += e.text + e.tool_id + e.tool_name + e.arguments;
    bytes += e.text.size() + e.arguments.size();
    last = e.kind;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t config = data[0];
  std::mt19937 rng(data[1]);
  const std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);

  EventList whole;
  {
    OutputParser parser(options(config));
    parser.feed(text, whole);
    parser.finish(whole);
  }
  EventList pieces;
  {
    OutputParser parser(options(config));
    for (size_t i = 0; i < text.size();) {
      const size_t len = std::min(text.size() - i, size_t(1 + rng() % 7));
      parser.feed(text.substr(i, len), pieces);
      i += len;
    }
    parser.finish(pieces);
  }
  size_t whole_bytes = 0;
  size_t piece_bytes = 0;
  size_t calls = 0;
  for (const auto& e : whole) calls += e.kind == EventKind::tool_call_end;
  if (render(whole, whole_bytes) != render(pieces, piece_bytes)) __builtin_trap();
  if (whole_bytes > 8 * text.size() + 1024 * (calls + 1)) __builtin_trap();
  return 0;
}
