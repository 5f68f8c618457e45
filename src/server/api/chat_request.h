// The one internal form of a chat request and its result. The OpenAI and Anthropic adapters map
// their wire formats to and from these; nothing behind them knows which API a request came by.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeserve::server {

using ordered_json = nlohmann::ordered_json;

// A client error: the adapter renders it in its API's error shape with this HTTP status.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";  // OpenAI/Anthropic error type names
  std::string param;                           // offending field, when known
};

enum class ToolChoice { auto_, none, required, named };

struct SamplingRequest {
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int> top_k;
  std::optional<double> min_p;
  std::optional<double> presence_penalty;
  std::optional<double> frequency_penalty;
  std::optional<double> repeat_penalty;
  std::optional<int64_t> repeat_last_n;  // llama-server's extension, as typical_p
  std::optional<double> typical_p;
  std::optional<uint64_t> seed;
  std::map<int32_t, float> logit_bias;  // token id -> bias
};

struct ChatRequest {
  std::string model;
  // Messages and tools in OpenAI form, as chat templates expect them: content flattened to a string
  // (or null), assistant tool_calls with `function.arguments` parsed into an object, reasoning in
  // `reasoning_content`, tool results as role "tool" with `tool_call_id`.
  ordered_json messages = ordered_json::array();
  ordered_json tools = ordered_json::array();  // [{"type":"function","function":{name,description,parameters}}]
  ToolChoice tool_choice = ToolChoice::auto_;
  std::string tool_choice_name;  // with ToolChoice::named
  bool parallel_tool_calls = true;
  std::optional<bool> enable_thinking;  // unset: the template's default
  ordered_json chat_template_kwargs = ordered_json::object();

  std::optional<int64_t> max_tokens;
  std::vector<std::string> stop;
  SamplingRequest sampling;
  bool stream = false;
  bool include_usage = false;  // OpenAI stream_options.include_usage
  bool logprobs = false;
  int top_logprobs = 0;
  // response_format: "text", "json_object" or "json_schema" (with its schema).
  std::string response_format = "text";
  ordered_json response_schema;
};

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // a JSON object, serialized
};

struct TokenLogprob {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // alternatives, most likely first
};

enum class FinishReason { stop, length, tool_calls, stop_sequence };

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens re-used from the prompt cache
};

struct ChatResult {
  std::string content;
  std::string reasoning;
  std::vector<ToolCall> tool_calls;
  FinishReason finish = FinishReason::stop;
  std::string stop_sequence;  // with FinishReason::stop_sequence
  Usage usage;
  std::vector<TokenLogprob> logprobs;
  double prompt_seconds = 0;      // engine time on the prompt
  double generation_seconds = 0;  // engine time from the first generated token on
};

// Receives a generation as it happens; each API's streaming writer implements it.
class ChatStreamSink {
 public:
  virtual ~ChatStreamSink() = default;
  // Once the prompt is tokenized and its cached prefix known, before any text.
  virtual bool on_start(const Usage& prompt_usage) = 0;
  virtual bool on_reasoning(const std::string& text) = 0;  // false: the client is gone
  virtual bool on_content(const std::string& text) = 0;
  virtual bool on_tool_call(const ToolCall& call) = 0;
  virtual void on_finish(const ChatResult& result) = 0;  // result holds the whole message
};

}  // namespace moeserve::server
