// The weight-side CUDA kernels (backend/cuda/cuda_matmul.h) against double-precision products of
// the host reference dequantizers (src/quant, checked against ggml's test vectors in the unit
// tests): every weight type, random blocks (random bytes with realistic scales), odd shapes,
// strided views, outputs poisoned with NaN so an element left unwritten fails.
#include "backend/cuda/cuda_matmul.h"
#include "backend/cuda/cuda_matvec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "../unit/quant_test_util.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dequant.cuh"
#include "core/fp16.h"
#include "device_bytes.h"

namespace moeserve {
namespace {

constexpr DeviceId kGpu{DeviceKind::cuda, 0};

void upload(void* dst, const void* src, size_t bytes) {
  MOESERVE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
template <typename T>
std::vector<T> download(const void* src, size_t count) {
  std::vector<T> out(count);
  MOESERVE_CUDA_CHECK(cudaDeviceSynchronize());
  MOESERVE_CUDA_CHECK(cudaMemcpy(out.data(), src, count * sizeof(T), cudaMemcpyDeviceToHost));
  return out;
}

// Every type the CPU path can multiply with (a registered dot product).
std::vector<GgmlType> weight_types() {
  std::vector<GgmlType> out;
  for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
    if (t->vec_dot && t->dequantize) out.push_back(t->type);
  }
  return out;
}

// A row length for the type: odd for plain types (not a multiple of 8 or of the 32-wide tiles),
// several blocks otherwise.
int64_t row_len(GgmlType type) {
  const int64_t bs = type_traits(type).block_size;
  return bs == 1 ? 77 : bs == 32 ? 96 : 512;
}

// `rows` rows of n elements of `type`, each row followed by `pad` bytes: random blocks with
// realistic scales for block types, normal values (sigma 0.5) for plain types.
std::vector<uint8_t> random_rows(GgmlType type, int64_t n, int64_t rows, size_t pad, uint32_t seed) {
  const size_t rb = row_bytes(type, n);
  std::vector<uint8_t> out((rb + pad) * size_t(rows), 0);
  std::mt19937 rng(seed);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = out.data() + size_t(r) * (rb + pad);
    if (type_traits(type).block_size == 1) {
      const std::vector<float> v = test::normal_row(n, uint32_t(rng()), 0.5f);
      type_traits(type).quantize(v.data(), dst, n);
    } else {
      std::vector<uint8_t> b = test::random_blocks(type, n, uint32_t(rng()));
      // Keep MXFP4 magnitudes where real weights are (the generic helper goes up to 2^21, past
      // the f16 range the tensor-core path works in).
      if (type == GgmlType::MXFP4) {
        for (size_t o = 0; o < b.size(); o += 17) b[o] = uint8_t(118 + b[o] % 12);
      }
      std::memcpy(dst, b.data(), rb);
    }
  }
  return out;
}

std::vector<float> dequant_rows(GgmlType type, const std::vector<uint8_t>& data, int64_t n, int64_t rows, size_t stride) {
  std::vector<float> out(size_t(n * rows));
  for (int64_t r = 0; r < rows; ++r) type_traits(type).dequantize(data.data() + size_t(r) * stride, out.data() + r * n, n);
  return out;
}

std::vector<float> random_act(int64_t count, std::mt19937& rng, float lo = 0.05f, float hi = 1.5f) {
  // Never zero: magnitudes in [lo, hi), random signs.
  std::uniform_real_distribution<float> mag(lo, hi);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = (rng() & 1 ? -1.0f : 1.0f) * mag(rng);
  return v;
}

Tensor strided(GgmlType type, std::array<int64_t, 4> ne, size_t row_stride, void* data) {
  Tensor t = Tensor::contiguous(type, ne, data, kGpu);
  t.nb[1] = row_stride;
  t.nb[2] = row_stride * size_t(ne[1]);
  t.nb[3] = t.nb[2] * size_t(ne[2]);
  return t;
}

// Tolerances, relative to mag = sum |w_i x_i| of the element's dot product:
// * up to 8 columns (warp kernels), and F32 weights at any column count (FP32 tiles): f32
//   activations and f32 sums in another order than the double reference: k * 2^-24 * mag bounds
//   the reordering (times 1.1 for the partial sums);
// * more columns of other types (tensor cores): weights and activations are rounded to f16
//   (2^-11 relative each), so each product is off by up to ~2^-10 relative: 1e-3 * mag, plus
//   the f32 sums.
double tolerance(bool f32_products, int64_t k, double mag) {
  const double sums = double(k) * 6e-8 * mag * 1.1;
  return (f32_products ? sums : 1e-3 * mag + sums) + 1e-30;
}
double tolerance(int64_t n_cols, int64_t k, double mag) { return tolerance(n_cols <= 8, k, mag); }

// Decode on the 8-bit activation path (cuda_matvec.h) quantizes each block of 32 activations to
// d = max|x| / 127 steps: each value moves by at most half a step (with a margin for the float
// division). Per element of x (k values).
std::vector<double> act_error(const float* x, int64_t k) {
  std::vector<double> out(static_cast<size_t>(k));
  for (int64_t b = 0; b < k; b += 32) {
    double amax = 0;
    for (int64_t i = b; i < std::min(k, b + 32); ++i) amax = std::max(amax, double(std::fabs(x[i])));
    for (int64_t i = b; i < std::min(k, b + 32); ++i) out[size_t(i)] = 0.5 * amax / 127 * 1.001;
  }
  return out;
}

TEST(CudaMatmul, SupportsEveryTypeWithADotProduct) {
  for (GgmlType t : weight_types()) EXPECT_TRUE(cuda::supports_weight_type(t)) << type_name(t);
  EXPECT_FALSE(cuda::supports_weight_type(GgmlType::I32));
}

// The chunk decoders compiled for the host (same source as the kernels) against the reference
// dequantizers: every chunk of random rows, bit for bit.
TEST(CudaMatmul, ChunkDecodersMatchHostDequantizers) {
  std::mt19937 rng(10);
  for (GgmlType type : weight_types()) {
    const int64_t k = row_len(type);
    const int64_t rows = 16;
    const size_t rb = row_bytes(type, k);
    const std::vector<uint8_t> w = random_rows(type, k, rows, 0, uint32_t(rng()));
    const std::vector<float> ref = dequant_rows(type, w, k, rows, rb);
    int bad = 0;
    const bool ok = cuda::dispatch_type(type, [&]<GgmlType T>() {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < (k + 7) / 8; ++c) {
          float v[8];
          cuda::row_chunk<T>(w.data() + size_t(r) * rb, c, k, v);
          for (int64_t i = 0; i < 8 && 8 * c + i < k && bad < 5; ++i) {
            const float want = ref[size_t(r * k + 8 * c + i)];
            if (std::memcmp(&v[i], &want, 4) != 0) {
              ++bad;
              ADD_FAILURE() << type_name(type) << " row " << r << " elem " << 8 * c + i << ": " << v[i] << " vs " << want;
            }
          }
        }
      }
    });
    EXPECT_TRUE(ok) << type_name(type);
  }
}

