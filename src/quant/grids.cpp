#include "quant/grids.h"

#include <algorithm>
#include <iterator>

#include "core/error.h"

namespace moeserve::quant {
namespace {

struct GridShape {
  int elems;
  int bits;
  bool is_signed;  // IQ1 grid bytes are int8 values
};

GridShape shape_of(IqGrid grid) {
  switch (grid) {
    case IqGrid::IQ2_XXS:
    case IqGrid::IQ2_XS:
    case IqGrid::IQ2_S: return {8, 2, false};
    case IqGrid::IQ3_XXS:
    case IqGrid::IQ3_S: return {4, 3, false};
    case IqGrid::IQ1_S: return {8, 2, true};
  }
  fail("internal: unknown i-quant grid ", int(grid));
}

GridLevels build_levels(IqGrid grid) {
  const GridShape shape = shape_of(grid);
  const std::vector<uint64_t> entries = grid_entries(grid);
  auto value = [&](uint64_t entry, int b) {
    const uint8_t byte = grid_byte(entry, b);
    return shape.is_signed ? int(int8_t(byte)) : int(byte);
  };

  GridLevels g;
  g.elems = shape.elems;
  g.bits = shape.bits;
  for (uint64_t e : entries) {
    for (int b = 0; b < shape.elems; ++b) g.magnitudes.push_back(value(e, b));
  }
  std::sort(g.magnitudes.begin(), g.magnitudes.end());
  g.magnitudes.erase(std::unique(g.magnitudes.begin(), g.magnitudes.end()), g.magnitudes.end());
  if (g.magnitudes.size() > (size_t(1) << shape.bits)) {
    fail("internal: i-quant grid ", int(grid), " has ", g.magnitudes.size(), " distinct values");
  }

  g.index_of.assign(size_t(1) << (shape.bits * shape.elems), int16_t(-1));
  for (size_t i = 0; i < entries.size(); ++i) {
    uint32_t packed = 0;
    for (int b = 0; b < shape.elems; ++b) {
      const auto it = std::lower_bound(g.magnitudes.begin(), g.magnitudes.end(), value(entries[i], b));
      const uint32_t level = uint32_t(it - g.magnitudes.begin());
      packed |= level << (shape.bits * b);
      g.level_form.push_back(uint8_t(2 * level + 1));
    }
    g.packed.push_back(uint16_t(packed));
    g.index_of[packed] = int16_t(i);
  }
  return g;
}

template <typename T, size_t N>
std::vector<uint64_t> widen(const T (&table)[N]) {
  return std::vector<uint64_t>(std::begin(table), std::end(table));
}

}  // namespace

std::vector<uint64_t> grid_entries(IqGrid grid) {
  switch (grid) {
    case IqGrid::IQ2_XXS: return widen(iq2xxs_grid);
    case IqGrid::IQ2_XS: return widen(iq2xs_grid);
    case IqGrid::IQ2_S: return widen(iq2s_grid);
    case IqGrid::IQ3_XXS: return widen(iq3xxs_grid);
    case IqGrid::IQ3_S: return widen(iq3s_grid);
    case IqGrid::IQ1_S: return widen(iq1s_grid);
  }
  fail("internal: unknown i-quant grid ", int(grid));
}

const GridLevels& grid_levels(IqGrid grid) {
  static const GridLevels levels[] = {
      build_levels(IqGrid::IQ2_XXS), build_levels(IqGrid::IQ2_XS), build_levels(IqGrid::IQ2_S),
      build_levels(IqGrid::IQ3_XXS), build_levels(IqGrid::IQ3_S),  build_levels(IqGrid::IQ1_S),
  };
  return levels[int(grid)];
}

}  // namespace moeserve::quant
