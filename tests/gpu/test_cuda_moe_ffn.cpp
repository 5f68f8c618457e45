// Backend::moe_ffn on CUDA: the three-launch decode kernels (cuda_moe_ffn.cu) against the same
// chain of ops on the GPU (the composition the other backends run: same expert ids, outputs within
// 1e-5 of the output's scale) and against the reference backend's moe_ffn (same expert ids; the
// MoE part within the 8-bit activation path's error). More than 8 tokens take the composition on
// the GPU too, which must then equal the chain bit for bit. A decode step holding moe_ffn, recorded
// as a graph and replayed, must equal the same step issued directly.
#include <algorithm>

#include "backend/cuda/cuda_matvec.h"
#include "gpu_test_util.h"

namespace moeserve::test {
namespace {

struct MoeCase {
  GgmlType gate_up, down;
  int64_t n_embd, n_ff, n_expert, k;
  int64_t n_ff_sh;  // 0: no shared expert
  bool gated;       // the shared expert's sigmoid gate
  bool normalize;
};

// Host tensors of one MoE block and its inputs.
struct MoeHost {
  HostTensor router, gate, up, down, sgate, sup, sdown, sinp, norm, h, y;
};

MoeHost make_host(const MoeCase& c, int64_t n) {
  MoeHost m;
  const int64_t E = c.n_expert;
  // Router logits of a few units, so the softmax has clear winners and no near-ties.
  m.router = random_f32({c.n_embd, E, 1, 1}, -0.2f, 0.2f);
  m.gate = random_typed(c.gate_up, {c.n_embd, c.n_ff, E, 1}, 0.5f);
  m.up = random_typed(c.gate_up, {c.n_embd, c.n_ff, E, 1}, 0.5f);
  m.down = random_typed(c.down, {c.n_ff, c.n_embd, E, 1}, 0.5f);
  if (c.n_ff_sh) {
    m.sgate = random_typed(GgmlType::Q8_0, {c.n_embd, c.n_ff_sh, 1, 1}, 0.5f);
    m.sup = random_typed(GgmlType::Q8_0, {c.n_embd, c.n_ff_sh, 1, 1}, 0.5f);
    m.sdown = random_typed(GgmlType::Q8_0, {c.n_ff_sh, c.n_embd, 1, 1}, 0.5f);
    if (c.gated) m.sinp = random_f32({c.n_embd, 1, 1, 1}, -0.1f, 0.1f);
  }
  m.norm = random_f32({c.n_embd, 1, 1, 1}, 0.5f, 1.5f);
  m.h = random_f32({c.n_embd, n, 1, 1}, -2, 2);
  m.y = random_f32({c.n_embd, n, 1, 1}, -1, 1);
  return m;
}

// Weights, scratch (poisoned) and inputs of one backend's call; `dev` puts them on the GPU.
struct MoeCall {
  std::vector<DevTensor> keep;
  std::vector<HostTensor> keep_host;
  MoeFfnWeights w;
  MoeFfnScratch s;
  Tensor h, y, norm;
  DevTensor d_h, d_ids;
  HostTensor host_h, host_ids;
};

void make_call(MoeCall& call, const MoeCase& c, const MoeHost& m, int64_t n, bool dev) {
  auto put = [&](const HostTensor& t) -> Tensor {
    if (!t.bytes) return Tensor{};
    if (!dev) {
      call.keep_host.push_back(t.clone());
      return call.keep_host.back().t;
    }
    call.keep.push_back(to_gpu(t));
    return call.keep.back().t;
  };
  call.w.router = put(m.router);
  call.w.experts = {put(m.gate), put(m.up), put(m.down)};
  call.w.shared_gate = put(m.sgate);
  call.w.shared_up = put(m.sup);
  call.w.shared_down = put(m.sdown);
  call.w.shared_inp = put(m.sinp);
  call.w.n_expert_used = c.k;
  call.w.normalize = c.normalize;
  call.norm = put(m.norm);
  call.y = put(m.y);
  auto scratch = [&](GgmlType t, int64_t d) { return put(poisoned(t, {d, n, 1, 1})); };
  call.s.m = scratch(GgmlType::F32, c.n_embd);
  call.s.logits = scratch(GgmlType::F32, c.n_expert);
  call.host_ids = poisoned(GgmlType::I32, {c.k, n, 1, 1});
  call.s.weights = scratch(GgmlType::F32, c.k);
  call.s.routed = scratch(GgmlType::F32, c.n_embd);
  if (c.n_ff_sh) {
    call.s.shared = scratch(GgmlType::F32, c.n_embd);
    call.s.shared_h = scratch(GgmlType::F32, c.n_ff_sh);
    call.s.shared_up = scratch(GgmlType::F32, c.n_ff_sh);
    if (c.gated) call.s.gate = scratch(GgmlType::F32, 1);
  }
  call.host_h = m.h.clone();
  if (dev) {
    call.d_h = to_gpu(call.host_h);
    call.d_ids = to_gpu(call.host_ids);
    call.h = call.d_h.t;
    call.s.ids = call.d_ids.t;
  } else {
    call.h = call.host_h.t;
    call.s.ids = call.host_ids.t;
  }
}

// The composition, op by op, as the backends' default issues it.
void chain(Backend& be, const MoeCall& c, float eps) {
  const MoeFfnWeights& w = c.w;
  const MoeFfnScratch& s = c.s;
  be.add_rms_norm(s.m, c.h, c.y, c.norm, eps);
  if (w.shared_inp.data) {
    be.matmuls(s.m, {{s.logits, w.router}, {s.gate, w.shared_inp}});
  } else {
    be.matmul(s.logits, w.router, s.m);
  }
  be.moe_route(s.ids, s.weights, s.logits, w.normalize);
  be.moe_experts(s.routed, s.m, w.experts, s.ids, s.weights);
  if (w.shared_gate.data) {
    be.matmul_swiglu(s.shared_h, w.shared_gate, w.shared_up, s.m, s.shared_up);
    be.matmul(s.shared, w.shared_down, s.shared_h);
    if (w.shared_inp.data) return be.moe_shared_add(c.h, c.h, s.routed, s.shared, s.gate);
    be.binary(s.routed, s.routed, s.shared, BinaryOp::add);
  }
  be.binary(c.h, c.h, s.routed, BinaryOp::add);
}

std::vector<int32_t> ids_of(const MoeCall& c) {
  const HostTensor got = from_gpu(c.d_ids, c.host_ids);
  return std::vector<int32_t>(got.i(), got.i() + got.size());
}

void check_case(const MoeCase& c, int64_t n) {
  SCOPED_TRACE(std::string(type_name(c.gate_up)) + "/" + type_name(c.down) + " E=" + std::to_string(c.n_expert) +
               " k=" + std::to_string(c.k) + " shared=" + std::to_string(c.n_ff_sh) + (c.gated ? " gated" : "") +
               " n=" + std::to_string(n));
  const float eps = 1e-6f;
  const MoeHost m = make_host(c, n);
  auto ref = make_ref_backend();
  MoeCall want, fused, comp;
  make_call(want, c, m, n, false);
  make_call(fused, c, m, n, true);
  make_call(comp, c, m, n, true);
  ref->moe_ffn(want.h, want.y, want.norm, eps, want.w, want.s);
  gpu().moe_ffn(fused.h, fused.y, fused.norm, eps, fused.w, fused.s);
  chain(gpu(), comp, eps);
  const bool takes_fused = cuda::moe_ffn_workspace_bytes(fused.h, fused.y, fused.w, fused.s) > 0;
  EXPECT_EQ(takes_fused, n <= 8) << "which path the call takes";

  const std::vector<int32_t> ids_f = ids_of(fused), ids_c = ids_of(comp);
  const std::vector<int32_t> ids_r(want.host_ids.i(), want.host_ids.i() + want.host_ids.size());
  EXPECT_EQ(ids_f, ids_c) << "expert ids: fused vs the GPU chain";
  EXPECT_EQ(ids_f, ids_r) << "expert ids: fused vs the reference";
  const HostTensor h_f = from_gpu(fused.d_h, m.h), h_c = from_gpu(comp.d_h, m.h);
  if (takes_fused) {
    expect_close(h_f, h_c, 1e-5, "h: fused vs the GPU chain");
  } else {
    EXPECT_EQ(count_diff_bytes(h_f, h_c), 0u) << "h: the fallback is the chain";
  }
  // The MoE part alone (h_out - h - y) against the reference's: 8-bit activations on the GPU.
  std::vector<float> part_f(size_t(m.h.size())), part_r(part_f.size());
  for (size_t i = 0; i < part_f.size(); ++i) {
    const float r = m.h.f()[i] + m.y.f()[i];
    part_f[i] = h_f.f()[i] - r;
    part_r[i] = want.host_h.f()[i] - r;
  }
  EXPECT_LE(rel_error(part_f, part_r), 3e-2) << "moe(m): fused vs the reference";
}

TEST(CudaMoeFfn, FusedDecodeMatchesChainAndReference) {
  const MoeCase cases[] = {
      // The Qwen3-Coder-Next kinds: IQ2_XS experts, a gated Q8_0 shared expert (wider than them).
      {GgmlType::IQ2_XS, GgmlType::IQ2_XS, 512, 256, 32, 4, 512, true, true},
      // Q8_0 experts, no shared expert (qwen3moe), 10 slots over 5 warps, unnormalized.
      {GgmlType::Q8_0, GgmlType::Q8_0, 256, 128, 40, 10, 0, false, false},
      // Other types, 8 slots (8 warps plus the shared one), a shared expert without a gate.
      {GgmlType::IQ2_XXS, GgmlType::IQ3_XXS, 256, 512, 64, 8, 256, false, true},
      // One expert per token, many experts (EPL 4).
      {GgmlType::Q4_K, GgmlType::Q6_K, 256, 256, 100, 1, 256, true, true},
  };
  for (const MoeCase& c : cases) {
    for (int64_t n : {1, 2, 9}) check_case(c, n);
  }
  check_case(cases[0], 8);
}

TEST(CudaMoeFfn, ReplayedStepEqualsDirectIssue) {
  const MoeCase c{GgmlType::IQ2_XS, GgmlType::IQ2_XS, 512, 256, 32, 4, 512, true, true};
  const int64_t n = 2;
  const float eps = 1e-6f;
  MoeHost m = make_host(c, n);
  MoeCall graphed, direct;
  make_call(graphed, c, m, n, true);
  make_call(direct, c, m, n, true);
  TestBatch b;
  b.add_run(0, 0, 1);
  b.add_run(1, 0, 1);
  gpu().begin_measure();
  gpu().moe_ffn(graphed.h, graphed.y, graphed.norm, eps, graphed.w, graphed.s);
  gpu().end_measure();
  std::vector<int32_t> previous;
  for (int step = 0; step < 4; ++step) {
    const HostTensor h = random_f32({c.n_embd, n, 1, 1}, -2, 2), y = random_f32({c.n_embd, n, 1, 1}, -1, 1);
    for (MoeCall* call : {&graphed, &direct}) {
      gpu().upload(call->h, h.f());
      gpu().upload(call->y, y.f());
    }
    gpu().run_step(b.info(), 77, [&] { gpu().moe_ffn(graphed.h, graphed.y, graphed.norm, eps, graphed.w, graphed.s); });
    gpu().run_step(b.info(), 0, [&] { gpu().moe_ffn(direct.h, direct.y, direct.norm, eps, direct.w, direct.s); });
    EXPECT_EQ(count_diff_bytes(from_gpu(graphed.d_h, m.h), from_gpu(direct.d_h, m.h)), 0u) << "step " << step;
    const std::vector<int32_t> ids = ids_of(graphed);
    EXPECT_EQ(ids, ids_of(direct)) << "step " << step;
    EXPECT_NE(ids, previous) << "step " << step << ": the replay routes the new inputs";
    previous = ids;
  }
}

}  // namespace
}  // namespace moeserve::test