// One product dst [m, n] = w [k, m] x [k, n] against the double reference. Odd n: weight rows
// with a gap after each (a view's stride); even n: contiguous. Activation rows x_pad floats
// apart, output rows strided.
void check_matmul(GgmlType type, int64_t m, int64_t k, int64_t n, std::mt19937& rng, int64_t x_pad = 5) {
  const size_t pad = n % 2 ? 32 : 0, w_stride = row_bytes(type, k) + pad;
  const std::vector<uint8_t> w = random_rows(type, k, m, pad, uint32_t(rng()));
  const std::vector<float> wf = dequant_rows(type, w, k, m, w_stride);
  const int64_t x_stride = k + x_pad, d_stride = m + 3;
  const std::vector<float> x = random_act(x_stride * n, rng);
  DeviceBytes dw(w.size()), dx(x.size() * 4), dd(size_t(d_stride * n) * 4);
  upload(dw.p, w.data(), w.size());
  upload(dx.p, x.data(), x.size() * 4);
  const Tensor tw = strided(type, {k, m, 1, 1}, w_stride, dw.p);
  const Tensor tx = strided(GgmlType::F32, {k, n, 1, 1}, size_t(x_stride) * 4, dx.p);
  const Tensor td = strided(GgmlType::F32, {m, n, 1, 1}, size_t(d_stride) * 4, dd.p);
  DeviceBytes ws(cuda::matmul_workspace_bytes(td, tw, tx));
  cuda::matmul(nullptr, td, tw, tx, ws.p);
  const bool q8 = cuda::q8_matvec_usable(tw, tx);
  const std::vector<float> got = download<float>(dd.p, size_t(d_stride * n));
  int bad = 0;
  for (int64_t j = 0; j < n && bad < 5; ++j) {
    const std::vector<double> xe = q8 ? act_error(x.data() + j * x_stride, k) : std::vector<double>(size_t(k), 0.0);
    for (int64_t i = 0; i < m && bad < 5; ++i) {
      double ref = 0, mag = 0, qerr = 0;
      for (int64_t e = 0; e < k; ++e) {
        const double p = double(wf[size_t(i * k + e)]) * x[size_t(j * x_stride + e)];
        ref += p;
        mag += std::fabs(p);
        qerr += std::fabs(wf[size_t(i * k + e)]) * xe[size_t(e)];
      }
      // The 8-bit path's sums split the K-quant mins from the scaled quants: a few times mag.
      const bool f32_products = n <= 8 || type == GgmlType::F32;
      const double tol = q8 ? tolerance(f32_products, k, 8 * mag) + qerr : tolerance(f32_products, k, mag);
      const float g = got[size_t(j * d_stride + i)];
      if (!(std::fabs(g - ref) <= tol)) {
        ++bad;
        ADD_FAILURE() << type_name(type) << " m=" << m << " k=" << k << " n=" << n << " row " << i << " col " << j
                      << ": got " << g << " want " << ref << " (mag " << mag << ")";
      }
    }
  }
}

