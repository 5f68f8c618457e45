// Perplexity with llama-perplexity's method, so numbers compare: the tokens are cut into chunks of
// n_ctx; each chunk starts from an empty context (its first token replaced by BOS when the
// vocabulary adds one); only the second half of each chunk is scored, so every scored token has
// at least n_ctx/2 tokens of context. PPL = exp(mean NLL); its uncertainty is the standard error
// of the mean NLL, sqrt((E[nll^2] - E[nll]^2) / (count - 1)), carried to PPL by multiplying by PPL.
// --kl-divergence-base FILE saves the scored positions' log-probabilities (llama-perplexity's file);
// with --kl-divergence the model is scored against such a file instead (runtime/kl_divergence.h).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "engine_args.h"
#include "runtime/kl_divergence.h"

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
    "  --chunks N             score at most N chunks\n"
    "  --kl-divergence-base FILE  save the scored log-probabilities to FILE (llama-perplexity's format)\n"
    "  --kl-divergence        score against the base FILE instead: KL divergence, probability and top-token\n"
    "                         statistics (the tokens and -c come from FILE; no -f)\n";

// -log softmax(logits)[target], in double.
double nll_of(const float* logits, int64_t n_vocab, int32_t target) {
  float mx = logits[0];
  for (int64_t i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - mx));
  return std::log(sum) - double(logits[target] - mx);
}

// The BOS token that replaces each chunk's first token, when the vocabulary adds one.
std::optional<int32_t> chunk_bos(const gguf::GgufFile& file) {
  const std::optional<uint64_t> bos = file.get_uint("tokenizer.ggml.bos_token_id");
  if (!file.get_bool("tokenizer.ggml.add_bos_token").value_or(false) || !bos) return std::nullopt;
  return int32_t(*bos);
}

// f(i) for i in [0, n) on up to `threads` threads, each a contiguous range (f must not throw).
template <typename F>
void parallel_for(int64_t n, int threads, F f) {
  const int64_t nt = std::min<int64_t>(n, std::max(1, threads));
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < nt; ++t) {
    pool.emplace_back([=] {
      for (int64_t i = n * t / nt; i < n * (t + 1) / nt; ++i) f(i);
    });
  }
  for (int64_t i = 0; i < (nt > 0 ? n / nt : 0); ++i) f(i);
  for (std::thread& t : pool) t.join();
}

// Runs chunk c of `tokens` (n_ctx tokens each) from an empty sequence; after each engine step,
// score(i0, logits, next) gets that step's scored positions i0, i0 + 1, ... (of 0 .. n_ctx - 2 -
// n_ctx / 2): their logits (valid until the next step) and the tokens that followed them.
template <typename Score>
void run_chunk(Engine& engine, const std::vector<int32_t>& tokens, int64_t n_ctx, int64_t c, std::optional<int32_t> bos,
               Score score) {
  engine.seq_clear(0);
  const int64_t start = c * n_ctx, first = n_ctx / 2;
  std::vector<BatchToken> batch;
  std::vector<const float*> logits;
  std::vector<int32_t> next;
  int64_t scored = 0;
  for (int64_t at = 0; at < n_ctx;) {
    batch.clear();
    for (; at < n_ctx && int64_t(batch.size()) < engine.n_batch(); ++at) {
      const int32_t token = at == 0 && bos ? *bos : tokens[size_t(start + at)];
      batch.push_back({token, int32_t(at), 0, at >= first && at < n_ctx - 1});
    }
    engine.decode(batch);
    logits.clear();
    next.clear();
    int64_t out = 0;
    for (const BatchToken& t : batch) {
      if (!t.logits) continue;
      logits.push_back(engine.logits(out++));
      next.push_back(tokens[size_t(start + t.pos + 1)]);
    }
    score(scored, logits, next);
    scored += int64_t(logits.size());
  }
}

int scoring_threads(const EngineArgs& args) {
  return args.threads > 0 ? args.threads : int(std::max(1u, std::thread::hardware_concurrency()));
}

