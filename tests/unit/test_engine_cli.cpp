// The run, perplexity and bench commands, run as the built binary on a tiny model: greedy `run`
// prints the tokens the engine's own argmax picks; `perplexity` prints llama-perplexity's
// estimate (chunks of -c, second half scored, PPL +/- its standard error) for the engine's logits;
// `bench` emits well-formed md/json/csv; bad flags and files fail with one line naming them.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backend/gpu_devices.h"
#include "convert_test_util.h"
#include "model/model.h"
#include "ops_test_util.h"
#include "runtime/engine.h"
#include "tiny_models.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_gguf.h"

namespace moeserve::test {
namespace {

int32_t argmax(const float* logits, int64_t n) { return int32_t(std::max_element(logits, logits + n) - logits); }

struct CliResult {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Scratch files of this process (ctest runs test processes in parallel), removed at exit.
std::string scratch(const std::string& name) {
  static convert_test::TempDir dir;
  return dir.file(name);
}

CliResult moeserve(const std::string& args) {
  const std::string out = scratch("out.txt"), err = scratch("err.txt");
  const int rc = std::system((std::string("'") + MOESERVE_BINARY + "' " + args + " >'" + out + "' 2>'" + err + "'").c_str());
  return CliResult{WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, slurp(out), slurp(err)};
}

class EngineCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { path_ = new std::string(TinyModelWriter(TinyConfig{}).write("moeserve_cli_model.gguf")); }
  static void TearDownTestSuite() { delete path_; }
  static std::string* path_;

  // The engine in-process on the same file.
  struct InProcess {
    std::unique_ptr<Backend> backend = make_cpu_backend(1);
    std::unique_ptr<Model> model;
    explicit InProcess(const std::string& path)
        : model(load_model(std::make_shared<const gguf::GgufFile>(gguf::GgufFile::open(path)), *backend)) {}
  };
};
std::string* EngineCli::path_ = nullptr;

TEST_F(EngineCli, RunGreedyPrintsTheEnginesArgmaxTokens) {
  const CliResult r = moeserve("run -m '" + *path_ + "' --ids '[5, 6, 7]' -n 6 --temp 0 -t 1 --ignore-eos");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("prompt: 3 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("generation: 6 tokens"), std::string::npos) << r.err;

  InProcess p(*path_);
  EngineOptions o;
  o.n_ctx = 64;
  Engine e(*p.model, *p.backend, o);
  std::vector<BatchToken> batch{{5, 0, 0, false}, {6, 1, 0, false}, {7, 2, 0, true}};
  e.decode(batch);
  std::string expected;
  for (int i = 0; i < 6; ++i) {
    const int32_t next = argmax(e.logits(0), e.n_vocab());
    expected += (i ? " " : "") + std::to_string(next);
    const BatchToken t{next, e.seq_length(0), 0, true};
    e.decode(std::span<const BatchToken>(&t, 1));
  }
  EXPECT_EQ(r.out, expected + "\n");
  // The weights copied out of the mapping (llama.cpp's and llama-bench's spellings): same tokens.
  for (const char* flag : {"--no-mmap", "-mmp 0", "--mmap 1"}) {
    const CliResult c = moeserve("run -m '" + *path_ + "' --ids '[5, 6, 7]' -n 6 --temp 0 -t 1 --ignore-eos " + flag);
    ASSERT_EQ(c.status, 0) << flag << ": " << c.err;
    EXPECT_EQ(c.out, r.out) << flag;
  }
}

TEST_F(EngineCli, PerplexityFollowsLlamaPerplexity) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back((i * 29 + 3) % 96);
  const std::string ids_file = scratch("ids.txt");
  {
    std::ofstream f(ids_file);
    for (int32_t t : tokens) f << t << " ";
  }
  const CliResult r = moeserve("perplexity -m '" + *path_ + "' --ids-file '" + ids_file + "' -c 16 -b 8 -t 1");
  ASSERT_EQ(r.status, 0) << r.err;
  double ppl = 0, err = 0;
  const size_t at = r.out.find("Final estimate: PPL = ");
  ASSERT_NE(at, std::string::npos) << r.out;
  ASSERT_EQ(std::sscanf(r.out.c_str() + at, "Final estimate: PPL = %lf +/- %lf", &ppl, &err), 2) << r.out;
  EXPECT_NE(r.out.find("[1]"), std::string::npos);
  EXPECT_NE(r.out.find("[2]"), std::string::npos);
  EXPECT_EQ(r.out.find("[3]"), std::string::npos);  // 40 tokens = 2 whole chunks of 16

  // The method: each chunk from an empty context; tokens 8..14 predict 9..15; mean NLL; the
  // estimate's error is PPL times the standard error of the mean NLL.
  InProcess p(*path_);
  EngineOptions o;
  o.n_ctx = 16;
  Engine e(*p.model, *p.backend, o);
  std::vector<double> nll;
  for (int c = 0; c < 2; ++c) {
    e.seq_clear(0);
    std::vector<BatchToken> batch;
    for (int i = 0; i < 16; ++i) batch.push_back({tokens[size_t(16 * c + i)], i, 0, i >= 8 && i < 15});
    e.decode(batch);
    for (int i = 8; i < 15; ++i) {
      nll.push_back(-log_softmax(e.logits(i - 8), e.n_vocab())[size_t(tokens[size_t(16 * c + i + 1)])]);
    }
  }
  double mean = 0, mean2 = 0;
  for (double v : nll) mean += v / double(nll.size()), mean2 += v * v / double(nll.size());
  EXPECT_NEAR(ppl, std::exp(mean), 1e-3 * std::exp(mean));
  EXPECT_NEAR(err, std::sqrt((mean2 - mean * mean) / double(nll.size() - 1)) * std::exp(mean), 1e-3 * err + 1e-5);
}

// --kl-divergence-base saves llama-perplexity's file; --kl-divergence scores a run against it. The
// same model and settings give a divergence of ~0 and the same top tokens; a 4-bit KV cache gives a
// divergence above 0, and its mean equals the mean of the per-position divergences computed here
// from full logits of both runs.
TEST_F(EngineCli, KlDivergenceAgainstASavedBase) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 8 * 32; ++i) tokens.push_back((i * 37 + 11) % 96);
  const std::string ids_file = scratch("kld_ids.txt"), base = scratch("base.kld");
  {
    std::ofstream f(ids_file);
    for (int32_t t : tokens) f << t << " ";
  }
  const std::string m = "perplexity -m '" + *path_ + "' -t 1 ";
  const CliResult b = moeserve(m + "--ids-file '" + ids_file + "' -c 32 --kl-divergence-base '" + base + "'");
  ASSERT_EQ(b.status, 0) << b.err;
  // Header, 256 tokens, then per chunk 15 rows of (2 floats + 96 steps) 16-bit words.
  EXPECT_EQ(std::filesystem::file_size(base), 8u + 12u + 256u * 4u + 8u * 15u * (4u + 96u) * 2u);