TEST(CudaMatmul, EveryTypeEveryColumnCount) {
  std::mt19937 rng(11);
  const int64_t m = 67;  // not a multiple of the 4-row blocks nor the 64-row tiles
  for (GgmlType type : weight_types()) {
    // 9..64 columns: the narrow tensor-core tiles; more: the wide ones.
    for (int64_t n : {1, 2, 3, 7, 8, 9, 17, 64, 65, 513}) check_matmul(type, m, row_len(type), n, rng);
  }
}

// F32 weights keep FP32 products at every column count (the f32 tolerance above): the tiles
// over partial row, column and k tiles (k not a multiple of the 64-wide stages, one stage, many),
// outputs of a few rows (one warp per element), and a few columns of wider outputs (the decode
// kernel over groups of 8 columns), with aligned rows (the float4 loads) and unaligned ones.
TEST(CudaMatmul, F32WeightsManyColumnsExact) {
  std::mt19937 rng(17);
  for (int64_t m : {1, 3, 16, 17, 64, 130}) {
    for (int64_t k : {7, 32, 203, 512}) {
      for (int64_t n : {9, 32, 33, 97}) check_matmul(GgmlType::F32, m, k, n, rng, k % 4 == 0 ? 4 : 5);
    }
  }
  check_matmul(GgmlType::F32, 512, 256, 513, rng, 4);  // the router's shape class: many tiles
  check_matmul(GgmlType::F32, 1, 2048, 512, rng, 4);   // the shared-expert gate's
}

// The pipelined prefill tiles over several weight-row tiles (128 rows each, the last partial) and
// several raw-byte stages along k (a stage is 64 elements, or one 256-element super-block): k
// ends inside a stage where the type allows, n inside a column tile.
TEST(CudaMatmul, PrefillTilesSeveralStages) {
  std::mt19937 rng(13);
  for (GgmlType type : {GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::MXFP4,
                        GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::IQ2_XS, GgmlType::IQ2_XXS, GgmlType::IQ3_XXS,
                        GgmlType::IQ4_XS}) {
    const int64_t bs = type_traits(type).block_size;
    const int64_t k = bs == 1 ? 203 : bs == 32 ? 224 : 768;
    for (int64_t n : {16, 200, 600}) check_matmul(type, 300, k, n, rng);
  }
}

