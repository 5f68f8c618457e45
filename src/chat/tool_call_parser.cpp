#include "chat/tool_call_parser.h"

#include "chat/tag_match.h"
#include "core/utf8.h"
#include "core/error.h"

namespace moeserve::chat {

ToolCallParser::ToolCallParser(ToolCallFormat format, const ToolSet* tools, uint64_t id_seed)
    : format_(format), tools_(tools), id_rng_(id_seed) {}

void ToolCallParser::feed(std::string_view text, EventList& out) {
  compact();
  buf_.append(text);
  while (step(false, out)) {
  }
}

void ToolCallParser::finish(EventList& out) {
  while (step(true, out)) {
  }
  pending_space_.clear();  // trailing whitespace of the reply
}

void ToolCallParser::compact() {
  // Outside a call nothing before pos_ is needed again, and what is left is at most a partial tag.
  if (state_ == State::content && pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
}

bool ToolCallParser::step(bool final, EventList& out) {
  switch (state_) {
    case State::content: return step_content(final, out);
    case State::call_open: return step_call_open(final, out);
    case State::function_name: return step_function_name(final, out);
    case State::xml_body: return step_xml_body(final, out);
    case State::json_body: return step_json_body(final, out);
    case State::after_call: return step_after_call(final, out);
  }
  return false;
}

void ToolCallParser::emit_content(std::string_view text, EventList& out) {
  if (text.empty()) return;
  size_t b = 0;
  if (skip_space_) {
    while (b < text.size() && is_tag_space(text[b])) ++b;
    if (b == text.size()) return;  // still at a line start as far as bare calls are concerned
    skip_space_ = false;
  }
  size_t e = text.size();
  while (e > b && is_tag_space(text[e - 1])) --e;
  if (e > b) {
    append_text(out, EventKind::content, pending_space_);
    pending_space_.clear();
    append_text(out, EventKind::content, text.substr(b, e - b));
  }
  pending_space_.append(text.substr(e));
  line_start_ = text.back() == '\n';
}

bool ToolCallParser::step_content(bool final, EventList& out) {
  const std::string_view buf = buf_;
  // Whitespace that would be dropped anyway is consumed first, so that a line start after it is
  // judged the same way whether or not it arrived in the same chunk.
  if (skip_space_) pos_ = skip_tag_space(buf, pos_);
  size_t scan = pos_;
  while (format_ != ToolCallFormat::none) {
    const size_t i = buf.find('<', scan);
    if (i == std::string_view::npos) break;
    const bool line_start = i == pos_ ? line_start_ : buf[i - 1] == '\n';
    const TagMatch wrapped = match_tag(buf, i, kToolCallOpen);
    const TagMatch bare = format_ == ToolCallFormat::qwen3_coder_xml && line_start ? match_tag(buf, i, kFunctionOpen)
                                                                                    : TagMatch::none;
    if (wrapped == TagMatch::full || bare == TagMatch::full) {
      emit_content(buf.substr(pos_, i - pos_), out);
      call_start_ = i;
      wrapped_ = wrapped == TagMatch::full;
      pos_ = i + (wrapped_ ? kToolCallOpen.size() : kFunctionOpen.size());
      state_ = wrapped_ ? State::call_open : State::function_name;
      return true;
    }
    if (!final && (wrapped == TagMatch::partial || bare == TagMatch::partial)) {
      emit_content(buf.substr(pos_, i - pos_), out);
      pos_ = i;
      return false;
    }
    scan = i + 1;
  }
  const size_t end = final ? buf.size() : pos_ + utf8_complete_prefix(buf.substr(pos_));
  emit_content(buf.substr(pos_, end - pos_), out);
  pos_ = end;
  return false;
}

void ToolCallParser::fall_back_to_content(size_t end, EventList& out) {
  emit_content(std::string_view(buf_).substr(call_start_, end - call_start_), out);
  pos_ = end;
  state_ = State::content;
}

bool ToolCallParser::step_call_open(bool final, EventList& out) {
  const std::string_view buf = buf_;
  const size_t k = pos_ = skip_tag_space(buf, pos_);  // a fallback restarts from call_start_
  if (k == buf.size()) {
    if (!final) return false;
    append_note(out, "<tool_call> at the end of the output: kept as content");
    fall_back_to_content(k, out);
    return true;
  }
  const TagMatch fn = match_tag(buf, k, kFunctionOpen);
  if (fn == TagMatch::full) {
    pos_ = k + kFunctionOpen.size();
    state_ = State::function_name;
    return true;
  }
  const TagMatch again = match_tag(buf, k, kToolCallOpen);
  if (again == TagMatch::full) {  // a repeated opening tag: one call, not literal text
    pos_ = k + kToolCallOpen.size();
    return true;
  }
  if ((fn == TagMatch::partial || again == TagMatch::partial) && !final) return false;
  if (buf[k] == '{') {
    body_start_ = k;
    json_.emplace();
    state_ = State::json_body;
    return true;
  }
  // Not a call (prose that mentions the tag): the tag is text, and scanning resumes after it.
  fall_back_to_content(call_start_ + kToolCallOpen.size(), out);
  return true;
}

bool ToolCallParser::step_function_name(bool final, EventList& out) {
  const std::string_view buf = buf_;
  for (size_t j = pos_; j < buf.size(); ++j) {
    const char c = buf[j];
    if (c == '>' && j > pos_) {
      const ToolSchema* tool = begin_call(std::string(buf.substr(pos_, j - pos_)), out);
      xml_.emplace(current_.tool_name, tool);
      pos_ = j + 1;
      body_start_ = pos_;
      state_ = State::xml_body;
      return true;
    }
    if (!valid_function_name_char(c) || j - pos_ >= kMaxToolNameBytes) {
      append_note(out, "<function= without a valid function name: kept as content");
      fall_back_to_content(pos_, out);
      return true;
    }
  }
  if (!final) return false;
  append_note(out, "the output ended inside <function=...>: kept as content");
  fall_back_to_content(pos_, out);
  return true;
}

std::string ToolCallParser::new_call_id() {
  static const char hex[] = "0123456789abcdef";
  std::string id = "call_";
  for (int word = 0; word < 2; ++word) {
    uint64_t bits = id_rng_();
    for (int k = 0; k < 12; ++k, bits >>= 4) id += hex[bits & 15];
  }
  return id;
}

const ToolSchema* ToolCallParser::begin_call(std::string name, EventList& out) {
  pending_space_.clear();  // whitespace between the content and a call is not content
  const ToolSchema* tool = tools_ ? tools_->find(name) : nullptr;
  current_ = OutputEvent{};
  current_.kind = EventKind::tool_call_begin;
  current_.tool_index = next_index_++;
  current_.tool_id = new_call_id();
  current_.tool_name = std::move(name);
  current_.known_tool = tool != nullptr;
  out.push_back(current_);
  if (!tool) append_note(out, str_cat("tool call names an unknown tool: ", current_.tool_name));
  return tool;
}

bool ToolCallParser::step_xml_body(bool final, EventList& out) {
  std::optional<XmlCallResult> r = xml_->advance(std::string_view(buf_).substr(body_start_), final);
  if (!r) return false;
  OutputEvent end = current_;
  end.kind = EventKind::tool_call_end;
  end.arguments = std::move(r->arguments);
  out.push_back(std::move(end));
  for (std::string& note : r->notes) append_note(out, std::move(note));
  pos_ = body_start_ + r->end;
  xml_.reset();
  state_ = State::after_call;
  return true;
}

bool ToolCallParser::step_json_body(bool final, EventList& out) {
  std::optional<JsonCallResult> r = json_->advance(std::string_view(buf_).substr(body_start_), final);
  if (!r) return false;
  json_.reset();
  if (!r->ok) {
    append_note(out, r->problem + ": kept as content");
    fall_back_to_content(body_start_ + r->end, out);
    return true;
  }
  begin_call(std::move(r->name), out);
  OutputEvent end = current_;
  end.kind = EventKind::tool_call_end;
  end.arguments = std::move(r->arguments);
  out.push_back(std::move(end));
  pos_ = body_start_ + r->end;
  state_ = State::after_call;
  return true;
}

bool ToolCallParser::step_after_call(bool final, EventList& out) {
  const std::string_view buf = buf_;
  pos_ = skip_tag_space(buf, pos_);  // whitespace after a call is never content
  if (pos_ == buf.size() && !final) return false;
  if (pos_ < buf.size()) {
    const TagMatch close = match_tag(buf, pos_, kToolCallClose);
    if (close == TagMatch::full) {
      pos_ += kToolCallClose.size();
    } else if (close == TagMatch::partial) {
      if (!final) return false;
      pos_ = buf.size();  // a closing tag cut off by the end of the output
    } else if (wrapped_) {
      append_note(out, "tool call without </tool_call>");
    }
  }
  state_ = State::content;
  skip_space_ = true;
  line_start_ = true;
  return true;
}

}  // namespace moeserve::chat
