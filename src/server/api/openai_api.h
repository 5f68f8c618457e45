// OpenAI-compatible wire format: /v1/chat/completions, /v1/completions, errors.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "server/api/chat_request.h"

namespace moeserve::server {

// Writes one server-sent-events frame (already formatted); false once the client is gone.
using SseEmit = std::function<bool(const std::string& frame)>;

ChatRequest parse_openai_chat_request(const ordered_json& body);

struct CompletionRequest {
  std::string model;
  ordered_json prompt;  // a string, or an array of token ids
  std::optional<int64_t> max_tokens;
  std::vector<std::string> stop;
  SamplingRequest sampling;
  bool stream = false;
  bool include_usage = false;
  bool echo = false;
  int logprobs = 0;  // top alternatives per token; 0 = none
};
CompletionRequest parse_openai_completion_request(const ordered_json& body);

// Ids and timestamps of one response, shared by every chunk of a stream.
struct ResponseMeta {
  std::string id;  // "chatcmpl-..." / "cmpl-..."
  std::string model;
  int64_t created = 0;  // unix seconds
};

ordered_json openai_chat_response(const ChatResult& result, const ResponseMeta& meta);
ordered_json openai_completion_response(const ChatResult& result, const ResponseMeta& meta);
std::string openai_error_body(const ApiError& error);
const char* openai_finish_reason(FinishReason finish);

// Streams chat.completion.chunk events, then the usage chunk when asked, then `data: [DONE]`.
std::unique_ptr<ChatStreamSink> make_openai_chat_stream(SseEmit emit, ResponseMeta meta, bool include_usage);
// Streams text_completion chunks for /v1/completions.
std::unique_ptr<ChatStreamSink> make_openai_completion_stream(SseEmit emit, ResponseMeta meta, bool include_usage);

}  // namespace moeserve::server
