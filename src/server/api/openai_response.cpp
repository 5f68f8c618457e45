// OpenAI responses: whole messages and chunk streams.
#include "server/api/openai_api.h"

namespace moeserve::server {
namespace {

std::string sse_data(const ordered_json& payload) { return "data: " + payload.dump() + "\n\n"; }

ordered_json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

ordered_json tool_call_json(const ToolCall& call) {
  return {{"id", call.id}, {"type", "function"}, {"function", {{"name", call.name}, {"arguments", call.arguments}}}};
}

ordered_json logprobs_json(const std::vector<TokenLogprob>& logprobs) {
  ordered_json content = ordered_json::array();
  for (const TokenLogprob& t : logprobs) {
    ordered_json top = ordered_json::array();
    for (const auto& [token, lp] : t.top) {
      top.push_back({{"token", token}, {"logprob", lp}, {"bytes", std::vector<uint8_t>(token.begin(), token.end())}});
    }
    content.push_back({{"token", t.token},
                       {"logprob", t.logprob},
                       {"bytes", std::vector<uint8_t>(t.token.begin(), t.token.end())},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

ordered_json chunk_base(const ResponseMeta& meta, const char* object) {
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}, {"system_fingerprint", "moeserve"}};
}

class OpenAIChatStream : public ChatStreamSink {
 public:
  OpenAIChatStream(SseEmit emit, ResponseMeta meta, bool include_usage)
      : emit_(std::move(emit)), meta_(std::move(meta)), include_usage_(include_usage) {}

  bool on_start(const Usage&) override { return start_if_needed(); }
  bool on_reasoning(const std::string& text) override { return delta({{"reasoning_content", text}}); }
  bool on_content(const std::string& text) override { return delta({{"content", text}}); }
  bool on_tool_call(const ToolCall& call) override {
    ordered_json c = tool_call_json(call);
    c = {{"index", tool_calls_++}, {"id", c["id"]}, {"type", "function"}, {"function", c["function"]}};
    return delta({{"tool_calls", ordered_json::array({std::move(c)})}});
  }
  void on_finish(const ChatResult& result) override {
    ordered_json chunk = chunk_base(meta_, "chat.completion.chunk");
    start_if_needed();
    chunk["choices"] = ordered_json::array(
        {{{"index", 0}, {"delta", ordered_json::object()}, {"logprobs", nullptr}, {"finish_reason", openai_finish_reason(result.finish)}}});
    if (include_usage_) chunk["usage"] = nullptr;
    emit_(sse_data(chunk));
    if (include_usage_) {
      ordered_json usage = chunk_base(meta_, "chat.completion.chunk");
      usage["choices"] = ordered_json::array();
      usage["usage"] = usage_json(result.usage);
      emit_(sse_data(usage));
    }
    emit_("data: [DONE]\n\n");
  }

 private:
  // OpenAI opens every stream with a chunk carrying the role.
  bool start_if_needed() {
    if (started_) return true;
    started_ = true;
    return send({{"role", "assistant"}, {"content", ""}});
  }
  bool delta(ordered_json d) { return start_if_needed() && send(std::move(d)); }
  bool send(ordered_json d) {
    ordered_json chunk = chunk_base(meta_, "chat.completion.chunk");
    chunk["choices"] = ordered_json::array({{{"index", 0}, {"delta", std::move(d)}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
    if (include_usage_) chunk["usage"] = nullptr;
    return emit_(sse_data(chunk));
  }

  SseEmit emit_;
  ResponseMeta meta_;
  bool include_usage_;
  bool started_ = false;
  int tool_calls_ = 0;
};

class OpenAICompletionStream : public ChatStreamSink {
 public:
  OpenAICompletionStream(SseEmit emit, ResponseMeta meta, bool include_usage)
      : emit_(std::move(emit)), meta_(std::move(meta)), include_usage_(include_usage) {}
  bool on_start(const Usage&) override { return true; }
  bool on_reasoning(const std::string& text) override { return on_content(text); }
  bool on_content(const std::string& text) override { return send(text, nullptr); }
  bool on_tool_call(const ToolCall&) override { return true; }  // raw completions carry no tool calls
  void on_finish(const ChatResult& result) override {
    send("", openai_finish_reason(result.finish));
    if (include_usage_) {
      ordered_json usage = chunk_base(meta_, "text_completion");
      usage["choices"] = ordered_json::array();
      usage["usage"] = usage_json(result.usage);
      emit_(sse_data(usage));
    }
    emit_("data: [DONE]\n\n");
  }

 private:
  bool send(const std::string& text, ordered_json finish) {
    ordered_json chunk = chunk_base(meta_, "text_completion");
    chunk["choices"] = ordered_json::array({{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", std::move(finish)}}});
    return emit_(sse_data(chunk));
  }
  SseEmit emit_;
  ResponseMeta meta_;
  bool include_usage_;
};

}  // namespace

const char* openai_finish_reason(FinishReason finish) {
  switch (finish) {
    case FinishReason::length: return "length";
    case FinishReason::tool_calls: return "tool_calls";
    case FinishReason::stop:
    case FinishReason::stop_sequence: return "stop";
  }
  return "stop";
}

ordered_json openai_chat_response(const ChatResult& result, const ResponseMeta& meta) {
  ordered_json message = {{"role", "assistant"}};
  message["content"] = result.content.empty() && !result.tool_calls.empty() ? ordered_json(nullptr) : ordered_json(result.content);
  if (!result.reasoning.empty()) message["reasoning_content"] = result.reasoning;
  if (!result.tool_calls.empty()) {
    ordered_json calls = ordered_json::array();
    for (const ToolCall& c : result.tool_calls) calls.push_back(tool_call_json(c));
    message["tool_calls"] = std::move(calls);
  }
  ordered_json response = chunk_base(meta, "chat.completion");
  response["choices"] = ordered_json::array({{{"index", 0},
                                              {"message", std::move(message)},
                                              {"logprobs", result.logprobs.empty() ? ordered_json(nullptr) : logprobs_json(result.logprobs)},
                                              {"finish_reason", openai_finish_reason(result.finish)}}});
  response["usage"] = usage_json(result.usage);
  return response;
}

ordered_json openai_completion_response(const ChatResult& result, const ResponseMeta& meta) {
  ordered_json response = chunk_base(meta, "text_completion");
  response["choices"] = ordered_json::array(
      {{{"index", 0}, {"text", result.content}, {"logprobs", nullptr}, {"finish_reason", openai_finish_reason(result.finish)}}});
  response["usage"] = usage_json(result.usage);
  return response;
}

std::string openai_error_body(const ApiError& error) {
  ordered_json e = {{"message", error.message},
                    {"type", error.type},
                    {"param", error.param.empty() ? ordered_json(nullptr) : ordered_json(error.param)},
                    {"code", error.status}};
  return ordered_json{{"error", std::move(e)}}.dump();
}

std::unique_ptr<ChatStreamSink> make_openai_chat_stream(SseEmit emit, ResponseMeta meta, bool include_usage) {
  return std::make_unique<OpenAIChatStream>(std::move(emit), std::move(meta), include_usage);
}

std::unique_ptr<ChatStreamSink> make_openai_completion_stream(SseEmit emit, ResponseMeta meta, bool include_usage) {
  return std::make_unique<OpenAICompletionStream>(std::move(emit), std::move(meta), include_usage);
}

}  // namespace moeserve::server
