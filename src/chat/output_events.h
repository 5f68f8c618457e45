// What the streaming output parsers report while a model's reply is being generated: text for
// the answer, text for the reasoning, tool calls (announced when their name is known, delivered
// when complete), and notes about malformed output that was tolerated.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace moeserve::chat {

enum class EventKind {
  content,          // text: answer text
  reasoning,        // text: reasoning ("thinking") text
  tool_call_begin,  // tool_index, tool_id, tool_name, known_tool
  tool_call_end,    // the same fields plus arguments (a JSON object)
  note,             // text: a tolerated malformation, for logs
};

struct OutputEvent {
  EventKind kind = EventKind::content;
  std::string text;
  int tool_index = -1;
  std::string tool_id;
  std::string tool_name;
  std::string arguments;
  bool known_tool = true;  // false: the name is not among the request's tools (the call is kept)
};

using EventList = std::vector<OutputEvent>;

// Appends text of `kind` (content or reasoning), merging it into the previous event when that has
// the same kind, so that callers see one event per run of text within a feed.
inline void append_text(EventList& out, EventKind kind, std::string_view text) {
  if (text.empty()) return;
  if (!out.empty() && out.back().kind == kind) {
    out.back().text += text;
    return;
  }
  OutputEvent e;
  e.kind = kind;
  e.text = std::string(text);
  out.push_back(std::move(e));
}

inline void append_note(EventList& out, std::string text) {
  OutputEvent e;
  e.kind = EventKind::note;
  e.text = std::move(text);
  out.push_back(std::move(e));
}

// A whole reply, assembled from its events (what a non-streaming response returns).
struct ParsedToolCall {
  std::string id;
  std::string name;
  std::string arguments;
  bool known_tool = true;
};

struct ParsedReply {
  std::string content;
  std::string reasoning;
  std::vector<ParsedToolCall> tool_calls;
  std::vector<std::string> notes;
};

inline ParsedReply assemble_reply(const EventList& events) {
  ParsedReply r;
  for (const OutputEvent& e : events) {
    switch (e.kind) {
      case EventKind::content: r.content += e.text; break;
      case EventKind::reasoning: r.reasoning += e.text; break;
      case EventKind::tool_call_begin: break;
      case EventKind::tool_call_end: r.tool_calls.push_back({e.tool_id, e.tool_name, e.arguments, e.known_tool}); break;
      case EventKind::note: r.notes.push_back(e.text); break;
    }
  }
  return r;
}

}  // namespace moeserve::chat
