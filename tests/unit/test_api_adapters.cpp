// OpenAI / Anthropic adapters: what reaches the chat template, and what a client receives.
#include <gtest/gtest.h>

#include "server/api/anthropic_api.h"
#include "server/api/json_fields.h"
#include "server/api/openai_api.h"

namespace moeserve::server {
namespace {

ApiError error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError{0, "no error"};
}

TEST(OpenAIRequest, MapsMessagesToolsAndArguments) {
  const ordered_json body = ordered_json::parse(R"({
    "model": "m", "max_tokens": 64, "temperature": 0.2, "stop": "END", "seed": 7, "stream": true,
    "stream_options": {"include_usage": true},
    "messages": [
      {"role": "developer", "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
      {"role": "user", "content": "hi"},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"b\": 1, \"a\": [2]}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "ok"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "logit_bias": {"42": 5}, "presence_penalty": 0.5, "repeat_last_n": -1, "typical_p": 0.75})");
  const ChatRequest r = parse_openai_chat_request(body);
  EXPECT_EQ(r.messages[0]["role"], "system");
  EXPECT_EQ(r.messages[0]["content"], "be brief");
  // Arguments become an object with key order kept, as templates iterate them.
  EXPECT_EQ(r.messages[2]["tool_calls"][0]["function"]["arguments"].dump(), R"({"b":1,"a":[2]})");
  EXPECT_EQ(r.messages[3]["tool_call_id"], "c1");
  EXPECT_EQ(r.tool_choice, ToolChoice::named);
  EXPECT_EQ(r.tool_choice_name, "f");
  EXPECT_EQ(*r.max_tokens, 64);
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(r.stream && r.include_usage);
  EXPECT_EQ(*r.sampling.seed, 7u);
  EXPECT_FLOAT_EQ(r.sampling.logit_bias.at(42), 5.0f);
  EXPECT_DOUBLE_EQ(*r.sampling.presence_penalty, 0.5);
  EXPECT_EQ(*r.sampling.repeat_last_n, -1);
  EXPECT_DOUBLE_EQ(*r.sampling.typical_p, 0.75);
}

TEST(OpenAIRequest, ClientErrorsNameTheField) {
  EXPECT_EQ(error_of([] { parse_json_body("{\"messages\": [}"); }).status, 400);
  EXPECT_EQ(error_of([] { parse_json_body("[1]"); }).message, "request body must be a JSON object");
  auto bad = [](const char* json) { return error_of([&] { parse_openai_chat_request(ordered_json::parse(json)); }); };
  EXPECT_EQ(bad(R"({})").param, "messages");
  EXPECT_EQ(bad(R"({"messages": []})").message, "'messages' must not be empty");
  EXPECT_EQ(bad(R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})").message,
            "'temperature' must be a number");
  EXPECT_EQ(bad(R"({"messages": [{"role": "wizard", "content": "x"}]})").param, "messages[0].role");
  EXPECT_EQ(bad(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})").status, 400);
  EXPECT_EQ(bad(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})").param, "max_tokens");
  EXPECT_EQ(bad(R"({"messages": [{"role": "user", "content": "x"}], "n": 2})").param, "n");
  EXPECT_EQ(bad(R"({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]})").param,
            "messages[0].tool_calls[0].function.arguments");
  EXPECT_EQ(bad(R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"})").param, "tool_choice");
}

TEST(AnthropicRequest, ClaudeCodeShapedRequest) {
  const ordered_json body = ordered_json::parse(R"({
    "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": true,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1; cch=abc123;"},
               {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
      {"role": "system", "content": "Extra rules."},
      {"role": "user", "content": [{"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}]},
      {"role": "assistant", "content": [{"type": "thinking", "thinking": "use ls", "signature": "sig"},
                                         {"type": "text", "text": "Running ls."},
                                         {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a.txt"}]},
                                    {"type": "text", "text": "thanks"}]}],
    "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
              {"type": "web_search_20250305", "name": "web_search"}],
    "tool_choice": {"type": "auto"}, "thinking": {"type": "adaptive"},
    "metadata": {"user_id": "u"}, "context_management": {"edits": []}, "output_config": {"effort": "high"}})");
  const ChatRequest r = parse_anthropic_request(body);
  ASSERT_EQ(r.messages.size(), 5u);
  EXPECT_EQ(r.messages[0]["content"], "You are Claude Code.\n\nExtra rules.");  // billing header dropped, systems merged
  EXPECT_EQ(r.messages[2]["reasoning_content"], "use ls");
  EXPECT_EQ(r.messages[2]["tool_calls"][0]["function"]["arguments"]["command"], "ls");
  EXPECT_EQ(r.messages[3]["role"], "tool");
  EXPECT_EQ(r.messages[3]["content"], "a.txt");
  EXPECT_EQ(r.messages[4]["content"], "thanks");
  EXPECT_EQ(r.tools.size(), 1u);  // the server-side web search tool is not ours to run
  EXPECT_EQ(r.enable_thinking, true);
  EXPECT_EQ(*r.max_tokens, 32000);
}

TEST(AnthropicRequest, ClientErrors) {
  auto bad = [](const char* json) { return error_of([&] { parse_anthropic_request(ordered_json::parse(json)); }); };
  EXPECT_EQ(bad(R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})").param, "max_tokens");
  EXPECT_EQ(bad(R"({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]})").param, "messages[0].content");
  EXPECT_EQ(bad(R"({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "bogus"}]}]})").param,
            "messages[0].content[0].type");
  EXPECT_NO_THROW(parse_anthropic_request(ordered_json::parse(R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})"), true));
  EXPECT_EQ(anthropic_error_body(ApiError{404, "no model"}), R"({"type":"error","error":{"type":"not_found_error","message":"no model"}})");
}

std::vector<std::string> event_names(const std::vector<std::string>& frames) {
  std::vector<std::string> names;
  for (const std::string& f : frames) names.push_back(f.substr(0, f.find('\n')));
  return names;
}

TEST(AnthropicStream, EventSequenceOfTheRealApi) {
  std::vector<std::string> frames;
  auto sink = make_anthropic_stream([&](const std::string& f) { frames.push_back(f); return true; }, {"msg_1", "m", 0});
  Usage u{100, 0, 60};
  sink->on_start(u);
  sink->on_reasoning("hmm");
  sink->on_content("Hel");
  sink->on_content("lo");
  ChatResult result;
  result.content = "Hello";
  result.tool_calls.push_back({"toolu_9", "Bash", R"({"command":"ls"})"});
  result.finish = FinishReason::tool_calls;
  result.usage = {100, 7, 60};
  sink->on_tool_call(result.tool_calls[0]);
  sink->on_finish(result);
  const std::vector<std::string> names = event_names(frames);
  const std::vector<std::string> expected = {
      "event: message_start",       "event: content_block_start", "event: ping",
      "event: content_block_delta", "event: content_block_delta", "event: content_block_stop",
      "event: content_block_start", "event: content_block_delta", "event: content_block_delta",
      "event: content_block_stop",  "event: content_block_start", "event: content_block_delta",
      "event: content_block_stop",  "event: message_delta",       "event: message_stop"};
  EXPECT_EQ(names, expected);
  EXPECT_NE(frames[0].find(R"("input_tokens":40,"cache_creation_input_tokens":0,"cache_read_input_tokens":60)"), std::string::npos);
  EXPECT_NE(frames[4].find("signature_delta"), std::string::npos);
  EXPECT_NE(frames[11].find(R"("partial_json":"{\"command\":\"ls\"}")"), std::string::npos) << frames[11];
  EXPECT_NE(frames[13].find(R"("stop_reason":"tool_use")"), std::string::npos);
}

TEST(OpenAIStream, ChunksThenUsageThenDone) {
  std::vector<std::string> frames;
  auto sink = make_openai_chat_stream([&](const std::string& f) { frames.push_back(f); return true; }, {"chatcmpl-1", "m", 5}, true);
  sink->on_start({});
  sink->on_content("hi");
  ChatResult result;
  result.content = "hi";
  result.usage = {3, 1, 0};
  sink->on_finish(result);
  ASSERT_EQ(frames.size(), 5u);
  EXPECT_NE(frames[0].find(R"("delta":{"role":"assistant","content":""})"), std::string::npos);
  EXPECT_NE(frames[1].find(R"("delta":{"content":"hi"})"), std::string::npos);
  EXPECT_NE(frames[2].find(R"("finish_reason":"stop")"), std::string::npos);
  EXPECT_NE(frames[3].find(R"("choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4)"), std::string::npos);
  EXPECT_EQ(frames[4], "data: [DONE]\n\n");
}

}  // namespace
}  // namespace moeserve::server
