// The CPU backend's layer-sized fused ops at decode (one token), each with its fused form on and
// off (off: the default chain of ops, what MOESERVE_CPU_FUSE=0 runs): delta_net_step and the
// delta-net output product (gated_matmul) of a Qwen3-Coder-Next delta layer (16 key / 32 value
// heads of 128, conv of 4 taps; out Q8_0 4096x2048), and moe_ffn (n_embd 2048, 128 IQ2_XS experts
// of 512, top-10, Q8_0 shared expert of 512 with its gate, Q8_0 router). The MoE weights of
// kLayers layers are cycled through (~470 MB) so that most reads miss the caches, as a decode
// step's do. Arguments: threads (1, 2, half and all cores), fused (0, 1).
#include <benchmark/benchmark.h>

#include <cmath>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/ggml_type.h"
#include "model/synth/random_blocks.h"

namespace {

using namespace moeserve;

constexpr int64_t kEmbd = 2048, kFf = 512, kExperts = 128, kUsed = 10, kFfShared = 512;
constexpr int64_t kDk = 128, kKeyHeads = 16, kValueHeads = 32, kTaps = 4;
constexpr int kLayers = 4;

// Host memory holding one tensor, filled with random values or weight blocks.
struct Owned {
  std::vector<uint8_t> bytes;
  Tensor t;
  Owned(GgmlType type, std::array<int64_t, 4> ne, float rms, uint32_t seed) {
    const int64_t rows = ne[1] * ne[2] * ne[3];
    bytes.resize(row_bytes(type, ne[0]) * size_t(rows) + 64);
    t = Tensor::contiguous(type, ne, bytes.data());
    if (type == GgmlType::F32) {
      std::mt19937 gen(seed);
      std::uniform_real_distribution<float> dist(-rms, rms);
      for (int64_t i = 0; i < t.n_elements(); ++i) t.as<float>()[i] = dist(gen);
    } else {
      synth::Rng rng(seed);
      synth::BlockFiller(type).fill(bytes.data(), ne[0], rows, rms, rng);
    }
  }
};

std::unique_ptr<cpu::CpuBackend> backend(const benchmark::State& state) {
  cpu::CpuOptions opt;
  opt.n_threads = int(state.range(0));
  opt.fused_layer_ops = state.range(1) != 0;
  return std::make_unique<cpu::CpuBackend>(opt);
}

void delta_step(benchmark::State& state) {
  auto be = backend(state);
  const int64_t ratio = kValueHeads / kKeyHeads, channels = 2 * kDk * kKeyHeads + kDk * kValueHeads;
  Owned qkv(GgmlType::F32, {channels, 1, 1, 1}, 1.0f, 1), z(GgmlType::F32, {kDk, kValueHeads, 1, 1}, 1.0f, 2);
  Owned b(GgmlType::F32, {ratio, kKeyHeads, 1, 1}, 1.0f, 3), a(GgmlType::F32, {ratio, kKeyHeads, 1, 1}, 1.0f, 4);
  Owned dt(GgmlType::F32, {ratio, kKeyHeads, 1, 1}, 1.0f, 5), coef(GgmlType::F32, {ratio, kKeyHeads, 1, 1}, 0.5f, 6);
  Owned conv_w(GgmlType::F32, {kTaps, channels, 1, 1}, 0.5f, 7), conv_state(GgmlType::F32, {(kTaps - 1) * channels, 1, 1, 1}, 1.0f, 8);
  Owned ssm(GgmlType::F32, {kDk * kDk * kValueHeads, 1, 1, 1}, 0.1f, 9), norm(GgmlType::F32, {kDk, 1, 1, 1}, 1.0f, 10);
  Owned y(GgmlType::F32, {kDk, kValueHeads, 1, 1}, 0, 0), u(GgmlType::F32, {channels, 1, 1, 1}, 0, 0);
  Owned q(GgmlType::F32, {kDk, kKeyHeads, 1, 1}, 0, 0), k(GgmlType::F32, {kDk, kKeyHeads, 1, 1}, 0, 0);
  Owned beta(GgmlType::F32, {ratio, kKeyHeads, 1, 1}, 0, 0), g(GgmlType::F32, {ratio, kKeyHeads, 1, 1}, 0, 0);
  Owned o(GgmlType::F32, {kDk, kValueHeads, 1, 1}, 0, 0);
  for (int64_t i = 0; i < coef.t.n_elements(); ++i) coef.t.as<float>()[i] = -0.1f - std::abs(coef.t.as<float>()[i]);
  DeltaNetStep s{y.t, qkv.t, z.t, b.t, a.t, dt.t, coef.t, conv_w.t, conv_state.t, ssm.t, norm.t, 1e-6f, 0.088f,
                 u.t, q.t, k.t, beta.t, g.t, o.t};
  const int32_t pos = 5, seq = 0;
  const SeqRun run{0, 0, 1};
  const BatchInfo batch{1, &pos, &seq, &run, 1};
  // The output product that follows, x * sigmoid(z) then out (gated_matmul).
  Owned out_w(GgmlType::Q8_0, {kDk * kValueHeads, kEmbd, 1, 1}, 0.02f, 11), out(GgmlType::F32, {kEmbd, 1, 1, 1}, 0, 0);
  Owned gate(GgmlType::F32, {kDk, kValueHeads, 1, 1}, 1.0f, 12);
  const bool with_out = state.range(2) != 0;
  for (auto _ : state) {
    be->delta_net_step(s, batch);
    if (with_out) be->gated_matmul(out.t, out_w.t, y.t, gate.t);
  }
}

struct MoeLayer {
  Owned router, shared_inp, gate, up, down, sh_gate, sh_up, sh_down, norm;
  explicit MoeLayer(uint32_t seed)
      : router(GgmlType::Q8_0, {kEmbd, kExperts, 1, 1}, 0.05f, seed),
        shared_inp(GgmlType::Q8_0, {kEmbd, 1, 1, 1}, 0.05f, seed + 1),
        gate(GgmlType::IQ2_XS, {kEmbd, kFf, kExperts, 1}, 0.02f, seed + 2),
        up(GgmlType::IQ2_XS, {kEmbd, kFf, kExperts, 1}, 0.02f, seed + 3),
        down(GgmlType::IQ2_XS, {kFf, kEmbd, kExperts, 1}, 0.04f, seed + 4),
        sh_gate(GgmlType::Q8_0, {kEmbd, kFfShared, 1, 1}, 0.02f, seed + 5),
        sh_up(GgmlType::Q8_0, {kEmbd, kFfShared, 1, 1}, 0.02f, seed + 6),
        sh_down(GgmlType::Q8_0, {kFfShared, kEmbd, 1, 1}, 0.04f, seed + 7),
        norm(GgmlType::F32, {kEmbd, 1, 1, 1}, 1.0f, seed + 8) {}
};

const std::vector<std::unique_ptr<MoeLayer>>& moe_layers() {
  static const std::vector<std::unique_ptr<MoeLayer>> all = [] {
    std::vector<std::unique_ptr<MoeLayer>> v;
    for (int l = 0; l < kLayers; ++l) v.push_back(std::make_unique<MoeLayer>(uint32_t(100 * l + 1)));
    return v;
  }();
  return all;
}

void moe_ffn(benchmark::State& state) {
  auto be = backend(state);
  Owned h(GgmlType::F32, {kEmbd, 1, 1, 1}, 1.0f, 20), y(GgmlType::F32, {kEmbd, 1, 1, 1}, 0.01f, 21);
  Owned m(GgmlType::F32, {kEmbd, 1, 1, 1}, 0, 0), logits(GgmlType::F32, {kExperts, 1, 1, 1}, 0, 0);
  Owned ids(GgmlType::F32, {kUsed, 1, 1, 1}, 0, 0), wts(GgmlType::F32, {kUsed, 1, 1, 1}, 0, 0);
  Owned routed(GgmlType::F32, {kEmbd, 1, 1, 1}, 0, 0), shared(GgmlType::F32, {kEmbd, 1, 1, 1}, 0, 0);
  Owned sh_h(GgmlType::F32, {kFfShared, 1, 1, 1}, 0, 0), sh_up(GgmlType::F32, {kFfShared, 1, 1, 1}, 0, 0);
  Owned gate(GgmlType::F32, {1, 1, 1, 1}, 0, 0);
  const Tensor id_t = Tensor::contiguous(GgmlType::I32, {kUsed, 1, 1, 1}, ids.bytes.data());
  const MoeFfnScratch s{m.t, logits.t, id_t, wts.t, routed.t, shared.t, sh_h.t, sh_up.t, gate.t};
  std::vector<MoeFfnWeights> w;
  for (const auto& l : moe_layers()) {
    MoeFfnWeights mw;
    mw.router = l->router.t;
    mw.experts = ExpertWeights{l->gate.t, l->up.t, l->down.t};
    mw.shared_gate = l->sh_gate.t;
    mw.shared_up = l->sh_up.t;
    mw.shared_down = l->sh_down.t;
    mw.shared_inp = l->shared_inp.t;
    mw.n_expert_used = kUsed;
    w.push_back(mw);
  }
  int64_t step = 0;
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> dist(-0.01f, 0.01f);
  for (auto _ : state) {
    const size_t l = size_t(step++ % kLayers);
    // A different residual contribution per step, so the routing changes.
    y.t.as<float>()[step % kEmbd] = dist(gen) * 100.0f;
    be->moe_ffn(h.t, y.t, moe_layers()[l]->norm.t, 1e-6f, w[l], s);
  }
}

void args(benchmark::internal::Benchmark* b, bool out_arg) {
  const int64_t cores = std::thread::hardware_concurrency();
  std::vector<int64_t> threads{1, 2};
  if (cores > 4) threads.push_back(cores / 2);
  if (cores > 2) threads.push_back(cores);
  for (int64_t t : threads) {
    for (int64_t fused : {0, 1}) {
      if (out_arg) {
        b->Args({t, fused, 0})->Args({t, fused, 1});
      } else {
        b->Args({t, fused});
      }
    }
  }
  if (out_arg) {
    b->ArgNames({"threads", "fused", "out"});
  } else {
    b->ArgNames({"threads", "fused"});
  }
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(delta_step)->Apply([](benchmark::internal::Benchmark* b) { args(b, true); });
BENCHMARK(moe_ffn)->Apply([](benchmark::internal::Benchmark* b) { args(b, false); });

}  // namespace

BENCHMARK_MAIN();
