#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>

#include "commands.h"
#include "core/error.h"

namespace {

struct Subcommand {
  const char* name;
  int (*run)(int argc, char** argv);
  const char* summary;
};

constexpr Subcommand kSubcommands[] = {
    {"serve", moeserve::cli::cmd_serve, "serve a model over OpenAI- and Anthropic-compatible HTTP APIs"},
    {"types", moeserve::cli::cmd_types, "list the tensor types moeserve knows (ggml ids, block sizes)"},
    {"devices", moeserve::cli::cmd_devices, "list the GPUs this build can use"},
    {"tokenize", moeserve::cli::cmd_tokenize, "turn text into token ids with a model's vocabulary"},
    {"inspect", moeserve::cli::cmd_inspect, "validate a GGUF file and list its metadata, tensors and totals"},
    {"convert", moeserve::cli::cmd_convert, "convert a Hugging Face checkpoint to GGUF"},
    {"synth", moeserve::cli::cmd_synth, "write a random GGUF with a real model's shapes (benchmarks, tests)"},
    {"run", moeserve::cli::cmd_run, "run a prompt through a model and generate tokens"},
    {"perplexity", moeserve::cli::cmd_perplexity, "perplexity of a model on a token sequence (llama-perplexity's method)"},
    {"bench", moeserve::cli::cmd_bench, "prompt and generation speed (llama-bench-like table)"},
    {"template", moeserve::cli::cmd_template, "render a chat template for a list of messages"},
    {"parse-output", moeserve::cli::cmd_parse_output, "parse a model reply (reasoning, tool calls) as the server does"},
    {"grammar", moeserve::cli::cmd_grammar, "check texts against the grammars of constrained output (JSON schema, tool calls)"},
    {"quantize", moeserve::cli::cmd_quantize, "quantize a GGUF model to a llama.cpp file type (Q4_K_M, IQ2_XS, ...)"},
};

void print_usage(std::FILE* out) {
  std::fprintf(out, "usage: moeserve <command> [options]\n\ncommands:\n");
  for (const Subcommand& c : kSubcommands) std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
  std::fprintf(out, "\n`moeserve <command> --help` describes a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "--version") == 0) {
    std::printf("moeserve %s\n", MOESERVE_VERSION_STRING);
    return 0;
  }
  const std::string_view name = argv[1];
  for (const Subcommand& c : kSubcommands) {
    if (name != c.name) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const moeserve::Error& e) {
      std::fprintf(stderr, "moeserve %s: error: %s\n", c.name, e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "moeserve %s: internal error: %s\n", c.name, e.what());
      return 3;
    }
  }
  std::fprintf(stderr, "moeserve: unknown command '%s'\n\n", argv[1]);
  print_usage(stderr);
  return 2;
}
