// The CPU backend's own forms of the layer-sized fused ops (delta_net_step, moe_ffn, add_rms_norm):
// each must give, bit for bit, what the chain of ops it replaces gives on the same backend (the
// chain is the op's documented default composition, issued here op by op), for odd shapes, strided
// inputs as the model passes them, several thread counts, and batch shapes that take the fused
// path and the chain. The chain's ops are held to the scalar reference in test_ops_*.cpp and the
// whole forward to transformers/llama.cpp outputs in the model tests; the fused results are also
// compared with the reference backend's here.
#include "ops_test_util.h"

namespace moeserve::test {
namespace {

// The fused forms on, whatever MOESERVE_CPU_FUSE says.
std::unique_ptr<cpu::CpuBackend> fused_cpu(int threads) {
  cpu::CpuOptions o;
  o.n_threads = threads;
  o.fused_layer_ops = true;
  return std::make_unique<cpu::CpuBackend>(o);
}

// ---- delta_net_step --------------------------------------------------------------------------

struct DeltaShape {
  int64_t dk, dv, nk, ratio;
};

struct DeltaStepInputs {
  HostTensor qkv, z, ba, dt_bias, a_coef, conv_w, conv_state, ssm_state, norm;
};

DeltaStepInputs make_step_inputs(const DeltaShape& sh, int64_t n, int64_t n_seq, int64_t taps) {
  const int64_t nv = sh.nk * sh.ratio, channels = 2 * sh.dk * sh.nk + sh.dv * nv;
  DeltaStepInputs in;
  in.qkv = random_f32({channels, n, 1, 1}, -2, 2);
  in.z = random_f32({sh.dv * nv, n, 1, 1}, -3, 3);
  in.ba = random_f32({2 * nv, n, 1, 1}, -4, 4);
  in.dt_bias = random_f32({nv, 1, 1, 1}, -1, 1);
  in.a_coef = random_f32({nv, 1, 1, 1}, -2.0f, -0.1f);  // -exp(A_log) < 0
  in.conv_w = random_f32({taps, channels, 1, 1}, -0.7f, 0.7f);
  in.conv_state = random_f32({(taps - 1) * channels, n_seq, 1, 1}, -1, 1);
  in.ssm_state = random_f32({sh.dk * sh.dv * nv, n_seq, 1, 1}, -0.3f, 0.3f);
  in.norm = random_f32({sh.dv, 1, 1, 1}, 0.5f, 1.5f);
  // One large a + dt_bias (softplus's linear branch) and one very negative.
  in.ba.f()[2 * nv - 1] = 30.0f;
  in.ba.f()[sh.ratio] = -30.0f;
  return in;
}

struct DeltaStepOutputs {
  HostTensor y, conv_state, ssm_state;
};

// One step on `be`: the fused op, or the chain of its default composition op by op. The b and a
// gates are strided views of ba, as the model passes them.
DeltaStepOutputs run_step(Backend& be, const DeltaShape& sh, const DeltaStepInputs& in, const TestBatch& batch,
                          bool chain) {
  constexpr size_t kF = sizeof(float);
  const int64_t n = in.qkv.t.ne[1], nk = sh.nk, nv = nk * sh.ratio, dk = sh.dk, dv = sh.dv, ratio = sh.ratio;
  const int64_t channels = in.qkv.t.ne[0];
  DeltaStepOutputs out{HostTensor::make(GgmlType::F32, {dv, nv, n, 1}), in.conv_state.clone(), in.ssm_state.clone()};
  HostTensor u = HostTensor::make(GgmlType::F32, {channels, n, 1, 1});
  HostTensor q = HostTensor::make(GgmlType::F32, {dk, nk, n, 1}), k = q.clone();
  HostTensor beta = HostTensor::make(GgmlType::F32, {ratio, nk, n, 1}), g = beta.clone();
  HostTensor o = HostTensor::make(GgmlType::F32, {dv, nv, n, 1});
  const Tensor& ba = in.ba.t;
  const size_t group = size_t(2 * ratio) * kF;
  DeltaNetStep s;
  s.y = out.y.t;
  s.qkv = in.qkv.t;
  s.z = in.z.t.reshape({dv, nv, n, 1});
  s.b = ba.view({ratio, nk, n, 1}, {0, group, ba.nb[1], ba.nb[1] * size_t(n)});
  s.a = ba.view({ratio, nk, n, 1}, {0, group, ba.nb[1], ba.nb[1] * size_t(n)}, size_t(ratio) * kF);
  s.dt_bias = in.dt_bias.t.reshape({ratio, nk, 1, 1});
  s.a_coef = in.a_coef.t.reshape({ratio, nk, 1, 1});
  s.conv_w = in.conv_w.t;
  s.conv_state = out.conv_state.t;
  s.ssm_state = out.ssm_state.t;
  s.norm = in.norm.t;
  s.eps = 1e-6f;
  s.q_scale = float(1.0 / std::sqrt(double(dk)));
  s.u = u.t;
  s.q = q.t;
  s.k = k.t;
  s.beta = beta.t;
  s.g = g.t;
  s.o = o.t;
  if (!chain) {
    be.delta_net_step(s, batch.info());
    return out;
  }
  be.delta_gates(s.beta, s.g, s.b, s.a, s.dt_bias, s.a_coef);
  be.ssm_conv(s.u, s.qkv, s.conv_state, s.conv_w, batch.info());
  const std::array<size_t, 4> k_nb{0, size_t(dk) * kF, u.t.nb[1], u.t.nb[1] * size_t(n)};
  const Tensor q_src = u.t.view({dk, nk, n, 1}, k_nb), k_src = u.t.view({dk, nk, n, 1}, k_nb, size_t(nk * dk) * kF);
  const Tensor v = u.t.view({dv, nv, n, 1}, {0, size_t(dv) * kF, u.t.nb[1], u.t.nb[1] * size_t(n)},
                            size_t(2 * nk * dk) * kF);
  be.qk_l2_norm(s.q, s.k, q_src, k_src, s.eps, s.q_scale);
  be.gated_delta_net(s.o, s.q, s.k, v, s.g.reshape({nv, n, 1, 1}), s.beta.reshape({nv, n, 1, 1}), s.ssm_state,
                     batch.info());
  be.rms_norm_gated(s.y, s.o, s.norm, s.z, s.eps);
  return out;
}

TEST(OpsFusedLayer, DeltaNetStepEqualsTheChain) {
  auto ref = make_ref_backend();
  const DeltaShape shapes[] = {{128, 128, 2, 2}, {24, 40, 3, 2}, {16, 8, 2, 1}, {8, 12, 1, 3}};
  for (const DeltaShape& sh : shapes) {
    // Decode over three sequences; short runs (recurrent); a run long enough for the chunked form
    // beside a short one (the chain).
    TestBatch decode, short_runs, mixed;
    decode.add_run(2, 7, 1);
    decode.add_run(0, 3, 1);
    decode.add_run(1, 0, 1);
    short_runs.add_run(1, 4, 3);
    short_runs.add_run(0, 0, 5);
    mixed.add_run(0, 0, 9);
    mixed.add_run(2, 1, 2);
    for (const TestBatch* batch : {&decode, &short_runs, &mixed}) {
      const int64_t n = int64_t(batch->pos.size());
      const DeltaStepInputs in = make_step_inputs(sh, n, 3, 4);
      DeltaStepOutputs want = run_step(*ref, sh, in, *batch, false);
      for (int threads : {1, 2, 3, 5}) {
        auto cpu = fused_cpu(threads);
        DeltaStepOutputs chain = run_step(*cpu, sh, in, *batch, true);
        DeltaStepOutputs fused = run_step(*cpu, sh, in, *batch, false);
        const std::string at = "dk " + std::to_string(sh.dk) + " dv " + std::to_string(sh.dv) + " nk " +
                               std::to_string(sh.nk) + " ratio " + std::to_string(sh.ratio) + " n " +
                               std::to_string(n) + " threads " + std::to_string(threads);
        EXPECT_TRUE(same_bits(fused.y, chain.y)) << at;
        EXPECT_TRUE(same_bits(fused.conv_state, chain.conv_state)) << at;
        EXPECT_TRUE(same_bits(fused.ssm_state, chain.ssm_state)) << at;
        EXPECT_LT(rel_error(to_floats(fused.y.t), to_floats(want.y.t)), 1e-4) << at;
        EXPECT_LT(rel_error(to_floats(fused.ssm_state.t), to_floats(want.ssm_state.t)), 1e-4) << at;
      }
    }
  }
}

TEST(OpsFusedLayer, DeltaNetStepCarriesStateAcrossDecodeSteps) {
  // Three decode steps of two sequences: the states the fused op leaves are the chain's.
  const DeltaShape sh{32, 32, 2, 2};
  auto cpu = fused_cpu(3);
  TestBatch batch;
  batch.add_run(1, 5, 1);
  batch.add_run(0, 9, 1);
  DeltaStepInputs chain_in = make_step_inputs(sh, 2, 2, 4), fused_in = chain_in;
  fused_in.conv_state = chain_in.conv_state.clone();
  fused_in.ssm_state = chain_in.ssm_state.clone();
  for (int step = 0; step < 3; ++step) {
    DeltaStepOutputs chain = run_step(*cpu, sh, chain_in, batch, true);
    DeltaStepOutputs fused = run_step(*cpu, sh, fused_in, batch, false);
    EXPECT_TRUE(same_bits(fused.y, chain.y)) << "step " << step;
    chain_in.conv_state = chain.conv_state;
    chain_in.ssm_state = chain.ssm_state;
    fused_in.conv_state = fused.conv_state;
    fused_in.ssm_state = fused.ssm_state;
    chain_in.qkv = random_f32(chain_in.qkv.t.ne, -2, 2);
    fused_in.qkv = chain_in.qkv;
  }
  EXPECT_TRUE(same_bits(fused_in.ssm_state, chain_in.ssm_state));
  EXPECT_TRUE(same_bits(fused_in.conv_state, chain_in.conv_state));
}

// ---- moe_ffn ---------------------------------------------------------------------------------

struct MoeCase {
  const char* name;
  GgmlType expert_type, shared_type, router_type;
  int64_t n_embd, n_ff, n_ff_sh, n_expert, k;
  bool shared, gated;
};

struct MoeInputs {
  HostTensor router, gate, up, down, sh_gate, sh_up, sh_down, sh_inp, norm;
};

MoeInputs make_moe_inputs(const MoeCase& c) {
  MoeInputs in;
  in.router = random_typed(c.router_type, {c.n_embd, c.n_expert, 1, 1}, 0.5f);
  in.gate = random_typed(c.expert_type, {c.n_embd, c.n_ff, c.n_expert, 1}, 0.3f);
  in.up = random_typed(c.expert_type, {c.n_embd, c.n_ff, c.n_expert, 1}, 0.3f);
  in.down = random_typed(c.expert_type, {c.n_ff, c.n_embd, c.n_expert, 1}, 0.3f);
  if (c.shared) {
    in.sh_gate = random_typed(c.shared_type, {c.n_embd, c.n_ff_sh, 1, 1}, 0.3f);
    in.sh_up = random_typed(c.shared_type, {c.n_embd, c.n_ff_sh, 1, 1}, 0.3f);
    in.sh_down = random_typed(c.shared_type, {c.n_ff_sh, c.n_embd, 1, 1}, 0.3f);
    in.sh_inp = random_typed(c.router_type, {c.n_embd, 1, 1, 1}, 0.5f);
  }
  in.norm = random_f32({c.n_embd, 1, 1, 1}, 0.5f, 1.5f);
  return in;
}

// What moe_ffn leaves: h, and the router's outputs in the scratch.
struct MoeResult {
  HostTensor h, logits, ids, weights, gate;
};

// h += y; h += moe(rms_norm(h) * norm) on `be`, fused or as the chain of the default composition.
MoeResult run_moe(Backend& be, const MoeCase& c, const MoeInputs& in, const HostTensor& h0, const HostTensor& y,
                  bool chain) {
  const int64_t n = h0.t.ne[1];
  HostTensor h = h0.clone();
  MoeFfnWeights w;
  w.router = in.router.t;
  w.experts = {in.gate.t, in.up.t, in.down.t};
  w.n_expert_used = c.k;
  if (c.shared) {
    w.shared_gate = in.sh_gate.t;
    w.shared_up = in.sh_up.t;
    w.shared_down = in.sh_down.t;
    if (c.gated) w.shared_inp = in.sh_inp.t;
  }
  const HostTensor m = HostTensor::make(GgmlType::F32, {c.n_embd, n, 1, 1}), routed = m.clone(), shared = m.clone();
  const HostTensor logits = HostTensor::make(GgmlType::F32, {c.n_expert, n, 1, 1});
  const HostTensor ids = HostTensor::make(GgmlType::I32, {c.k, n, 1, 1}), weights = HostTensor::make(GgmlType::F32, {c.k, n, 1, 1});
  const HostTensor sh_h = HostTensor::make(GgmlType::F32, {c.n_ff_sh, n, 1, 1}), sh_up = sh_h.clone();
  const HostTensor gate = HostTensor::make(GgmlType::F32, {1, n, 1, 1});
  MoeFfnScratch s{m.t, logits.t, ids.t, weights.t, routed.t, shared.t, sh_h.t, sh_up.t, gate.t};
  const float eps = 1e-6f;
  if (!chain) {
    be.moe_ffn(h.t, y.t, in.norm.t, eps, w, s);
    return {h, logits, ids, weights, gate};
  }
  be.add_rms_norm(s.m, h.t, y.t, in.norm.t, eps);
  if (c.gated) {
    be.matmuls(s.m, {{s.logits, w.router}, {s.gate, w.shared_inp}});
  } else {
    be.matmul(s.logits, w.router, s.m);
  }
  be.moe_route(s.ids, s.weights, s.logits, w.normalize);
  be.moe_experts(s.routed, s.m, w.experts, s.ids, s.weights);
  if (c.shared) {
    be.matmul_swiglu(s.shared_h, w.shared_gate, w.shared_up, s.m, s.shared_up);
    be.matmul(s.shared, w.shared_down, s.shared_h);
    if (c.gated) {
      const HostTensor gate_logit = gate.clone();  // moe_shared_add turns it into the sigmoid
      be.moe_shared_add(h.t, h.t, s.routed, s.shared, s.gate);
      return {h, logits, ids, weights, gate_logit};
    }
    be.binary(s.routed, s.routed, s.shared, BinaryOp::add);
  }
  be.binary(h.t, h.t, s.routed, BinaryOp::add);
  return {h, logits, ids, weights, gate};
}

TEST(OpsFusedLayer, MoeFfnEqualsTheChain) {
  auto ref = make_ref_backend();
  const MoeCase cases[] = {
      // The reference model's types: IQ2_XS experts, Q8_0 shared expert, router and gate.
      {"iq2_xs gated", GgmlType::IQ2_XS, GgmlType::Q8_0, GgmlType::Q8_0, 512, 256, 96, 12, 4, true, true},
      // Odd shapes: rows not a multiple of 8 or of the 128-row tiles, F32 everywhere.
      {"f32 odd ungated", GgmlType::F32, GgmlType::F32, GgmlType::F32, 300, 37, 19, 7, 3, true, false},
      {"q8_0 no shared", GgmlType::Q8_0, GgmlType::Q8_0, GgmlType::F32, 416, 64, 0, 9, 2, false, false},
      {"q4_k gated", GgmlType::Q4_K, GgmlType::Q4_K, GgmlType::Q8_0, 256, 256, 256, 5, 5, true, true},
  };
  for (const MoeCase& c : cases) {
    const MoeInputs in = make_moe_inputs(c);
    for (int64_t n : {1, 3, 8, 11}) {  // 11: more than kMaxCols tokens take the chain
      const HostTensor h0 = random_f32({c.n_embd, n, 1, 1}, -2, 2), y = random_f32({c.n_embd, n, 1, 1}, -1, 1);
      const MoeResult want = run_moe(*ref, c, in, h0, y, false);
      for (int threads : {1, 2, 3, 5}) {
        auto cpu = fused_cpu(threads);
        const MoeResult chain = run_moe(*cpu, c, in, h0, y, true);
        const MoeResult fused = run_moe(*cpu, c, in, h0, y, false);
        const std::string at = std::string(c.name) + " n=" + std::to_string(n) + " threads " + std::to_string(threads);
        EXPECT_TRUE(same_bits(fused.h, chain.h)) << at;
        EXPECT_TRUE(same_bits(fused.logits, chain.logits)) << at;
        EXPECT_TRUE(same_bits(fused.ids, chain.ids)) << at;
        EXPECT_TRUE(same_bits(fused.weights, chain.weights)) << at;
        // The gate's logit (the chain, and moe_ffn past kMaxCols tokens, leave its sigmoid there).
        if (c.gated && n <= cpu::kMaxCols) {
          EXPECT_TRUE(same_bits(fused.gate, chain.gate)) << at;
        }
        // The reference computes in another order (and may route a near tie differently).
        EXPECT_LT(rel_error(to_floats(fused.h.t), to_floats(want.h.t)), 2e-2) << at;
      }
    }
  }
}

TEST(OpsFusedLayer, MoeExpertsUnchangedByRowTileSums) {
  // moe_experts alone now writes its weighted sums row tile by row tile: the same bits as
  // summing whole rows (a 1-thread and a 4-thread backend agree, odd n_embd with a partial tile).
  const int64_t n_embd = 300, n_ff = 40, n_expert = 6, k = 3, n = 5;
  const HostTensor x = random_f32({n_embd, n, 1, 1}, -2, 2);
  const HostTensor gate = random_typed(GgmlType::F32, {n_embd, n_ff, n_expert, 1}), up = random_typed(GgmlType::F32, {n_embd, n_ff, n_expert, 1});
  const HostTensor down = random_typed(GgmlType::F32, {n_ff, n_embd, n_expert, 1});
  HostTensor ids = HostTensor::make(GgmlType::I32, {k, n, 1, 1});
  const HostTensor weights = random_f32({k, n, 1, 1}, 0.1f, 1.0f);
  for (int64_t i = 0; i < k * n; ++i) ids.i()[i] = int32_t((i * 5 + i / k) % n_expert);
  HostTensor one = HostTensor::make(GgmlType::F32, {n_embd, n, 1, 1}), four = one.clone(), want = one.clone();
  fused_cpu(1)->moe_experts(one.t, x.t, {gate.t, up.t, down.t}, ids.t, weights.t);
  fused_cpu(4)->moe_experts(four.t, x.t, {gate.t, up.t, down.t}, ids.t, weights.t);
  make_ref_backend()->moe_experts(want.t, x.t, {gate.t, up.t, down.t}, ids.t, weights.t);
  EXPECT_TRUE(same_bits(one, four));
  EXPECT_LT(rel_error(to_floats(one.t), to_floats(want.t)), 1e-5);
}

// ---- gated_matmul ----------------------------------------------------------------------------

TEST(OpsFusedLayer, GatedMatmulEqualsTheChainOnAnyThreads) {
  // x * sigmoid(gate) is applied in the product's job, in chunks of 256 elements at decode: odd
  // row lengths (F32), several chunks (Q8_0, 4096), super-block activations (IQ2_XS: Q8_K).
  struct Case {
    GgmlType type;
    int64_t d0, d1, m;
  };
  const Case cases[] = {{GgmlType::F32, 37, 3, 11}, {GgmlType::Q8_0, 128, 32, 40}, {GgmlType::IQ2_XS, 128, 6, 9}};
  for (const Case& c : cases) {
    const HostTensor w = random_typed(c.type, {c.d0 * c.d1, c.m, 1, 1}, 0.5f);
    for (int64_t n : {1, 2, 4, 7}) {
      const HostTensor x = random_f32({c.d0, c.d1, n, 1}, -2, 2), qg = random_f32({2 * c.d0 * c.d1, n, 1, 1}, -6, 6);
      // The gate is every other head of a wider tensor (the attention output gate's layout).
      const std::array<size_t, 4> gnb = {4, size_t(2 * c.d0) * 4, qg.t.nb[1], qg.t.nb[1] * size_t(n)};
      for (int threads : {1, 2, 3, 5}) {
        auto cpu = fused_cpu(threads);
        const HostTensor xa = x.clone(), qa = qg.clone(), xb = x.clone(), qb = qg.clone();
        HostTensor a = HostTensor::make(GgmlType::F32, {c.m, n, 1, 1}), b = a.clone();
        cpu->gated_matmul(a.t, w.t, xa.t, qa.t.view(x.t.ne, gnb, size_t(c.d0) * 4));
        cpu->mul_sigmoid(xb.t, xb.t, qb.t.view(x.t.ne, gnb, size_t(c.d0) * 4));
        cpu->matmul(b.t, w.t, xb.t.reshape({c.d0 * c.d1, n, 1, 1}));
        EXPECT_TRUE(same_bits(a, b)) << type_name(c.type) << " n=" << n << " threads " << threads;
        EXPECT_TRUE(same_bits(xa, xb)) << type_name(c.type) << " n=" << n << " threads " << threads;
      }
    }
  }
}

// ---- norm_matmuls ----------------------------------------------------------------------------

TEST(OpsFusedLayer, NormMatmulsEqualsTheChainOnAnyThreads) {
  // The norm applied in the products' job at decode, chunk by chunk; scratch apart from x and
  // aliasing it (the output head's use).
  struct Case {
    GgmlType type;
    int64_t k;
  };
  const Case cases[] = {{GgmlType::F32, 300}, {GgmlType::Q8_0, 4096}, {GgmlType::IQ2_XS, 768}};
  for (const Case& c : cases) {
    const HostTensor w0 = random_typed(c.type, {c.k, 21, 1, 1}, 0.5f), w1 = random_typed(c.k % 32 ? GgmlType::F32 : GgmlType::Q8_0, {c.k, 3, 1, 1}, 0.5f);
    const HostTensor norm = random_f32({c.k, 1, 1, 1}, 0.5f, 1.5f);
    for (int64_t n : {1, 2, 4, 7}) {
      const HostTensor x = random_f32({c.k, n, 1, 1}, -20, 20);
      for (int threads : {1, 2, 3, 5}) {
        auto cpu = fused_cpu(threads);
        HostTensor a0 = HostTensor::make(GgmlType::F32, {21, n, 1, 1}), a1 = HostTensor::make(GgmlType::F32, {3, n, 1, 1});
        HostTensor b0 = a0.clone(), b1 = a1.clone(), c0 = a0.clone(), c1 = a1.clone();
        HostTensor scratch = x.clone(), normed = x.clone(), aliased = x.clone();
        cpu->norm_matmuls(x.t, norm.t, 1e-6f, scratch.t, {{a0.t, w0.t}, {a1.t, w1.t}});
        cpu->rms_norm(normed.t, x.t, &norm.t, 1e-6f);
        cpu->matmuls(normed.t, {{b0.t, w0.t}, {b1.t, w1.t}});
        cpu->norm_matmuls(aliased.t, norm.t, 1e-6f, aliased.t, {{c0.t, w0.t}, {c1.t, w1.t}});
        const std::string at = std::string(type_name(c.type)) + " n=" + std::to_string(n) + " threads " + std::to_string(threads);
        EXPECT_TRUE(same_bits(a0, b0) && same_bits(a1, b1)) << at;
        EXPECT_TRUE(same_bits(scratch, normed)) << at;
        EXPECT_TRUE(same_bits(c0, b0) && same_bits(c1, b1)) << at << " aliased";
      }
    }
  }
}

// ---- add_rms_norm ----------------------------------------------------------------------------

TEST(OpsFusedLayer, AddRmsNormEqualsTheChain) {
  for (int64_t d : {300, 2048}) {
    for (int64_t n : {1, 5, 40}) {
      const HostTensor h0 = random_f32({d, n, 1, 1}, -3, 3), y = random_f32({d, n, 1, 1}), w = random_f32({d, 1, 1, 1});
      for (int threads : {1, 3}) {
        auto cpu = fused_cpu(threads);
        HostTensor h_fused = h0.clone(), h_chain = h0.clone();
        HostTensor m_fused = HostTensor::make(GgmlType::F32, {d, n, 1, 1}), m_chain = m_fused.clone();
        cpu->add_rms_norm(m_fused.t, h_fused.t, y.t, w.t, 1e-6f);
        cpu->binary(h_chain.t, h_chain.t, y.t, BinaryOp::add);
        cpu->rms_norm(m_chain.t, h_chain.t, &w.t, 1e-6f);
        EXPECT_TRUE(same_bits(h_fused, h_chain)) << d << " " << n << " " << threads;
        EXPECT_TRUE(same_bits(m_fused, m_chain)) << d << " " << n << " " << threads;
      }
    }
  }
}

}  // namespace
}  // namespace moeserve::test
