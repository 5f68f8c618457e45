// The chat-template API against the golden prompts of shared/spec (rendered by Python jinja2 3.1.6
// in transformers' configuration), and the interpreter's error reporting and resource bounds.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"

namespace moeserve::chat {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

const nlohmann::ordered_json kNoVars = nlohmann::ordered_json::object();

std::string render(const std::string& source, const nlohmann::ordered_json& extra = nlohmann::ordered_json::object(),
                   const jinja::RenderLimits& limits = {}) {
  ChatInputs in;
  in.extra = extra;
  return ChatTemplate(source).render(in, limits);
}

TEST(ChatTemplate, Qwen3CoderGoldenPrompts) {
  const std::string dir = std::string(MOESERVE_SPEC_DIR) + "/templates/";
  const ChatTemplate tmpl(read_text(dir + "qwen3-coder.jinja"));
  const auto golden = nlohmann::ordered_json::parse(read_text(dir + "qwen3-coder.golden.json"));
  ASSERT_GE(golden["cases"].size(), 3u);
  for (const auto& c : golden["cases"]) {
    ChatInputs in;
    in.messages = c["messages"];
    if (c.contains("tools") && !c["tools"].is_null()) in.tools = c["tools"];
    in.add_generation_prompt = c.value("add_generation_prompt", true);
    EXPECT_EQ(tmpl.render(in), c["expected"].get<std::string>()) << c["name"];
    EXPECT_EQ(tmpl.render(in), c["expected"].get<std::string>()) << "second render of " << c["name"];
  }
}

TEST(ChatTemplate, SyntaxErrorsCarryLineAndColumn) {
  try {
    ChatTemplate("line one\n{% if x %}\n  {{ 1 + }}\n{% endif %}");
    FAIL() << "expected a syntax error";
  } catch (const jinja::TemplateError& e) {
    EXPECT_EQ(e.line(), 3);
    EXPECT_EQ(e.column(), 10);
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ChatTemplate("{% for x in y %}no end"), jinja::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ x|no_such_filter }}"), jinja::TemplateError);
  EXPECT_THROW(ChatTemplate("{% if x is no_such_test %}{% endif %}"), jinja::TemplateError);
  EXPECT_THROW(ChatTemplate("{# unterminated comment"), jinja::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ 'unterminated }}"), jinja::TemplateError);
  EXPECT_THROW(ChatTemplate(std::string("{{ '\xff' }}")), jinja::TemplateError);
}

TEST(ChatTemplate, RaiseExceptionKeepsTheTemplatesMessage) {
  try {
    render("a\n{{ raise_exception('roles must alternate') }}");
    FAIL() << "expected the template to raise";
  } catch (const jinja::TemplateError& e) {
    EXPECT_TRUE(e.raised());
    EXPECT_EQ(e.message(), "roles must alternate");
    EXPECT_EQ(e.line(), 2);
  }
}

TEST(ChatTemplate, RuntimeErrorsNameTheLine) {
  try {
    render("{% set a = 1 %}\n\n{{ a + 'x' }}");
    FAIL() << "expected a type error";
  } catch (const jinja::TemplateError& e) {
    EXPECT_FALSE(e.raised());
    EXPECT_EQ(e.line(), 3);
  }
}

TEST(ChatTemplate, OutputIsBounded) {
  jinja::RenderLimits limits;
  limits.max_output_bytes = 1 << 20;
  EXPECT_THROW(render("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", kNoVars, limits), jinja::TemplateError);
  EXPECT_THROW(render("{{ 'x' * 100000000000 }}", kNoVars, limits), jinja::TemplateError);
  EXPECT_THROW(render("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", kNoVars,
                      limits),
               jinja::TemplateError);
}

TEST(ChatTemplate, WorkIsBounded) {
  jinja::RenderLimits limits;
  limits.max_steps = 1'000'000;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", kNoVars, limits),
               jinja::TemplateError);
  EXPECT_THROW(render("{% for i in range(100000) %}{{ range(100000)|list|length }}{% endfor %}", kNoVars, limits),
               jinja::TemplateError);
  // Generous: sanitizer builds on a loaded machine are ~30x slower; a hang would not finish at all.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(120));
}

