// llama-bench-like measurements: prompt processing (ppN: N tokens in steps of -b) and token
// generation (tgN: N steps of one token), optionally after filling the context to a depth,
// repeated -r times after a warm-up; mean ± standard deviation of tokens/s, plus load time, the
// placement of the weights, and for generation the weight bytes read per second (the roofline
// quantity: decode reads every active weight once per token).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "engine_args.h"

namespace moeserve::cli {
namespace {

constexpr const char* kUsage =
    "usage: moeserve bench -m MODEL.gguf [-p N] [-n N] [-r N] [-d N] [-o md|json|csv] [options]\n\n"
    "  -p, --n-prompt N       prompt-processing test of N tokens (default 512; 0 = none)\n"
    "  -n, --n-gen N          generation test of N tokens (default 128; 0 = none)\n"
    "  -r, --repetitions N    runs of each test (default 5)\n"
    "  -d, --n-depth N        tokens already in the context before each test (default 0)\n"
    "  -o, --output FORMAT    md (default), json or csv\n"
    "  (placement: -ngl, -ncmoe, -cmoe, -ot as below take one value each, not llama-bench's lists)\n";

struct Result {
  std::string test;
  int64_t n_prompt = 0, n_gen = 0, n_depth = 0;
  std::vector<double> samples;  // tokens/s per repetition
  double mean() const {
    double s = 0;
    for (double x : samples) s += x;
    return s / double(samples.size());
  }
  double sd() const {
    if (samples.size() < 2) return 0;
    const double m = mean();
    double s = 0;
    for (double x : samples) s += (x - m) * (x - m);
    return std::sqrt(s / double(samples.size() - 1));
  }
};

// Fills sequence 0 with n random tokens in steps of n_batch, the last step asking for logits.
void feed(Engine& e, std::mt19937& rng, int64_t n) {
  std::vector<BatchToken> batch;
  for (int64_t at = 0; at < n;) {
    batch.clear();
    for (; at < n && int64_t(batch.size()) < e.n_batch(); ++at) {
      batch.push_back({int32_t(rng() % uint64_t(e.n_vocab())), e.seq_length(0) + int32_t(batch.size()), 0, at + 1 == n});
    }
    e.decode(batch);
  }
}

void generate(Engine& e, std::mt19937& rng, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const BatchToken t{int32_t(rng() % uint64_t(e.n_vocab())), e.seq_length(0), 0, true};
    e.decode(std::span<const BatchToken>(&t, 1));
  }
}

// Bytes of weights one decode step reads: everything but the embedding table (one row), the
// routed experts in proportion used / total.
double active_bytes(const Model& m) {
  const HParams& hp = m.hparams();
  double bytes = 0;
  for (const PlacedWeight& w : m.placement().weights()) {
    if (w.name == "token_embd.weight") continue;
    bytes += w.expert_devices.empty() ? double(w.bytes) : double(w.bytes) * double(hp.n_expert_used) / double(hp.n_expert);
  }
  return bytes;
}

std::string format_params(uint64_t n) {
  char buf[32];
  if (n >= 1000000000ull) {
    std::snprintf(buf, sizeof buf, "%.2f B", double(n) / 1e9);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f M", double(n) / 1e6);
  }
  return buf;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  EngineArgs args;
  int64_t n_prompt = 512, n_gen = 128, reps = 5, depth = 0;
  std::string output = "md";
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s%s", kUsage, EngineArgs::help());
      return 0;
    }
    if (a == "-p" || a == "--n-prompt") {
      n_prompt = parse_int(a, flag_value(argc, argv, i), 0, int64_t(1) << 24);
    } else if (a == "-n" || a == "--n-gen") {
      n_gen = parse_int(a, flag_value(argc, argv, i), 0, int64_t(1) << 24);
    } else if (a == "-r" || a == "--repetitions") {
      reps = parse_int(a, flag_value(argc, argv, i), 1, 1000);
    } else if (a == "-d" || a == "--n-depth") {
      depth = parse_int(a, flag_value(argc, argv, i), 0, int64_t(1) << 24);
    } else if (a == "-o" || a == "--output") {
      output = flag_value(argc, argv, i);
      if (output != "md" && output != "json" && output != "csv") fail("option ", a, ": '", output, "' is not md, json or csv");
    } else if (args.parse(argc, argv, i)) {
      continue;
    } else {
      fail("unknown option '", a, "' (see moeserve bench --help)");
    }
  }
  if (n_prompt == 0 && n_gen == 0) fail("nothing to measure: -p and -n are both 0");

  LoadedModel m = load_model(args);
  EngineOptions options = args.engine_options(m.model->hparams());
  options.n_ctx = depth + std::max(n_prompt, n_gen);
  const std::unique_ptr<Engine> engine_owner = make_engine(m, options);
  Engine& engine = *engine_owner;
  std::mt19937 rng(42);

  std::vector<Result> results;
  auto run_test = [&](bool prompt, int64_t n) {
    Result r;
    r.n_prompt = prompt ? n : 0;
    r.n_gen = prompt ? 0 : n;
    r.n_depth = depth;
    r.test = str_cat(prompt ? "pp" : "tg", n, depth ? str_cat(" @ d", depth) : "");
    // Warm-up (pages the weights in, starts the threads).
    engine.seq_clear(0);
    feed(engine, rng, prompt ? std::min<int64_t>(n, engine.n_batch()) : 1);
    for (int64_t rep = 0; rep < reps; ++rep) {
      engine.seq_clear(0);
      if (depth) feed(engine, rng, depth);
      const double t0 = now_seconds();
      if (prompt) {
        feed(engine, rng, n);
      } else {
        generate(engine, rng, n);
      }
      r.samples.push_back(double(n) / (now_seconds() - t0));
    }
    results.push_back(std::move(r));
  };
  if (n_prompt > 0) run_test(true, n_prompt);
  if (n_gen > 0) run_test(false, n_gen);

  const HParams& hp = m.model->hparams();
  const std::string model_name = str_cat(hp.arch, " ", hp.n_layer, "L");
  const std::string size = format_bytes(m.model->placement().total_bytes());
  const std::string params = format_params(m.n_params);
  const double active = active_bytes(*m.model);
  const char* fa = engine.flash_attention() ? "1" : "0";
  const std::string backend = m.backend->name();

  if (output == "json") {
    nlohmann::json doc = nlohmann::json::array();
    for (const Result& r : results) {
      doc.push_back({{"model_type", model_name}, {"model_size", m.model->placement().total_bytes()},
                     {"model_n_params", m.n_params}, {"backend", backend}, {"n_threads", args.threads},
                     {"n_batch", engine.n_batch()}, {"type_k", type_name(engine.type_k())},
                     {"type_v", type_name(engine.type_v())}, {"flash_attn", engine.flash_attention()},
                     {"n_prompt", r.n_prompt}, {"n_gen", r.n_gen}, {"n_depth", r.n_depth}, {"avg_ts", r.mean()},
                     {"stddev_ts", r.sd()}, {"samples_ts", r.samples}, {"load_time_s", m.load_seconds},
                     {"active_weight_bytes", active}, {"placement", m.model->placement().device_summary()}});
    }
    std::printf("%s\n", doc.dump(2).c_str());
    return 0;
  }
  if (output == "csv") {
    std::printf("model_type,model_size,model_n_params,backend,n_threads,n_batch,type_k,type_v,flash_attn,n_prompt,n_gen,"
                "n_depth,avg_ts,stddev_ts,load_time_s\n");
    for (const Result& r : results) {
      std::printf("\"%s\",%zu,%llu,\"%s\",%d,%lld,%s,%s,%s,%lld,%lld,%lld,%.6f,%.6f,%.3f\n", model_name.c_str(),
                  m.model->placement().total_bytes(), (unsigned long long)m.n_params, backend.c_str(), args.threads,
                  (long long)engine.n_batch(), type_name(engine.type_k()), type_name(engine.type_v()), fa,
                  (long long)r.n_prompt, (long long)r.n_gen, (long long)r.n_depth, r.mean(), r.sd(), m.load_seconds);
    }
    return 0;
  }
  const Placement& placed = m.model->placement();
  std::printf("load time: %.2f s", m.load_seconds);
  if (placed.uploaded_bytes) {
    std::printf(" (%s uploaded in %.2f s, %.2f GiB/s)", format_bytes(placed.uploaded_bytes).c_str(), placed.upload_seconds,
                double(placed.uploaded_bytes) / double(1 << 30) / std::max(placed.upload_seconds, 1e-9));
  }
  std::printf("\nplacement: %s\nmemory: %s\n\n", placed.device_summary().c_str(), engine.memory_summary().c_str());
  std::printf("| %-16s | %10s | %10s | %-24s | %-9s | %2s | %14s | %20s | %13s |\n", "model", "size", "params", "backend",
              "K/V", "fa", "test", "t/s", "weights GB/s");
  std::printf("| %s | %s: | %s: | %s | %s | %s | %s: | %s: | %s: |\n", std::string(16, '-').c_str(),
              std::string(9, '-').c_str(), std::string(9, '-').c_str(), std::string(24, '-').c_str(),
              std::string(9, '-').c_str(), std::string(2, '-').c_str(), std::string(13, '-').c_str(),
              std::string(19, '-').c_str(), std::string(12, '-').c_str());
  for (const Result& r : results) {
    char ts[64], gbs[32] = "";
    std::snprintf(ts, sizeof ts, "%.2f ± %.2f", r.mean(), r.sd());
    if (r.n_gen) std::snprintf(gbs, sizeof gbs, "%.1f", r.mean() * active / 1e9);
    const std::string kv = str_cat(type_name(engine.type_k()), "/", type_name(engine.type_v()));
    std::printf("| %-16s | %10s | %10s | %-24s | %-9s | %2s | %14s | %20s | %13s |\n", model_name.c_str(), size.c_str(),
                params.c_str(), backend.c_str(), kv.c_str(), fa, r.test.c_str(), ts, gbs);
  }
  return 0;
}

}  // namespace moeserve::cli
