// Helpers shared by the quant tests: deterministic random rows, registry-driven conversions,
// blocks of random bytes with sane scale fields, error measures.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/fp16.h"
#include "core/ggml_type.h"

namespace moeserve::test {

inline std::vector<uint8_t> read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline std::vector<float> normal_row(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  return x;
}

// Heavy-tailed: Student-t with 3 degrees of freedom plus 1% outliers 30x larger, the shape of
// real weight rows with a few large channels.
inline std::vector<float> heavy_tailed_row(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> t(3.0f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = t(rng) * (u(rng) < 0.01f ? 30.0f : 1.0f);
  return x;
}

// A half drawn uniformly from [2^-10, 2) in log scale, as the spec's test vectors use.
inline uint16_t random_scale_half(std::mt19937& rng) {
  std::uniform_real_distribution<float> e(-10.0f, 1.0f);
  return fp32_to_fp16(std::exp2(e(rng)));
}

// n elements worth of blocks of `type` filled with random bytes, with the scale fields replaced
// by finite positive values (as in the spec test vectors): random bytes exercise every index,
// sign and sub-scale pattern, including ones a quantizer would rarely emit.
inline std::vector<uint8_t> random_blocks(GgmlType type, int64_t n, uint32_t seed) {
  const TypeTraits& t = type_traits(type);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> data(row_bytes(type, n));
  for (uint8_t& b : data) b = uint8_t(byte(rng));
  auto set_half = [&](uint8_t* p) {
    const uint16_t h = random_scale_half(rng);
    std::memcpy(p, &h, 2);
  };
  for (size_t off = 0; off < data.size(); off += t.block_bytes) {
    uint8_t* blk = data.data() + off;
    switch (type) {
      case GgmlType::Q4_1:
      case GgmlType::Q5_1:
      case GgmlType::Q8_1: set_half(blk); set_half(blk + 2); break;
      case GgmlType::Q2_K: set_half(blk + 80); set_half(blk + 82); break;
      case GgmlType::Q3_K: set_half(blk + 108); break;
      case GgmlType::Q4_K:
      case GgmlType::Q5_K: set_half(blk); set_half(blk + 2); break;
      case GgmlType::Q6_K: set_half(blk + 208); break;
      case GgmlType::Q8_K: {
        const float d = fp16_to_fp32(random_scale_half(rng)) / 64;
        std::memcpy(blk, &d, 4);
        // bsums must be the sums of their 16 quants for the block to be a valid Q8_K.
        for (int g = 0; g < 16; ++g) {
          int sum = 0;
          for (int e = 0; e < 16; ++e) sum += int8_t(blk[4 + 16 * g + e]);
          const int16_t s = int16_t(sum);
          std::memcpy(blk + 4 + 256 + 2 * g, &s, 2);
        }
        break;
      }
      case GgmlType::IQ1_M: {
        // The super-block half is spread over the top nibbles of the four u16 scales.
        const uint16_t h = random_scale_half(rng);
        for (int k = 0; k < 4; ++k) blk[48 + 2 * k + 1] = uint8_t((blk[48 + 2 * k + 1] & 0x0F) | (((h >> (4 * k)) & 0xF) << 4));
        break;
      }
      case GgmlType::MXFP4: blk[0] = uint8_t(100 + byte(rng) % 50); break;
      default: set_half(blk); break;  // every other block type starts with its half d
    }
  }
  return data;
}

inline std::vector<uint8_t> quantize(GgmlType type, const std::vector<float>& x) {
  std::vector<uint8_t> q(row_bytes(type, int64_t(x.size())));
  type_traits(type).quantize(x.data(), q.data(), int64_t(x.size()));
  return q;
}

inline std::vector<float> dequantize(GgmlType type, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  type_traits(type).dequantize(q.data(), y.data(), n);
  return y;
}

// sqrt(sum (x - y)^2 / sum x^2).
inline double relative_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    ref += double(x[i]) * x[i];
  }
  return std::sqrt(err / ref);
}

