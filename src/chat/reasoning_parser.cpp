#include "chat/reasoning_parser.h"

#include "chat/tag_match.h"
#include "core/utf8.h"

namespace moeserve::chat {

void ReasoningParser::feed(std::string_view text, EventList& out, std::string& answer) {
  buf_.append(text);
  while (step(false, out, answer)) {
  }
}

void ReasoningParser::finish(EventList& out, std::string& answer) {
  while (step(true, out, answer)) {
  }
  pending_space_.clear();
}

void ReasoningParser::emit_reasoning(std::string_view text, EventList& out) {
  if (text.empty()) return;
  size_t b = 0;
  if (skip_space_) {
    while (b < text.size() && is_tag_space(text[b])) ++b;
    if (b == text.size()) return;
    skip_space_ = false;
  }
  size_t e = text.size();
  while (e > b && is_tag_space(text[e - 1])) --e;
  if (e > b) {
    append_text(out, EventKind::reasoning, pending_space_);
    pending_space_.clear();
    append_text(out, EventKind::reasoning, text.substr(b, e - b));
  }
  pending_space_.append(text.substr(e));
}

bool ReasoningParser::step(bool final, EventList& out, std::string& answer) {
  switch (state_) {
    case State::start: {
      // Whitespace before the reply's first text is dropped either way (the answer is trimmed too).
      buf_.erase(0, skip_tag_space(buf_, 0));
      const TagMatch open = buf_.empty() ? TagMatch::partial : match_tag(buf_, 0, kThinkOpen);
      if (open == TagMatch::full) {
        buf_.erase(0, kThinkOpen.size());
        state_ = State::reasoning;
        return true;
      }
      if (open == TagMatch::partial && !final) return false;
      state_ = State::answer;
      return true;
    }
    case State::reasoning: {
      const size_t close = buf_.find(kThinkClose);
      if (close != std::string::npos) {
        emit_reasoning(std::string_view(buf_).substr(0, close), out);
        pending_space_.clear();
        buf_.erase(0, close + kThinkClose.size());
        state_ = State::answer;
        return true;
      }
      size_t end = buf_.size();
      if (!final) {
        for (size_t j = buf_.size() > kThinkClose.size() ? buf_.size() - kThinkClose.size() : 0; j < buf_.size(); ++j) {
          if (match_tag(buf_, j, kThinkClose) == TagMatch::partial) {
            end = j;
            break;
          }
        }
        end = utf8_complete_prefix(std::string_view(buf_).substr(0, end));
      }
      emit_reasoning(std::string_view(buf_).substr(0, end), out);
      buf_.erase(0, end);
      return false;
    }
    case State::answer:
      answer += buf_;
      buf_.clear();
      return false;
  }
  return false;
}

bool prompt_opens_reasoning(std::string_view prompt) {
  size_t end = prompt.size();
  while (end > 0 && is_tag_space(prompt[end - 1])) --end;
  return end >= kThinkOpen.size() && prompt.substr(end - kThinkOpen.size(), kThinkOpen.size()) == kThinkOpen;
}

}  // namespace moeserve::chat
