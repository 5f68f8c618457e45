// Speed of the CUDA backend's non-weight ops on Qwen3-Coder-Next shapes (plain CUDA program: CUDA
// events on the backend's stream around many launches). One line per case:
//   attention decode: time per layer and K/V GB/s (% of the H100's 3.35 TB/s), 4K and 32K context;
//   delta rule decode: time per layer and state GB/s (read + write);
//   prefill (512 tokens): time per layer, tokens/s for that layer;
//   small op: time per launch issued directly and inside a replayed CUDA graph;
//   prefill small ops and F32 products (512 tokens): time per layer.
// Caches and states are spread over several "layers" (more than the 50 MB L2) and rotated.
// Usage: bench_cuda_ops [filter substring]
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_matmul.h"
#include "core/error.h"

using namespace moeserve;

namespace {

constexpr double kPeakGBs = 3350.0;
std::string g_filter;

struct Bench {
  cuda::CudaBackend& be;
  std::vector<Buffer> keep;

  Tensor alloc(GgmlType type, std::array<int64_t, 4> ne) {
    keep.push_back(be.alloc(row_bytes(type, ne[0]) * size_t(ne[1] * ne[2] * ne[3])));
    return Tensor::contiguous(type, ne, keep.back().data(), be.device());
  }
  Tensor random(std::array<int64_t, 4> ne, float lo, float hi, uint32_t seed) {
    Tensor t = alloc(GgmlType::F32, ne);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> host(size_t(t.n_elements()));
    for (float& v : host) v = u(rng);
    be.upload(t, host.data());
    return t;
  }
  // Milliseconds per call of f (f(i) for i = 0..iters-1), after a warm-up.
  double time_ms(int iters, const std::function<void(int)>& f) {
    for (int i = 0; i < 3; ++i) f(i);
    cudaEvent_t a, b;
    MOESERVE_CUDA_CHECK(cudaEventCreate(&a));
    MOESERVE_CUDA_CHECK(cudaEventCreate(&b));
    MOESERVE_CUDA_CHECK(cudaEventRecord(a, be.stream()));
    for (int i = 0; i < iters; ++i) f(i);
    MOESERVE_CUDA_CHECK(cudaEventRecord(b, be.stream()));
    MOESERVE_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    MOESERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return double(ms) / iters;
  }
};

bool wanted(const std::string& name) { return g_filter.empty() || name.find(g_filter) != std::string::npos; }

struct BatchData {
  std::vector<int32_t> pos, seq;
  std::vector<SeqRun> runs;
  BatchInfo info() const { return {int32_t(pos.size()), pos.data(), seq.data(), runs.data(), int32_t(runs.size())}; }
};

BatchData one_run(int32_t seq, int32_t start, int32_t count) {
  BatchData b;
  for (int32_t i = 0; i < count; ++i) {
    b.pos.push_back(start + i);
    b.seq.push_back(seq);
  }
  b.runs.push_back({seq, 0, count});
  return b;
}

// Qwen3-Coder-Next attention: 16 query heads over 2 KV heads of 256.
constexpr int64_t kHd = 256, kHeads = 16, kKvHeads = 2;

void attention_cases(Bench& B) {
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::F16, GgmlType::Q4_0}) {
    for (int64_t n_ctx : {4096, 32768}) {
      const std::string name = str_cat("attention decode ", type_name(type), " ctx ", n_ctx);
      if (!wanted(name)) continue;
      const int layers = int(std::max<int64_t>(2, (600ll << 20) / (2 * n_ctx * int64_t(row_bytes(type, kHd * kKvHeads)))));
      std::vector<Tensor> k(static_cast<size_t>(layers)), v(static_cast<size_t>(layers));
      const BatchData fill = one_run(0, 0, int32_t(n_ctx));
      const Tensor src = B.random({kHd * kKvHeads, n_ctx, 1, 1}, -2, 2, 1);
      for (int l = 0; l < layers; ++l) {
        k[size_t(l)] = B.alloc(type, {kHd * kKvHeads, n_ctx, 1, 1});
        v[size_t(l)] = B.alloc(type, {kHd * kKvHeads, n_ctx, 1, 1});
        B.be.kv_store(k[size_t(l)], src, fill.info());
        B.be.kv_store(v[size_t(l)], src, fill.info());
      }
      const Tensor q = B.random({kHd, kHeads, 1, 1}, -1, 1, 2);
      const Tensor out = B.alloc(GgmlType::F32, {kHd, kHeads, 1, 1});
      const BatchData step = one_run(0, int32_t(n_ctx) - 1, 1);
      const double ms = B.time_ms(50, [&](int i) {
        const size_t l = size_t(i % layers);
        B.be.attention(out, q, k[l], v[l], step.info(), AttentionParams{0.0625f, true});
      });
      const double bytes = 2.0 * double(k[0].n_bytes());
      const double gbs = bytes / (ms * 1e-3) / 1e9;
      std::printf("%-44s %9.1f us/layer  %7.1f GB/s  %5.1f%% of 3.35 TB/s\n", name.c_str(), ms * 1e3, gbs,
                  100 * gbs / kPeakGBs);
    }
  }
  const std::string name = "attention prefill Q8_0 512 tokens";
  if (!wanted(name)) return;
  const Tensor kc = B.alloc(GgmlType::Q8_0, {kHd * kKvHeads, 4096, 1, 1});
  const Tensor vc = B.alloc(GgmlType::Q8_0, {kHd * kKvHeads, 4096, 1, 1});
  const BatchData step = one_run(0, 0, 512);
  const Tensor src = B.random({kHd * kKvHeads, 512, 1, 1}, -2, 2, 3);
  B.be.kv_store(kc, src, step.info());
  B.be.kv_store(vc, src, step.info());
  const Tensor q = B.random({kHd, kHeads, 512, 1}, -1, 1, 4);
  const Tensor out = B.alloc(GgmlType::F32, {kHd, kHeads, 512, 1});
  const double ms = B.time_ms(20, [&](int) { B.be.attention(out, q, kc, vc, step.info(), AttentionParams{0.0625f, true}); });
  std::printf("%-44s %9.1f us/layer  %9.0f tok/s for this layer\n", name.c_str(), ms * 1e3, 512 / (ms * 1e-3));
}

