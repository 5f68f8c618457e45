// A loaded model: hyper-parameters, weights (with their placement), the per-layer caches it needs,
// and its forward step. Each architecture implements one in src/model/arch/<arch>.cpp; the
// registry (registry.cpp) is the only place that switches on the architecture name.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/arena.h"
#include "backend/backend.h"
#include "gguf/gguf_file.h"
#include "model/hparams.h"
#include "model/weights.h"

namespace moeserve {

// What the runtime allocates per layer and per sequence.
struct LayerCacheSpec {
  int64_t k_width = 0;      // attention layers: elements of K per cell (head_dim_k * n_head_kv)
  int64_t v_width = 0;
  int64_t conv_values = 0;  // delta-net layers: rolling conv inputs ((kernel-1) * channels), F32
  int64_t ssm_values = 0;   // delta-net layers: recurrent state (d_k * d_v * n_v_heads), F32
};

// The caches of every layer, as tensors on the model's device. Attention layers: k/v
// [width, n_ctx, n_seq]; delta-net layers: conv [conv_values, n_seq], ssm [ssm_values, n_seq].
struct LayerCaches {
  std::vector<Tensor> k, v, conv, ssm;  // [n_layer]; unused entries have null data
};

struct StepInputs {
  Tensor tokens;    // I32 [n_tokens], grouped by sequence (see BatchInfo)
  BatchInfo batch;
  Tensor out_rows;  // I32 [n_out]: rows of the step whose logits are wanted
};

struct ForwardContext {
  Backend& be;
  Arena& arena;
  const LayerCaches& caches;
  bool flash_attention = true;
};

class Model {
 public:
  virtual ~Model() = default;

  const HParams& hparams() const { return hparams_; }
  const Placement& placement() const { return placement_; }
  std::vector<LayerCacheSpec> cache_specs() const;

  // Runs the step; returns the logits [n_vocab, n_out] in the arena.
  virtual Tensor forward(ForwardContext& ctx, const StepInputs& in) const = 0;

 protected:
  HParams hparams_;
  Placement placement_;
  std::vector<Buffer> owned_;  // converted small tensors
  std::shared_ptr<const gguf::GgufFile> file_;  // keeps the mapping of the weights alive

  // Finishes loading: takes the loader's placement and buffers.
  void adopt(WeightLoader& loader, std::shared_ptr<const gguf::GgufFile> file);
};

// Loads the model in `file` (its architecture from general.architecture) with its weights on
// `backend`. Unsupported architecture, missing tensor, wrong shape or type: moeserve::Error.
std::unique_ptr<Model> load_model(std::shared_ptr<const gguf::GgufFile> file, Backend& backend);

// The architecture names load_model() accepts.
std::vector<std::string> supported_architectures();

}  // namespace moeserve
