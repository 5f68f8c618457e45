// qwen3 (dense Qwen3): pre-norm transformer, GQA attention with per-head q/k RMSNorm before NeoX
// RoPE over the whole head, SwiGLU FFN (qwen3next.md §7). Small models tie the output head.
#include "model/arch/transformer.h"

namespace moeserve::arch {
namespace {

class Qwen3 final : public Transformer {
 public:
  Qwen3(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
    const GgufMeta meta(*file, "qwen3");
    read_transformer_hparams(meta, hparams_, /*rope_neox=*/true);
    HParams& hp = hparams_;
    hp.n_ff = meta.count("feed_forward_length");
    attn_cfg_ = {hp.n_head, hp.n_head_kv, hp.head_dim_k, hp.head_dim_v, RopeParams{hp.n_rot, hp.rope_base, true},
                 hp.norm_eps, false};
    load_layers(std::move(file), backend, /*qk_norm=*/true);
  }
};

}  // namespace

std::unique_ptr<Model> load_qwen3(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
  return std::make_unique<Qwen3>(std::move(file), backend);
}

}  // namespace moeserve::arch
