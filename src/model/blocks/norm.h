// Norm helpers shared by the architectures.
#pragma once

#include <initializer_list>

#include "model/model.h"

namespace moeserve::blocks {

// A block's input rms_norm(h) * weight, left to the block's first products to apply: they take
// it through Backend::norm_matmuls, which may fold the norm into the products themselves.
struct NormedInput {
  Tensor h;       // [n_embd, n]
  Tensor weight;  // [n_embd]
  float eps = 1e-6f;
};

// Backend::norm_matmuls of x with a scratch tensor from the arena.
inline void norm_matmuls(ForwardContext& ctx, const NormedInput& x, std::initializer_list<MatmulProduct> products) {
  const Tensor scratch = ctx.arena.alloc(GgmlType::F32, x.h.ne);
  ctx.be.norm_matmuls(x.h, x.weight, x.eps, scratch, products);
}

}  // namespace moeserve::blocks
