// `moeserve quantize` against llama.cpp's llama_model_quantize (libllama from npm) for the file
// types the unit tests leave out: the 1- to 3-bit i-quant mixes (with an importance matrix, which
// llama.cpp requires for them), the K-quant mixes and MXFP4_MOE. Same tensors, types, bytes and
// metadata expected.
#include <gtest/gtest.h>

#include "../unit/quantize_model_util.h"

namespace moeserve {
namespace {

TEST(QuantizeModelSlow, FileTypesMatchLlamaModelQuantize) {
  REQUIRE_LLAMA();
  const test::QuantCase cases[] = {
      {"IQ2_XS", 20, true},  {"IQ2_XXS", 19, true}, {"IQ3_XXS", 23, true}, {"IQ2_M", 29, true},
      {"IQ1_M", 31, true},   {"IQ3_M", 27, true},   {"Q2_K", 10, false},   {"Q3_K_M", 12, false},
      {"Q5_K_M", 17, false}, {"Q6_K", 18, false},   {"Q8_0", 7, false},    {"MXFP4_MOE", 38, false},
  };
  for (const test::QuantCase& c : cases) test::expect_matches_llama(c);
}

}  // namespace
}  // namespace moeserve
