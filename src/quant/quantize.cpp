#include "quant/quantize.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "core/error.h"
#include "quant/quants.h"

namespace moeserve {
namespace {

using ImatrixQuantizeFn = void (*)(const float* in, void* blocks, int64_t n, const float* weights);

struct ImatrixQuantizer {
  GgmlType type;
  ImatrixQuantizeFn fn;
};

// The types whose quantizers take importance weights; every other quantizable type ignores them
// (as ggml does for Q8_0, MXFP4 and the float types).
constexpr ImatrixQuantizer kImatrixQuantizers[] = {
    {GgmlType::Q4_0, quantize_row_q4_0_imatrix},       {GgmlType::Q4_1, quantize_row_q4_1_imatrix},
    {GgmlType::Q5_0, quantize_row_q5_0_imatrix},       {GgmlType::Q5_1, quantize_row_q5_1_imatrix},
    {GgmlType::Q2_K, quantize_row_q2_K_imatrix},       {GgmlType::Q3_K, quantize_row_q3_K_imatrix},
    {GgmlType::Q4_K, quantize_row_q4_K_imatrix},       {GgmlType::Q5_K, quantize_row_q5_K_imatrix},
    {GgmlType::Q6_K, quantize_row_q6_K_imatrix},       {GgmlType::IQ2_XXS, quantize_row_iq2_xxs_imatrix},
    {GgmlType::IQ2_XS, quantize_row_iq2_xs_imatrix},   {GgmlType::IQ2_S, quantize_row_iq2_s_imatrix},
    {GgmlType::IQ3_XXS, quantize_row_iq3_xxs_imatrix}, {GgmlType::IQ3_S, quantize_row_iq3_s_imatrix},
    {GgmlType::IQ1_S, quantize_row_iq1_s_imatrix},     {GgmlType::IQ1_M, quantize_row_iq1_m_imatrix},
    {GgmlType::IQ4_NL, quantize_row_iq4_nl_imatrix},   {GgmlType::IQ4_XS, quantize_row_iq4_xs_imatrix},
};

ImatrixQuantizeFn imatrix_quantizer(GgmlType type) {
  for (const ImatrixQuantizer& q : kImatrixQuantizers) {
    if (q.type == type) return q.fn;
  }
  return nullptr;
}

}  // namespace

bool can_quantize(GgmlType type) {
  const TypeTraits* t = find_type(int32_t(type));
  // Q8_1 and Q8_K exist for activations only: weights are never stored in them.
  return t && t->quantize && !(t->quantized && !t->vec_dot);
}

bool quantize_requires_imatrix(GgmlType type) {
  return type == GgmlType::IQ2_XXS || type == GgmlType::IQ2_XS || type == GgmlType::IQ1_S;
}

size_t quantize_rows(GgmlType type, const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                     const float* imatrix, int n_threads) {
  if (!can_quantize(type)) fail("no quantizer for type ", type_name(type));
  const TypeTraits& t = type_traits(type);
  if (n_per_row <= 0 || n_per_row % t.block_size != 0) {
    fail("cannot quantize rows of ", n_per_row, " elements to ", t.name, ": rows must be a multiple of ",
         t.block_size);
  }
  const size_t row_size = row_bytes(type, n_per_row);
  const ImatrixQuantizeFn weighted = imatrix_quantizer(type);
  auto run = [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      const float* in = src + r * n_per_row;
      void* out = static_cast<uint8_t*>(dst) + size_t(r) * row_size;
      if (weighted) {
        weighted(in, out, n_per_row, imatrix);
      } else {
        t.quantize(in, out, n_per_row);
      }
    }
  };
  const int64_t threads = std::clamp<int64_t>(n_threads, 1, std::max<int64_t>(n_rows, 1));
  if (threads == 1) {
    run(0, n_rows);
  } else {
    std::vector<std::thread> workers;
    workers.reserve(size_t(threads - 1));
    const int64_t per = n_rows / threads, extra = n_rows % threads;
    int64_t first = 0;
    for (int64_t i = 0; i < threads; ++i) {
      const int64_t last = first + per + (i < extra ? 1 : 0);
      if (i + 1 < threads) {
        workers.emplace_back(run, first, last);
      } else {
        run(first, last);
      }
      first = last;
    }
    for (std::thread& w : workers) w.join();
  }
  return size_t(n_rows) * row_size;
}

}  // namespace moeserve
