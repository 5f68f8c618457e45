// Speed of the weight-side CUDA kernels on the real Qwen3-Coder-Next shapes (plain CUDA program,
// not Google Benchmark: CUDA events around a replayed graph of launches). Prints one line per case:
//   matvec: weight GB/s and % of the H100's 3.35 TB/s;
//   gemm:   TFLOP/s at 512 columns (prefill);
//   moe:    time per layer (decode: 1 token; prefill: 512 tokens), with the experts' bytes/s.
// Each case is a CUDA graph of many launches (launch gaps excluded, as in graph-replayed decode).
// Weights are random blocks with sane scales, spread over more memory than the 50 MB L2 and
// rotated between launches so every launch reads from DRAM.
// Usage: bench_cuda_matmul [filter substring]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../tests/unit/quant_test_util.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_matmul.h"
#include "backend/cuda/cuda_matvec.h"

using namespace moeserve;

namespace {

constexpr DeviceId kGpu{DeviceKind::cuda, 0};
constexpr double kPeakGBs = 3350.0;
constexpr size_t kRotateBytes = size_t(512) << 20;  // > 10x L2

std::string g_filter;

// `bytes` of weight data of `type` (a whole number of blocks), random blocks repeated.
void* random_weights(GgmlType type, size_t bytes) {
  const TypeTraits& t = type_traits(type);
  const int64_t pattern_elems = t.block_size * 4096;
  std::vector<uint8_t> pattern;
  if (t.block_size == 1) {
    const std::vector<float> v = test::normal_row(pattern_elems, 7, 0.05f);
    pattern.resize(row_bytes(type, pattern_elems));
    t.quantize(v.data(), pattern.data(), pattern_elems);
  } else {
    pattern = test::random_blocks(type, pattern_elems, 7);
  }
  std::vector<uint8_t> host(bytes);
  for (size_t o = 0; o < bytes; o += pattern.size()) std::memcpy(host.data() + o, pattern.data(), std::min(pattern.size(), bytes - o));
  void* d = nullptr;
  MOESERVE_CUDA_CHECK(cudaMalloc(&d, bytes));
  MOESERVE_CUDA_CHECK(cudaMemcpy(d, host.data(), bytes, cudaMemcpyHostToDevice));
  return d;
}

float* random_floats(size_t count, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> host(count);
  for (float& v : host) v = u(rng);
  float* d = nullptr;
  MOESERVE_CUDA_CHECK(cudaMalloc(&d, count * 4));
  MOESERVE_CUDA_CHECK(cudaMemcpy(d, host.data(), count * 4, cudaMemcpyHostToDevice));
  return d;
}

cudaStream_t g_stream = nullptr;

// Mean milliseconds of one call of f(i): `iters` calls captured as one CUDA graph (as decode runs
// them), replayed after a warm-up replay, so launch gaps stay out of the numbers.
template <typename F>
double time_ms(int iters, F&& f) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  MOESERVE_CUDA_CHECK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < iters; ++i) f(i);
  MOESERVE_CUDA_CHECK(cudaStreamEndCapture(g_stream, &graph));
  MOESERVE_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  MOESERVE_CUDA_CHECK(cudaGraphLaunch(exec, g_stream));
  cudaEvent_t a, b;
  MOESERVE_CUDA_CHECK(cudaEventCreate(&a));
  MOESERVE_CUDA_CHECK(cudaEventCreate(&b));
  MOESERVE_CUDA_CHECK(cudaEventRecord(a, g_stream));
  MOESERVE_CUDA_CHECK(cudaGraphLaunch(exec, g_stream));
  MOESERVE_CUDA_CHECK(cudaEventRecord(b, g_stream));
  MOESERVE_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  MOESERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return double(ms) / iters;
}

bool wanted(const std::string& name) { return g_filter.empty() || name.find(g_filter) != std::string::npos; }

