// Hostile templates and inputs: random syntax soup and random mutations of the real chat templates
// must compile or fail with a TemplateError, and render or fail within the work limits; never crash,
// hang or throw anything else. (Output correctness is checked against jinja2 by the script tests.)
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"

namespace moeserve::chat {
namespace {

const char* const kFragments[] = {
    "{{", "}}", "{%", "%}", "{#", "#}", "{{-", "-}}", "{%-", "-%}", "{%+", "+%}", " ", " ", "\n", "\t", "x", "y", "ns",
    "loop", "messages", "tools", "for", "in", "if", "elif", "else", "endif", "endfor", "macro", "endmacro", "call",
    "endcall", "set", "endset", "filter", "endfilter", "raw", "endraw", "with", "endwith", "break", "continue",
    "recursive", "is", "not", "and", "or", "=", "==", "(", ")", "[", "]", "{", "}", ",", ":", ".", "|", "~", "+", "-",
    "*", "**", "/", "//", "%", "'s'", "\"t\"", "'\\x4", "\\", "0", "1", "2.5", "1e308", "-9223372036854775808",
    "9223372036854775807", "true", "none", "range(99999)", "namespace(a=1)", "ns.a", "loop(x)", "caller()", "x.y",
    "x[0]", "x[::-1]", "|join", "|map('upper')", "|tojson(indent=2)", "|selectattr('role')", "|dictsort", "|sort",
    "|unique", "|batch(3)", "|indent(9999)", "|center(99999)", "|truncate(5)", "|format(1)", "|int", "|round(2)",
    "'%s' % x", "'{}'.format(x)", "x * 99999", "raise_exception('r')", "strftime_now('%c')", "é", "🚀", "\xc3",
};

std::string random_template(std::mt19937& rng) {
  std::uniform_int_distribution<size_t> pick(0, std::size(kFragments) - 1);
  std::uniform_int_distribution<int> count(1, 60);
  std::string t;
  for (int i = count(rng); i > 0; --i) t += kFragments[pick(rng)];
  return t;
}

std::string mutate(const std::string& src, std::mt19937& rng) {
  std::string t = src;
  std::uniform_int_distribution<int> edits(1, 6);
  for (int e = edits(rng); e > 0 && !t.empty(); --e) {
    std::uniform_int_distribution<size_t> at(0, t.size() - 1);
    const size_t p = at(rng);
    switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
      case 0: t.erase(p, std::uniform_int_distribution<size_t>(1, 40)(rng)); break;
      case 1: t.insert(p, kFragments[std::uniform_int_distribution<size_t>(0, std::size(kFragments) - 1)(rng)]); break;
      case 2: {
        const size_t q = at(rng);
        t.insert(p, t.substr(std::min(p, q), std::min<size_t>(std::max(p, q) - std::min(p, q), 300)));
        break;
      }
      default: t[p] = char(std::uniform_int_distribution<int>(32, 126)(rng)); break;
    }
  }
  return t;
}

ChatInputs sample_inputs() {
  ChatInputs in;
  in.messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "abcdefghi", "type": "function",
      "function": {"name": "f", "arguments": {"a": [1, 2.5, null, true], "b": "s"}}}]},
    {"role": "tool", "tool_call_id": "abcdefghi", "content": "ok"},
    {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image"}]}])");
  in.tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "f", "description": "d",
    "parameters": {"type": "object", "properties": {"a": {"type": "array"}, "b": {"type": "string"}}, "required": ["b"]}}}])");
  in.bos_token = "<s>";
  in.eos_token = "</s>";
  in.extra = nlohmann::ordered_json::parse(R"({"x": [1, "two", {"y": 3}], "enable_thinking": false})");
  in.now = parse_fixed_time("2024-07-26T10:30:15");
  return in;
}

// Compiles and renders; only our own errors may come out.
void exercise(const std::string& source, const ChatInputs& in, const jinja::RenderLimits& limits) {
  try {
    const ChatTemplate t(source);
    t.render(in, limits);
  } catch (const Error&) {
    // TemplateError or a malformed-input error: the expected outcomes besides success.
  }
}

jinja::RenderLimits small_limits() {
  jinja::RenderLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_steps = 200'000;
  limits.max_call_depth = 40;
  return limits;
}

TEST(JinjaRobustness, RandomSyntaxSoup) {
  std::mt19937 rng(12345);
  const ChatInputs in = sample_inputs();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 20000; ++i) ASSERT_NO_FATAL_FAILURE(exercise(random_template(rng), in, small_limits()));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(300));  // sanitizer builds are slow
}

TEST(JinjaRobustness, MutatedRealTemplates) {
  std::vector<std::string> sources;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(MOESERVE_TEST_FIXTURES) + "/templates")) {
    if (entry.path().extension() != ".jinja") continue;
    std::ifstream f(entry.path(), std::ios::binary);
    sources.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  ASSERT_GE(sources.size(), 10u);
  std::mt19937 rng(777);
  const ChatInputs in = sample_inputs();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 8000; ++i) {
    const std::string& src = sources[size_t(i) % sources.size()];
    ASSERT_NO_FATAL_FAILURE(exercise(mutate(src, rng), in, small_limits()));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(300));  // sanitizer builds are slow
}

TEST(JinjaRobustness, RealTemplatesRenderTheSampleConversation) {
  // Every collected template either renders the sample conversation or raises a TemplateError
  // (some refuse tools or multi-part content, as they do under jinja2).
  const ChatInputs in = sample_inputs();
  for (const auto& entry : std::filesystem::directory_iterator(std::string(MOESERVE_TEST_FIXTURES) + "/templates")) {
    if (entry.path().extension() != ".jinja") continue;
    std::ifstream f(entry.path(), std::ios::binary);
    const std::string src((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const ChatTemplate t(src);  // every real template compiles
    try {
      EXPECT_FALSE(t.render(in).empty()) << entry.path();
    } catch (const jinja::TemplateError&) {
    }
  }
}

}  // namespace
}  // namespace moeserve::chat
