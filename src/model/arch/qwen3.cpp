// qwen3 (dense Qwen3): pre-norm transformer, GQA attention with per-head q/k RMSNorm before NeoX
// RoPE over the whole head, SwiGLU FFN (qwen3next.md §7). Small models tie the output head.
#include "model/arch/arch.h"
#include "model/blocks/attention.h"
#include "model/blocks/ffn.h"
#include "model/blocks/norm.h"

namespace moeserve::arch {
namespace {

struct Layer {
  Tensor attn_norm, ffn_norm;  // [n_embd]
  blocks::AttentionWeights attn;
  blocks::DenseFfnWeights ffn;
};

class Qwen3 final : public Model {
 public:
  Qwen3(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
    const GgufMeta meta(*file, "qwen3");
    read_transformer_hparams(meta, hparams_, /*rope_neox=*/true);
    HParams& hp = hparams_;
    hp.n_ff = meta.count("feed_forward_length");
    cfg_ = {hp.n_head, hp.n_head_kv, hp.head_dim_k, hp.head_dim_v, RopeParams{hp.n_rot, hp.rope_base, true}, hp.norm_eps,
            false};
    WeightLoader loader(*file, backend);
    emb_ = load_embeddings(loader, hp);
    for (int64_t il = 0; il < hp.n_layer; ++il) {
      const std::string p = "blk." + std::to_string(il) + ".";
      Layer l;
      l.attn_norm = loader.vector_f32(p + "attn_norm.weight", {hp.n_embd, 1, 1, 1});
      l.ffn_norm = loader.vector_f32(p + "ffn_norm.weight", {hp.n_embd, 1, 1, 1});
      l.attn = blocks::load_attention(loader, il, hp.n_embd, cfg_, /*qk_norm=*/true);
      l.ffn = blocks::load_dense_ffn(loader, p, "", hp.n_embd, hp.n_ff);
      layers_.push_back(std::move(l));
    }
    adopt(loader, std::move(file));
  }

  Tensor forward(ForwardContext& ctx, const StepInputs& in) const override {
    const HParams& hp = hparams_;
    Tensor h = ctx.arena.f32(hp.n_embd, in.tokens.ne[0]);
    ctx.be.get_rows(h, emb_.token_embd, in.tokens);
    for (int64_t il = 0; il < hp.n_layer; ++il) {
      const Layer& l = layers_[size_t(il)];
      const size_t mark = ctx.arena.mark();
      Tensor a = blocks::rms_norm(ctx, h, l.attn_norm, hp.norm_eps);
      ctx.be.binary(h, h, blocks::attention(ctx, in, a, l.attn, cfg_, ctx.caches.k[size_t(il)], ctx.caches.v[size_t(il)]),
                    BinaryOp::add);
      Tensor m = blocks::rms_norm(ctx, h, l.ffn_norm, hp.norm_eps);
      ctx.be.binary(h, h, blocks::dense_ffn(ctx, m, l.ffn), BinaryOp::add);
      ctx.arena.release(mark);
    }
    return output_logits(ctx, in, h, emb_, hp.norm_eps);
  }

 private:
  Embeddings emb_;
  std::vector<Layer> layers_;
  blocks::AttentionConfig cfg_;
};

}  // namespace

std::unique_ptr<Model> load_qwen3(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
  return std::make_unique<Qwen3>(std::move(file), backend);
}

}  // namespace moeserve::arch
