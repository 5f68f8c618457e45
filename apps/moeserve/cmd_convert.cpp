#include <cstdio>
#include <cstring>
#include <string>

#include "commands.h"
#include "core/error.h"
#include "core/ggml_type.h"
#include "model/convert/converter.h"

namespace moeserve::cli {

namespace {

constexpr const char* kUsage =
    "usage: moeserve convert HF_DIR -o OUT.gguf [--type f32|f16|bf16|q8_0] [--ssm-in]\n"
    "                        [--tokenizer-pre NAME] [--quiet]\n"
    "\n"
    "Converts a Hugging Face checkpoint (config.json, model.safetensors or sharded safetensors with\n"
    "model.safetensors.index.json, tokenizer.json, tokenizer_config.json) of a llama, qwen3, qwen3moe\n"
    "or qwen3next model into one GGUF file, as llama.cpp's converter lays it out.\n"
    "\n"
    "  -o, --output PATH     output GGUF file (required)\n"
    "  --type T              type of the weight matrices (default f16); 1-D tensors, norms, the\n"
    "                        MoE router and ssm_conv1d stay f32\n"
    "  --ssm-in              qwen3next: write the older single ssm_in tensor instead of\n"
    "                        attn_qkv + attn_gate\n"
    "  --tokenizer-pre NAME  tokenizer.ggml.pre to write when the pre-tokenizer is not recognized\n"
    "  --quiet               no per-tensor progress\n";

}  // namespace

int cmd_convert(int argc, char** argv) {
  convert::ConvertOptions opt;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(a, " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "-o" || a == "--output") {
      opt.out_path = value();
    } else if (a == "--type" || a == "--outtype") {
      const std::string t = value();
      const auto type = type_from_name(t);
      if (!type || !convert::is_convert_type(*type)) fail("--type '", t, "' is not one of f32, f16, bf16, q8_0");
      opt.type = *type;
    } else if (a == "--ssm-in") {
      opt.legacy_ssm_in = true;
    } else if (a == "--tokenizer-pre") {
      opt.tokenizer_pre = value();
    } else if (a == "--quiet") {
      quiet = true;
    } else if (!a.empty() && a[0] == '-') {
      fail("unknown option '", a, "' (see moeserve convert --help)");
    } else if (opt.hf_dir.empty()) {
      opt.hf_dir = a;
    } else {
      fail("unexpected argument '", a, "' (one HF_DIR only)");
    }
  }
  if (opt.hf_dir.empty() || opt.out_path.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (!quiet) opt.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  const convert::ConvertResult r = convert::convert_hf_to_gguf(opt);
  std::printf("%s: %s, %lld layers, %zu tensors, %.1f MiB of tensor data\n", opt.out_path.c_str(),
              convert::arch_name(r.shape.arch), (long long)r.shape.n_layer, r.n_tensors,
              double(r.data_bytes) / (1 << 20));
  return 0;
}

}  // namespace moeserve::cli
