// MXFP4 (quants.md §1): 32 E2M1 values sharing one E8M0 exponent. The codebook kvalues_fp4 holds
// twice the E2M1 values, so the block scale is half of 2^(e - 127).
#include <algorithm>
#include <cmath>

#include "quant/blocks.h"
#include "quant/grids.h"
#include "quant/quants.h"

namespace moeserve {

using namespace quant;

namespace {

// 2^(e - 128) exactly, including e = 0 and 1, which are float subnormals.
inline float e8m0_half(uint8_t e) {
  const uint32_t bits = e < 2 ? 0x00200000u << e : uint32_t(e - 1) << 23;
  return f32_from_bits(bits);
}

}  // namespace

void dequantize_row_mxfp4(const void* blocks, float* out, int64_t n) {
  const auto* b = blocks_of<BlockMXFP4>(blocks);
  for (int64_t i = 0; i < n / QK; ++i, out += QK) {
    const float d = e8m0_half(b[i].e);
    for (int j = 0; j < QK / 2; ++j) {
      out[j] = float(kvalues_fp4[b[i].qs[j] & 0xF]) * d;
      out[j + QK / 2] = float(kvalues_fp4[b[i].qs[j] >> 4]) * d;
    }
  }
}

// ggml's reference: the exponent puts amax in the top binade of the codebook, then every value
// takes the codebook entry with the smallest absolute error (the first one on ties).
void quantize_row_mxfp4(const float* in, void* blocks, int64_t n) {
  auto* b = blocks_of<BlockMXFP4>(blocks);
  auto best_index = [](float x, float d) {
    int best = 0;
    float best_err = std::fabs(float(kvalues_fp4[0]) * d - x);
    for (int i = 1; i < 16; ++i) {
      const float err = std::fabs(float(kvalues_fp4[i]) * d - x);
      if (err < best_err) {
        best = i;
        best_err = err;
      }
    }
    return best;
  };
  for (int64_t i = 0; i < n / QK; ++i, in += QK) {
    float amax = 0;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(in[j]));
    const uint8_t e = amax > 0.0f ? uint8_t(std::floor(std::log2(amax)) - 2 + 127) : 0;
    const float d = e8m0_half(e);
    b[i].e = e;
    for (int j = 0; j < QK / 2; ++j) b[i].qs[j] = uint8_t(best_index(in[j], d) | (best_index(in[j + QK / 2], d) << 4));
  }
}

float vec_dot_mxfp4_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = blocks_of<BlockMXFP4>(w);
  const auto* y = blocks_of<BlockQ8_0>(a);
  float sum = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    int isum = 0;
    for (int j = 0; j < QK / 2; ++j) {
      isum += kvalues_fp4[x[i].qs[j] & 0xF] * y[i].qs[j] + kvalues_fp4[x[i].qs[j] >> 4] * y[i].qs[j + QK / 2];
    }
    sum += half(y[i].d) * e8m0_half(x[i].e) * float(isum);
  }
  return sum;
}

}  // namespace moeserve
