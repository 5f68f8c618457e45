// Model presets for `moeserve synth`: the exact hyper-parameters of the real models
// (shared/spec/qwen3next.md §1 for Qwen3-Next / Qwen3-Coder-Next; the published config.json
// values for the others) and tiny variants of each architecture for tests.
#pragma once

#include <string>
#include <vector>

#include "model/convert/model_shape.h"

namespace moeserve::synth {

enum class VocabStyle { Qwen, Llama3 };

struct Preset {
  std::string name;
  std::string description;
  convert::ModelShape shape;
  VocabStyle vocab = VocabStyle::Qwen;
  int64_t n_normal_tokens = 0;  // BPE tokens before the special ones (Qwen: 151643, Llama 3: 128000)
};

const std::vector<Preset>& presets();
// Throws listing the known names when `name` is not one of them.
const Preset& find_preset(const std::string& name);

}  // namespace moeserve::synth
