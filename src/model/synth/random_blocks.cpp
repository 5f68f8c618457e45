#include "model/synth/random_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"

namespace moeserve::synth {
namespace {

// Where a block keeps its float super-scales (shared/spec/quants.md block structs). Everything
// else in a block is integer data for which every bit pattern is valid.
enum class Slot : uint8_t {
  F16Scale,  // half d
  F16Min,    // half m / dmin (subtracted or added; random sign)
  E8M0,      // MXFP4 exponent byte: d = 2^(e-128)
  Iq1mScale, // IQ1_M: fp16 d spread over the top nibbles of the 4 u16 scale words at this offset
};

struct ScaleSlot {
  uint16_t offset;
  Slot kind;
};

struct Layout {
  GgmlType type;
  ScaleSlot slots[2];
  int n_slots;
};

constexpr Layout kLayouts[] = {
    {GgmlType::Q4_0, {{0, Slot::F16Scale}}, 1},
    {GgmlType::Q4_1, {{0, Slot::F16Scale}, {2, Slot::F16Min}}, 2},
    {GgmlType::Q5_0, {{0, Slot::F16Scale}}, 1},
    {GgmlType::Q5_1, {{0, Slot::F16Scale}, {2, Slot::F16Min}}, 2},
    {GgmlType::Q8_0, {{0, Slot::F16Scale}}, 1},
    {GgmlType::Q2_K, {{80, Slot::F16Scale}, {82, Slot::F16Min}}, 2},
    {GgmlType::Q3_K, {{108, Slot::F16Scale}}, 1},
    {GgmlType::Q4_K, {{0, Slot::F16Scale}, {2, Slot::F16Min}}, 2},
    {GgmlType::Q5_K, {{0, Slot::F16Scale}, {2, Slot::F16Min}}, 2},
    {GgmlType::Q6_K, {{208, Slot::F16Scale}}, 1},
    {GgmlType::IQ2_XXS, {{0, Slot::F16Scale}}, 1},
    {GgmlType::IQ2_XS, {{0, Slot::F16Scale}}, 1},
    {GgmlType::IQ3_XXS, {{0, Slot::F16Scale}}, 1},
    {GgmlType::IQ1_S, {{0, Slot::F16Scale}}, 1},
    {GgmlType::IQ4_NL, {{0, Slot::F16Scale}}, 1},
    {GgmlType::IQ3_S, {{0, Slot::F16Scale}}, 1},
    {GgmlType::IQ2_S, {{0, Slot::F16Scale}}, 1},
    {GgmlType::IQ4_XS, {{0, Slot::F16Scale}}, 1},
    {GgmlType::IQ1_M, {{48, Slot::Iq1mScale}}, 1},
    {GgmlType::MXFP4, {{0, Slot::E8M0}}, 1},
};

const Layout* layout_of(GgmlType type) {
  for (const Layout& l : kLayouts)
    if (l.type == type) return &l;
  return nullptr;
}

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

uint16_t get_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void random_bytes(uint8_t* out, size_t n, Rng& rng) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng.next();
    std::memcpy(out + i, &v, 8);
  }
  if (i < n) {
    const uint64_t v = rng.next();
    std::memcpy(out + i, &v, n - i);
  }
}

}  // namespace

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

float Rng::uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }

uint64_t hash_name(const char* name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *name; ++name) h = (h ^ uint8_t(*name)) * 0x100000001b3ull;
  return h;
}

BlockFiller::BlockFiller(GgmlType type) : type_(type) {
  const TypeTraits& t = type_traits(type);
  if (type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16) return;
  if (!layout_of(type) || !t.dequantize)
    fail("synthetic ", t.name, " weights are not supported (activation-only, integer or without a reference "
         "dequantizer); use a float, legacy, K- or IQ type");
  // Measure the RMS of random blocks at super-scale 1 with the reference dequantizer.
  Rng rng(0x5eed);
  const int64_t n_blocks = 256;
  std::vector<uint8_t> blocks(size_t(n_blocks) * t.block_bytes);
  fill_blocks(blocks.data(), n_blocks, 1.0f, rng);
  std::vector<float> values(size_t(n_blocks * t.block_size));
  t.dequantize(blocks.data(), values.data(), int64_t(values.size()));
  double sum = 0;
  for (float v : values) sum += double(v) * v;
  const double rms = std::sqrt(sum / double(values.size()));
  if (!(rms > 0) || !std::isfinite(rms)) fail("internal: cannot calibrate synthetic ", t.name, " blocks");
  unit_scale_ = float(1.0 / rms);
}

void BlockFiller::fill_blocks(uint8_t* out, int64_t n_blocks, float scale, Rng& rng) const {
  const TypeTraits& t = type_traits(type_);
  const Layout& layout = *layout_of(type_);
  random_bytes(out, size_t(n_blocks) * t.block_bytes, rng);
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint8_t* block = out + size_t(b) * t.block_bytes;
    const float d = scale * rng.uniform(0.75f, 1.25f);  // some spread between blocks
    for (int i = 0; i < layout.n_slots; ++i) {
      uint8_t* p = block + layout.slots[i].offset;
      switch (layout.slots[i].kind) {
        case Slot::F16Scale:
          put_u16(p, fp32_to_fp16(d));
          break;
        case Slot::F16Min:
          put_u16(p, fp32_to_fp16((rng.next() & 1) ? d : -d));
          break;
        case Slot::E8M0: {
          const int e = 128 + int(std::lround(std::log2(double(d))));
          *p = uint8_t(std::clamp(e, 1, 254));
          break;
        }
        case Slot::Iq1mScale: {
          const uint16_t u = fp32_to_fp16(d);
          for (int w = 0; w < 4; ++w) {
            const uint16_t word = get_u16(p + 2 * w);
            put_u16(p + 2 * w, uint16_t((word & 0x0fff) | (((u >> (4 * w)) & 0xf) << 12)));
          }
          break;
        }
      }
    }
  }
}

void BlockFiller::fill(uint8_t* out, int64_t row_len, int64_t n_rows, float target_rms, Rng& rng) const {
  const TypeTraits& t = type_traits(type_);
  if (row_len % t.block_size != 0)
    fail("row of ", row_len, " values is not a multiple of the ", t.name, " block size ", t.block_size);
  const int64_t n = row_len * n_rows;
  if (type_ == GgmlType::F32 || type_ == GgmlType::F16 || type_ == GgmlType::BF16) {
    // Uniform in [-a, a] has RMS a / sqrt(3).
    const float a = target_rms * std::sqrt(3.0f);
    for (int64_t i = 0; i < n; ++i) {
      const float v = rng.uniform(-a, a);
      if (type_ == GgmlType::F32) std::memcpy(out + 4 * i, &v, 4);
      else put_u16(out + 2 * i, type_ == GgmlType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v));
    }
    return;
  }
  fill_blocks(out, n / t.block_size, unit_scale_ * target_rms, rng);
}

}  // namespace moeserve::synth