// The prefill tiles round each dequantized weight to f16 once (the grid i-quants decode straight
// to f16): a product with the weights of any type must equal, bit for bit, the product with F16
// weights holding the reference dequantizer's values rounded to f16 (same tiles, same order).
// Types whose values are a product minus an offset (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) are left out:
// the device may fuse that multiply-add (see GetRowsEveryType), one f32 rounding apart.
TEST(CudaMatmul, PrefillTilesSeeTheReferenceValuesInF16) {
  std::mt19937 rng(14);
  const int64_t m = 67, n = 70;
  for (GgmlType type : weight_types()) {
    if (type == GgmlType::F32 || type == GgmlType::Q4_1 || type == GgmlType::Q5_1 || type == GgmlType::Q2_K ||
        type == GgmlType::Q4_K || type == GgmlType::Q5_K) {
      continue;  // F32 weights do not take the tiles; see above for the others
    }
    const int64_t k = row_len(type);
    const std::vector<uint8_t> w = random_rows(type, k, m, 0, uint32_t(rng()));
    const std::vector<float> wf = dequant_rows(type, w, k, m, row_bytes(type, k));
    std::vector<uint16_t> w16(wf.size());
    bool finite = true;
    for (size_t i = 0; i < wf.size(); ++i) {
      w16[i] = fp32_to_fp16(wf[i]);
      finite = finite && std::isfinite(fp16_to_fp32(w16[i]));
    }
    if (!finite) continue;  // random scales past the f16 range: nothing to compare
    const std::vector<float> x = random_act(k * n, rng);
    DeviceBytes dw(w.size()), dw16(w16.size() * 2), dx(x.size() * 4), d1(size_t(m * n) * 4), d2(size_t(m * n) * 4);
    upload(dw.p, w.data(), w.size());
    upload(dw16.p, w16.data(), w16.size() * 2);
    upload(dx.p, x.data(), x.size() * 4);
    const Tensor tw = Tensor::contiguous(type, {k, m, 1, 1}, dw.p, kGpu);
    const Tensor tw16 = Tensor::contiguous(GgmlType::F16, {k, m, 1, 1}, dw16.p, kGpu);
    const Tensor tx = Tensor::contiguous(GgmlType::F32, {k, n, 1, 1}, dx.p, kGpu);
    const Tensor t1 = Tensor::contiguous(GgmlType::F32, {m, n, 1, 1}, d1.p, kGpu);
    const Tensor t2 = Tensor::contiguous(GgmlType::F32, {m, n, 1, 1}, d2.p, kGpu);
    DeviceBytes ws(cuda::matmul_workspace_bytes(t1, tw, tx));
    cuda::matmul(nullptr, t1, tw, tx, ws.p);
    cuda::matmul(nullptr, t2, tw16, tx, ws.p);
    const std::vector<float> a = download<float>(d1.p, size_t(m * n)), b = download<float>(d2.p, size_t(m * n));
    size_t diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff += std::memcmp(&a[i], &b[i], 4) != 0 || !std::isfinite(a[i]);
    EXPECT_EQ(diff, 0u) << type_name(type) << ": outputs that differ from the F16-weight product";
  }
}

TEST(CudaMatmul, GetRowsEveryType) {
  std::mt19937 rng(12);
  const int64_t n_src = 37;
  const std::vector<int32_t> ids = {3, 0, 36, 3, 17, 36};
  for (GgmlType type : weight_types()) {
    const int64_t k = row_len(type);
    const size_t s_stride = row_bytes(type, k);
    const std::vector<uint8_t> src = random_rows(type, k, n_src, 0, uint32_t(rng()));
    const std::vector<float> ref = dequant_rows(type, src, k, n_src, s_stride);
    const int64_t n = int64_t(ids.size()), d_stride = k + 3;
    DeviceBytes ds(src.size()), di(ids.size() * 4), dd(size_t(d_stride * n) * 4);
    upload(ds.p, src.data(), src.size());
    upload(di.p, ids.data(), ids.size() * 4);
    const Tensor ts = strided(type, {k, n_src, 1, 1}, s_stride, ds.p);
    const Tensor tid = Tensor::contiguous(GgmlType::I32, {n, 1, 1, 1}, di.p, kGpu);
    const Tensor td = strided(GgmlType::F32, {k, n, 1, 1}, size_t(d_stride) * 4, dd.p);
    cuda::get_rows(nullptr, td, ts, tid);
    const std::vector<float> got = download<float>(dd.p, size_t(d_stride * n));
    for (int64_t j = 0; j < n; ++j) {
      const float* want = ref.data() + ids[size_t(j)] * k;
      float row_max = 0;
      for (int64_t e = 0; e < k; ++e) row_max = std::max(row_max, std::fabs(want[e]));
      for (int64_t e = 0; e < k; ++e) {
        // The same float formulas as the host; the device may fuse a multiply-add (Q4_1, Q5_1,
        // the K-quant mins), one rounding of a term no larger than the row's largest value.
        ASSERT_NEAR(got[size_t(j * d_stride + e)], want[e], 2.4e-7 * row_max) << type_name(type) << " row " << j << " elem " << e;
      }
    }
  }
}

