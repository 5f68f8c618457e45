// Quantizing rows of float data to any block type, with optional importance weights (the
// per-column mean squared activations of an importance matrix), multi-threaded over rows. The
// bytes equal ggml_quantize_chunk's for the same type, rows and importance weights, with one
// exception: an IQ3_S super-block holding an exactly zero 32-element sub-block among non-zero
// ones, which ggml stores misplaced (see iq_grid_quantize.cpp) and moeserve in place.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/ggml_type.h"

namespace moeserve {

// Whether `type` can be a quantization target: it has a quantizer in the registry and is a
// storage type (not the activation-only Q8_1 / Q8_K).
bool can_quantize(GgmlType type);

// Types ggml refuses to quantize without an importance matrix (IQ2_XXS, IQ2_XS, IQ1_S). Here they
// are quantized anyway, every column weighing the same.
bool quantize_requires_imatrix(GgmlType type);

// Quantizes n_rows rows of n_per_row floats from src into dst (n_rows * row_bytes(type,
// n_per_row) bytes). imatrix holds n_per_row weights (one per column) or is null. Rows are shared
// among n_threads threads (<= 1: the calling thread); the result does not depend on the count.
// Returns the bytes written. Throws moeserve::Error if the type has no quantizer or n_per_row is
// not a multiple of its block size.
size_t quantize_rows(GgmlType type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                     const float* imatrix, int n_threads = 1);

}  // namespace moeserve
