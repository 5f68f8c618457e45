// Anthropic responses: whole messages and the SSE event sequence.
#include "server/api/anthropic_api.h"

namespace moeserve::server {
namespace {

std::string event(const char* name, const ordered_json& data) {
  return std::string("event: ") + name + "\ndata: " + data.dump() + "\n\n";
}

ordered_json tool_input(const ToolCall& call) {
  ordered_json input = ordered_json::parse(call.arguments, nullptr, false);
  return input.is_object() ? input : ordered_json::object();
}

// Anthropic counts cache reads apart from (not inside) input_tokens.
ordered_json start_usage(const Usage& u) {
  return {{"input_tokens", u.prompt_tokens - u.cached_tokens},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", u.cached_tokens},
          {"output_tokens", u.completion_tokens}};
}

class AnthropicStream : public ChatStreamSink {
 public:
  AnthropicStream(SseEmit emit, ResponseMeta meta) : emit_(std::move(emit)), meta_(std::move(meta)) {}

  bool on_start(const Usage& prompt_usage) override {
    if (started_) return true;
    started_ = true;
    ordered_json message = {{"id", meta_.id},          {"type", "message"},        {"role", "assistant"},
                            {"model", meta_.model},    {"content", ordered_json::array()},
                            {"stop_reason", nullptr},  {"stop_sequence", nullptr}, {"usage", start_usage(prompt_usage)}};
    message["usage"]["output_tokens"] = 1;
    return emit_(event("message_start", {{"type", "message_start"}, {"message", std::move(message)}}));
  }
  bool on_reasoning(const std::string& text) override {
    if (!open_block(Block::thinking, {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}})) return false;
    return delta({{"type", "thinking_delta"}, {"thinking", text}});
  }
  bool on_content(const std::string& text) override {
    if (!open_block(Block::text, {{"type", "text"}, {"text", ""}})) return false;
    return delta({{"type", "text_delta"}, {"text", text}});
  }
  bool on_tool_call(const ToolCall& call) override {
    close_block();
    if (!open_block(Block::tool_use, {{"type", "tool_use"}, {"id", call.id}, {"name", call.name}, {"input", ordered_json::object()}})) {
      return false;
    }
    const bool ok = delta({{"type", "input_json_delta"}, {"partial_json", tool_input(call).dump()}});
    close_block();
    return ok;
  }
  void on_finish(const ChatResult& result) override {
    on_start(result.usage);
    if (blocks_ == 0) open_block(Block::text, {{"type", "text"}, {"text", ""}});  // every message holds a block
    close_block();
    ordered_json usage = {{"input_tokens", result.usage.prompt_tokens - result.usage.cached_tokens},
                          {"cache_creation_input_tokens", 0},
                          {"cache_read_input_tokens", result.usage.cached_tokens},
                          {"output_tokens", result.usage.completion_tokens}};
    emit_(event("message_delta",
                {{"type", "message_delta"},
                 {"delta", {{"stop_reason", anthropic_stop_reason(result.finish)},
                            {"stop_sequence", result.stop_sequence.empty() ? ordered_json(nullptr) : ordered_json(result.stop_sequence)}}},
                 {"usage", std::move(usage)}}));
    emit_(event("message_stop", {{"type", "message_stop"}}));
  }

 private:
  enum class Block { none, text, thinking, tool_use };

  bool open_block(Block kind, ordered_json content_block) {
    if (open_ == kind && kind != Block::tool_use) return true;
    close_block();
    open_ = kind;
    bool ok = emit_(event("content_block_start", {{"type", "content_block_start"}, {"index", index_}, {"content_block", std::move(content_block)}}));
    if (blocks_++ == 0) ok = ok && emit_(event("ping", {{"type", "ping"}}));  // as the real API: after the first block opens
    return ok;
  }
  bool delta(ordered_json d) {
    return emit_(event("content_block_delta", {{"type", "content_block_delta"}, {"index", index_}, {"delta", std::move(d)}}));
  }
  void close_block() {
    if (open_ == Block::none) return;
    if (open_ == Block::thinking) delta({{"type", "signature_delta"}, {"signature", ""}});
    emit_(event("content_block_stop", {{"type", "content_block_stop"}, {"index", index_}}));
    open_ = Block::none;
    ++index_;
  }

  SseEmit emit_;
  ResponseMeta meta_;
  bool started_ = false;
  Block open_ = Block::none;
  int index_ = 0;
  int blocks_ = 0;
};

const char* error_type_for(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

}  // namespace

const char* anthropic_stop_reason(FinishReason finish) {
  switch (finish) {
    case FinishReason::length: return "max_tokens";
    case FinishReason::tool_calls: return "tool_use";
    case FinishReason::stop_sequence: return "stop_sequence";
    case FinishReason::stop: return "end_turn";
  }
  return "end_turn";
}

ordered_json anthropic_response(const ChatResult& result, const ResponseMeta& meta) {
  ordered_json content = ordered_json::array();
  if (!result.reasoning.empty()) content.push_back({{"type", "thinking"}, {"thinking", result.reasoning}, {"signature", ""}});
  if (!result.content.empty() || result.tool_calls.empty()) content.push_back({{"type", "text"}, {"text", result.content}});
  for (const ToolCall& c : result.tool_calls) {
    content.push_back({{"type", "tool_use"}, {"id", c.id}, {"name", c.name}, {"input", tool_input(c)}});
  }
  return {{"id", meta.id},
          {"type", "message"},
          {"role", "assistant"},
          {"model", meta.model},
          {"content", std::move(content)},
          {"stop_reason", anthropic_stop_reason(result.finish)},
          {"stop_sequence", result.stop_sequence.empty() ? ordered_json(nullptr) : ordered_json(result.stop_sequence)},
          {"usage", start_usage(result.usage)}};
}

std::string anthropic_error_body(const ApiError& error) {
  const std::string type = error.type == "invalid_request_error" ? error_type_for(error.status) : error.type;
  return ordered_json{{"type", "error"}, {"error", {{"type", type}, {"message", error.message}}}}.dump();
}

std::unique_ptr<ChatStreamSink> make_anthropic_stream(SseEmit emit, ResponseMeta meta) {
  return std::make_unique<AnthropicStream>(std::move(emit), std::move(meta));
}

}  // namespace moeserve::server
