// The i-quant lattices and codebooks (ggml-common.h tables, kept as data in src/quant/grids/*.txt
// and compiled into grid_data.h at configure time), plus the forms quantizers need, derived here
// from those tables rather than copied: per-element level indices and the inverse map.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "quant/grid_data.h"

namespace moeserve::quant {

using grid_data::iq1s_grid;
using grid_data::iq1s_grid_gpu;
using grid_data::iq2s_grid;
using grid_data::iq2xs_grid;
using grid_data::iq2xxs_grid;
using grid_data::iq3s_grid;
using grid_data::iq3xxs_grid;
using grid_data::kmask_iq2xs;
using grid_data::ksigns64;
using grid_data::ksigns_iq2xs;
using grid_data::kvalues_fp4;
using grid_data::kvalues_iq4nl;

// Byte b of a grid entry is element b's magnitude (IQ1: an int8 in {-1, 0, 1}).
inline uint8_t grid_byte(uint64_t entry, int b) { return uint8_t(entry >> (8 * b)); }

enum class IqGrid { IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S };

// A grid in level form. Each grid uses a few distinct magnitudes per element (3 for the 2-bit
// grids and IQ1, 8 for the 3-bit ones); level v = rank of the magnitude among them. Entries are
// ordered by `packed` (sum of v_b << (bits * b)), which is ggml's kgrid_* index list.
struct GridLevels {
  int elems = 0;                  // elements per entry: 8 (IQ2, IQ1) or 4 (IQ3)
  int bits = 0;                   // bits per level in `packed`: 2 or 3
  std::vector<int> magnitudes;    // level -> grid value (ascending; signed for IQ1)
  std::vector<uint16_t> packed;   // grid index -> packed levels
  std::vector<uint8_t> level_form;  // grid index * elems + b -> 2 * v_b + 1 (quantizer's odd levels)
  std::vector<int16_t> index_of;  // packed levels (1 << bits*elems entries) -> grid index, -1 off grid
};

// Built on first use, immutable afterwards (thread-safe static initialisation).
const GridLevels& grid_levels(IqGrid grid);

// The raw grid entries of `grid`, widened to 64 bits (IQ3 entries use the low 4 bytes).
std::vector<uint64_t> grid_entries(IqGrid grid);

}  // namespace moeserve::quant