TEST(ChatTemplate, RecursionIsBounded) {
  EXPECT_THROW(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"), jinja::TemplateError);
  EXPECT_THROW(render("{% for x in [[1]] recursive %}{{ loop([x]) }}{% endfor %}"), jinja::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ " + std::string(100000, '(') + " }}"), jinja::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ " + std::string(100000, '-') + "1 }}"), jinja::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ " + std::string(20000, '[') + std::string(20000, ']') + " }}"), jinja::TemplateError);
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  EXPECT_THROW(ChatTemplate(ifs + "x"), jinja::TemplateError);
  // Long operator chains make deep trees without deep parsing.
  std::string chain = "{{ 1";
  for (int i = 0; i < 200000; ++i) chain += " + 1";
  EXPECT_THROW(ChatTemplate(chain + " }}"), jinja::TemplateError);
  std::string filters = "{{ 'x'";
  for (int i = 0; i < 100000; ++i) filters += "|upper";
  EXPECT_THROW(ChatTemplate(filters + " }}"), jinja::TemplateError);
  // Deep expressions inside deep macro recursion: bounded by the evaluation nesting limit.
  std::string deep = "1";
  for (int i = 0; i < 60; ++i) deep = "(" + deep + " + 1)";
  EXPECT_THROW(render("{% macro f(n) %}{{ " + deep + " }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"), jinja::TemplateError);
}

TEST(ChatTemplate, DeepValuesAreRefused) {
  EXPECT_THROW(render("{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}"
                      "{{ ns.x }}"),
               jinja::TemplateError);
  nlohmann::ordered_json deep = nlohmann::ordered_json::array();
  for (int i = 0; i < 1000; ++i) deep = nlohmann::ordered_json::array({deep});
  EXPECT_THROW(render("{{ deep }}", {{"deep", deep}}), Error);
  // A namespace holding itself is a cycle Python allows (and prints with {...}); it must neither
  // hang nor leak.
  EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"), "<Namespace {'me': <Namespace {...}>}>");
  EXPECT_THROW(render("{% set ns = namespace(x=none) %}{% for i in range(5000) %}{% set ns.x = namespace(x=ns.x) %}"
                      "{% endfor %}{{ ns }}"),
               jinja::TemplateError);
}

TEST(ChatTemplate, InputsReachTheTemplateAsTransformersPassesThem) {
  ChatInputs in;
  in.messages = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "hi"}])");
  in.bos_token = "<s>";
  in.extra = nlohmann::ordered_json::parse(R"({"enable_thinking": false, "x": 1.0})");
  const ChatTemplate tmpl(
      "{{ bos_token }}|{{ eos_token is defined }}|{{ tools is none }}|{{ documents is none }}|"
      "{{ add_generation_prompt }}|{{ enable_thinking }}|{{ x }}|{{ messages[0].content }}");
  EXPECT_EQ(tmpl.render(in), "<s>|False|True|True|True|False|1.0|hi");
  in.extra = nlohmann::ordered_json::parse(R"({"messages": []})");
  EXPECT_THROW(tmpl.render(in), Error);
}

TEST(ChatTemplate, FixedTimeForStrftimeNow) {
  ChatInputs in;
  in.now = parse_fixed_time("2024-07-26T10:30:15");
  EXPECT_EQ(ChatTemplate("{{ strftime_now('%Y-%m-%d %H:%M:%S %A %d %b %Y') }}").render(in),
            "2024-07-26 10:30:15 Friday 26 Jul 2024");
  EXPECT_THROW(parse_fixed_time("26/07/2024"), Error);
}

}  // namespace
}  // namespace moeserve::chat
