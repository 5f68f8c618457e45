// <think> splitting in the three situations the Qwen3 templates create (shared/spec/templates/
// qwen3.jinja): reasoning emitted by the model, reasoning opened by the prompt, thinking disabled.
#include <gtest/gtest.h>

#include "chat/output_parser.h"

namespace moeserve::chat {
namespace {

ParsedReply parse(std::string_view text, bool starts_inside = false,
                  ToolCallFormat format = ToolCallFormat::hermes_json) {
  OutputParserOptions o;
  o.reasoning = true;
  o.starts_in_reasoning = starts_inside;
  o.tool_format = format;
  return OutputParser::parse(std::move(o), text);
}

TEST(Reasoning, ModelOpensThinkBlock) {
  const ParsedReply r = parse("<think>\nStep 1.\nStep 2.\n</think>\n\nThe answer is 4.");
  EXPECT_EQ(r.reasoning, "Step 1.\nStep 2.");
  EXPECT_EQ(r.content, "The answer is 4.");
}

TEST(Reasoning, PromptOpenedThinkBlock) {
  const ParsedReply r = parse("Let me think.\n</think>\n\nDone.", true);
  EXPECT_EQ(r.reasoning, "Let me think.");
  EXPECT_EQ(r.content, "Done.");
}

TEST(Reasoning, ThinkingDisabledByTemplate) {
  // enable_thinking=false renders "<think>\n\n</think>\n\n" into the prompt: the reply is all answer.
  const std::string prompt = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
  EXPECT_FALSE(prompt_opens_reasoning(prompt));
  const ParsedReply r = parse("Plain answer.", prompt_opens_reasoning(prompt));
  EXPECT_EQ(r.reasoning, "");
  EXPECT_EQ(r.content, "Plain answer.");
}

TEST(Reasoning, PromptOpensReasoning) {
  EXPECT_TRUE(prompt_opens_reasoning("<|im_start|>assistant\n<think>\n"));
  EXPECT_FALSE(prompt_opens_reasoning("<|im_start|>assistant\n"));
  EXPECT_FALSE(prompt_opens_reasoning(""));
}

TEST(Reasoning, UnclosedReasoningIsAllReasoning) {
  const ParsedReply r = parse("<think>\nstill thinking when max_tokens hit");
  EXPECT_EQ(r.reasoning, "still thinking when max_tokens hit");
  EXPECT_EQ(r.content, "");
}

TEST(Reasoning, EmptyThinkBlock) {
  const ParsedReply r = parse("<think>\n\n</think>\n\nHi");
  EXPECT_EQ(r.reasoning, "");
  EXPECT_EQ(r.content, "Hi");
}

TEST(Reasoning, ThinkLaterInTheReplyIsText) {
  const ParsedReply r = parse("Use the <think> tag like this: <think>x</think>.");
  EXPECT_EQ(r.reasoning, "");
  EXPECT_EQ(r.content, "Use the <think> tag like this: <think>x</think>.");
}

TEST(Reasoning, ToolCallsAfterReasoning) {
  const ParsedReply r = parse("<think>\nI need the weather.\n</think>\n\n<tool_call>\n"
                              "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
  EXPECT_EQ(r.reasoning, "I need the weather.");
  EXPECT_EQ(r.content, "");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments, "{\"city\": \"Paris\"}");
}

TEST(Reasoning, ToolCallTagInsideReasoningIsReasoning) {
  const ParsedReply r = parse("<think>maybe <tool_call> now?</think>No.");
  EXPECT_EQ(r.reasoning, "maybe <tool_call> now?");
  EXPECT_EQ(r.content, "No.");
  EXPECT_TRUE(r.tool_calls.empty());
}

TEST(Reasoning, DisabledSplittingKeepsTags) {
  OutputParserOptions o;
  const ParsedReply r = OutputParser::parse(std::move(o), "<think>x</think>y");
  EXPECT_EQ(r.content, "<think>x</think>y");
}

}  // namespace
}  // namespace moeserve::chat