// ---- routed experts ----------------------------------------------------------------------------------
struct MoeCase {
  GgmlType gate_up, down;
  int64_t n_embd, n_ff;
};

double silu_d(double v) { return v / (1.0 + std::exp(-v)); }

// Rows quantized by the host quantizer from normal weights (sigma 0.02): realistic magnitudes,
// so the expert FFN's intermediate values stay in the f16 range the tensor-core path uses (as in
// real models; random bytes with scales up to 2 would make gate*up reach 1e8).
std::vector<uint8_t> realistic_rows(GgmlType type, int64_t n, int64_t rows, uint32_t seed) {
  const std::vector<float> v = test::normal_row(n * rows, seed, 0.02f);
  std::vector<uint8_t> out(row_bytes(type, n) * size_t(rows));
  for (int64_t r = 0; r < rows; ++r) type_traits(type).quantize(v.data() + r * n, out.data() + size_t(r) * row_bytes(type, n), n);
  return out;
}

// skew: slot 0 of every token is expert 2 (one expert gets every token, over several tiles).
void check_moe(const MoeCase& c, const std::vector<int64_t>& token_counts, uint32_t seed, bool skew = false) {
  std::mt19937 rng(seed);
  const int64_t n_expert = 8, k = 3, E = n_expert;
  const int64_t n_embd = c.n_embd, n_ff = c.n_ff;
  // Fused gate_up [n_embd, 2 * n_ff, E] as the loader makes it; gate/up are its halves.
  const size_t gu_row = row_bytes(c.gate_up, n_embd), d_row = row_bytes(c.down, n_ff);
  const std::vector<uint8_t> gu = realistic_rows(c.gate_up, n_embd, 2 * n_ff * E, uint32_t(rng()));
  const std::vector<uint8_t> dn = realistic_rows(c.down, n_ff, n_embd * E, uint32_t(rng()));
  const std::vector<float> guf = dequant_rows(c.gate_up, gu, n_embd, 2 * n_ff * E, gu_row);
  const std::vector<float> dnf = dequant_rows(c.down, dn, n_ff, n_embd * E, d_row);
  for (const int64_t n : token_counts) {
    const int64_t x_stride = n_embd + 4, d_stride = n_embd + 1;
    const std::vector<float> x = random_act(x_stride * n, rng);
    // Top-k ids: distinct per token, from experts 0..6 only (expert 7 is never hit), so experts
    // repeat across tokens and some get no token at all.
    std::vector<int32_t> ids(size_t(k * n));
    std::vector<float> wts(size_t(k * n));
    for (int64_t t = 0; t < n; ++t) {
      std::vector<int32_t> pool = {0, 1, 2, 3, 4, 5, 6};
      std::shuffle(pool.begin(), pool.end(), rng);
      if (skew) std::swap(pool[0], *std::find(pool.begin(), pool.end(), 2));
      for (int64_t j = 0; j < k; ++j) {
        ids[size_t(t * k + j)] = pool[size_t(j)];
        wts[size_t(t * k + j)] = std::uniform_real_distribution<float>(0.05f, 0.6f)(rng);
      }
    }
    DeviceBytes dgu(gu.size()), ddn(dn.size()), dx(x.size() * 4), did(ids.size() * 4), dw(wts.size() * 4),
        dd(size_t(d_stride * n) * 4);
    upload(dgu.p, gu.data(), gu.size());
    upload(ddn.p, dn.data(), dn.size());
    upload(dx.p, x.data(), x.size() * 4);
    upload(did.p, ids.data(), ids.size() * 4);
    upload(dw.p, wts.data(), wts.size() * 4);
    ExpertWeights ex;
    const std::array<size_t, 4> gnb = {type_traits(c.gate_up).block_bytes, gu_row, gu_row * size_t(2 * n_ff),
                                       gu_row * size_t(2 * n_ff * E)};
    ex.gate = Tensor{c.gate_up, {n_embd, n_ff, E, 1}, gnb, dgu.p, kGpu};
    ex.up = Tensor{c.gate_up, {n_embd, n_ff, E, 1}, gnb, dgu.bytes() + gu_row * size_t(n_ff), kGpu};
    ex.down = Tensor::contiguous(c.down, {n_ff, n_embd, E, 1}, ddn.p, kGpu);
    const Tensor tx = strided(GgmlType::F32, {n_embd, n, 1, 1}, size_t(x_stride) * 4, dx.p);
    const Tensor td = strided(GgmlType::F32, {n_embd, n, 1, 1}, size_t(d_stride) * 4, dd.p);
    const Tensor tid = Tensor::contiguous(GgmlType::I32, {k, n, 1, 1}, did.p, kGpu);
    const Tensor tw = Tensor::contiguous(GgmlType::F32, {k, n, 1, 1}, dw.p, kGpu);
    DeviceBytes ws(cuda::moe_experts_workspace_bytes(td, tx, ex, tid));  // NaN-filled: unwritten reads show
    cuda::moe_experts(nullptr, td, tx, ex, tid, tw, ws.p);
    const std::vector<float> got = download<float>(dd.p, size_t(d_stride * n));
    // The 8-bit decode path quantizes x and then h (see act_error): their errors carried through.
    const bool q8 = n <= 8 && cuda::q8_moe_usable(tx, ex);

    int bad = 0;
    for (int64_t t = 0; t < n && bad < 5; ++t) {
      std::vector<double> ref(static_cast<size_t>(n_embd), 0.0), mag(static_cast<size_t>(n_embd), 0.0),
          qtol(static_cast<size_t>(n_embd), 0.0);
      const std::vector<double> xe =
          q8 ? act_error(x.data() + t * x_stride, n_embd) : std::vector<double>(size_t(n_embd), 0.0);
      for (int64_t j = 0; j < k; ++j) {
        const int32_t e = ids[size_t(t * k + j)];
        const double w = wts[size_t(t * k + j)];
        std::vector<double> h(static_cast<size_t>(n_ff)), hmag(static_cast<size_t>(n_ff)), herr(static_cast<size_t>(n_ff));
        for (int64_t f = 0; f < n_ff; ++f) {
          const float* gr = guf.data() + (e * 2 * n_ff + f) * n_embd;
          const float* ur = gr + n_ff * n_embd;
          double g = 0, u = 0, gm = 0, um = 0, eg = 0, eu = 0;
          for (int64_t i = 0; i < n_embd; ++i) {
            const double xv = x[size_t(t * x_stride + i)];
            g += gr[i] * xv;
            u += ur[i] * xv;
            gm += std::fabs(gr[i] * xv);
            um += std::fabs(ur[i] * xv);
            eg += std::fabs(gr[i]) * xe[size_t(i)];
            eu += std::fabs(ur[i]) * xe[size_t(i)];
          }
          h[size_t(f)] = silu_d(g) * u;
          hmag[size_t(f)] = (std::fabs(g) + gm) * um;  // bounds |silu(g) u| and its perturbations
          herr[size_t(f)] = 1.1 * eg * (std::fabs(u) + eu) + (std::fabs(g) + eg) * eu;  // |silu'| <= 1.1
        }
        if (q8) {  // h's own quantization: half a step of its block
          for (int64_t b = 0; b < n_ff; b += 32) {
            double hmax = 0;
            for (int64_t f = b; f < std::min(n_ff, b + 32); ++f) hmax = std::max(hmax, std::fabs(h[size_t(f)]) + herr[size_t(f)]);
            for (int64_t f = b; f < std::min(n_ff, b + 32); ++f) herr[size_t(f)] += 0.5 * hmax / 127 * 1.001;
          }
        }
        for (int64_t i = 0; i < n_embd; ++i) {
          const float* dr = dnf.data() + (e * n_embd + i) * n_ff;
          double s = 0, sm = 0, se = 0;
          for (int64_t f = 0; f < n_ff; ++f) {
            s += dr[f] * h[size_t(f)];
            sm += std::fabs(dr[f]) * hmag[size_t(f)];
            se += std::fabs(dr[f]) * herr[size_t(f)];
          }
          ref[size_t(i)] += w * s;
          mag[size_t(i)] += w * sm;
          qtol[size_t(i)] += w * se;
        }
      }
      for (int64_t i = 0; i < n_embd && bad < 5; ++i) {
        // Two chained products: the tolerance of one (see tolerance()) over the larger length,
        // applied to the magnitude bound of the whole chain.
        // On the 8-bit path: the K-quant mins summed apart (a few times mag), plus the
        // quantization errors carried through.
        const double tol = 2 * tolerance(n, std::max(n_embd, n_ff), (q8 ? 8 : 1) * mag[size_t(i)]) + qtol[size_t(i)];
        const float g = got[size_t(t * d_stride + i)];
        if (!(std::fabs(g - ref[size_t(i)]) <= tol)) {
          ++bad;
          ADD_FAILURE() << type_name(c.gate_up) << "/" << type_name(c.down) << " n=" << n << " token " << t << " elem "
                        << i << ": got " << g << " want " << ref[size_t(i)] << " (tol " << tol << ")";
        }
      }
  }
}
  }