// norm: the products of rms_norm(x) * weight with the norm folded into the kernel
// (Backend::norm_matmuls on the 8-bit path), as the output head runs them.
void bench_matmul(GgmlType type, int64_t m, int64_t k, int64_t n, bool norm = false) {
  const std::string name = std::string(norm ? "norm " : "") + (n <= 8 ? "matvec " : "gemm ") + type_name(type) + " " +
                           std::to_string(m) + "x" + std::to_string(k) + " n=" + std::to_string(n);
  if (!wanted(name)) return;
  const size_t mat_bytes = row_bytes(type, k) * size_t(m);
  const int copies = int(std::max<size_t>(1, kRotateBytes / mat_bytes));
  void* w = random_weights(type, mat_bytes * size_t(copies));
  float* x = random_floats(size_t(k * n), -1.0f, 1.0f, 3);
  float* norm_w = random_floats(size_t(k), 0.5f, 1.5f, 4);
  const Tensor t_norm = Tensor::contiguous(GgmlType::F32, {k, 1, 1, 1}, norm_w, kGpu);
  float* y = nullptr;
  MOESERVE_CUDA_CHECK(cudaMalloc(&y, size_t(m * n) * 4));
  const Tensor tx = Tensor::contiguous(GgmlType::F32, {k, n, 1, 1}, x, kGpu);
  const Tensor ty = Tensor::contiguous(GgmlType::F32, {m, n, 1, 1}, y, kGpu);
  Tensor tw = Tensor::contiguous(type, {k, m, 1, 1}, w, kGpu);
  void* ws = nullptr;
  MOESERVE_CUDA_CHECK(cudaMalloc(&ws, std::max<size_t>(1, cuda::matmul_workspace_bytes(ty, tw, tx))));
  const int iters = n <= 8 ? 200 : 20;
  const double ms = time_ms(iters, [&](int i) {
    tw.data = static_cast<char*>(w) + size_t(i % copies) * mat_bytes;
    if (norm) {
      const MatmulProduct p{ty, tw};
      cuda::q8_norm_matvecs(g_stream, tx, t_norm, 1e-6f, std::span<const MatmulProduct>(&p, 1));
    } else {
      cuda::matmul(g_stream, ty, tw, tx, ws);
    }
  });
  if (n <= 8) {
    const double gbs = double(mat_bytes) / (ms * 1e-3) / 1e9;
    std::printf("%-40s %9.1f us  %7.1f GB/s  %5.1f%% of 3.35 TB/s\n", name.c_str(), ms * 1e3, gbs, 100 * gbs / kPeakGBs);
  } else {
    const double tflops = 2.0 * double(m) * double(k) * double(n) / (ms * 1e-3) / 1e12;
    std::printf("%-40s %9.1f us  %7.1f TFLOP/s\n", name.c_str(), ms * 1e3, tflops);
  }
  cudaFree(w);
  cudaFree(x);
  cudaFree(norm_w);
  cudaFree(y);
  cudaFree(ws);
}