// --kl-divergence: the model against the base file's saved log-probabilities, chunk by chunk.
int kl_divergence_run(EngineArgs args, const std::string& base_file, int64_t max_chunks) {
  std::ifstream in(base_file, std::ios::binary);
  if (!in) fail("cannot read ", base_file);
  const kld::BaseHeader h = kld::read_header(in, base_file);
  args.n_ctx = h.n_ctx;
  LoadedModel m = load_model(args);
  EngineOptions options = args.engine_options(m.model->hparams());
  options.n_batch = std::min<int64_t>(args.n_batch, h.n_ctx);
  const std::unique_ptr<Engine> engine_owner = make_engine(m, options);
  Engine& engine = *engine_owner;
  const int64_t n_ctx = h.n_ctx, n_vocab = engine.n_vocab();
  if (n_vocab != h.n_vocab) {
    fail(base_file, ": saved with a vocabulary of ", h.n_vocab, " tokens, this model has ", n_vocab);
  }
  const int64_t n_chunk = max_chunks > 0 ? std::min<int64_t>(h.n_chunk, max_chunks) : h.n_chunk;
  std::fprintf(stderr, "kl-divergence: %lld chunks of %lld tokens against %s, %s\n", (long long)n_chunk,
               (long long)n_ctx, base_file.c_str(), m.backend->name().c_str());
  const int64_t words = kld::row_words(n_vocab), n_scored = n_ctx - 1 - n_ctx / 2;
  std::vector<uint16_t> rows(size_t(n_scored * words));
  const std::optional<int32_t> bos = chunk_bos(*m.file);
  kld::Stats stats;
  std::vector<kld::Stats::Position> positions;
  std::printf("%s", kld::Stats::table_header().c_str());
  for (int64_t c = 0; c < n_chunk; ++c) {
    if (!in.read(reinterpret_cast<char*>(rows.data()), std::streamsize(rows.size() * sizeof(uint16_t)))) {
      fail(base_file, ": cut short in the log-probabilities of chunk ", c + 1);
    }
    // Positions measured in parallel, added in order: the same sums for any thread count.
    run_chunk(engine, h.tokens, n_ctx, c, bos,
              [&](int64_t i0, const std::vector<const float*>& logits, const std::vector<int32_t>& next) {
                positions.resize(logits.size());
                parallel_for(int64_t(logits.size()), scoring_threads(args), [&](int64_t j) {
                  positions[size_t(j)] =
                      kld::Stats::measure(logits[size_t(j)], n_vocab, rows.data() + (i0 + j) * words, next[size_t(j)]);
                });
                for (const kld::Stats::Position& p : positions) stats.add(p);
              });
    std::printf("%s", stats.chunk_row(c + 1).c_str());
    std::fflush(stdout);
  }
  std::printf("\n");
  if (stats.count() < 100) {
    std::fprintf(stderr, "kl-divergence: %lld scored tokens are too few for the statistics (100 at least)\n",
                 (long long)stats.count());
    return 0;
  }
  std::printf("%s", stats.summary().c_str());
  return 0;
}

}  // namespace

int cmd_perplexity(int argc, char** argv) {
  EngineArgs args;
  args.n_ctx = 512;
  std::vector<int32_t> tokens;
  int64_t max_chunks = -1;
  std::string text_file, base_file;
  bool kl_divergence = false;
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
    } else if (a == "--kl-divergence-base") {
      base_file = flag_value(argc, argv, i);
    } else if (a == "--kl-divergence") {
      kl_divergence = true;
    } else {
      fail("unknown option '", a, "' (see moeserve perplexity --help)");
    }
  }
  if (kl_divergence) {
    if (base_file.empty()) fail("--kl-divergence needs --kl-divergence-base FILE (written by a run without it)");
    return kl_divergence_run(args, base_file, max_chunks);
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
  std::fprintf(stderr, "perplexity: %lld chunks of %lld tokens, batch %lld, %s\n", (long long)n_chunk,
               (long long)n_ctx, (long long)engine.n_batch(), m.backend->name().c_str());

  // With a base file: its header, then each chunk's scored log-probabilities (and the NLL as the
  // saved rows compute it, as llama-perplexity does).
  std::ofstream base;
  const int64_t words = kld::row_words(n_vocab), n_scored = n_ctx - 1 - n_ctx / 2;
  std::vector<uint16_t> rows;
  if (!base_file.empty()) {
    base.open(base_file, std::ios::binary | std::ios::trunc);
    if (!base) fail("cannot write ", base_file);
    kld::BaseHeader h{int32_t(n_ctx), int32_t(n_vocab), int32_t(n_chunk),
                      std::vector<int32_t>(tokens.begin(), tokens.begin() + n_chunk * n_ctx)};
    kld::write_header(base, h);
    rows.resize(size_t(n_scored * words));
  }
  const std::optional<int32_t> bos = chunk_bos(*m.file);
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  const double t0 = now_seconds();
  std::vector<double> nlls;
  for (int64_t c = 0; c < n_chunk; ++c) {
    run_chunk(engine, tokens, n_ctx, c, bos,
              [&](int64_t i0, const std::vector<const float*>& logits, const std::vector<int32_t>& next) {
                nlls.resize(logits.size());
                parallel_for(int64_t(logits.size()), scoring_threads(args), [&](int64_t j) {
                  const size_t s = size_t(j);
                  nlls[s] = rows.empty() ? nll_of(logits[s], n_vocab, next[s])
                                         : kld::encode_row(logits[s], n_vocab, next[s], rows.data() + (i0 + j) * words);
                });
                for (double v : nlls) {  // in order: the same sums for any thread count
                  nll += v;
                  nll2 += v * v;
                  ++count;
                }
              });
    if (base.is_open() && !base.write(reinterpret_cast<const char*>(rows.data()), std::streamsize(rows.size() * 2))) {
      fail("cannot write ", base_file, " (disk full?)");
    }
    if (c == 0) std::fprintf(stderr, "perplexity: %.2f s per chunk\n", now_seconds() - t0);
    std::printf("[%lld]%.4f,", (long long)(c + 1), std::exp(nll / double(count)));
    std::fflush(stdout);
  }
  if (base.is_open() && !base.flush()) fail("cannot write ", base_file, " (disk full?)");
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
