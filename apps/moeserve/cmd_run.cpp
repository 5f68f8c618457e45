#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "engine_args.h"
#include "runtime/sampler.h"

namespace moeserve::cli {
namespace {

constexpr const char* kUsage =
    "usage: moeserve run -m MODEL.gguf (-p PROMPT | --ids \"[ID, ...]\") [-n N] [options]\n\n"
    "Runs the prompt through the model, then generates N tokens (default 128), printing them as they\n"
    "come: as text for -p, as ids for --ids; stops early at an end-of-generation token unless\n"
    "--ignore-eos. Prompt and generation speeds go to stderr.\n\n"
    "  -p, --prompt TEXT      prompt text, tokenized with the model's vocabulary (BOS as it asks;\n"
    "                         special tokens such as <|im_start|> recognised)\n"
    "  --ids LIST             prompt token ids: \"[1, 2, 3]\" or \"1 2 3\"\n"
    "  --print-ids            print generated token ids even for a -p prompt\n"
    "  -n, --n-predict N      tokens to generate (default 128)\n"
    "  --temp T               sampling temperature (default 0.8; 0 = greedy)\n"
    "  --top-k K              sample among the K most likely tokens (default 40; 0 = all)\n"
    "  --top-p P              ... and the smallest set reaching probability P (default 0.95)\n"
    "  -s, --seed S           sampler seed (default 0)\n"
    "  --ignore-eos           keep generating past end-of-generation tokens\n";

}  // namespace

int cmd_run(int argc, char** argv) {
  EngineArgs args;
  std::vector<int32_t> prompt;
  int64_t n_predict = 128;
  SamplingParams sp;
  sp.seed = 0;
  bool ignore_eos = false, print_ids = false;
  std::optional<std::string> text;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s%s", kUsage, EngineArgs::help());
      return 0;
    }
    if (args.parse(argc, argv, i)) continue;
    if (a == "--ids") {
      prompt = parse_ids(a, flag_value(argc, argv, i));
    } else if (a == "-p" || a == "--prompt") {
      text = std::string(flag_value(argc, argv, i));
    } else if (a == "--print-ids") {
      print_ids = true;
    } else if (a == "-n" || a == "--n-predict") {
      n_predict = parse_int(a, flag_value(argc, argv, i), 0, int64_t(1) << 24);
    } else if (a == "--temp") {
      sp.temperature = float(parse_real(a, flag_value(argc, argv, i)));
    } else if (a == "--top-k") {
      sp.top_k = int(parse_int(a, flag_value(argc, argv, i), 0, 1 << 30));
    } else if (a == "--top-p") {
      sp.top_p = float(parse_real(a, flag_value(argc, argv, i)));
    } else if (a == "-s" || a == "--seed") {
      sp.seed = uint64_t(parse_int(a, flag_value(argc, argv, i), 0, INT64_MAX));
    } else if (a == "--ignore-eos") {
      ignore_eos = true;
    } else {
      fail("unknown option '", a, "' (see moeserve run --help)");
    }
  }
  if (prompt.empty() && !text) fail("missing prompt: -p TEXT or --ids \"[ID, ...]\"");
  if (!prompt.empty() && text) fail("give the prompt once: -p TEXT or --ids, not both");

  LoadedModel m = load_model(args);
  std::optional<tokenizer::Tokenizer> tok;
  if (text) {
    tok.emplace(model_tokenizer(*m.file));
    tokenizer::EncodeOptions enc;
    enc.add_special = true;
    for (tokenizer::TokenId id : tok->encode(*text, enc)) prompt.push_back(int32_t(id));
    if (prompt.empty()) fail("the prompt tokenizes to nothing");
  }
  print_ids = print_ids || !tok;
  const HParams& hp = m.model->hparams();
  EngineOptions options = args.engine_options(hp);
  const std::unique_ptr<Engine> engine_owner = make_engine(m, options);
  Engine& engine = *engine_owner;
  std::fprintf(stderr, "model: %s, %d layers, %s; loaded in %.2f s\nplacement: %s\nbackend: %s\nmemory: %s\n",
               hp.arch.c_str(), int(hp.n_layer), format_bytes(m.model->placement().total_bytes()).c_str(), m.load_seconds,
               m.model->placement().device_summary().c_str(), m.backend->name().c_str(), engine.memory_summary().c_str());
  if (int64_t(prompt.size()) + n_predict > engine.n_ctx()) {
    fail("prompt (", prompt.size(), " tokens) + ", n_predict, " generated tokens exceed the context size ", engine.n_ctx());
  }
  std::vector<int32_t> stop;
  if (!ignore_eos && tok) {
    for (tokenizer::TokenId id : tok->end_of_generation_ids()) stop.push_back(int32_t(id));
  } else if (!ignore_eos) {
    for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
      if (const std::optional<uint64_t> id = m.file->get_uint(key)) stop.push_back(int32_t(*id));
    }
  }
  std::optional<tokenizer::StreamDecoder> stream;
  if (tok) stream.emplace(*tok);

  // Prompt, in steps of at most n_batch tokens; only its last token's logits are needed.
  const double t_prompt = now_seconds();
  std::vector<BatchToken> batch;
  for (size_t at = 0; at < prompt.size();) {
    batch.clear();
    for (; at < prompt.size() && int64_t(batch.size()) < engine.n_batch(); ++at) {
      batch.push_back({prompt[at], int32_t(at), 0, at + 1 == prompt.size()});
    }
    engine.decode(batch);
  }
  const double prompt_s = now_seconds() - t_prompt;

  Sampler sampler(sp, int32_t(engine.n_vocab()));
  const double t_gen = now_seconds();
  int64_t generated = 0, steps = 0;
  int32_t pos = int32_t(prompt.size());
  while (generated < n_predict) {
    const int32_t next = sampler.sample({engine.logits(0), size_t(engine.n_vocab())}).token;
    ++generated;
    const bool end = std::find(stop.begin(), stop.end(), next) != stop.end();
    if (print_ids) {
      std::printf("%s%d", generated > 1 ? " " : "", next);
    } else if (!end) {
      std::fputs(stream->push(next).c_str(), stdout);
    }
    std::fflush(stdout);
    if (generated == n_predict || end) break;
    const BatchToken t{next, pos++, 0, true};
    engine.decode(std::span<const BatchToken>(&t, 1));
    ++steps;
  }
  const double gen_s = now_seconds() - t_gen;
  if (!print_ids) std::fputs(stream->finish().c_str(), stdout);
  std::printf("\n");
  std::fprintf(stderr, "prompt: %zu tokens in %.3f s (%.2f tok/s)\ngeneration: %lld tokens in %.3f s (%.2f tok/s)\n",
               prompt.size(), prompt_s, double(prompt.size()) / prompt_s, (long long)generated, gen_s,
               steps > 0 ? double(steps) / gen_s : 0.0);
  return 0;
}

}  // namespace moeserve::cli
