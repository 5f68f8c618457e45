// The lookup tables compiled from src/quant/grids/*.txt and the level forms derived from them,
// checked against the properties shared/spec/grids/README.md and quants.md state for ggml's
// tables (value sets, kgrid ordering, sign parity, the GPU packing of the IQ1 grid).
#include <gtest/gtest.h>

#include <ostream>

#include <bit>
#include <vector>

#include "quant/grids.h"

namespace moeserve::quant {
namespace {

TEST(QuantGrids, TableSizes) {
  EXPECT_EQ(std::size(iq2xxs_grid), 256u);
  EXPECT_EQ(std::size(iq2xs_grid), 512u);
  EXPECT_EQ(std::size(iq2s_grid), 1024u);
  EXPECT_EQ(std::size(iq3xxs_grid), 256u);
  EXPECT_EQ(std::size(iq3s_grid), 512u);
  EXPECT_EQ(std::size(iq1s_grid), 2048u);
  EXPECT_EQ(std::size(iq1s_grid_gpu), 2048u);
  EXPECT_EQ(std::size(ksigns_iq2xs), 128u);
  EXPECT_EQ(std::size(kmask_iq2xs), 8u);
  EXPECT_EQ(std::size(ksigns64), 128u);
}

struct LevelCase {
  IqGrid grid;
  const char* name;
  size_t entries;
  std::vector<int> magnitudes;  // README's value set per grid, ascending
};

void PrintTo(const LevelCase& c, std::ostream* os) { *os << c.name; }

class GridLevelsTest : public ::testing::TestWithParam<LevelCase> {};

TEST_P(GridLevelsTest, LevelFormMatchesKgridOrder) {
  const LevelCase& c = GetParam();
  const GridLevels& g = grid_levels(c.grid);
  EXPECT_EQ(g.magnitudes, c.magnitudes);
  ASSERT_EQ(g.packed.size(), c.entries);
  ASSERT_EQ(g.level_form.size(), c.entries * size_t(g.elems));
  // ggml's kgrid_* lists are strictly increasing in sum v_b * base^b: with the rank-of-value
  // levels, our packed indices must be too.
  for (size_t i = 1; i < g.packed.size(); ++i) EXPECT_LT(g.packed[i - 1], g.packed[i]) << c.name << " entry " << i;
  size_t on_grid = 0;
  for (size_t u = 0; u < g.index_of.size(); ++u) {
    if (g.index_of[u] < 0) continue;
    ++on_grid;
    EXPECT_EQ(g.packed[size_t(g.index_of[u])], u);
  }
  EXPECT_EQ(on_grid, c.entries);
  // Level form byte b = 2v + 1 and maps back to the grid's own value.
  const std::vector<uint64_t> entries = grid_entries(c.grid);
  for (size_t i = 0; i < entries.size(); ++i) {
    for (int b = 0; b < g.elems; ++b) {
      const int v = (g.level_form[i * size_t(g.elems) + size_t(b)] - 1) / 2;
      const int value = c.grid == IqGrid::IQ1_S ? int(int8_t(grid_byte(entries[i], b))) : int(grid_byte(entries[i], b));
      EXPECT_EQ(g.magnitudes[size_t(v)], value);
      EXPECT_EQ(int((g.packed[i] >> (g.bits * b)) & ((1 << g.bits) - 1)), v);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllGrids, GridLevelsTest,
    ::testing::Values(LevelCase{IqGrid::IQ2_XXS, "iq2xxs", 256, {8, 25, 43}},
                      LevelCase{IqGrid::IQ2_XS, "iq2xs", 512, {8, 25, 43}},
                      LevelCase{IqGrid::IQ2_S, "iq2s", 1024, {8, 25, 43}},
                      LevelCase{IqGrid::IQ3_XXS, "iq3xxs", 256, {4, 12, 20, 28, 36, 44, 52, 62}},
                      LevelCase{IqGrid::IQ3_S, "iq3s", 512, {1, 3, 5, 7, 9, 11, 13, 15}},
                      LevelCase{IqGrid::IQ1_S, "iq1s", 2048, {-1, 0, 1}}),
    [](const ::testing::TestParamInfo<LevelCase>& info) { return std::string(info.param.name); });

TEST(QuantGrids, SignTablesHaveEvenParity) {
  for (int i = 0; i < 128; ++i) {
    EXPECT_EQ(ksigns_iq2xs[i] & 127, i);
    EXPECT_EQ(std::popcount(unsigned(ksigns_iq2xs[i])) % 2, 0) << i;
    for (int b = 0; b < 8; ++b) {
      const uint8_t expanded = uint8_t(ksigns64[i] >> (8 * b));
      EXPECT_EQ(expanded, ksigns_iq2xs[i] & (1 << b) ? 0xFF : 0x00) << i << " byte " << b;
    }
  }
  for (int b = 0; b < 8; ++b) EXPECT_EQ(kmask_iq2xs[b], 1 << b);
}

TEST(QuantGrids, Iq1GpuPackingMatchesGrid) {
  for (size_t i = 0; i < std::size(iq1s_grid); ++i) {
    for (int b = 0; b < 4; ++b) {
      const uint8_t gpu = uint8_t(iq1s_grid_gpu[i] >> (8 * b));
      EXPECT_EQ((gpu & 0xF) - 1, int8_t(grid_byte(iq1s_grid[i], b))) << i;
      EXPECT_EQ((gpu >> 4) - 1, int8_t(grid_byte(iq1s_grid[i], b + 4))) << i;
    }
  }
}

TEST(QuantGrids, Codebooks) {
  const int iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  const int fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(kvalues_iq4nl[i], iq4nl[i]);
    EXPECT_EQ(kvalues_fp4[i], fp4[i]);
  }
}

}  // namespace
}  // namespace moeserve::quant
