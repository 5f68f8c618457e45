// The plain pre-norm transformer that llama, qwen3 and qwen3moe share: per layer RMSNorm ->
// attention -> residual add, RMSNorm -> FFN (dense SwiGLU, or MoE when the model has experts) ->
// residual add, then the output head. The architecture files read their hyper-parameters, set the
// attention and MoE configs, and call load_layers().
#pragma once

#include <memory>
#include <vector>

#include "model/arch/arch.h"
#include "model/blocks/attention.h"
#include "model/blocks/ffn.h"

namespace moeserve::arch {

class Transformer : public Model {
 public:
  Tensor forward(ForwardContext& ctx, const StepInputs& in) const override;

 protected:
  // Loads the embeddings and every layer (MoE FFN when hparams_.n_expert > 0), then adopts the
  // loader's placement and buffers.
  void load_layers(std::shared_ptr<const gguf::GgufFile> file, Backend& backend, bool qk_norm);

  blocks::AttentionConfig attn_cfg_;
  blocks::MoeConfig moe_cfg_;

 private:
  struct Layer {
    Tensor attn_norm, ffn_norm;  // [n_embd]
    blocks::AttentionWeights attn;
    blocks::DenseFfnWeights ffn;  // dense models
    blocks::MoeWeights moe;       // models with experts
  };
  Embeddings emb_;
  std::vector<Layer> layers_;
};

}  // namespace moeserve::arch