// One MoE layer of Qwen3-Coder-Next: 512 experts, n_embd 2048, n_ff 512, top-10.
void bench_moe(GgmlType gate_up, GgmlType down, int64_t n) {
  const int64_t n_embd = 2048, n_ff = 512, E = 512, k = 10;
  const std::string name = std::string("moe ") + type_name(gate_up) + "/" + type_name(down) + " n=" + std::to_string(n);
  if (!wanted(name)) return;
  const size_t gu_row = row_bytes(gate_up, n_embd), d_row = row_bytes(down, n_ff);
  const size_t gu_bytes = gu_row * size_t(2 * n_ff * E), d_bytes = d_row * size_t(n_embd * E);
  void* gu = random_weights(gate_up, gu_bytes);
  void* dn = random_weights(down, d_bytes);
  float* x = random_floats(size_t(n_embd * n), -1.0f, 1.0f, 4);
  float* y = nullptr;
  MOESERVE_CUDA_CHECK(cudaMalloc(&y, size_t(n_embd * n) * 4));
  // 64 routing draws (distinct experts per token), cycled, so decode does not hit the same
  // experts in L2 every time.
  constexpr int kDraws = 64;
  std::mt19937 rng(5);
  std::vector<int32_t> ids(size_t(kDraws * n * k));
  for (int d = 0; d < kDraws; ++d) {
    for (int64_t t = 0; t < n; ++t) {
      std::vector<int32_t> pool(E);
      for (int e = 0; e < E; ++e) pool[size_t(e)] = e;
      for (int64_t j = 0; j < k; ++j) {
        std::swap(pool[size_t(j)], pool[size_t(j) + rng() % size_t(E - j)]);
        ids[size_t((d * n + t) * k + j)] = pool[size_t(j)];
      }
    }
  }
  int32_t* d_ids = nullptr;
  MOESERVE_CUDA_CHECK(cudaMalloc(&d_ids, ids.size() * 4));
  MOESERVE_CUDA_CHECK(cudaMemcpy(d_ids, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
  float* wts = random_floats(size_t(n * k), 0.05f, 0.2f, 6);
  ExpertWeights ex;
  const std::array<size_t, 4> gnb = {type_traits(gate_up).block_bytes, gu_row, gu_row * size_t(2 * n_ff), gu_bytes};
  ex.gate = Tensor{gate_up, {n_embd, n_ff, E, 1}, gnb, gu, kGpu};
  ex.up = Tensor{gate_up, {n_embd, n_ff, E, 1}, gnb, static_cast<char*>(gu) + gu_row * size_t(n_ff), kGpu};
  ex.down = Tensor::contiguous(down, {n_ff, n_embd, E, 1}, dn, kGpu);
  const Tensor tx = Tensor::contiguous(GgmlType::F32, {n_embd, n, 1, 1}, x, kGpu);
  const Tensor ty = Tensor::contiguous(GgmlType::F32, {n_embd, n, 1, 1}, y, kGpu);
  Tensor tid = Tensor::contiguous(GgmlType::I32, {k, n, 1, 1}, d_ids, kGpu);
  const Tensor tw = Tensor::contiguous(GgmlType::F32, {k, n, 1, 1}, wts, kGpu);
  void* ws = nullptr;
  MOESERVE_CUDA_CHECK(cudaMalloc(&ws, std::max<size_t>(1, cuda::moe_experts_workspace_bytes(ty, tx, ex, tid))));
  const int iters = n <= 8 ? 200 : 20;
  const double ms = time_ms(iters, [&](int i) {
    tid.data = d_ids + size_t(i % kDraws) * size_t(n * k);
    cuda::moe_experts(g_stream, ty, tx, ex, tid, tw, ws);
  });
  // Bytes of the experts one token touches (decode reads each selected expert once).
  const double expert_bytes = double(k) * (double(2 * n_ff) * double(gu_row) + double(n_embd) * double(d_row));
  if (n <= 8) {
    const double gbs = double(n) * expert_bytes / (ms * 1e-3) / 1e9;  // upper bound on distinct bytes
    std::printf("%-40s %9.1f us/layer  %7.1f GB/s (selected experts)  %5.1f%% of 3.35 TB/s\n", name.c_str(), ms * 1e3,
                gbs, 100 * gbs / kPeakGBs);
  } else {
    const double flops = 2.0 * double(n) * double(k) * 3.0 * double(n_embd) * double(n_ff);
    std::printf("%-40s %9.1f us/layer  %7.1f TFLOP/s  %8.0f tok/s for this layer\n", name.c_str(), ms * 1e3,
                flops / (ms * 1e-3) / 1e12, double(n) / (ms * 1e-3));
  }
  cudaFree(gu);
  cudaFree(dn);
  cudaFree(x);
  cudaFree(y);
  cudaFree(d_ids);
  cudaFree(wts);
  cudaFree(ws);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_filter = argv[1];
  cudaDeviceProp prop{};
  MOESERVE_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  MOESERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
  try {
    // Decode: one token through a 2048 -> 8192 projection, every type.
    for (const TypeTraits* t = all_types().begin; t != all_types().end; ++t) {
      if (t->vec_dot && cuda::supports_weight_type(t->type)) bench_matmul(t->type, 8192, 2048, 1);
    }
    for (GgmlType t : {GgmlType::Q8_0, GgmlType::IQ2_XS}) {
      for (int64_t n : {2, 4, 8}) bench_matmul(t, 8192, 2048, n);
    }
    // Output projection (vocabulary 151936) in Q8_0 / Q6_K.
    bench_matmul(GgmlType::Q8_0, 151936, 2048, 1);
    bench_matmul(GgmlType::Q6_K, 151936, 2048, 1);
    bench_matmul(GgmlType::Q8_0, 151936, 2048, 1, /*norm=*/true);
    bench_matmul(GgmlType::Q6_K, 151936, 2048, 1, /*norm=*/true);
    // The decode input products of a layer, with the input norm folded.
    bench_matmul(GgmlType::Q8_0, 8192, 2048, 1, /*norm=*/true);
    // Prefill: 512 columns; Q8_0 also few (16, 64) and many (2048) columns.
    for (GgmlType t : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::IQ2_XS}) {
      bench_matmul(t, 8192, 2048, 512);
    }
    for (int64_t n : {16, 64, 2048}) bench_matmul(GgmlType::Q8_0, 8192, 2048, n);
    for (int64_t n : {1, 512}) {
      bench_moe(GgmlType::IQ2_XS, GgmlType::IQ2_XS, n);
      bench_moe(GgmlType::IQ2_XXS, GgmlType::IQ3_XXS, n);
    }
    // ~20, ~40 and ~80 tokens per expert (long prompts, large batches)
    for (int64_t n : {1024, 2048, 4096}) bench_moe(GgmlType::IQ2_XS, GgmlType::IQ2_XS, n);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_matmul: %s\n", e.what());
    return 1;
  }
  return 0;
}
