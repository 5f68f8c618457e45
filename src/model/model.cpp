#include "model/model.h"

namespace moeserve {

std::vector<LayerCacheSpec> Model::cache_specs() const {
  const HParams& hp = hparams_;
  std::vector<LayerCacheSpec> specs(size_t(hp.n_layer));
  for (int64_t il = 0; il < hp.n_layer; ++il) {
    LayerCacheSpec& s = specs[size_t(il)];
    if (hp.layers[size_t(il)] == LayerKind::attention) {
      s.k_width = hp.head_dim_k * hp.n_head_kv;
      s.v_width = hp.head_dim_v * hp.n_head_kv;
    } else {
      s.conv_values = (hp.ssm_conv_kernel - 1) * hp.ssm_conv_channels();
      s.ssm_values = hp.ssm_head_dim_k * hp.ssm_head_dim_v * hp.ssm_n_v_heads;
    }
  }
  return specs;
}

void Model::adopt(WeightLoader& loader, std::shared_ptr<const gguf::GgufFile> file) {
  placement_ = loader.take_placement();
  owned_ = loader.take_buffers();
  file_ = std::move(file);
}

}  // namespace moeserve
