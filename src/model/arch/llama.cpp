// llama (LLaMA 1-3, Mistral and relatives): pre-norm transformer, GQA attention with normal
// (adjacent-pair) RoPE, no q/k norm, SwiGLU FFN; Mixtral-style files (expert_count > 0) use a
// softmax top-k MoE instead. The converter permutes q/k rows so normal RoPE applies.
#include "model/arch/transformer.h"

namespace moeserve::arch {
namespace {

class Llama final : public Transformer {
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
    load_layers(std::move(file), backend, /*qk_norm=*/false);
  }
};

}  // namespace

std::unique_ptr<Model> load_llama(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
  return std::make_unique<Llama>(std::move(file), backend);
}

}  // namespace moeserve::arch
