// qwen3moe (Qwen3-30B-A3B, Qwen3-Coder-30B-A3B, ...): qwen3's attention with a sparse MoE FFN in
// every layer: softmax router, top-k, renormalised weights, no shared expert (qwen3next.md §7).
#include "model/arch/transformer.h"

namespace moeserve::arch {
namespace {

class Qwen3Moe final : public Transformer {
 public:
  Qwen3Moe(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
    const GgufMeta meta(*file, "qwen3moe");
    read_transformer_hparams(meta, hparams_, /*rope_neox=*/true);
    HParams& hp = hparams_;
    hp.n_expert = meta.count("expert_count");
    hp.n_expert_used = meta.count("expert_used_count");
    hp.n_ff_exp = meta.count("expert_feed_forward_length");
    hp.norm_topk = meta.flag_opt("expert_weights_norm").value_or(true);
    if (hp.n_expert == 0) meta.fail_key("expert_count", "must be > 0");
    if (hp.n_expert_used > hp.n_expert) meta.fail_key("expert_used_count", "exceeds expert_count");
    attn_cfg_ = {hp.n_head, hp.n_head_kv, hp.head_dim_k, hp.head_dim_v, RopeParams{hp.n_rot, hp.rope_base, true},
                 hp.norm_eps, false};
    moe_cfg_ = {hp.n_expert, hp.n_expert_used, hp.n_ff_exp, 0, hp.norm_topk};
    load_layers(std::move(file), backend, /*qk_norm=*/true);
  }
};

}  // namespace

std::unique_ptr<Model> load_qwen3moe(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
  return std::make_unique<Qwen3Moe>(std::move(file), backend);
}

}  // namespace moeserve::arch
