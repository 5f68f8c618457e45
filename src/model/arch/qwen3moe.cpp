// qwen3moe (Qwen3-30B-A3B, Qwen3-Coder-30B-A3B, ...): qwen3's attention with a sparse MoE FFN in
// every layer: softmax router, top-k, renormalised weights, no shared expert (qwen3next.md §7).
#include "model/arch/arch.h"
#include "model/blocks/attention.h"
#include "model/blocks/ffn.h"
#include "model/blocks/norm.h"

namespace moeserve::arch {
namespace {

struct Layer {
  Tensor attn_norm, ffn_norm;  // [n_embd]
  blocks::AttentionWeights attn;
  blocks::MoeWeights moe;
};

class Qwen3Moe final : public Model {
 public:
  Qwen3Moe(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
    const GgufMeta meta(*file, "qwen3moe");
    read_transformer_hparams(meta, hparams_, /*rope_neox=*/true);
    HParams& hp = hparams_;
    hp.n_expert = meta.count("expert_count");
    hp.n_expert_used = meta.count("expert_used_count");
    hp.n_ff_exp = meta.count("expert_feed_forward_length");
    hp.norm_topk = meta.flag_opt("expert_weights_norm").value_or(true);
    if (hp.n_expert_used > hp.n_expert) meta.fail_key("expert_used_count", "exceeds expert_count");
    attn_cfg_ = {hp.n_head, hp.n_head_kv, hp.head_dim_k, hp.head_dim_v, RopeParams{hp.n_rot, hp.rope_base, true},
                 hp.norm_eps, false};
    moe_cfg_ = {hp.n_expert, hp.n_expert_used, hp.n_ff_exp, 0, hp.norm_topk};
    WeightLoader loader(*file, backend);
    emb_ = load_embeddings(loader, hp);
    for (int64_t il = 0; il < hp.n_layer; ++il) {
      const std::string p = "blk." + std::to_string(il) + ".";
      Layer l;
      l.attn_norm = loader.vector_f32(p + "attn_norm.weight", {hp.n_embd, 1, 1, 1});
      l.ffn_norm = loader.vector_f32(p + "ffn_norm.weight", {hp.n_embd, 1, 1, 1});
      l.attn = blocks::load_attention(loader, il, hp.n_embd, attn_cfg_, /*qk_norm=*/true);
      l.moe = blocks::load_moe(loader, il, hp.n_embd, moe_cfg_);
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
      ctx.be.binary(h, h, blocks::moe(ctx, m, l.moe, moe_cfg_), BinaryOp::add);
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

std::unique_ptr<Model> load_qwen3moe(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
  return std::make_unique<Qwen3Moe>(std::move(file), backend);
}

}  // namespace moeserve::arch