// Qwen3-Coder-Next delta net: 16 key heads, 32 value heads, 128 x 128 state per head.
constexpr int64_t kDk = 128, kDv = 128, kKh = 16, kVh = 32;

void delta_cases(Bench& B) {
  for (int32_t n : {1, 512}) {
    const std::string name = str_cat("gated_delta_net ", n == 1 ? "decode" : "prefill 512 tokens");
    if (!wanted(name)) continue;
    const int layers = n == 1 ? 48 : 2;
    std::vector<Tensor> states;
    for (int l = 0; l < layers; ++l) states.push_back(B.random({kDk * kDv * kVh, 1, 1, 1}, -0.1f, 0.1f, 10 + l));
    const Tensor q = B.random({kDk, kKh, n, 1}, -0.1f, 0.1f, 5), k = B.random({kDk, kKh, n, 1}, -0.1f, 0.1f, 6);
    const Tensor v = B.random({kDv, kVh, n, 1}, -1, 1, 7);
    const Tensor g = B.random({kVh, n, 1, 1}, -1, 0, 8), beta = B.random({kVh, n, 1, 1}, 0, 1, 9);
    const Tensor out = B.alloc(GgmlType::F32, {kDv, kVh, n, 1});
    const BatchData step = one_run(0, 100, n);
    const double ms = B.time_ms(n == 1 ? 200 : 10, [&](int i) {
      B.be.gated_delta_net(out, q, k, v, g, beta, states[size_t(i % layers)], step.info());
    });
    if (n == 1) {
      const double gbs = 2.0 * double(states[0].n_bytes()) / (ms * 1e-3) / 1e9;
      std::printf("%-44s %9.1f us/layer  %7.1f GB/s  %5.1f%% of 3.35 TB/s\n", name.c_str(), ms * 1e3, gbs,
                  100 * gbs / kPeakGBs);
    } else {
      std::printf("%-44s %9.1f us/layer  %9.0f tok/s for this layer\n", name.c_str(), ms * 1e3, n / (ms * 1e-3));
    }
  }
}