  auto mean_kld = [](const std::string& out) {
    const size_t at = out.find("Mean    KLD:");
    return at == std::string::npos ? -1.0 : std::stod(out.substr(at + 12));
  };
  const CliResult same = moeserve(m + "--kl-divergence-base '" + base + "' --kl-divergence");
  ASSERT_EQ(same.status, 0) << same.err;
  EXPECT_LT(std::fabs(mean_kld(same.out)), 1e-4) << same.out;
  EXPECT_NE(same.out.find("Same top p: 100.000 ±"), std::string::npos) << same.out;
  EXPECT_NE(same.out.find("chunk             PPL"), std::string::npos);
  EXPECT_NE(same.out.find("\n   8    "), std::string::npos) << same.out;  // a row per chunk

  const std::string q4_args = m + "--kl-divergence-base '" + base + "' --kl-divergence -ctk q4_0 -ctv q4_0 -fa on";
  const CliResult q4 = moeserve(q4_args);
  ASSERT_EQ(q4.status, 0) << q4.err;
  EXPECT_EQ(moeserve(q4_args + " -t 3").out, q4.out);  // positions scored in parallel, summed in order
  InProcess p(*path_);
  auto chunk_logits = [&](GgmlType kv, FlashMode fa) {
    EngineOptions o;
    o.n_ctx = 32;
    o.type_k = o.type_v = kv;
    o.flash = fa;
    Engine e(*p.model, *p.backend, o);
    std::vector<std::vector<double>> rows;  // log-softmax of each scored position
    for (int c = 0; c < 8; ++c) {
      e.seq_clear(0);
      std::vector<BatchToken> batch;
      for (int i = 0; i < 32; ++i) batch.push_back({tokens[size_t(32 * c + i)], i, 0, i >= 16 && i < 31});
      e.decode(batch);
      for (int i = 0; i < 15; ++i) rows.push_back(log_softmax(e.logits(i), e.n_vocab()));
    }
    return rows;
  };
  const auto lp = chunk_logits(GgmlType::F16, FlashMode::automatic), lq = chunk_logits(GgmlType::Q4_0, FlashMode::on);
  double want = 0;
  for (size_t r = 0; r < lp.size(); ++r) {
    for (size_t v = 0; v < lp[r].size(); ++v) want += std::exp(lp[r][v]) * (lp[r][v] - lq[r][v]);
  }
  want /= double(lp.size());
  EXPECT_GT(want, 1e-6);
  EXPECT_NEAR(mean_kld(q4.out), want, 2e-4 + 0.05 * want) << q4.out;

