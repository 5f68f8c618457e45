// Hugging Face config.json -> ModelShape for the architectures convert supports (llama, qwen3,
// qwen3moe, qwen3next), reading both the transformers 4.x layout (rope_theta and
// partial_rotary_factor at top level, num_experts) and 5.x (rope_parameters, layer_types,
// num_local_experts). Everything the GGUF cannot express (biases, rope scaling, dense layers
// inside a MoE stack, unnormalized top-k) is refused with the field named.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "model/convert/model_shape.h"

namespace moeserve::convert {

nlohmann::json read_json_file(const std::string& path);

// `source` names the file in messages. `has_lm_head` tells whether the checkpoint holds a
// separate output matrix (absent => tied embeddings even if the config does not say so).
ModelShape shape_from_hf_config(const nlohmann::json& config, const std::string& source, bool has_lm_head);

}  // namespace moeserve::convert
