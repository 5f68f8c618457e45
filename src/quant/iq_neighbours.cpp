#include "quant/iq_neighbours.h"

#include <array>

#include "core/error.h"

namespace moeserve::quant {
namespace {

int wanted_distances(IqGrid grid) {
  switch (grid) {
    case IqGrid::IQ2_XXS:
    case IqGrid::IQ2_XS:
    case IqGrid::IQ3_XXS: return 2;
    case IqGrid::IQ2_S: return 1;
    case IqGrid::IQ3_S:
    case IqGrid::IQ1_S: return 3;
  }
  fail("internal: unknown i-quant grid ", int(grid));
}

GridNeighbours build(IqGrid grid) {
  const GridLevels& g = grid_levels(grid);
  const int nwant = wanted_distances(grid);
  const int n_levels = int(g.magnitudes.size());
  const uint32_t n_tuples = uint32_t(g.index_of.size());
  const uint32_t mask = (1u << g.bits) - 1;
  const size_t n_grid = g.packed.size();

  GridNeighbours nb;
  nb.levels = &g;
  nb.start.assign(size_t(n_tuples) + 1, 0);
  // Distances are compared in level units: the level form 2v + 1 scales every squared distance
  // by 4, which keeps their order and ties.
  std::vector<int> dist(n_grid);
  for (uint32_t u = 0; u < n_tuples; ++u) {
    nb.start[u] = uint32_t(nb.list.size());
    if (g.index_of[u] >= 0) continue;
    std::array<int, 8> v{};
    bool in_range = true;
    for (int b = 0; b < g.elems; ++b) {
      v[size_t(b)] = int((u >> (g.bits * b)) & mask);
      in_range = in_range && v[size_t(b)] < n_levels;
    }
    if (!in_range) continue;
    constexpr int kMaxDist = 8 * 7 * 7;
    std::array<bool, kMaxDist + 1> present{};
    for (size_t j = 0; j < n_grid; ++j) {
      int d2 = 0;
      for (int b = 0; b < g.elems; ++b) {
        const int diff = int((g.packed[j] >> (g.bits * b)) & mask) - v[size_t(b)];
        d2 += diff * diff;
      }
      dist[j] = d2;
      present[size_t(d2)] = true;
    }
    int taken = 0;
    for (int d2 = 0; d2 <= kMaxDist && taken < nwant; ++d2) {
      if (!present[size_t(d2)]) continue;
      ++taken;
      for (size_t j = 0; j < n_grid; ++j) {
        if (dist[j] == d2) nb.list.push_back(uint16_t(j));
      }
    }
  }
  nb.start[n_tuples] = uint32_t(nb.list.size());
  if (grid != IqGrid::IQ1_S) {
    nb.value_start.assign(size_t(n_tuples) + 1, 0);
    for (uint32_t u = 0; u < n_tuples; ++u) {
      nb.value_start[u] = uint32_t(nb.values.size());
      const size_t n = nb.start[u + 1] - nb.start[u], np = nb.padded(u);
      if (np > GridNeighbours::kMaxList) fail("internal: neighbour list of ", n, " entries");
      const size_t first = nb.values.size();
      nb.values.resize(first + np * size_t(g.elems), 0.0f);
      for (int b = 0; b < g.elems; ++b) {
        for (size_t c = 0; c < n; ++c) {
          nb.values[first + size_t(b) * np + c] = float(g.level_form[size_t(nb.list[nb.start[u] + c]) * size_t(g.elems) + size_t(b)]);
        }
      }
    }
    nb.value_start[n_tuples] = uint32_t(nb.values.size());
  }
  return nb;
}

}  // namespace

const GridNeighbours& grid_neighbours(IqGrid grid) {
  // One static per grid so that each is built only when a quantizer first needs it.
  switch (grid) {
    case IqGrid::IQ2_XXS: { static const GridNeighbours nb = build(grid); return nb; }
    case IqGrid::IQ2_XS: { static const GridNeighbours nb = build(grid); return nb; }
    case IqGrid::IQ2_S: { static const GridNeighbours nb = build(grid); return nb; }
    case IqGrid::IQ3_XXS: { static const GridNeighbours nb = build(grid); return nb; }
    case IqGrid::IQ3_S: { static const GridNeighbours nb = build(grid); return nb; }
    case IqGrid::IQ1_S: { static const GridNeighbours nb = build(grid); return nb; }
  }
  fail("internal: unknown i-quant grid ", int(grid));
}

}  // namespace moeserve::quant
