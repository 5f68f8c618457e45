// Norm helpers shared by the architectures.
#pragma once

#include "model/model.h"

namespace moeserve::blocks {

// y = rms_norm(x) * w, a new tensor in the arena.
inline Tensor rms_norm(ForwardContext& ctx, const Tensor& x, const Tensor& w, float eps) {
  Tensor y = ctx.arena.alloc(GgmlType::F32, x.ne);
  ctx.be.rms_norm(y, x, &w, eps);
  return y;
}

}  // namespace moeserve::blocks
