#include "model/hparams.h"

#include <algorithm>

namespace moeserve {

int64_t HParams::n_attention_layers() const {
  return std::count(layers.begin(), layers.end(), LayerKind::attention);
}

int64_t HParams::n_delta_net_layers() const {
  return std::count(layers.begin(), layers.end(), LayerKind::delta_net);
}

}  // namespace moeserve
