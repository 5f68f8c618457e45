// Chat templates carried by GGUF files: the template and BOS/EOS texts come out of the metadata,
// and `moeserve template -m` renders the Qwen3-Coder golden prompts (shared/spec, rendered by Python
// jinja2) from a GGUF holding that template.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "chat/gguf_chat_template.h"
#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"

namespace moeserve::chat {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct ScratchDir {
  ScratchDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "moeserve-chat-XXXXXX").string();
    path = mkdtemp(pattern.data());
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::string path;
};

void write_model(const std::string& path, const std::string& chat_template, bool with_tokens = true) {
  std::vector<std::pair<std::string, gguf::Value>> metadata = {
      {"general.architecture", gguf::Value::string("qwen3")},
      {"tokenizer.chat_template", gguf::Value::string(chat_template)},
      {"tokenizer.chat_template.tool_use", gguf::Value::string("{{ bos_token }}tool-use:{{ messages|length }}")},
  };
  if (with_tokens) {
    metadata.emplace_back("tokenizer.ggml.tokens", gguf::Value::string_array({"<unk>", "<|im_start|>", "<|im_end|>", "x"}));
    metadata.emplace_back("tokenizer.ggml.bos_token_id", gguf::Value::u32(1));
    metadata.emplace_back("tokenizer.ggml.eos_token_id", gguf::Value::u32(2));
  }
  gguf::GgufWriter::write_file(path, metadata, {});
}

TEST(ChatTemplateGguf, ReadsTemplateAndSpecialTokens) {
  ScratchDir dir;
  const std::string model = dir.file("m.gguf");
  write_model(model, "{{ bos_token }}hi{{ eos_token }}");
  const gguf::GgufFile file = gguf::GgufFile::open(model);
  const GgufChatTemplate t = chat_template_from_gguf(file);
  EXPECT_EQ(t.source, "{{ bos_token }}hi{{ eos_token }}");
  EXPECT_EQ(t.bos_token, "<|im_start|>");
  EXPECT_EQ(t.eos_token, "<|im_end|>");
  EXPECT_EQ(chat_template_from_gguf(file, "tool_use").source, "{{ bos_token }}tool-use:{{ messages|length }}");
  EXPECT_THROW(chat_template_from_gguf(file, "rag"), Error);

  write_model(model, "plain", false);
  const GgufChatTemplate no_tokens = chat_template_from_gguf(gguf::GgufFile::open(model));
  EXPECT_FALSE(no_tokens.bos_token.has_value());
  EXPECT_FALSE(no_tokens.eos_token.has_value());
}

TEST(ChatTemplateGguf, CliRendersTheGoldenPromptsFromAModel) {
  ScratchDir dir;
  const std::string spec = std::string(MOESERVE_SPEC_DIR) + "/templates/";
  const std::string model = dir.file("qwen3-coder.gguf");
  write_model(model, read_text(spec + "qwen3-coder.jinja"));
  const auto golden = nlohmann::ordered_json::parse(read_text(spec + "qwen3-coder.golden.json"));
  for (const auto& c : golden["cases"]) {
    std::ofstream(dir.file("messages.json")) << c["messages"].dump();
    std::ofstream(dir.file("tools.json")) << c["tools"].dump();
    std::string cmd = std::string("'") + MOESERVE_BINARY + "' template -m '" + model + "' --messages '" +
                      dir.file("messages.json") + "'";
    if (!c["tools"].is_null()) cmd += " --tools '" + dir.file("tools.json") + "'";
    if (!c.value("add_generation_prompt", true)) cmd += " --no-generation-prompt";
    cmd += " > '" + dir.file("out.txt") + "'";
    const int rc = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd;
    EXPECT_EQ(read_text(dir.file("out.txt")), c["expected"].get<std::string>()) << c["name"];
  }
  const std::string bad = "'" + std::string(MOESERVE_BINARY) + "' template -m '" + model +
                          "' --chat-template-file x --messages m 2>/dev/null";
  const int rc = std::system(bad.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
}

}  // namespace
}  // namespace moeserve::chat
