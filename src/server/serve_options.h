// `moeserve serve` command line, with llama-server's flag names so that a user's existing command
// line works unchanged. Parsing checks every value and names the flag at fault.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/ggml_type.h"

namespace moeserve::server {

struct ServeOptions {
  std::string model_path;            // -m; empty: the bundled demo model
  std::vector<std::string> aliases;  // --alias (comma-separated list accepted)
  std::string host = "127.0.0.1";
  int port = 8080;
  int64_t ctx_size = 0;      // -c, all slots together; 0 = the model's training context
  bool kv_unified = false;   // --kv-unified: each slot gets the whole -c
  int64_t n_predict = -1;    // -n: cap on generated tokens per request (-1: none)
  GgmlType cache_type_k = GgmlType::F16;
  GgmlType cache_type_v = GgmlType::F16;
  std::string flash_attn = "auto";  // on | off | auto
  bool jinja = true;         // --jinja (always on: templates are rendered with our Jinja engine)
  std::string chat_template_file;
  std::string chat_template_kwargs = "{}";  // JSON object
  bool metrics = false;
  std::optional<int> n_gpu_layers;  // -ngl; unset ("auto"): every layer on the GPU for now
  std::optional<int> n_cpu_moe;     // --n-cpu-moe N
  bool cpu_moe = false;             // --cpu-moe
  std::vector<std::pair<std::string, std::string>> override_tensors;  // -ot REGEX=DEVICE
  int64_t batch_size = 2048;   // -b: tokens per prompt-processing step (logical)
  int64_t ubatch_size = 512;   // -ub: tokens per engine step (physical)
  bool cont_batching = true;
  int threads = 0;             // -t; 0 = all cores
  int parallel = 1;            // -np
  std::string api_key;         // --api-key (or LLAMA_API_KEY / MOESERVE_API_KEY)
  int timeout_seconds = 600;   // --timeout: read/write timeout of a connection
  bool mmap = true;
  // Sampling defaults for requests that do not set them (llama-server's defaults).
  double temperature = 0.8;
  int top_k = 40;
  double top_p = 0.95;
  double min_p = 0.05;
  double repeat_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  int64_t repeat_last_n = 64;  // window of the penalties; 0: off, -1: the whole context
  double typical_p = 1.0;      // 1: off
  int64_t seed = -1;
  std::vector<std::pair<int32_t, float>> logit_bias;  // -l / --logit-bias ID(+|-)BIAS, every request
  // Prompt cache: RAM for saved sequence states of evicted conversations.
  int64_t cache_ram_mib = 8192;
  int64_t checkpoint_every = 4096;  // tokens between recurrent-state checkpoints during prefill
  std::string log_level = "info";
  bool split_reasoning = true;  // --reasoning-format none: false (reasoning stays in the content)
  bool thinking_off = false;    // --reasoning-budget 0: enable_thinking false unless a request sets it
  // One line per llama-server flag given that has no effect here (serve_compat.h), printed at start.
  std::vector<std::string> notices;
};

// argv[0] is the subcommand name. Throws moeserve::Error naming the flag on anything wrong.
// Returns nullopt when --help was asked (the usage was printed).
std::optional<ServeOptions> parse_serve_options(int argc, char** argv);
std::string serve_usage();

}  // namespace moeserve::server
