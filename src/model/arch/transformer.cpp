#include "model/arch/transformer.h"

#include <string>

#include "model/blocks/norm.h"

namespace moeserve::arch {

void Transformer::load_layers(std::shared_ptr<const gguf::GgufFile> file, Backend& backend, bool qk_norm) {
  HParams& hp = hparams_;
  WeightLoader loader(*file, backend);
  emb_ = load_embeddings(loader, hp);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    Layer l;
    l.attn_norm = loader.vector_f32(p + "attn_norm.weight", {hp.n_embd, 1, 1, 1});
    l.ffn_norm = loader.vector_f32(p + "ffn_norm.weight", {hp.n_embd, 1, 1, 1});
    l.attn = blocks::load_attention(loader, il, hp.n_embd, attn_cfg_, qk_norm);
    if (hp.n_expert > 0) {
      l.moe = blocks::load_moe(loader, il, hp.n_embd, moe_cfg_);
    } else {
      l.ffn = blocks::load_dense_ffn(loader, p, "", hp.n_embd, hp.n_ff);
    }
    layers_.push_back(std::move(l));
  }
  adopt(loader, std::move(file));
}

Tensor Transformer::forward(ForwardContext& ctx, const StepInputs& in) const {
  const HParams& hp = hparams_;
  Tensor h = ctx.arena.f32(hp.n_embd, in.tokens.ne[0]);
  ctx.be.get_rows(h, emb_.token_embd, in.tokens);
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    const Layer& l = layers_[size_t(il)];
    const size_t mark = ctx.arena.mark();
    const blocks::NormedInput a{h, l.attn_norm, hp.norm_eps};
    const Tensor y = blocks::attention(ctx, in, a, l.attn, attn_cfg_, ctx.caches.k[size_t(il)], ctx.caches.v[size_t(il)]);
    if (hp.n_expert > 0) {
      blocks::moe_ffn(ctx, h, y, l.ffn_norm, hp.norm_eps, l.moe, moe_cfg_);  // h += y; h += moe(norm(h))
    } else {
      Tensor m = ctx.arena.f32(hp.n_embd, h.ne[1]);
      ctx.be.add_rms_norm(m, h, y, l.ffn_norm, hp.norm_eps);  // h += y; m = norm(h)
      ctx.be.binary(h, h, blocks::dense_ffn(ctx, m, l.ffn), BinaryOp::add);
    }
    ctx.arena.release(mark);
  }
  return output_logits(ctx, in, h, emb_, hp.norm_eps);
}

}  // namespace moeserve::arch
