// `moeserve synth`: a random but well-formed GGUF with the exact tensor names, shapes and
// hyper-parameter keys of a real model (or a tiny one), so that benchmarks and tests need no
// download. Data is generated and streamed to disk one tensor at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/ggml_type.h"
#include "model/convert/model_shape.h"

namespace moeserve::synth {

struct SynthOptions {
  std::string preset;
  std::string out_path;
  std::optional<int64_t> layers;   // override the layer count
  std::optional<int64_t> experts;  // override the expert count (experts per token capped to it)
  GgmlType expert_type = GgmlType::IQ2_XS;  // *_exps tensors
  GgmlType other_type = GgmlType::Q8_0;     // every other 2-D+ weight; 1-D, router, conv stay F32
  std::string tokenizer_json;      // use this tokenizer (and its tokenizer_config.json) instead
  std::string chat_template_file;  // tokenizer.chat_template from this file
  bool legacy_ssm_in = false;
  uint64_t seed = 1;
  std::function<void(const std::string&)> log;
};

struct SynthResult {
  convert::ModelShape shape;
  size_t n_tensors = 0;
  uint64_t data_bytes = 0;
};

SynthResult synthesize(const SynthOptions& options);

}  // namespace moeserve::synth
