// One chat request end to end: template -> tokens -> scheduler -> detokenized, stop-checked text
// -> reply parser (reasoning, tool calls) -> the API's sink. The same path serves streaming and
// whole responses, OpenAI and Anthropic.
#pragma once

#include <functional>

#include "server/api/chat_request.h"
#include "server/serve_options.h"
#include "server/served_model.h"

namespace moeserve::server {

struct RenderedPrompt {
  std::string text;
  std::vector<int32_t> tokens;
};

// Renders and tokenizes the request's conversation; ApiError (400) for what the client got wrong
// (the template refusing the conversation, a prompt longer than the context).
RenderedPrompt render_chat_prompt(const ServedModel& model, const ServeOptions& options, const ChatRequest& request);

// Generates the reply. With a sink, text and tool calls stream to it as they are decided;
// `client_alive` is polled while waiting, and a gone client cancels the generation at once.
// Returns the whole reply (also when streamed). ApiError for client errors, moeserve::Error for
// engine faults.
ChatResult run_chat(ServedModel& model, const ServeOptions& options, const ChatRequest& request,
                    const RenderedPrompt& prompt, ChatStreamSink* sink, const std::function<bool()>& client_alive);

// Raw completion (/v1/completions): the prompt is text or token ids, no template, no parsers.
ChatResult run_completion(ServedModel& model, const ServeOptions& options, const std::vector<int32_t>& prompt,
                          const ChatRequest& request, ChatStreamSink* sink, const std::function<bool()>& client_alive);

}  // namespace moeserve::server
