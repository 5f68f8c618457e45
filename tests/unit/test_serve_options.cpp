// llama-server command lines users already have must parse unchanged.
#include <gtest/gtest.h>

#include <sstream>

#include "core/error.h"
#include "server/serve_options.h"

namespace moeserve::server {
namespace {

ServeOptions parse(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words{"serve"};
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  return *parse_serve_options(int(argv.size()), argv.data());
}

std::string error_of(const std::string& line) {
  try {
    parse(line);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(ServeOptions, TheIssuesCommandLines) {
  const ServeOptions a = parse(
      "-m Qwen3-Coder-Next-abliterated-IQ2_XS.gguf --port 8085 -c 168000 -ctk q8_0 -ctv q8_0 "
      "--flash-attn on --jinja --metrics --host 0.0.0.0");
  EXPECT_EQ(a.model_path, "Qwen3-Coder-Next-abliterated-IQ2_XS.gguf");
  EXPECT_EQ(a.port, 8085);
  EXPECT_EQ(a.ctx_size, 168000);
  EXPECT_EQ(a.cache_type_k, GgmlType::Q8_0);
  EXPECT_EQ(a.cache_type_v, GgmlType::Q8_0);
  EXPECT_EQ(a.flash_attn, "on");
  EXPECT_TRUE(a.metrics);
  EXPECT_EQ(a.host, "0.0.0.0");

  const ServeOptions b = parse(
      "-m Qwen3-Coder-Next-UD-IQ2_XXS.gguf --port 8084 -c 200000 -ngl 42 --n-cpu-moe 10 -b 1024 --ub 1024 "
      "--cache-type-k q4_0 --cache-type-v q4_0 --flash-attn on --cont-batching --jinja -t 16");
  EXPECT_EQ(*b.n_gpu_layers, 42);
  EXPECT_EQ(*b.n_cpu_moe, 10);
  EXPECT_EQ(b.batch_size, 1024);
  EXPECT_EQ(b.ubatch_size, 1024);
  EXPECT_EQ(b.cache_type_k, GgmlType::Q4_0);
  EXPECT_EQ(b.threads, 16);
}

TEST(ServeOptions, OtherForms) {
  const ServeOptions o = parse("-fa -np 4 -ot blk\\.1[0-9]\\.ffn_.*_exps=CPU,exps=CUDA0 --alias a,b --ctx-size=4096 --cpu-moe");
  EXPECT_EQ(o.flash_attn, "on");  // bare -fa, as older llama-server accepted
  EXPECT_EQ(o.parallel, 4);
  ASSERT_EQ(o.override_tensors.size(), 2u);
  EXPECT_EQ(o.override_tensors[0].first, "blk\\.1[0-9]\\.ffn_.*_exps");
  EXPECT_EQ(o.override_tensors[1].second, "CUDA0");
  EXPECT_EQ(o.aliases, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(o.ctx_size, 4096);
  EXPECT_TRUE(o.cpu_moe);
}

// A command line of the kind published for Qwen3-Coder-Next with a recent llama-server: the flags
// that act here take effect, those that change nothing are accepted with one notice each.
TEST(ServeOptions, PublishedLlamaServerLine) {
  const ServeOptions o = parse(
      "--model Qwen3-Coder-Next-UD-Q4_K_XL.gguf --alias unsloth/Qwen3-Coder-Next --threads -1 --fit on --seed 3407 "
      "--temp 1.0 --top-p 0.95 --min-p 0.01 --top-k 40 --port 8001 --jinja --ctx-size 16384 --presence-penalty 1.5 "
      "--frequency-penalty 0.25 --repeat-last-n 128 --typical 0.9 --no-context-shift --kv-unified --cache-reuse 256 "
      "--prio 3 --mlock -dev CUDA0 --reasoning-format auto --reasoning-budget -1 --log-colors --fit --port 8002");
  EXPECT_EQ(o.threads, 0);  // -1: every core
  EXPECT_EQ(o.seed, 3407);
  EXPECT_DOUBLE_EQ(o.presence_penalty, 1.5);
  EXPECT_DOUBLE_EQ(o.frequency_penalty, 0.25);
  EXPECT_EQ(o.repeat_last_n, 128);
  EXPECT_DOUBLE_EQ(o.typical_p, 0.9);
  EXPECT_EQ(o.port, 8002);  // the bare --fit and --log-colors took no value
  EXPECT_FALSE(o.n_gpu_layers.has_value());
  EXPECT_TRUE(o.kv_unified);
  const std::vector<std::string> flags{"--fit on", "--no-context-shift", "--cache-reuse 256", "--prio 3",
                                       "--mlock", "--log-colors", "--fit:"};
  ASSERT_EQ(o.notices.size(), flags.size());
  for (size_t i = 0; i < flags.size(); ++i) {
    EXPECT_EQ(o.notices[i].rfind(flags[i], 0), 0u) << o.notices[i];
    EXPECT_NE(o.notices[i].find(": no effect here ("), std::string::npos) << o.notices[i];
  }
  EXPECT_TRUE(o.split_reasoning);
  EXPECT_FALSE(parse("--reasoning-format none").split_reasoning);
  EXPECT_FALSE(o.thinking_off);
  EXPECT_TRUE(parse("--reasoning-budget 0").thinking_off);
  EXPECT_EQ(parse("-dev none").n_gpu_layers, 0);
  EXPECT_EQ(parse("--fit=off").notices.at(0).rfind("--fit off: no effect here", 0), 0u);
}

TEST(ServeOptions, ErrorsNameTheFlag) {
  EXPECT_EQ(error_of("--frobnicate"), "unknown flag '--frobnicate' (see moeserve serve --help)");
  EXPECT_EQ(error_of("--port"), "flag --port needs a value");
  EXPECT_EQ(error_of("--port 99999"), "flag --port: 99999 is out of range [0, 65535]");
  EXPECT_EQ(error_of("-c lots"), "flag -c: 'lots' is not an integer");
  EXPECT_EQ(error_of("-ctk q5_1"), "flag -ctk: cache type 'q5_1' is not supported (f16, q8_0, q4_0)");
  EXPECT_EQ(error_of("--flash-attn=maybe"), "flag --flash-attn: 'maybe' must be on, off or auto");
  EXPECT_EQ(error_of("-ot exps"), "flag -ot: 'exps' must be REGEX=DEVICE (e.g. exps=CPU)");
  // llama-server flags asking for what moeserve does not do: the flag and why.
  EXPECT_EQ(error_of("-hf unsloth/Qwen3-Coder-Next-GGUF:Q4_K_XL"), "flag -hf: models are not downloaded: pass the file with -m");
  EXPECT_EQ(error_of("--mmproj mmproj.gguf"), "flag --mmproj: images and audio are not supported");
  EXPECT_EQ(error_of("--rope-scaling yarn"),
            "flag --rope-scaling: RoPE overrides are not supported: the model's own RoPE parameters are used");
  EXPECT_EQ(error_of("-md draft.gguf"), "flag -md: speculative decoding is not supported");
  EXPECT_EQ(error_of("--embeddings"), "flag --embeddings: embeddings and reranking are not served");
  EXPECT_EQ(error_of("--reasoning-format raw"),
            "flag --reasoning-format: 'raw' must be auto, deepseek, deepseek-legacy or none");
  EXPECT_EQ(error_of("--reasoning-budget 512"), "flag --reasoning-budget: '512' must be -1 (no limit) or 0 (no thinking)");
  EXPECT_EQ(error_of("-dev CUDA1"), "flag -dev: 'CUDA1' must be CUDA0 or none");
  EXPECT_EQ(error_of("--prio"), "flag --prio needs a value");
}

}  // namespace
}  // namespace moeserve::server