TEST(CudaMatmul, MoeExpertsDecodeAndPrefill) {
  const MoeCase cases[] = {
      {GgmlType::IQ2_XXS, GgmlType::IQ3_XXS, 256, 512},  // the Qwen3-Coder-Next expert types
      {GgmlType::IQ2_XS, GgmlType::IQ2_XS, 512, 256},
      {GgmlType::Q8_0, GgmlType::Q4_K, 256, 256},
      {GgmlType::Q8_0, GgmlType::Q8_0, 160, 96},  // rows not a multiple of the 64-row tiles
      {GgmlType::F16, GgmlType::F32, 72, 40},     // k not a multiple of the 32-wide k tiles
  };
  uint32_t seed = 100;
  for (const MoeCase& c : cases) check_moe(c, {1, 2, 8, 9, 33, 130}, seed++);
}

// The grouped prefill path with many tokens: experts with up to 24 pairs take 16-column group
// tiles, more take 64-column tiles (60 tokens: ~26 per expert, some of each kind; 600 tokens; with
// skew, expert 2 gets all 60 of the smaller batch).
TEST(CudaMatmul, MoeExpertsPrefillManyTokens) {
  const MoeCase cases[] = {
      {GgmlType::IQ2_XS, GgmlType::IQ2_XS, 512, 256},
      {GgmlType::Q8_0, GgmlType::Q6_K, 160, 256},
  };
  uint32_t seed = 200;
  for (const MoeCase& c : cases) {
    check_moe(c, {60, 600}, seed++);
    check_moe(c, {60, 600}, seed++, true);
  }
}

