// Corrupted GGUF files made from valid ones: truncations at every byte, bit flips, and field
// mutations (counts, lengths, type ids, dims, offsets, alignment) at positions GgufBytes recorded.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gguf_test_util.h"

namespace moeserve::test {

// A small valid file touching every structure: strings, an array of strings, a nested array,
// general.alignment, three tensors of block types with padding between them.
inline GgufBytes base_gguf() {
  GgufBytes g;
  g.header(3, 3, 5);
  g.key("general.architecture", 8);
  g.str("arch", "llama");
  g.key("general.alignment", 4);
  g.put<uint32_t>("alignment", 32);
  g.key("tok", 9);
  g.put<int32_t>("tok.elem", 8);
  g.put<uint64_t>("tok.count", 2);
  g.str("tok0", "a");
  g.str("tok1", "bc");
  g.key("nested", 9);
  g.put<int32_t>("nested.elem", 9);
  g.put<uint64_t>("nested.count", 1);
  g.put<int32_t>("nested.inner.elem", 4);
  g.put<uint64_t>("nested.inner.count", 2);
  g.put<uint32_t>("nested.0", 1);
  g.put<uint32_t>("nested.1", 2);
  g.key("f", 6);
  g.put<float>("f.value", 1.0f);
  g.tensor_info("blk.0.a", {64}, 2, 0);        // Q4_0: 36 bytes, padded to 64
  g.tensor_info("blk.0.b", {8, 2}, 0, 64);     // F32: 64 bytes
  g.tensor_info("c", {256}, 12, 128);          // Q4_K: 144 bytes
  g.pad(32);
  g.data(random_bytes(36, 1), 32);
  g.data(random_bytes(64, 2), 32);
  g.data(random_bytes(144, 3), 32);
  return g;
}

struct CorruptCase {
  std::string what;
  std::vector<uint8_t> bytes;
};

inline std::vector<CorruptCase> truncations(const std::vector<uint8_t>& bytes, const std::string& name) {
  std::vector<CorruptCase> out;
  for (size_t n = 0; n < bytes.size(); ++n) {
    out.push_back({name + " cut to " + std::to_string(n) + " bytes",
                   std::vector<uint8_t>(bytes.begin(), bytes.begin() + std::ptrdiff_t(n))});
  }
  return out;
}

// Flips `count` random bits below `limit` (the header, where the structure is), or every bit when
// count is 0.
inline std::vector<CorruptCase> bit_flips(const std::vector<uint8_t>& bytes, const std::string& name, size_t limit,
                                          size_t count, uint32_t seed) {
  std::vector<CorruptCase> out;
  std::mt19937 rng(seed);
  const size_t n = count == 0 ? limit * 8 : count;
  for (size_t i = 0; i < n; ++i) {
    const size_t bit = count == 0 ? i : rng() % (limit * 8);
    CorruptCase c{name + " bit " + std::to_string(bit) + " flipped", bytes};
    c.bytes[bit / 8] ^= uint8_t(1u << (bit % 8));
    out.push_back(std::move(c));
  }
  return out;
}

inline std::vector<CorruptCase> field_mutations(const GgufBytes& g, const std::string& name) {
  const uint64_t size = g.bytes.size();
  const std::vector<uint64_t> values = {0,    1,        2,         3,        4,        5,         9,
                                        13,   31,       33,        48,       63,       64,        1000,
                                        size, size - 1, size + 32, 1u << 31, ~0ull,    ~0ull >> 1, 1ull << 63,
                                        1ull << 32, uint64_t(-2)};
  std::vector<CorruptCase> out;
  for (const Field& f : g.fields) {
    for (uint64_t v : values) {
      out.push_back({name + " field " + f.name + " = " + std::to_string(v), g.with(f.name, v)});
    }
  }
  return out;
}

inline std::vector<CorruptCase> corrupt_corpus() {
  const GgufBytes base = base_gguf();
  const size_t header_end = base.field("tensor c.offset").pos + 8;
  std::vector<CorruptCase> all;
  for (auto&& list : {truncations(base.bytes, "base"), bit_flips(base.bytes, "base", header_end, 0, 0),
                      field_mutations(base, "base")}) {
    all.insert(all.end(), list.begin(), list.end());
  }
  return all;
}

}  // namespace moeserve::test
