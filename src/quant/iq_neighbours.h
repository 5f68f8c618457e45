// Neighbour lists for the i-quant grid searches. A quantizer rounds each group of 8 (IQ2, IQ1)
// or 4 (IQ3) elements to levels independently; when that tuple of levels is not a grid point it
// picks among the grid points nearest to it. Those candidates, for every possible off-grid tuple,
// are computed here once: all grid points at the `nwant` smallest squared distances in level
// space, ordered by distance and then by grid index (the order ggml's searches visit them in,
// which decides ties). nwant is 2 for IQ2_XXS, IQ2_XS and IQ3_XXS, 1 for IQ2_S, 3 for IQ3_S and
// the IQ1 grid.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "quant/grids.h"

namespace moeserve::quant {

struct GridNeighbours {
  const GridLevels* levels = nullptr;
  std::vector<uint32_t> start;  // packed tuple u -> first entry in `list`; list[start[u], start[u+1])
  std::vector<uint16_t> list;   // grid indices

  std::span<const uint16_t> of(uint32_t u) const { return {list.data() + start[u], list.data() + start[u + 1]}; }

  // The same candidates laid out for computing their distances several at a time: per list, the
  // level-form values (2v + 1) as floats, element by element ([b][candidate]), each row padded to
  // a multiple of kLanes. Not built for the IQ1 grid, whose search maps levels to values first.
  static constexpr int kLanes = 4;
  static constexpr size_t kMaxList = 320;  // longest list (IQ2_XS: 292) rounded up
  std::vector<uint32_t> value_start;       // u -> first float of list u in `values`
  std::vector<float> values;

  size_t padded(uint32_t u) const { return (size_t(start[u + 1] - start[u]) + kLanes - 1) / kLanes * kLanes; }
};

// Built on first use (thread-safe), immutable afterwards. Only tuples whose levels are all
// below the grid's level count have lists (the quantizers clamp levels to that range).
const GridNeighbours& grid_neighbours(IqGrid grid);

}  // namespace moeserve::quant
