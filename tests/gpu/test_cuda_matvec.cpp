// The decode kernels with 8-bit activations (backend/cuda/cuda_matvec.h, through the public
// cuda::matmul / cuda::moe_experts entries) against double-precision products of the host
// reference dequantizers (src/quant, checked against ggml's test vectors in the unit tests).
//
// Tolerances. The kernels quantize each activation block of 32 as the CPU's Q8_0 activations
// (quants.md §4): d = max|x| / 127, q = roundf(x / d), in IEEE float (no fast math), which the host
// repeats here bit for bit, so the dense products are held to the exact dot product of the weights
// with the quantized activations, up to f32 rounding: each group's term is a few roundings of at
// most 5 max|w_group| sum|xq| (the min/offset terms of Q4_0 and the K-quants are computed apart
// from the scaled quants and can each reach ~3 max|w| of the group), summed over k / 1024 terms
// per lane and a 5-level warp tree. The expert FFN re-quantizes h = silu(gate) up on the device,
// where h's own f32 rounding can move a value across a rounding boundary of its block, so its
// bound adds half a quantization step of h per element (and the propagated f32 error of h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "../unit/quant_test_util.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_matmul.h"
#include "backend/cuda/cuda_matvec.h"
#include "device_bytes.h"

namespace moeserve {
namespace {

constexpr DeviceId kGpu{DeviceKind::cuda, 0};

template <typename T>
void put(void* dst, const std::vector<T>& v) {
  MOESERVE_CUDA_CHECK(cudaMemcpy(dst, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
}
std::vector<float> get(const void* src, size_t count) {
  std::vector<float> out(count);
  MOESERVE_CUDA_CHECK(cudaDeviceSynchronize());
  MOESERVE_CUDA_CHECK(cudaMemcpy(out.data(), src, count * 4, cudaMemcpyDeviceToHost));
  return out;
}

const GgmlType kTypes[] = {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q5_K,
                           GgmlType::Q6_K, GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ3_XXS};

// x quantized per 32 as the device does it; returns the dequantized values.
std::vector<float> q8_round_trip(const float* x, int64_t k) {
  std::vector<float> out(static_cast<size_t>(k));
  for (int64_t b = 0; b < k; b += 32) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b + i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < 32; ++i) {
      const int q = std::clamp(int(std::roundf(x[b + i] * id)), -127, 127);
      out[size_t(b + i)] = float(q) * d;
    }
  }
  return out;
}

// Bound on the f32 rounding of a k-long product (see the file comment).
double f32_bound(const float* w, const float* xq, int64_t k) {
  double mag = 0;
  for (int64_t b = 0; b < k; b += 32) {
    double wmax = 0, xs = 0;
    for (int i = 0; i < 32; ++i) {
      wmax = std::max(wmax, double(std::fabs(w[b + i])));
      xs += std::fabs(xq[b + i]);
    }
    mag += 5 * wmax * xs;
  }
  return (double(k) / 1024 + 12) * 6e-8 * mag + 1e-30;
}

std::vector<float> dequant(GgmlType type, const std::vector<uint8_t>& data, int64_t k, int64_t rows, size_t stride) {
  std::vector<float> out(size_t(k * rows));
  for (int64_t r = 0; r < rows; ++r) type_traits(type).dequantize(data.data() + size_t(r) * stride, out.data() + r * k, k);
  return out;
}

// Every type, 1..8 columns, odd row count, two and a half tiles per row, strided x and dst.
TEST(CudaMatvecQ8, EveryTypeEveryColumnCount) {
  std::mt19937 rng(21);
  const int64_t m = 37;
  for (GgmlType type : kTypes) {
    const int64_t k = type_traits(type).block_size == 32 ? 2304 : 6144;
    const size_t rb = row_bytes(type, k);
    std::vector<uint8_t> w;
    for (int64_t r = 0; r < m; ++r) {
      const std::vector<uint8_t> b = test::random_blocks(type, k, uint32_t(rng()));
      w.insert(w.end(), b.begin(), b.end());
    }
    const std::vector<float> wf = dequant(type, w, k, m, rb);
    for (int64_t n = 1; n <= 8; ++n) {
      const int64_t x_stride = k + 8, d_stride = m + 3;
      std::vector<float> x(size_t(x_stride * n));
      std::uniform_real_distribution<float> u(-1.5f, 1.5f);
      for (float& v : x) v = u(rng);
      DeviceBytes dw(w.size()), dx(x.size() * 4), dd(size_t(d_stride * n) * 4);
      put(dw.p, w);
      put(dx.p, x);
      const Tensor tw = Tensor::contiguous(type, {k, m, 1, 1}, dw.p, kGpu);
      Tensor tx = Tensor::contiguous(GgmlType::F32, {k, n, 1, 1}, dx.p, kGpu);
      tx.nb[1] = size_t(x_stride) * 4;
      tx.nb[2] = tx.nb[3] = tx.nb[1] * size_t(n);
      Tensor td = Tensor::contiguous(GgmlType::F32, {m, n, 1, 1}, dd.p, kGpu);
      td.nb[1] = size_t(d_stride) * 4;
      td.nb[2] = td.nb[3] = td.nb[1] * size_t(n);
      ASSERT_TRUE(cuda::q8_matvec_usable(tw, tx)) << type_name(type);
      DeviceBytes ws(cuda::matmul_workspace_bytes(td, tw, tx));
      cuda::matmul(nullptr, td, tw, tx, ws.p);
      const std::vector<float> got = get(dd.p, size_t(d_stride * n));
      int bad = 0;
      for (int64_t c = 0; c < n && bad < 5; ++c) {
        const std::vector<float> xq = q8_round_trip(x.data() + c * x_stride, k);
        for (int64_t i = 0; i < m && bad < 5; ++i) {
          const float* wr = wf.data() + i * k;
          double ref = 0;
          for (int64_t e = 0; e < k; ++e) ref += double(wr[e]) * xq[size_t(e)];
          const float g = got[size_t(c * d_stride + i)];
          if (!(std::fabs(g - ref) <= f32_bound(wr, xq.data(), k))) {
            ++bad;
            ADD_FAILURE() << type_name(type) << " n=" << n << " row " << i << " col " << c << ": got " << g << " want "
                          << ref << " (tol " << f32_bound(wr, xq.data(), k) << ")";
          }
        }
      }
    }
  }
}

// Rows the 16-byte staging cannot take stay on the general kernels, still correct.
TEST(CudaMatvecQ8, UnalignedRowsAreNotTaken) {
  const int64_t k = 512;
  DeviceBytes dw(row_bytes(GgmlType::IQ2_XS, k) * 4 + 16), dx(k * 4);
  const Tensor tw = Tensor::contiguous(GgmlType::IQ2_XS, {k, 4, 1, 1}, dw.p, kGpu);  // 148-byte rows
  const Tensor tx = Tensor::contiguous(GgmlType::F32, {k, 1, 1, 1}, dx.p, kGpu);
  EXPECT_FALSE(cuda::q8_matvec_usable(tw, tx));
  const Tensor tq = Tensor::contiguous(GgmlType::Q8_0, {k, 4, 1, 1}, dw.bytes() + 2, kGpu);  // misaligned start
  EXPECT_FALSE(cuda::q8_matvec_usable(tq, tx));
  const Tensor t9 = Tensor::contiguous(GgmlType::Q8_0, {k, 4, 1, 1}, dw.p, kGpu);
  EXPECT_FALSE(cuda::q8_matvec_usable(t9, Tensor::contiguous(GgmlType::F32, {k, 9, 1, 1}, dx.p, kGpu)));
}

// ---- routed experts --------------------------------------------------------------------------------
struct MoeCase {
  GgmlType gate_up, down;
  int64_t n_embd, n_ff, n_expert, k;
};

double silu(double v) { return v / (1.0 + std::exp(-v)); }

void check_moe(const MoeCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t n_embd = c.n_embd, n_ff = c.n_ff, E = c.n_expert, k = c.k;
  const size_t gu_row = row_bytes(c.gate_up, n_embd), d_row = row_bytes(c.down, n_ff);
  const std::vector<uint8_t> gu = test::random_blocks(c.gate_up, n_embd * 2 * n_ff * E, uint32_t(rng()));
  const std::vector<uint8_t> dn = test::random_blocks(c.down, n_ff * n_embd * E, uint32_t(rng()));
  const std::vector<float> guf = dequant(c.gate_up, gu, n_embd, 2 * n_ff * E, gu_row);
  const std::vector<float> dnf = dequant(c.down, dn, n_ff, n_embd * E, d_row);
  for (const int64_t n : {int64_t(1), int64_t(3), int64_t(8)}) {
    const int64_t x_stride = n_embd + 4, d_stride = n_embd + 1;
    std::vector<float> x(size_t(x_stride * n));
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& v : x) v = u(rng);
    std::vector<int32_t> ids(size_t(k * n));
    std::vector<float> wts(size_t(k * n));
    for (int64_t t = 0; t < n; ++t) {
      std::vector<int32_t> pool(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) pool[size_t(e)] = int32_t(e);
      std::shuffle(pool.begin(), pool.end(), rng);
      for (int64_t j = 0; j < k; ++j) {
        ids[size_t(t * k + j)] = pool[size_t(j)];
        wts[size_t(t * k + j)] = std::uniform_real_distribution<float>(0.05f, 0.6f)(rng);
      }
    }
    if (n == 3) ids[size_t(k + 1)] = -1;  // an id with no expert contributes nothing
    DeviceBytes dgu(gu.size()), ddn(dn.size()), dx(x.size() * 4), did(ids.size() * 4), dw(wts.size() * 4),
        dd(size_t(d_stride * n) * 4);
    put(dgu.p, gu);
    put(ddn.p, dn);
    put(dx.p, x);
    put(did.p, ids);
    put(dw.p, wts);
    ExpertWeights ex;
    const std::array<size_t, 4> gnb = {type_traits(c.gate_up).block_bytes, gu_row, gu_row * size_t(2 * n_ff),
                                       gu_row * size_t(2 * n_ff * E)};
    ex.gate = Tensor{c.gate_up, {n_embd, n_ff, E, 1}, gnb, dgu.p, kGpu};
    ex.up = Tensor{c.gate_up, {n_embd, n_ff, E, 1}, gnb, dgu.bytes() + gu_row * size_t(n_ff), kGpu};
    ex.down = Tensor::contiguous(c.down, {n_ff, n_embd, E, 1}, ddn.p, kGpu);
    Tensor tx = Tensor::contiguous(GgmlType::F32, {n_embd, n, 1, 1}, dx.p, kGpu);
    tx.nb[1] = size_t(x_stride) * 4;
    Tensor td = Tensor::contiguous(GgmlType::F32, {n_embd, n, 1, 1}, dd.p, kGpu);
    td.nb[1] = size_t(d_stride) * 4;
    const Tensor tid = Tensor::contiguous(GgmlType::I32, {k, n, 1, 1}, did.p, kGpu);
    const Tensor tw = Tensor::contiguous(GgmlType::F32, {k, n, 1, 1}, dw.p, kGpu);
    ASSERT_TRUE(cuda::q8_moe_usable(tx, ex)) << type_name(c.gate_up) << "/" << type_name(c.down);
    DeviceBytes ws(cuda::moe_experts_workspace_bytes(td, tx, ex, tid));
    cuda::moe_experts(nullptr, td, tx, ex, tid, tw, ws.p);
    const std::vector<float> got = get(dd.p, size_t(d_stride * n));

    int bad = 0;
    for (int64_t t = 0; t < n && bad < 5; ++t) {
      const std::vector<float> xq = q8_round_trip(x.data() + t * x_stride, n_embd);
      std::vector<double> ref(static_cast<size_t>(n_embd), 0.0), tol(static_cast<size_t>(n_embd), 0.0);
      for (int64_t j = 0; j < k; ++j) {
        const int32_t e = ids[size_t(t * k + j)];
        if (e < 0) continue;
        const double w = wts[size_t(t * k + j)];
        std::vector<double> h(static_cast<size_t>(n_ff)), herr(static_cast<size_t>(n_ff));
        for (int64_t f = 0; f < n_ff; ++f) {
          const float* gr = guf.data() + (e * 2 * n_ff + f) * n_embd;
          const float* ur = gr + n_ff * n_embd;
          double g = 0, uu = 0;
          for (int64_t i = 0; i < n_embd; ++i) {
            g += double(gr[i]) * xq[size_t(i)];
            uu += double(ur[i]) * xq[size_t(i)];
          }
          const double eg = f32_bound(gr, xq.data(), n_embd), eu = f32_bound(ur, xq.data(), n_embd);
          h[size_t(f)] = silu(g) * uu;
          // |d silu| <= 1.1; the f32 silu and product add a few roundings of |h|.
          herr[size_t(f)] = 1.1 * eg * (std::fabs(uu) + eu) + (std::fabs(g) + eg) * eu + 1e-6 * std::fabs(h[size_t(f)]);
        }
        // h's quantization on the device: half a step of its block (of the device's h, at most
        // the reference's block maximum plus its error), plus h's own error.
        for (int64_t b = 0; b < n_ff; b += 32) {
          double hmax = 0;
          for (int i = 0; i < 32; ++i) hmax = std::max(hmax, std::fabs(h[size_t(b + i)]) + herr[size_t(b + i)]);
          for (int i = 0; i < 32; ++i) herr[size_t(b + i)] += 0.5 * hmax / 127 * 1.001;
        }
        for (int64_t i = 0; i < n_embd; ++i) {
          const float* dr = dnf.data() + (e * n_embd + i) * n_ff;
          double s = 0, se = 0, mag = 0;
          for (int64_t b = 0; b < n_ff; b += 32) {
            double wmax = 0, hs = 0;
            for (int64_t f = b; f < b + 32; ++f) {
              s += dr[f] * h[size_t(f)];
              se += std::fabs(dr[f]) * herr[size_t(f)];
              wmax = std::max(wmax, double(std::fabs(dr[f])));
              hs += std::fabs(h[size_t(f)]) + herr[size_t(f)];
            }
            mag += 5 * wmax * hs;
          }
          ref[size_t(i)] += w * s;
          // f32 rounding of the down product, of its weighting and of the sum over k slots.
          tol[size_t(i)] += w * (se + (double(n_ff) / 1024 + 12 + double(k)) * 6e-8 * mag);
        }
      }
      for (int64_t i = 0; i < n_embd && bad < 5; ++i) {
        const float g = got[size_t(t * d_stride + i)];
        if (!(std::fabs(g - ref[size_t(i)]) <= tol[size_t(i)] + 1e-30)) {
          ++bad;
          ADD_FAILURE() << type_name(c.gate_up) << "/" << type_name(c.down) << " n=" << n << " token " << t << " elem "
                        << i << ": got " << g << " want " << ref[size_t(i)] << " (tol " << tol[size_t(i)] << ")";
        }
      }
    }
  }
}

TEST(CudaMatvecQ8, MoeDecodeExperts) {
  const MoeCase cases[] = {
      {GgmlType::IQ2_XS, GgmlType::IQ2_XS, 2048, 512, 12, 10},    // Qwen3-Coder-Next shapes; 148-byte down rows
      {GgmlType::IQ2_XXS, GgmlType::IQ3_XXS, 2048, 512, 12, 10},  // 196-byte down rows (4-byte staging)
      {GgmlType::Q4_K, GgmlType::Q6_K, 512, 256, 8, 3},           // 210-byte down rows (2-byte staging)
      {GgmlType::Q8_0, GgmlType::Q5_K, 4352, 256, 8, 3},          // gate/up rows of two and a bit tiles
      {GgmlType::Q4_0, GgmlType::Q4_0, 22528, 64, 4, 2},          // inputs too long for a block's shared memory
      {GgmlType::Q8_0, GgmlType::Q4_0, 256, 2560, 8, 8},          // h of 8 slots too long for shared memory
  };
  uint32_t seed = 300;
  for (const MoeCase& c : cases) check_moe(c, seed++);
}

}  // namespace
}  // namespace moeserve