void small_op_cases(Bench& B) {
  const std::string name = "rms_norm [2048] x 100";
  if (!wanted(name)) return;
  const Tensor x = B.random({2048, 1, 1, 1}, -1, 1, 20), w = B.random({2048, 1, 1, 1}, 0, 1, 21);
  const Tensor y = B.alloc(GgmlType::F32, {2048, 1, 1, 1});
  const BatchData step = one_run(0, 0, 1);
  auto issue = [&] {
    for (int i = 0; i < 100; ++i) B.be.rms_norm(y, x, &w, 1e-6f);
  };
  const double direct = B.time_ms(20, [&](int) { issue(); });
  const double graphed = B.time_ms(20, [&](int) { B.be.run_step(step.info(), 1, issue); });
  std::printf("%-44s %9.2f us/op direct  %6.2f us/op in a replayed graph\n", name.c_str(), direct * 10, graphed * 10);
}

// The small ops of one delta-net layer's decode step (gates, q/k norms, residual + norm, the
// shared expert's gate and residual), issued as the separate ops the forward used before fusing
// and as the fused ops, inside a replayed graph.
void layer_chain_cases(Bench& B) {
  const std::string name = "delta-net layer small ops, decode";
  if (!wanted(name)) return;
  const int64_t d = 2048, r = 2, nk = 16, dk = 128;
  const Tensor ba = B.random({2 * r * nk, 1, 1, 1}, -2, 2, 30), dt = B.random({r, nk, 1, 1}, -1, 1, 31);
  const Tensor coef = B.random({r, nk, 1, 1}, -2, -0.1f, 32), beta = B.alloc(GgmlType::F32, {r, nk, 1, 1});
  const Tensor g = B.alloc(GgmlType::F32, {r, nk, 1, 1});
  const size_t grp = size_t(2 * r) * sizeof(float);
  const Tensor bv = ba.view({r, nk, 1, 1}, {0, grp, ba.nb[1], ba.nb[1]});
  const Tensor av = ba.view({r, nk, 1, 1}, {0, grp, ba.nb[1], ba.nb[1]}, size_t(r) * sizeof(float));
  const Tensor u = B.random({3 * dk * nk, 1, 1, 1}, -1, 1, 33);
  const Tensor qv = u.view({dk, nk, 1, 1}, {0, size_t(dk) * 4, u.nb[1], u.nb[1]});
  const Tensor kv = u.view({dk, nk, 1, 1}, {0, size_t(dk) * 4, u.nb[1], u.nb[1]}, size_t(dk * nk) * 4);
  const Tensor q = B.alloc(GgmlType::F32, {dk, nk, 1, 1}), k = B.alloc(GgmlType::F32, {dk, nk, 1, 1});
  const Tensor h = B.random({d, 1, 1, 1}, -1, 1, 34), y = B.random({d, 1, 1, 1}, -1, 1, 35);
  const Tensor w = B.random({d, 1, 1, 1}, 0, 1, 36), m = B.alloc(GgmlType::F32, {d, 1, 1, 1});
  const Tensor routed = B.random({d, 1, 1, 1}, -1, 1, 37), sh = B.random({d, 1, 1, 1}, -1, 1, 38);
  const Tensor gate = B.random({1, 1, 1, 1}, -1, 1, 39);
  const BatchData step = one_run(0, 0, 1);
  auto separate = [&] {
    B.be.unary(beta, bv, UnaryOp::sigmoid);
    B.be.binary(g, av, dt, BinaryOp::add);
    B.be.unary(g, g, UnaryOp::softplus);
    B.be.binary(g, g, coef, BinaryOp::mul);
    B.be.l2_norm(q, qv, 1e-6f);
    B.be.l2_norm(k, kv, 1e-6f);
    B.be.scale(q, q, 0.088f);
    B.be.binary(h, h, y, BinaryOp::add);
    B.be.rms_norm(m, h, &w, 1e-6f);
    B.be.unary(gate, gate, UnaryOp::sigmoid);
    B.be.binary(sh, sh, gate, BinaryOp::mul);
    B.be.binary(routed, routed, sh, BinaryOp::add);
    B.be.binary(h, h, routed, BinaryOp::add);
  };
  auto fused = [&] {
    B.be.delta_gates(beta, g, bv, av, dt, coef);
    B.be.qk_l2_norm(q, k, qv, kv, 1e-6f, 0.088f);
    B.be.add_rms_norm(m, h, y, w, 1e-6f);
    B.be.moe_shared_add(h, h, routed, sh, gate);
  };
  const double t_sep = B.time_ms(50, [&](int) { B.be.run_step(step.info(), 2, separate); });
  const double t_fused = B.time_ms(50, [&](int) { B.be.run_step(step.info(), 3, fused); });
  std::printf("%-44s %9.2f us as 13 ops  %6.2f us as 4 fused ops (replayed graphs)\n", name.c_str(), t_sep * 1e3,
              t_fused * 1e3);
}

