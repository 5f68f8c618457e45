// The element formats the CUDA copy, KV store and attention kernels read and write.
#pragma once

#include <optional>

#include "backend/cuda/cuda_common.cuh"
#include "core/ggml_type.h"

namespace moeserve::cuda {

inline std::optional<Fmt> format_of(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return Fmt::f32;
    case GgmlType::F16: return Fmt::f16;
    case GgmlType::BF16: return Fmt::bf16;
    case GgmlType::Q8_0: return Fmt::q8_0;
    case GgmlType::Q4_0: return Fmt::q4_0;
    default: return std::nullopt;
  }
}

// format_of for a KV cache, or one clear error naming the cache (`which`) and the supported types.
Fmt kv_format(GgmlType type, const char* which);

}  // namespace moeserve::cuda
