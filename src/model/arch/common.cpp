#include "core/error.h"
#include "model/arch/arch.h"

namespace moeserve::arch {

Embeddings load_embeddings(WeightLoader& loader, HParams& hp) {
  Embeddings e;
  // The vocabulary size is the embedding's row count (the tokenizer may list fewer real tokens).
  const std::array<int64_t, 4> dims = loader.dims("token_embd.weight");
  hp.n_vocab = dims[1];
  if (hp.n_vocab <= 0) fail(loader.path(), ": tensor token_embd.weight has no rows");
  e.token_embd = loader.matrix("token_embd.weight", {hp.n_embd, hp.n_vocab, 1, 1}, /*embedding=*/true);
  e.output_norm = loader.vector_f32("output_norm.weight", {hp.n_embd, 1, 1, 1});
  if (loader.has("output.weight")) {
    e.output = loader.matrix("output.weight", {hp.n_embd, hp.n_vocab, 1, 1});
  } else {
    loader.require_matmul("token_embd.weight", e.token_embd);
    e.output = e.token_embd;
  }
  return e;
}

Tensor output_logits(ForwardContext& ctx, const StepInputs& in, const Tensor& h, const Embeddings& e, float eps) {
  const int64_t n_out = in.out_rows.ne[0];
  Tensor rows = ctx.arena.f32(h.ne[0], n_out);
  ctx.be.get_rows(rows, h, in.out_rows);
  Tensor logits = ctx.arena.f32(e.output.ne[1], n_out);
  ctx.be.norm_matmuls(rows, e.output_norm, eps, rows, {{logits, e.output}});
  return logits;
}

}  // namespace moeserve::arch

namespace moeserve::arch {

void read_transformer_hparams(const GgufMeta& meta, HParams& hp, bool rope_neox) {
  hp.arch = meta.arch();
  hp.n_embd = meta.count("embedding_length");
  hp.n_layer = meta.count("block_count");
  hp.n_ctx_train = meta.count("context_length");
  hp.n_head = meta.count("attention.head_count");
  hp.n_head_kv = meta.count_opt("attention.head_count_kv").value_or(hp.n_head);
  hp.head_dim_k = meta.count_opt("attention.key_length").value_or(hp.n_embd / hp.n_head);
  hp.head_dim_v = meta.count_opt("attention.value_length").value_or(hp.head_dim_k);
  hp.n_rot = int(meta.count_opt("rope.dimension_count").value_or(hp.head_dim_k));
  hp.rope_base = meta.real_opt("rope.freq_base").value_or(10000.0f);
  hp.rope_neox = rope_neox;
  hp.norm_eps = meta.real("attention.layer_norm_rms_epsilon");
  hp.layers.assign(size_t(hp.n_layer), LayerKind::attention);
  if (hp.n_head_kv == 0 || hp.n_head % hp.n_head_kv != 0) {
    meta.fail_key("attention.head_count_kv", "must divide attention.head_count");
  }
  if (hp.head_dim_k == 0 || hp.head_dim_v == 0) meta.fail_key("attention.key_length", "head size must be > 0");
  if (hp.n_rot <= 0 || hp.n_rot % 2 != 0 || hp.n_rot > hp.head_dim_k) {
    meta.fail_key("rope.dimension_count", "must be even and at most the head size");
  }
}

}  // namespace moeserve::arch
