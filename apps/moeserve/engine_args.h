// Flags shared by the commands that load a model and run it (run, perplexity, bench), with the
// names and meanings llama.cpp's tools use: -m, -t, -c, -b, -fa, -ctk, -ctv and the placement
// flags -ngl, --n-cpu-moe, --cpu-moe, -ot.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf_file.h"
#include "model/model.h"
#include "model/placement_plan.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer.h"

namespace moeserve::cli {

struct EngineArgs {
  std::string model;
  int threads = 0;  // 0: one per core
  int64_t n_ctx = -1;  // -1: min(4096, the model's context length)
  int64_t n_batch = 512;
  FlashMode flash = FlashMode::automatic;
  GgmlType type_k = GgmlType::F16;
  GgmlType type_v = GgmlType::F16;
  PlacementFlags placement;
  bool mmap = true;  // false: --no-mmap (gguf::OpenOptions::map_weights)

  // When argv[i] is one of the shared flags, consumes it (and its value) and returns true.
  bool parse(int argc, char** argv, int& i);
  // Help lines for the shared flags.
  static const char* help();
  EngineOptions engine_options(const HParams& hp) const;
};

// The next argument as the value of `flag` (error when missing).
std::string_view flag_value(int argc, char** argv, int& i);
int64_t parse_int(std::string_view flag, std::string_view text, int64_t min, int64_t max);
double parse_real(std::string_view flag, std::string_view text);
// "[1, 2, 3]" or "1 2 3" or "1,2,3" -> ids.
std::vector<int32_t> parse_ids(std::string_view flag, std::string_view text);

struct LoadedModel {
  std::shared_ptr<const gguf::GgufFile> file;
  std::unique_ptr<Backend> backend;
  std::optional<DeviceId> gpu;  // the GPU holding weights and caches, when one is used
  std::unique_ptr<Model> model;
  double load_seconds = 0;
  uint64_t n_params = 0;  // elements of every tensor in the file
};

// Chooses the backend (CPU, GPU or split, see runtime/device_setup.h), saying once on stderr why
// placement flags are ignored when they are, and loads the model.
LoadedModel load_model(const EngineArgs& args);
// The engine of `m` with `options`, after checking that its caches fit the GPU's free memory.
std::unique_ptr<Engine> make_engine(const LoadedModel& m, const EngineOptions& options);

// The model's own tokenizer (its tokenizer.ggml.* keys); moeserve::Error naming the file when it
// has none or a broken one.
tokenizer::Tokenizer model_tokenizer(const gguf::GgufFile& file);

double now_seconds();

}  // namespace moeserve::cli
