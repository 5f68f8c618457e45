// Perplexity with llama-perplexity's method, so numbers compare: the tokens are cut into chunks of
// n_ctx; each chunk starts from an empty context (its first token replaced by BOS when the
// vocabulary adds one); only the second half of each chunk is scored, so every scored token has
// at least n_ctx/2 tokens of context. PPL = exp(mean NLL); its uncertainty is the standard error
// of the mean NLL, sqrt((E[nll^2] - E[nll]^2) / (count - 1)), carried to PPL by multiplying by PPL.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "engine_args.h"

namespace moeserve::cli {
namespace {

constexpr const char* kUsage =
    "usage: moeserve perplexity -m MODEL.gguf (-f FILE | --ids LIST | --ids-file FILE) [-c N] [options]\n\n"
    "Scores the model on a text the way llama-perplexity does: chunks of -c tokens (default 512),\n"
    "the second half of each scored; prints the running PPL per chunk and\n"
    "`Final estimate: PPL = X +/- Y`.\n\n"
    "  -f, --file FILE        text, tokenized with the model's vocabulary (BOS as it asks)\n"
    "  --ids LIST             token ids: \"[1, 2, 3]\" or \"1 2 3\"\n"
    "  --ids-file FILE        token ids from a file (same syntax)\n"
    "  --chunks N             score at most N chunks\n";

// -log softmax(logits)[target], in double.
double nll_of(const float* logits, int64_t n_vocab, int32_t target) {
  float mx = logits[0];
  for (int64_t i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - mx));
  return std::log(sum) - double(logits[target] - mx);
}

}  // namespace

int cmd_perplexity(int argc, char** argv) {
  EngineArgs args;
  args.n_ctx = 512;
  std::vector<int32_t> tokens;
  int64_t max_chunks = -1;
  std::string text_file;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s%s", kUsage, EngineArgs::help());
      return 0;
    }
    if (args.parse(argc, argv, i)) continue;
    if (a == "-f" || a == "--file") {
      text_file = flag_value(argc, argv, i);
    } else if (a == "--ids") {
      tokens = parse_ids(a, flag_value(argc, argv, i));
    } else if (a == "--ids-file") {
      const std::string path(flag_value(argc, argv, i));
      std::ifstream in(path);
      if (!in) fail("cannot read ", path);
      std::stringstream text;
      text << in.rdbuf();
      tokens = parse_ids(a, text.str());
    } else if (a == "--chunks") {
      max_chunks = parse_int(a, flag_value(argc, argv, i), 1, INT32_MAX);
    } else {
      fail("unknown option '", a, "' (see moeserve perplexity --help)");
    }
  }
  if (tokens.empty() && text_file.empty()) fail("missing input: -f FILE, --ids LIST or --ids-file FILE");
  if (!tokens.empty() && !text_file.empty()) fail("give the input once: -f FILE or token ids, not both");
  if (args.n_ctx < 4) fail("option -c: perplexity needs a context of at least 4 tokens");

  LoadedModel m = load_model(args);
  if (!text_file.empty()) {
    std::ifstream in(text_file, std::ios::binary);
    if (!in) fail("cannot read ", text_file);
    std::stringstream text;
    text << in.rdbuf();
    const tokenizer::Tokenizer tok = model_tokenizer(*m.file);
    tokenizer::EncodeOptions enc;
    enc.add_special = true;     // as llama-perplexity: BOS when the vocabulary adds one,
    enc.parse_special = false;  // and special-token texts in the file stay plain text
    for (tokenizer::TokenId id : tok.encode(text.str(), enc)) tokens.push_back(int32_t(id));
    std::fprintf(stderr, "perplexity: %s: %zu tokens\n", text_file.c_str(), tokens.size());
  }
  EngineOptions options = args.engine_options(m.model->hparams());
  options.n_batch = std::min(args.n_batch, args.n_ctx);
  const std::unique_ptr<Engine> engine_owner = make_engine(m, options);
  Engine& engine = *engine_owner;
  const int64_t n_ctx = engine.n_ctx(), n_vocab = engine.n_vocab();
  int64_t n_chunk = int64_t(tokens.size()) / n_ctx;
  if (n_chunk == 0) fail("need at least ", n_ctx, " tokens for one chunk of -c ", n_ctx, ", got ", tokens.size());
  if (max_chunks > 0) n_chunk = std::min(n_chunk, max_chunks);
  for (int32_t t : tokens) {
    if (t >= n_vocab) fail("token id ", t, " is outside the vocabulary (", n_vocab, ")");
  }
  const bool add_bos = m.file->get_bool("tokenizer.ggml.add_bos_token").value_or(false);
  const std::optional<uint64_t> bos = m.file->get_uint("tokenizer.ggml.bos_token_id");
  std::fprintf(stderr, "perplexity: %lld chunks of %lld tokens, batch %lld, %s\n", (long long)n_chunk,
               (long long)n_ctx, (long long)engine.n_batch(), m.backend->name().c_str());

  const int64_t first = n_ctx / 2;
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  std::vector<BatchToken> batch;
  const double t0 = now_seconds();
  for (int64_t c = 0; c < n_chunk; ++c) {
    engine.seq_clear(0);
    const int64_t start = c * n_ctx;
    for (int64_t at = 0; at < n_ctx;) {
      batch.clear();
      for (; at < n_ctx && int64_t(batch.size()) < engine.n_batch(); ++at) {
        int32_t token = tokens[size_t(start + at)];
        if (at == 0 && add_bos && bos) token = int32_t(*bos);
        batch.push_back({token, int32_t(at), 0, at >= first && at < n_ctx - 1});
      }
      engine.decode(batch);
      int64_t out = 0;
      for (const BatchToken& t : batch) {
        if (!t.logits) continue;
        const double v = nll_of(engine.logits(out++), n_vocab, tokens[size_t(start + t.pos + 1)]);
        nll += v;
        nll2 += v * v;
        ++count;
      }
    }
    if (c == 0) std::fprintf(stderr, "perplexity: %.2f s per chunk\n", now_seconds() - t0);
    std::printf("[%lld]%.4f,", (long long)(c + 1), std::exp(nll / double(count)));
    std::fflush(stdout);
  }
  std::printf("\n");
  const double mean = nll / double(count), mean2 = nll2 / double(count);
  const double ppl = std::exp(mean);
  const double var = mean2 - mean * mean;
  if (count > 1 && var > 0) {
    std::printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, std::sqrt(var / double(count - 1)) * ppl);
  } else {
    std::printf("Final estimate: PPL = %.4f (no uncertainty: %lld scored tokens)\n", ppl, (long long)count);
  }
  return 0;
}

}  // namespace moeserve::cli
