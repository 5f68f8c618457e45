#include "chat/output_parser.h"

#include <utility>

namespace moeserve::chat {

OutputParser::OutputParser(OutputParserOptions options)
    : tools_(std::move(options.tools)), calls_(options.tool_format, &tools_, options.id_seed) {
  if (options.reasoning) reasoning_.emplace(options.starts_in_reasoning);
}

void OutputParser::feed(std::string_view text, EventList& out) {
  if (!reasoning_) {
    calls_.feed(text, out);
    return;
  }
  answer_.clear();
  reasoning_->feed(text, out, answer_);
  if (!answer_.empty()) calls_.feed(answer_, out);
}

void OutputParser::finish(EventList& out) {
  if (reasoning_) {
    answer_.clear();
    reasoning_->finish(out, answer_);
    if (!answer_.empty()) calls_.feed(answer_, out);
  }
  calls_.finish(out);
}

ParsedReply OutputParser::parse(OutputParserOptions options, std::string_view text) {
  OutputParser parser(std::move(options));
  EventList events;
  parser.feed(text, events);
  parser.finish(events);
  return assemble_reply(events);
}

}  // namespace moeserve::chat
