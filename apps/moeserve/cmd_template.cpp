#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "chat/gguf_chat_template.h"
#include "commands.h"
#include "core/error.h"
#include "gguf/gguf_file.h"

namespace moeserve::cli {

namespace {

constexpr const char* kUsage =
    "usage: moeserve template (-m MODEL.gguf | --chat-template-file FILE) --messages MSGS.json [options]\n"
    "\n"
    "Renders a chat template the way Hugging Face transformers applies it and prints the prompt\n"
    "exactly (nothing else on stdout).\n"
    "\n"
    "  -m, --model FILE           take tokenizer.chat_template and the BOS/EOS token texts from a GGUF\n"
    "  --template-name NAME       with -m: use tokenizer.chat_template.NAME (e.g. tool_use)\n"
    "  --chat-template-file FILE  the Jinja chat template\n"
    "  --messages FILE            JSON array of messages\n"
    "  --tools FILE               JSON array of tool definitions (default: tools = None)\n"
    "  --kwargs FILE              JSON object of extra template variables (enable_thinking, ...)\n"
    "  --no-generation-prompt     add_generation_prompt = false (default true)\n"
    "  --bos-token TEXT           bos_token (default: the model's, else undefined)\n"
    "  --eos-token TEXT           eos_token (default: the model's, else undefined)\n"
    "  --now YYYY-MM-DDTHH:MM:SS  the local time strftime_now() reports (default: the clock)\n";

std::string read_file(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(flag, ": cannot open '", path, "'");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(flag, ": error reading '", path, "'");
  return text;
}

nlohmann::ordered_json read_json(const std::string& path, const char* flag) {
  const std::string text = read_file(path, flag);
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(flag, ": '", path, "' is not valid JSON: ", e.what());
  }
}

}  // namespace

int cmd_template(int argc, char** argv) {
  std::optional<std::string> model_file, template_name, template_file, messages_file, tools_file, kwargs_file;
  chat::ChatInputs inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(arg, " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "-m" || arg == "--model") {
      model_file = value();
    } else if (arg == "--template-name") {
      template_name = value();
    } else if (arg == "--chat-template-file") {
      template_file = value();
    } else if (arg == "--messages") {
      messages_file = value();
    } else if (arg == "--tools") {
      tools_file = value();
    } else if (arg == "--kwargs") {
      kwargs_file = value();
    } else if (arg == "--no-generation-prompt") {
      inputs.add_generation_prompt = false;
    } else if (arg == "--bos-token") {
      inputs.bos_token = value();
    } else if (arg == "--eos-token") {
      inputs.eos_token = value();
    } else if (arg == "--now") {
      inputs.now = chat::parse_fixed_time(value());
    } else {
      fail("unknown argument '", arg, "' (see moeserve template --help)");
    }
  }
  if (model_file.has_value() == template_file.has_value())
    fail("give one of -m MODEL.gguf or --chat-template-file FILE (see moeserve template --help)");
  if (template_name && !model_file) fail("--template-name needs -m");
  if (!messages_file) fail("--messages is required (see moeserve template --help)");
  inputs.messages = read_json(*messages_file, "--messages");
  if (!inputs.messages.is_array()) fail("--messages: '", *messages_file, "' must hold a JSON array");
  if (tools_file) inputs.tools = read_json(*tools_file, "--tools");
  if (kwargs_file) {
    inputs.extra = read_json(*kwargs_file, "--kwargs");
    if (!inputs.extra.is_object()) fail("--kwargs: '", *kwargs_file, "' must hold a JSON object");
  }
  std::string source;
  if (model_file) {
    chat::GgufChatTemplate from_model =
        chat::chat_template_from_gguf(gguf::GgufFile::open(*model_file), template_name.value_or(""));
    source = std::move(from_model.source);
    if (!inputs.bos_token) inputs.bos_token = from_model.bos_token;
    if (!inputs.eos_token) inputs.eos_token = from_model.eos_token;
  } else {
    source = read_file(*template_file, "--chat-template-file");
  }
  const chat::ChatTemplate tmpl(std::move(source));
  const std::string prompt = tmpl.render(inputs);
  if (std::fwrite(prompt.data(), 1, prompt.size(), stdout) != prompt.size() || std::fflush(stdout) != 0)
    fail("cannot write to stdout");
  return 0;
}

}  // namespace moeserve::cli
