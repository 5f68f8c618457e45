// qwen3next (Qwen3-Next, Qwen3-Coder-Next): hybrid layers, three Gated DeltaNet layers then one
// gated full-attention layer, every layer a sparse MoE with a shared expert (spec: qwen3next.md).
// Norm weights in GGUF already carry the +1 of the zero-centred RMSNorm, so plain RMSNorm applies.
#include <algorithm>

#include "core/error.h"
#include "model/arch/arch.h"
#include "model/blocks/attention.h"
#include "model/blocks/delta_net.h"
#include "model/blocks/ffn.h"
#include "model/blocks/norm.h"
#include "model/gguf_meta.h"

namespace moeserve::arch {
namespace {

struct Layer {
  Tensor attn_norm;                 // [n_embd]
  Tensor post_attention_norm;       // [n_embd]
  blocks::AttentionWeights attn;    // attention layers
  blocks::DeltaNetWeights delta;    // delta-net layers
  blocks::MoeWeights moe;
};

class Qwen3Next final : public Model {
 public:
  Qwen3Next(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
    const gguf::GgufFile& f = *file;
    read_hparams(GgufMeta(f, "qwen3next"));
    WeightLoader loader(f, backend);
    emb_ = load_embeddings(loader, hparams_);
    const HParams& hp = hparams_;
    for (int64_t il = 0; il < hp.n_layer; ++il) {
      const std::string p = "blk." + std::to_string(il) + ".";
      Layer l;
      l.attn_norm = loader.vector_f32(p + "attn_norm.weight", {hp.n_embd, 1, 1, 1});
      l.post_attention_norm = loader.vector_f32(p + "post_attention_norm.weight", {hp.n_embd, 1, 1, 1});
      if (hp.layers[size_t(il)] == LayerKind::attention) {
        l.attn = blocks::load_attention(loader, il, hp.n_embd, attn_cfg_, /*qk_norm=*/true);
      } else {
        l.delta = blocks::load_delta_net(loader, il, hp.n_embd, delta_cfg_);
      }
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
      const blocks::NormedInput a{h, l.attn_norm, hp.norm_eps};
      const Tensor y = hp.layers[size_t(il)] == LayerKind::attention
                           ? blocks::attention(ctx, in, a, l.attn, attn_cfg_, ctx.caches.k[size_t(il)], ctx.caches.v[size_t(il)])
                           : blocks::delta_net(ctx, in, a, l.delta, delta_cfg_, ctx.caches.conv[size_t(il)],
                                               ctx.caches.ssm[size_t(il)]);
      blocks::moe_ffn(ctx, h, y, l.post_attention_norm, hp.norm_eps, l.moe, moe_cfg_);  // h += y; h += moe(norm(h))
      ctx.arena.release(mark);
    }
    return output_logits(ctx, in, h, emb_, hp.norm_eps);
  }

 private:
  void read_hparams(const GgufMeta& meta) {
    HParams& hp = hparams_;
    hp.arch = meta.arch();
    hp.n_embd = meta.count("embedding_length");
    hp.n_layer = meta.count("block_count");
    hp.n_ctx_train = meta.count("context_length");
    hp.n_head = meta.count("attention.head_count");
    // A scalar, or one value per layer with 0 for the delta-net layers (both forms exist).
    const std::vector<int64_t> kv = meta.per_layer("attention.head_count_kv", hp.n_layer);
    hp.n_head_kv = *std::max_element(kv.begin(), kv.end());
    hp.head_dim_k = meta.count_opt("attention.key_length").value_or(hp.n_embd / hp.n_head);
    hp.head_dim_v = meta.count_opt("attention.value_length").value_or(hp.head_dim_k);
    hp.n_rot = int(meta.count_opt("rope.dimension_count").value_or(hp.head_dim_k));
    hp.rope_base = meta.real_opt("rope.freq_base").value_or(10000.0f);
    hp.rope_neox = true;
    hp.norm_eps = meta.real("attention.layer_norm_rms_epsilon");
    hp.n_ff = meta.count_opt("feed_forward_length").value_or(0);
    hp.n_expert = meta.count("expert_count");
    hp.n_expert_used = meta.count("expert_used_count");
    hp.n_ff_exp = meta.count("expert_feed_forward_length");
    hp.n_ff_shexp = meta.count_opt("expert_shared_feed_forward_length").value_or(0);
    hp.norm_topk = meta.flag_opt("norm_top_k_prob").value_or(true);
    hp.ssm_conv_kernel = meta.count("ssm.conv_kernel");
    hp.ssm_head_dim_k = meta.count("ssm.state_size");
    hp.ssm_n_k_heads = meta.count("ssm.group_count");
    hp.ssm_n_v_heads = meta.count("ssm.time_step_rank");
    const int64_t inner = meta.count("ssm.inner_size");
    if (inner % hp.ssm_n_v_heads != 0) meta.fail_key("ssm.inner_size", "is not a multiple of ssm.time_step_rank");
    hp.ssm_head_dim_v = inner / hp.ssm_n_v_heads;

    const bool per_layer_kv = meta.has("attention.head_count_kv") && std::count(kv.begin(), kv.end(), 0) > 0;
    const int64_t interval = meta.count_opt("full_attention_interval").value_or(4);
    if (interval <= 0) meta.fail_key("full_attention_interval", "must be > 0");
    for (int64_t il = 0; il < hp.n_layer; ++il) {
      const bool full = per_layer_kv ? kv[size_t(il)] > 0 : (il + 1) % interval == 0;
      hp.layers.push_back(full ? LayerKind::attention : LayerKind::delta_net);
    }

    if (hp.n_head_kv == 0 || hp.n_head % hp.n_head_kv != 0) {
      meta.fail_key("attention.head_count_kv", "must divide attention.head_count");
    }
    if (hp.n_rot <= 0 || hp.n_rot % 2 != 0 || hp.n_rot > hp.head_dim_k) {
      meta.fail_key("rope.dimension_count", "must be even and at most the head size");
    }
    if (hp.n_expert_used > hp.n_expert) meta.fail_key("expert_used_count", "exceeds expert_count");
    if (hp.ssm_n_v_heads % hp.ssm_n_k_heads != 0) meta.fail_key("ssm.time_step_rank", "must be a multiple of ssm.group_count");
    if (hp.ssm_conv_kernel < 2) meta.fail_key("ssm.conv_kernel", "must be at least 2");

    attn_cfg_ = {hp.n_head, hp.n_head_kv, hp.head_dim_k, hp.head_dim_v, RopeParams{hp.n_rot, hp.rope_base, true},
                 hp.norm_eps, /*output_gate=*/true};
    delta_cfg_ = {hp.ssm_n_k_heads, hp.ssm_n_v_heads, hp.ssm_head_dim_k, hp.ssm_head_dim_v, hp.ssm_conv_kernel, hp.norm_eps};
    moe_cfg_ = {hp.n_expert, hp.n_expert_used, hp.n_ff_exp, hp.n_ff_shexp, hp.norm_topk};
  }

  Embeddings emb_;
  std::vector<Layer> layers_;
  blocks::AttentionConfig attn_cfg_;
  blocks::DeltaNetConfig delta_cfg_;
  blocks::MoeConfig moe_cfg_;
};

}  // namespace

std::unique_ptr<Model> load_qwen3next(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
  return std::make_unique<Qwen3Next>(std::move(file), backend);
}

}  // namespace moeserve::arch
