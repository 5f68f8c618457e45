// Anthropic Messages API wire format: /v1/messages, /v1/messages/count_tokens, errors, SSE events.
#pragma once

#include <memory>
#include <string>

#include "server/api/chat_request.h"
#include "server/api/openai_api.h"

namespace moeserve::server {

// `for_count_tokens`: max_tokens is not required (count_tokens requests omit it).
ChatRequest parse_anthropic_request(const ordered_json& body, bool for_count_tokens = false);

ordered_json anthropic_response(const ChatResult& result, const ResponseMeta& meta);
std::string anthropic_error_body(const ApiError& error);
const char* anthropic_stop_reason(FinishReason finish);

// message_start, content_block_start / ping / deltas / content_block_stop per block, message_delta,
// message_stop: the event sequence of the real API.
std::unique_ptr<ChatStreamSink> make_anthropic_stream(SseEmit emit, ResponseMeta meta);

// Claude Code's first system block carries per-request billing data with a nonce
// ("x-anthropic-billing-header: ...; cch=...;"): not an instruction, and it would defeat prompt
// caching, so it is dropped.
bool is_billing_header_block(const std::string& text);

}  // namespace moeserve::server
