// Loaders of the architectures moeserve runs, one per file in this folder; registry.cpp maps the
// GGUF architecture name to them.
#pragma once

#include <memory>

#include "model/gguf_meta.h"
#include "model/model.h"

namespace moeserve::arch {

std::unique_ptr<Model> load_qwen3next(std::shared_ptr<const gguf::GgufFile> file, Backend& backend);
std::unique_ptr<Model> load_qwen3moe(std::shared_ptr<const gguf::GgufFile> file, Backend& backend);
std::unique_ptr<Model> load_qwen3(std::shared_ptr<const gguf::GgufFile> file, Backend& backend);
std::unique_ptr<Model> load_llama(std::shared_ptr<const gguf::GgufFile> file, Backend& backend);

// Shared by the loaders: vocabulary size and the embedding / output head with their checks.
struct Embeddings {
  Tensor token_embd;  // [n_embd, n_vocab]
  Tensor output_norm; // [n_embd] F32
  Tensor output;      // [n_embd, n_vocab] (token_embd when the file ties them)
};
Embeddings load_embeddings(WeightLoader& loader, HParams& hp);

// The keys every transformer here shares (embedding size, layers, heads, head dims, rope, norm eps);
// all layers attention layers.
void read_transformer_hparams(const GgufMeta& meta, HParams& hp, bool rope_neox);

// Final norm, only the rows that want logits, then the output head: logits [n_vocab, n_out].
Tensor output_logits(ForwardContext& ctx, const StepInputs& in, const Tensor& h, const Embeddings& e, float eps);

}  // namespace moeserve::arch