  for (const auto& [args, needle] :
       {std::pair{m + "--kl-divergence", "--kl-divergence needs --kl-divergence-base FILE"},
        std::pair{m + "--kl-divergence --kl-divergence-base '" + ids_file + "'", "does not start with \"_logits_\""}}) {
    const CliResult r = moeserve(args);
    EXPECT_EQ(r.status, 1) << args;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  }
}

TEST_F(EngineCli, BenchFormats) {
  const CliResult j = moeserve("bench -m '" + *path_ + "' -p 8 -n 4 -r 2 -t 1 -o json");
  ASSERT_EQ(j.status, 0) << j.err;
  const nlohmann::json doc = nlohmann::json::parse(j.out);
  ASSERT_EQ(doc.size(), 2u);
  EXPECT_EQ(doc[0]["n_prompt"], 8);
  EXPECT_EQ(doc[1]["n_gen"], 4);
  for (const auto& row : doc) {
    EXPECT_EQ(row["samples_ts"].size(), 2u);
    EXPECT_GT(row["avg_ts"].get<double>(), 0.0);
    EXPECT_EQ(row["model_type"], "qwen3next 4L");
  }
  const CliResult md = moeserve("bench -m '" + *path_ + "' -p 8 -n 4 -r 1 -d 4 -t 1");
  ASSERT_EQ(md.status, 0) << md.err;
  EXPECT_NE(md.out.find("pp8 @ d4"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("tg4 @ d4"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("placement: CPU"), std::string::npos) << md.out;
  // Placement flags: a machine without a GPU says once that they are ignored (CI has none).
  const CliResult placed = moeserve("bench -m '" + *path_ + "' -p 8 -n 2 -r 1 -t 1 -ngl 2 --n-cpu-moe 1 -ot exps=CPU");
  ASSERT_EQ(placed.status, 0) << placed.err;
  if (list_gpu_devices().devices.empty()) {
    EXPECT_EQ(placed.err.find("-ngl/--n-cpu-moe/--cpu-moe/-ot ignored, running on the CPU"),
              placed.err.rfind("-ngl/--n-cpu-moe/--cpu-moe/-ot ignored, running on the CPU"));
    EXPECT_NE(placed.err.find("ignored, running on the CPU"), std::string::npos) << placed.err;
  }
  const CliResult csv = moeserve("bench -m '" + *path_ + "' -p 8 -n 0 -r 1 -t 1 -o csv");
  ASSERT_EQ(csv.status, 0) << csv.err;
  EXPECT_EQ(csv.out.rfind("model_type,model_size,", 0), 0u) << csv.out;
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 2);
}

TEST_F(EngineCli, TextPromptsUseTheModelsTokenizer) {
  // A model with a real vocabulary: the qwen3next HF fixture, converted.
  const std::string model = convert_test::converted("qwen3next");
  const std::string text = "<|im_start|>user\nWrite a function.<|im_end|>\n";
  tokenizer::EncodeOptions enc;
  enc.add_special = true;
  std::string ids;
  const tokenizer::Tokenizer tok(tokenizer::vocab_from_gguf(gguf::GgufFile::open(model)));
  for (tokenizer::TokenId id : tok.encode(text, enc)) ids += (ids.empty() ? "" : " ") + std::to_string(id);
  const CliResult by_text = moeserve("run -m '" + model + "' -p '" + text + "' -n 5 --temp 0 -t 1 --print-ids --ignore-eos");
  const CliResult by_ids = moeserve("run -m '" + model + "' --ids '" + ids + "' -n 5 --temp 0 -t 1 --ignore-eos");
  ASSERT_EQ(by_text.status, 0) << by_text.err;
  ASSERT_EQ(by_ids.status, 0) << by_ids.err;
  EXPECT_EQ(by_text.out, by_ids.out);
  EXPECT_NE(by_text.err.find(str_cat("prompt: ", tok.encode(text, enc).size(), " tokens")), std::string::npos);
  // Text out: the same tokens through the streaming decoder (random models emit stray UTF-8
  // bytes, which it prints as U+FFFD).
  const CliResult as_text = moeserve("run -m '" + model + "' -p '" + text + "' -n 5 --temp 0 -t 1 --ignore-eos");
  ASSERT_EQ(as_text.status, 0) << as_text.err;
  std::vector<tokenizer::TokenId> generated;
  std::istringstream in(by_ids.out);
  for (int id; in >> id;) generated.push_back(id);
  tokenizer::StreamDecoder stream(tok);
  std::string expected;
  for (tokenizer::TokenId id : generated) expected += stream.push(id);
  EXPECT_EQ(as_text.out, expected + stream.finish() + "\n");

  // perplexity -f tokenizes the file (special-token texts stay text) like --ids-file of those ids.
  std::string body;
  for (int i = 0; i < 12; ++i) body += "def f(x):\n    return x * " + std::to_string(i) + "\n";
  {
    std::ofstream(scratch("text.txt")) << body;
    tokenizer::EncodeOptions ppl_enc;
    ppl_enc.add_special = true;
    ppl_enc.parse_special = false;
    std::ofstream ids_out(scratch("text_ids.txt"));
    for (tokenizer::TokenId id : tok.encode(body, ppl_enc)) ids_out << id << " ";
  }
  const CliResult f = moeserve("perplexity -m '" + model + "' -f '" + scratch("text.txt") + "' -c 32 -t 1");
  const CliResult i = moeserve("perplexity -m '" + model + "' --ids-file '" + scratch("text_ids.txt") + "' -c 32 -t 1");
  ASSERT_EQ(f.status, 0) << f.err;
  ASSERT_EQ(i.status, 0) << i.err;
  EXPECT_EQ(f.out, i.out);
  EXPECT_NE(f.out.find("Final estimate: PPL = "), std::string::npos);
}

TEST_F(EngineCli, ErrorsNameTheProblem) {
  struct Case {
    std::string args, needle;
  };
  for (const Case& c : {Case{"run --ids 1", "missing -m"}, Case{"run -m '" + *path_ + "'", "missing prompt"},
                        Case{"run -m /nonexistent.gguf --ids 1", "/nonexistent.gguf"},
                        Case{"run -m '" + *path_ + "' --ids 1 -ctk q9_9", "option -ctk: 'q9_9'"},
                        Case{"run -m '" + *path_ + "' --ids 1 -fa maybe", "option -fa"},
                        Case{"run -m '" + *path_ + "' --ids 100000", "outside the vocabulary"},
                        Case{"bench -m '" + *path_ + "' -o xml", "option -o"},
                        Case{"perplexity -m '" + *path_ + "' --ids '1 2 3' -c 16", "need at least 16 tokens"},
                        Case{"run -m '" + *path_ + "' --ids 1 -ot exps=GPU0", "unknown device 'GPU0'"},
                        Case{"run -m '" + *path_ + "' --ids 1 -ot exps", "option -ot: 'exps' must be REGEX=DEVICE"},
                        Case{"run -m '" + *path_ + "' --ids 1 -ngl many", "option -ngl: 'many'"},
                        Case{"run -m '" + *path_ + "' --ids 1 -mmp 2", "option -mmp: 2 is outside 0..1"},
                        Case{"run -m '" + *path_ + "' --ids 1 --bogus", "unknown option '--bogus'"}}) {
    const CliResult r = moeserve(c.args);
    EXPECT_EQ(r.status, 1) << c.args;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << ": " << r.err;
  }
}

}  // namespace
}  // namespace moeserve::test
