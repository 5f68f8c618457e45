#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "quant/quantize.h"
#include "quant/quantize_model.h"

namespace moeserve::cli {

namespace {

constexpr const char* kUsage =
    "usage: moeserve quantize IN.gguf OUT.gguf TYPE [options]\n\n"
    "Quantizes a GGUF model as llama-quantize does: TYPE is one of llama.cpp's file types (the mix of\n"
    "tensor types below, e.g. Q4_K_M gives attn_v, half of ffn_down and the output Q6_K) or its\n"
    "numeric id. 1-D tensors, norms, the MoE router and SSM conv1d stay as they are; tensors whose rows\n"
    "do not fit the type's blocks fall back to a compatible type. Metadata is copied, with\n"
    "general.file_type set. The input is memory-mapped and the output written tensor by tensor.\n\n"
    "  --imatrix FILE                 importance matrix (llama-imatrix GGUF or legacy .dat): needed for\n"
    "                                 good 1- and 2-bit quants (IQ1_*, IQ2_*, IQ3_XXS, Q2_K_S)\n"
    "  --tensor-type REGEX=TYPE       quantize tensors whose name matches REGEX to TYPE (repeatable,\n"
    "                                 first match wins), e.g. --tensor-type ffn_down_exps=q4_k\n"
    "  --output-tensor-type TYPE      type of output.weight\n"
    "  --token-embedding-type TYPE    type of token_embd.weight\n"
    "  --leave-output-tensor          keep output.weight as it is\n"
    "  --pure                         no mix: every quantized tensor gets the file type's base type\n"
    "  --allow-requantize             accept tensors that are already quantized\n"
    "  -t, --threads N                threads (default: all cores)\n\n"
    "file types:\n";

GgmlType parse_type(std::string_view flag, std::string_view name) {
  const auto type = type_from_name(name);
  if (!type) fail(flag, ": unknown tensor type '", name, "' (see moeserve types)");
  if (!can_quantize(*type)) fail(flag, ": moeserve cannot quantize to ", type_name(*type));
  return *type;
}

int parse_threads(std::string_view value) {
  int n = 0;
  for (char c : value) {
    if (c < '0' || c > '9' || n > 100000) fail("--threads: '", value, "' is not a thread count");
    n = n * 10 + (c - '0');
  }
  if (value.empty() || n < 1) fail("--threads: '", value, "' is not a thread count");
  return n;
}

void print_usage() {
  std::fputs(kUsage, stdout);
  for (const quant::FileType& f : quant::file_types()) {
    std::printf("  %2d  %-10s %-8s %s\n", f.id, f.name, type_name(f.base), f.description);
  }
}

}  // namespace

int cmd_quantize(int argc, char** argv) {
  std::vector<std::string> positional;
  quant::QuantizeModelOptions options;
  options.n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) fail(arg, " needs a value (see moeserve quantize --help)");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      print_usage();
      return 0;
    }
    if (arg == "--imatrix") {
      options.imatrix_path = value();
    } else if (arg == "--tensor-type") {
      const std::string_view spec = value();
      const size_t eq = spec.find('=');
      if (eq == std::string_view::npos || eq == 0 || eq + 1 == spec.size()) {
        fail("--tensor-type: expected REGEX=TYPE, got '", spec, "'");
      }
      // llama-quantize matches lower-cased patterns against the tensor names.
      std::string pattern(spec.substr(0, eq));
      for (char& c : pattern) c = char(std::tolower(static_cast<unsigned char>(c)));
      options.recipe.overrides.push_back({pattern, parse_type("--tensor-type", spec.substr(eq + 1))});
    } else if (arg == "--output-tensor-type") {
      options.recipe.output_type = parse_type(arg, value());
    } else if (arg == "--token-embedding-type") {
      options.recipe.token_embedding_type = parse_type(arg, value());
    } else if (arg == "--leave-output-tensor") {
      options.recipe.quantize_output = false;
    } else if (arg == "--pure") {
      options.recipe.pure = true;
    } else if (arg == "--allow-requantize") {
      options.allow_requantize = true;
    } else if (arg == "-t" || arg == "--threads") {
      options.n_threads = parse_threads(value());
    } else if (arg.size() > 1 && arg[0] == '-') {
      fail("unknown option '", arg, "' (see moeserve quantize --help)");
    } else {
      positional.emplace_back(arg);
    }
  }
  if (positional.size() != 3) {
    fail("expected IN.gguf OUT.gguf TYPE, got ", positional.size(), " argument(s) (see moeserve quantize --help)");
  }
  options.recipe.ftype = quant::find_file_type(positional[2]);
  // A plain tensor type that is no file type's name (MXFP4): every quantized tensor gets it, as
  // with --pure, and the file is labelled with the file type built on it.
  quant::FileType plain{};
  if (const auto type = type_from_name(positional[2]); !options.recipe.ftype && type && can_quantize(*type)) {
    for (const quant::FileType& f : quant::file_types()) {
      if (f.base != *type) continue;
      plain = {type_name(*type), f.id, *type, "plain type"};
      options.recipe.ftype = &plain;
      options.recipe.pure = true;
      break;
    }
  }
  if (!options.recipe.ftype) {
    fail("unknown quantization type '", positional[2], "' (moeserve quantize --help lists them)");
  }
  options.log = [](const std::string& line) {
    std::fputs((line + "\n").c_str(), stdout);
    std::fflush(stdout);
  };
  options.warn = [](const std::string& line) { std::fputs(("warning: " + line + "\n").c_str(), stderr); };
  quant::quantize_model(positional[0], positional[1], options);
  return 0;
}

}  // namespace moeserve::cli