// Every expert weight type the grouped path takes (all but F32) that the host can quantize, with
// groups of ~4 tokens per expert (one 16-column group tile, most columns empty), ~17 (two group
// tiles, or 64-column tiles past 24), ~43 and ~69 (64-column tiles), plus one expert holding every
// token (skew). Plain types get odd row lengths (k not a multiple of 8 or 32, rows past the
// 64-row blocks).
TEST(CudaMatmul, MoeExpertsGroupTilesEveryType) {
  uint32_t seed = 300;
  for (GgmlType t : weight_types()) {
    if (t == GgmlType::F32 || !type_traits(t).quantize) continue;  // realistic_rows quantizes
    const bool plain = type_traits(t).block_size == 1;
    const MoeCase c = plain ? MoeCase{t, t, 70, 100} : MoeCase{t, t, 512, 256};
    SCOPED_TRACE(type_name(t));
    check_moe(c, {9, 40, 100, 160}, seed++);
    check_moe(c, {40}, seed++, true);
  }
  // Mixed types as the real models have them.
  check_moe({GgmlType::IQ2_XXS, GgmlType::IQ3_XXS, 256, 512}, {40, 100}, seed++);
  check_moe({GgmlType::IQ2_XS, GgmlType::Q8_0, 256, 96}, {40, 100}, seed++);
}

}  // namespace
}  // namespace moeserve
