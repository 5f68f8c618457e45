// llama (LLaMA 1-3, Mistral and relatives): pre-norm transformer, GQA attention with normal
// (adjacent-pair) RoPE, no q/k norm, SwiGLU FFN; Mixtral-style files (expert_count > 0) use a
// softmax top-k MoE instead. The converter permutes q/k rows so normal RoPE applies.
#include "model/arch/arch.h"
#include "model/blocks/attention.h"
#include "model/blocks/ffn.h"
#include "model/blocks/norm.h"

namespace moeserve::arch {
namespace {

struct Layer {
  Tensor attn_norm, ffn_norm;  // [n_embd]
  blocks::AttentionWeights attn;
  blocks::DenseFfnWeights ffn;  // dense files
  blocks::MoeWeights moe;       // expert files
};

class Llama final : public Model {
 public:
  Llama(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
    const GgufMeta meta(*file, "llama");
    read_transformer_hparams(meta, hparams_, /*rope_neox=*/false);
    HParams& hp = hparams_;
    hp.n_ff = meta.count("feed_forward_length");
    hp.n_expert = meta.count_opt("expert_count").value_or(0);
    if (hp.n_expert > 0) {
      hp.n_expert_used = meta.count("expert_used_count");
      hp.n_ff_exp = hp.n_ff;
      if (hp.n_expert_used > hp.n_expert) meta.fail_key("expert_used_count", "exceeds expert_count");
    }
    attn_cfg_ = {hp.n_head, hp.n_head_kv, hp.head_dim_k, hp.head_dim_v, RopeParams{hp.n_rot, hp.rope_base, false},
                 hp.norm_eps, false};
    moe_cfg_ = {hp.n_expert, hp.n_expert_used, hp.n_ff_exp, 0, true};
    WeightLoader loader(*file, backend);
    emb_ = load_embeddings(loader, hp);
    for (int64_t il = 0; il < hp.n_layer; ++il) {
      const std::string p = "blk." + std::to_string(il) + ".";
      Layer l;
      l.attn_norm = loader.vector_f32(p + "attn_norm.weight", {hp.n_embd, 1, 1, 1});
      l.ffn_norm = loader.vector_f32(p + "ffn_norm.weight", {hp.n_embd, 1, 1, 1});
      l.attn = blocks::load_attention(loader, il, hp.n_embd, attn_cfg_, /*qk_norm=*/false);
      if (hp.n_expert > 0) {
        l.moe = blocks::load_moe(loader, il, hp.n_embd, moe_cfg_);
      } else {
        l.ffn = blocks::load_dense_ffn(loader, p, "", hp.n_embd, hp.n_ff);
      }
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
      ctx.be.binary(h, h,
                    blocks::attention(ctx, in, a, l.attn, attn_cfg_, ctx.caches.k[size_t(il)], ctx.caches.v[size_t(il)]),
                    BinaryOp::add);
      Tensor m = blocks::rms_norm(ctx, h, l.ffn_norm, hp.norm_eps);
      const Tensor f = hp.n_expert > 0 ? blocks::moe(ctx, m, l.moe, moe_cfg_) : blocks::dense_ffn(ctx, m, l.ffn);
      ctx.be.binary(h, h, f, BinaryOp::add);
      ctx.arena.release(mark);
    }
    return output_logits(ctx, in, h, emb_, hp.norm_eps);
  }

 private:
  Embeddings emb_;
  std::vector<Layer> layers_;
  blocks::AttentionConfig attn_cfg_;
  blocks::MoeConfig moe_cfg_;
};

}  // namespace

std::unique_ptr<Model> load_llama(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
  return std::make_unique<Llama>(std::move(file), backend);
}

}  // namespace moeserve::arch
