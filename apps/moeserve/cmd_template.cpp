#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "commands.h"
#include "core/error.h"

namespace moeserve::cli {

namespace {

constexpr const char* kUsage =
    "usage: moeserve template --chat-template-file FILE --messages MSGS.json [options]\n"
    "\n"
    "Renders a chat template the way Hugging Face transformers applies it and prints the prompt\n"
    "exactly (nothing else on stdout).\n"
    "\n"
    "  --chat-template-file FILE  the Jinja chat template\n"
    "  --messages FILE            JSON array of messages\n"
    "  --tools FILE               JSON array of tool definitions (default: tools = None)\n"
    "  --kwargs FILE              JSON object of extra template variables (enable_thinking, ...)\n"
    "  --no-generation-prompt     add_generation_prompt = false (default true)\n"
    "  --bos-token TEXT           bos_token (default: undefined)\n"
    "  --eos-token TEXT           eos_token (default: undefined)\n"
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
  std::optional<std::string> template_file, messages_file, tools_file, kwargs_file;
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
  if (!template_file) fail("--chat-template-file is required (see moeserve template --help)");
  if (!messages_file) fail("--messages is required (see moeserve template --help)");
  inputs.messages = read_json(*messages_file, "--messages");
  if (!inputs.messages.is_array()) fail("--messages: '", *messages_file, "' must hold a JSON array");
  if (tools_file) inputs.tools = read_json(*tools_file, "--tools");
  if (kwargs_file) {
    inputs.extra = read_json(*kwargs_file, "--kwargs");
    if (!inputs.extra.is_object()) fail("--kwargs: '", *kwargs_file, "' must hold a JSON object");
  }
  const chat::ChatTemplate tmpl(read_file(*template_file, "--chat-template-file"));
  const std::string prompt = tmpl.render(inputs);
  if (std::fwrite(prompt.data(), 1, prompt.size(), stdout) != prompt.size() || std::fflush(stdout) != 0)
    fail("cannot write to stdout");
  return 0;
}

}  // namespace moeserve::cli
