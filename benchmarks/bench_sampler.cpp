// Cost of picking one token, per sampling configuration, on a Qwen3-sized vocabulary (151,936
// logits), and throughput of the reply parser on a tool-calling reply fed in token-sized chunks.
// Logits are synthetic: "peaked" (one clear favourite, a few plausible tokens, a long tail: the
// usual decode step) and "flat" (normal with sd 3: the worst case for top-p without top-k).
//
//   build/benchmarks/bench_sampler [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "chat/output_parser.h"
#include "runtime/sampler.h"

namespace {

constexpr int32_t kVocab = 151936;

const std::vector<float>& logits(bool peaked) {
  static const auto make = [](bool p) {
    std::mt19937 rng(1);
    std::normal_distribution<float> tail(0.0f, p ? 1.5f : 3.0f);
    std::vector<float> l(kVocab);
    for (float& x : l) x = tail(rng);
    if (p) {
      l[1234] = 14.0f;
      for (int32_t t : {17, 99, 4242, 50000}) l[size_t(t)] = 11.0f;
    }
    return l;
  };
  static const std::vector<float> peaked_logits = make(true);
  static const std::vector<float> flat_logits = make(false);
  return peaked ? peaked_logits : flat_logits;
}

moeserve::SamplingParams config(int which) {
  moeserve::SamplingParams p;  // llama.cpp defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05
  p.seed = 7;
  switch (which) {
    case 0: p.temperature = 0.0f; break;                                 // greedy
    case 1: break;                                                       // defaults
    case 2: p.temperature = 1.0f; p.min_p = 0.0f; break;                 // Qwen3-Coder-Next card
    case 3: p.top_k = 0; break;                                          // no top-k
    case 4: p.n_probs = 5; p.repeat_penalty = 1.1f; p.presence_penalty = 0.5f; break;  // logprobs
  }
  return p;
}

void BM_Sample(benchmark::State& state) {
  const bool peaked = state.range(1) != 0;
  moeserve::Sampler sampler(config(int(state.range(0))), kVocab);
  for (int32_t t = 0; t < 64; ++t) sampler.accept(t * 97);
  const std::vector<float>& l = logits(peaked);
  for (auto _ : state) benchmark::DoNotOptimize(sampler.sample(l).token);
  static const char* names[] = {"greedy", "defaults", "coder-card", "no-top-k", "logprobs+penalties"};
  state.SetLabel(std::string(names[state.range(0)]) + (peaked ? ", peaked" : ", flat"));
}
BENCHMARK(BM_Sample)->ArgsProduct({{0, 1, 2, 3, 4}, {1, 0}})->Unit(benchmark::kMicrosecond);

// A Qwen3-Coder reply: a sentence, then a write_file call whose content is ~40 KB of code.
const std::string& reply() {
  static const std::string text = [] {
    std::string code;
    for (int i = 0; code.size() < 40000; ++i)
      code += "    if (value_" + std::to_string(i) + " < limit) { total += value_" + std::to_string(i) + "; }\n";
    return "I'll write the file now.\n\n<tool_call>\n<function=write_file>\n<parameter=path>\nsrc/sum.cpp\n"
           "</parameter>\n<parameter=content>\n" + code + "</parameter>\n</function>\n</tool_call>";
  }();
  return text;
}

void BM_ParseReply(benchmark::State& state) {
  const size_t chunk = size_t(state.range(0));
  const std::string& text = reply();
  const nlohmann::json tools = nlohmann::json::parse(R"([{"type": "function", "function": {"name": "write_file",
      "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}}}])");
  for (auto _ : state) {
    moeserve::chat::OutputParserOptions o;
    o.tool_format = moeserve::chat::ToolCallFormat::qwen3_coder_xml;
    o.tools = moeserve::chat::ToolSet::from_openai(tools);
    moeserve::chat::OutputParser parser(std::move(o));
    moeserve::chat::EventList events;
    for (size_t i = 0; i < text.size(); i += chunk) parser.feed(std::string_view(text).substr(i, chunk), events);
    parser.finish(events);
    benchmark::DoNotOptimize(events.size());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_ParseReply)->Arg(4)->Arg(64)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
