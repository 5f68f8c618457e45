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

TEST(ServeOptions, ErrorsNameTheFlag) {
  EXPECT_EQ(error_of("--frobnicate"), "unknown flag '--frobnicate' (see moeserve serve --help)");
  EXPECT_EQ(error_of("--port"), "flag --port needs a value");
  EXPECT_EQ(error_of("--port 99999"), "flag --port: 99999 is out of range [0, 65535]");
  EXPECT_EQ(error_of("-c lots"), "flag -c: 'lots' is not an integer");
  EXPECT_EQ(error_of("-ctk q5_1"), "flag -ctk: cache type 'q5_1' is not supported (f16, q8_0, q4_0)");
  EXPECT_EQ(error_of("--flash-attn=maybe"), "flag --flash-attn: 'maybe' must be on, off or auto");
  EXPECT_EQ(error_of("-ot exps"), "flag -ot: 'exps' must be REGEX=DEVICE (e.g. exps=CPU)");
}

}  // namespace
}  // namespace moeserve::server