inline bool all_finite(const std::vector<float>& y) {
  for (float v : y) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

// Rows that exercise the quantizers' branches: ordinary, tiny and heavy-tailed values, all-zero
// and constant blocks, a single outlier, and a mix of zero and non-zero blocks in one row.
inline std::vector<std::vector<float>> quantizer_rows(int64_t n) {
  std::vector<std::vector<float>> rows;
  for (uint32_t seed = 1; seed <= 4; ++seed) rows.push_back(normal_row(n, seed));
  rows.push_back(normal_row(n, 5, 1e-3f));
  rows.push_back(normal_row(n, 6, 300.0f));
  rows.push_back(heavy_tailed_row(n, 7));
  rows.push_back(heavy_tailed_row(n, 8));
  rows.push_back(std::vector<float>(static_cast<size_t>(n), 0.0f));
  rows.push_back(std::vector<float>(static_cast<size_t>(n), 0.7f));
  rows.push_back(std::vector<float>(static_cast<size_t>(n), -2.5f));
  std::vector<float> outlier = normal_row(n, 9);
  outlier[77] = 500.0f;
  rows.push_back(outlier);
  std::vector<float> mixed = normal_row(n, 10);
  for (int64_t i = 0; i < n; ++i) {
    if ((i / 256) % 3 == 1) mixed[size_t(i)] = 0.0f;
    if ((i / 256) % 3 == 2 && i % 7 != 0) mixed[size_t(i)] = 0.0f;  // sparse super-blocks
  }
  rows.push_back(mixed);
  std::vector<float> positive = normal_row(n, 11);
  for (float& v : positive) v = std::fabs(v) + 0.25f;  // no negative values: min clamps to 0
  rows.push_back(positive);
  return rows;
}

// A matrix of rows: the branch-exercising rows of quantizer_rows plus rows shaped like real weight
// matrices (columns of very different scale, a few outlier channels).
inline std::vector<float> test_matrix(int64_t n_per_row, int64_t* n_rows) {
  std::vector<std::vector<float>> rows = quantizer_rows(n_per_row);
  std::mt19937 rng(99);
  std::lognormal_distribution<float> column_scale(0.0f, 0.7f);
  std::vector<float> scale(static_cast<size_t>(n_per_row));
  for (float& s : scale) s = column_scale(rng);
  for (uint32_t seed = 20; seed < 26; ++seed) {
    std::vector<float> row = heavy_tailed_row(n_per_row, seed);
    for (int64_t i = 0; i < n_per_row; ++i) row[size_t(i)] *= 0.02f * scale[size_t(i)];
    rows.push_back(row);
  }
  *n_rows = int64_t(rows.size());
  std::vector<float> m;
  for (const auto& r : rows) m.insert(m.end(), r.begin(), r.end());
  return m;
}

struct ImatrixCase {
  const char* name;
  std::vector<float> weights;  // empty: none
};

// Importance matrices as llama.cpp computes them (mean squared activations per column): spread
// over orders of magnitude, a few dominant columns, and columns never activated (zero).
inline std::vector<ImatrixCase> imatrix_cases(int64_t n) {
  std::vector<ImatrixCase> cases;
  cases.push_back({"none", {}});
  std::mt19937 rng(7);
  std::lognormal_distribution<float> spread(-2.0f, 1.5f);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& v : w) v = spread(rng);
  cases.push_back({"lognormal", w});
  for (size_t i = 0; i < w.size(); i += 97) w[i] *= 400.0f;
  for (size_t i = 5; i < w.size(); i += 31) w[i] = 0.0f;
  cases.push_back({"outliers_and_zeros", w});
  cases.push_back({"ones", std::vector<float>(static_cast<size_t>(n), 1.0f)});
  return cases;
}

}  // namespace moeserve::test