// One delta-net layer's prefill-side small ops and F32 products over 512 tokens (the shapes of
// Qwen3-Coder-Next: conv over 8192 channels, 16 + 16 key heads of 128, 32 value heads, the
// router's 512 x 2048 and the shared-expert gate's 1 x 2048 F32 weights), each issued directly.
void prefill_op_cases(Bench& B) {
  constexpr int64_t n = 512, channels = 2 * kKh * kDk + kVh * kDv;
  const BatchData step = one_run(0, 0, int32_t(n));
  auto report = [&](const std::string& name, double ms) {
    std::printf("%-44s %9.1f us/layer\n", name.c_str(), ms * 1e3);
  };
  if (const std::string name = "ssm_conv prefill 512 tokens"; wanted(name)) {
    const Tensor x = B.random({channels, n, 1, 1}, -1, 1, 40), w = B.random({4, channels, 1, 1}, -1, 1, 41);
    const Tensor state = B.random({3 * channels, 1, 1, 1}, -1, 1, 42);
    const Tensor out = B.alloc(GgmlType::F32, {channels, n, 1, 1});
    report(name, B.time_ms(20, [&](int) { B.be.ssm_conv(out, x, state, w, step.info()); }));
  }
  if (const std::string name = "qk_l2_norm prefill 512 tokens"; wanted(name)) {
    const Tensor u = B.random({channels, n, 1, 1}, -1, 1, 43);
    const std::array<size_t, 4> nb{0, size_t(kDk) * 4, u.nb[1], u.nb[1] * size_t(n)};
    const Tensor qv = u.view({kDk, kKh, n, 1}, nb), kv = u.view({kDk, kKh, n, 1}, nb, size_t(kKh * kDk) * 4);
    const Tensor q = B.alloc(GgmlType::F32, {kDk, kKh, n, 1}), k = B.alloc(GgmlType::F32, {kDk, kKh, n, 1});
    report(name, B.time_ms(20, [&](int) { B.be.qk_l2_norm(q, k, qv, kv, 1e-6f, 0.088f); }));
  }
  if (const std::string name = "rms_norm_gated prefill 512 tokens"; wanted(name)) {
    const Tensor o = B.random({kDv, kVh, n, 1}, -1, 1, 44), z = B.random({kDv, kVh, n, 1}, -1, 1, 45);
    const Tensor w = B.random({kDv, 1, 1, 1}, 0, 1, 46), y = B.alloc(GgmlType::F32, {kDv, kVh, n, 1});
    report(name, B.time_ms(20, [&](int) { B.be.rms_norm_gated(y, o, w, z, 1e-6f); }));
  }
  for (const int64_t m : {512, 1}) {
    const std::string name = str_cat("matmul F32 2048x", m, " n=512");
    if (!wanted(name)) continue;
    const Tensor w = B.random({2048, m, 1, 1}, -1, 1, 47), x = B.random({2048, n, 1, 1}, -1, 1, 48);
    const Tensor y = B.alloc(GgmlType::F32, {m, n, 1, 1});
    report(name, B.time_ms(20, [&](int) { cuda::matmul(B.be.stream(), y, w, x, nullptr); }));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_filter = argv[1];
  try {
    std::unique_ptr<Backend> be = make_cuda_backend(0);
    std::printf("device: %s\n", be->name().c_str());
    Bench B{*static_cast<cuda::CudaBackend*>(be.get()), {}};
    attention_cases(B);
    delta_cases(B);
    small_op_cases(B);
    layer_chain_cases(B);
    prefill_op_cases(B);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda_ops: %s\n", e.what());
    return 1;
  }
  return 0;
}
