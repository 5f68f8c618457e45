#include <cstdio>
#include <string>

#include "commands.h"
#include "core/error.h"
#include "core/ggml_type.h"
#include "model/synth/presets.h"
#include "model/synth/synth.h"

namespace moeserve::cli {

namespace {

int64_t parse_count(const std::string& flag, const std::string& v) {
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || n <= 0 || n > (1ll << 20)) fail(flag, " '", v, "' is not a positive count");
  return n;
}

GgmlType parse_type(const std::string& flag, const std::string& v) {
  const auto t = type_from_name(v);
  if (!t) fail(flag, " '", v, "' is not a ggml type name (see moeserve types)");
  return *t;
}

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "usage: moeserve synth --preset NAME -o OUT.gguf [--layers N] [--experts N]\n"
               "                      [--expert-type T] [--other-type T] [--tokenizer tokenizer.json]\n"
               "                      [--chat-template FILE] [--ssm-in] [--seed S] [--quiet]\n"
               "\n"
               "Writes a GGUF with random weights and the exact tensor names, shapes and metadata of a\n"
               "real model: for benchmarks and tests without downloading one.\n"
               "\n"
               "  --preset NAME        model shape (below)\n"
               "  --layers N           override the layer count\n"
               "  --experts N          override the expert count\n"
               "  --expert-type T      type of the *_exps tensors (default IQ2_XS)\n"
               "  --other-type T       type of every other weight matrix (default Q8_0); 1-D tensors,\n"
               "                       the router and ssm_conv1d are F32\n"
               "  --tokenizer FILE     take the vocabulary from a Hugging Face tokenizer.json (default: a\n"
               "                       synthetic byte-level BPE vocabulary of the real size)\n"
               "  --chat-template FILE tokenizer.chat_template from this Jinja file\n"
               "  --ssm-in             qwen3next: the older single ssm_in tensor layout\n"
               "  --seed S             random seed (default 1)\n"
               "\npresets:\n");
  for (const synth::Preset& p : synth::presets()) std::fprintf(out, "  %-18s %s\n", p.name.c_str(), p.description.c_str());
}

}  // namespace

int cmd_synth(int argc, char** argv) {
  synth::SynthOptions opt;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(a, " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      print_usage(stdout);
      return 0;
    } else if (a == "--preset") {
      opt.preset = value();
    } else if (a == "-o" || a == "--output") {
      opt.out_path = value();
    } else if (a == "--layers") {
      opt.layers = parse_count(a, value());
    } else if (a == "--experts") {
      opt.experts = parse_count(a, value());
    } else if (a == "--expert-type") {
      opt.expert_type = parse_type(a, value());
    } else if (a == "--other-type") {
      opt.other_type = parse_type(a, value());
    } else if (a == "--tokenizer") {
      opt.tokenizer_json = value();
    } else if (a == "--chat-template") {
      opt.chat_template_file = value();
    } else if (a == "--ssm-in") {
      opt.legacy_ssm_in = true;
    } else if (a == "--seed") {
      const std::string v = value();
      size_t used = 0;
      try {
        opt.seed = std::stoull(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != v.size() || v.empty() || v[0] == '-') fail("--seed '", v, "' is not a non-negative integer");
    } else if (a == "--quiet") {
      quiet = true;
    } else {
      fail("unknown argument '", a, "' (see moeserve synth --help)");
    }
  }
  if (opt.preset.empty() || opt.out_path.empty()) {
    print_usage(stderr);
    return 2;
  }
  if (!quiet) opt.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  const synth::SynthResult r = synth::synthesize(opt);
  std::printf("%s: %s, %lld layers, %zu tensors, %.1f MiB of tensor data\n", opt.out_path.c_str(),
              convert::arch_name(r.shape.arch), (long long)r.shape.n_layer, r.n_tensors,
              double(r.data_bytes) / (1 << 20));
  return 0;
}

}  // namespace moeserve::cli
