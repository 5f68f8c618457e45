// The recurrent ops (causal conv, gated delta rule) against the reference, and recorded decode
// steps: a step replayed from a CUDA graph with new positions gives the bytes a directly issued
// step gives.
#include "gpu_test_util.h"

#include "core/error.h"

namespace moeserve::test {
namespace {

constexpr size_t kF = sizeof(float);

TestBatch mixed_runs() {
  TestBatch b;
  b.add_run(1, 10, 37);  // a prefill run
  b.add_run(0, 3, 1);    // decode runs
  b.add_run(2, 0, 5);
  return b;
}

// Two ssm_conv calls on the GPU and the reference (the second starts from the first's state):
// outputs and the carried state agree. Double sums on both sides: float rounding of inputs and
// silu only.
void check_conv_calls(Backend& ref, const TestBatch& b, int64_t kernel, int64_t channels, int64_t n_states) {
  const int64_t n = int64_t(b.pos.size());
  const HostTensor w = random_f32({kernel, channels, 1, 1});
  HostTensor state = random_f32({(kernel - 1) * channels, n_states, 1, 1});
  DevTensor d_w = to_gpu(w), d_state = to_gpu(state);
  for (int call = 0; call < 2; ++call) {
    const HostTensor x = random_f32({channels, n, 1, 1}, -2, 2);
    HostTensor want = poisoned(GgmlType::F32, x.t.ne);
    ref.ssm_conv(want.t, x.t, state.t, w.t, b.info());
    const HostTensor out = poisoned(GgmlType::F32, x.t.ne);
    DevTensor d_out = to_gpu(out), d_x = to_gpu(x);
    gpu().ssm_conv(d_out.t, d_x.t, d_state.t, d_w.t, b.info());
    const std::string what = str_cat("kernel ", kernel, " call ", call);
    expect_close(from_gpu(d_out, out), want, 1e-6, what + " out");
    expect_close(from_gpu(d_state, state), state, 0, what + " state");
  }
}

TEST(CudaDeltaNet, ConvMatchesReferenceAndCarriesState) {
  auto ref = make_ref_backend();
  check_conv_calls(*ref, mixed_runs(), 4, 200, 3);
}

// Long runs are cut into chunks (up to 16 per run, each sliding its own window); runs shorter
// than the window mix the saved history into the new one. Several kernel widths, channels not a
// multiple of the block's.
TEST(CudaDeltaNet, ConvChunkedRunsAndShortRuns) {
  auto ref = make_ref_backend();
  TestBatch b;
  b.add_run(2, 0, 300);  // 16 chunks of 19 (the last one short)
  b.add_run(0, 5, 1);
  b.add_run(3, 9, 2);    // shorter than the history for kernel 5
  b.add_run(1, 4, 11);   // 2 chunks
  for (int64_t kernel : {2, 4, 5}) check_conv_calls(*ref, b, kernel, 77, 4);
}

struct DeltaCase {
  int64_t dk, dv, nk, nv;
};

// Head shapes: the model's (128 x 128, two value heads per key head), key dims that fill only
// part of a thread's rows (96; 64 and 40: the 8-row kernel), value dims that end inside a 32-column
// block (80, 40). Runs: mixed_runs, and a long prefill run over many staged blocks of tokens.
TEST(CudaDeltaNet, DeltaRuleOnConvViewsMatchesReference) {
  TestBatch long_run;
  long_run.add_run(1, 0, 150);
  long_run.add_run(0, 7, 1);
  const std::vector<DeltaCase> cases = {{128, 128, 2, 4}, {64, 80, 3, 3}, {40, 40, 1, 2}, {96, 128, 1, 1}};
  for (size_t ci = 0; ci < 2 * cases.size(); ++ci) {
    const DeltaCase& c = cases[ci % cases.size()];
    auto ref = make_ref_backend();
    const TestBatch b = ci < cases.size() ? mixed_runs() : long_run;
    const int64_t n = int64_t(b.pos.size());
    // q, k, v as the block takes them: views of the conv output [q all | k all | v all], q and k
    // l2-normalized (q also scaled), as the forward feeds them.
    const int64_t channels = 2 * c.nk * c.dk + c.nv * c.dv;
    HostTensor u = random_f32({channels, n, 1, 1});
    const HostTensor qv = host_view(u, {c.dk, c.nk, n, 1}, {0, size_t(c.dk) * kF, u.t.nb[1], u.t.nb[1] * size_t(n)});
    const HostTensor kv = host_view(u, {c.dk, c.nk, n, 1}, {0, size_t(c.dk) * kF, u.t.nb[1], u.t.nb[1] * size_t(n)},
                                    size_t(c.nk * c.dk) * kF);
    const HostTensor vv = host_view(u, {c.dv, c.nv, n, 1}, {0, size_t(c.dv) * kF, u.t.nb[1], u.t.nb[1] * size_t(n)},
                                    size_t(2 * c.nk * c.dk) * kF);
    ref->l2_norm(qv.t, qv.t, 1e-6f);
    ref->l2_norm(kv.t, kv.t, 1e-6f);
    ref->scale(qv.t, qv.t, float(1.0 / std::sqrt(double(c.dk))));
    const HostTensor g = random_f32({c.nv, n, 1, 1}, -2, 0), beta = random_f32({c.nv, n, 1, 1}, 0.05f, 0.95f);
    HostTensor state = random_f32({c.dk * c.dv * c.nv, 3, 1, 1}, -0.5f, 0.5f);
    const DevTensor d_u = to_gpu(u), d_g = to_gpu(g), d_beta = to_gpu(beta);
    DevTensor d_state = to_gpu(state);
    auto dev_view = [&](const HostTensor& h) {
      Tensor t = h.t;
      t.data = static_cast<char*>(d_u.buf->data()) + (static_cast<const uint8_t*>(h.t.data) - u.bytes->data());
      return t;
    };
    HostTensor want = poisoned(GgmlType::F32, {c.dv, c.nv, n, 1});
    ref->gated_delta_net(want.t, qv.t, kv.t, vv.t, g.t, beta.t, state.t, b.info());
    const HostTensor out = poisoned(GgmlType::F32, want.t.ne);
    DevTensor d_out = to_gpu(out);
    gpu().gated_delta_net(d_out.t, dev_view(qv), dev_view(kv), dev_view(vv), d_g.t, d_beta.t, d_state.t, b.info());
    // The reference keeps the state in float but sums S.k and S.q in double; the GPU sums in
    // float. Rounding compounds through the state over the 37-token run: a few 1e-6.
    const std::string what = str_cat("dk ", c.dk, " dv ", c.dv, " tokens ", n);
    expect_close(from_gpu(d_out, out), want, 5e-5, what + " out");
    expect_close(from_gpu(d_state, state), state, 5e-5, what + " state");
  }
}

// A decode step's worth of batch-dependent ops over its own caches and states.
struct StepState {
  DevTensor k_cache, v_cache, conv, ssm, q, k, v, x, out_attn, out_conv, out_delta;
};

StepState make_state(const HostTensor& kc, const HostTensor& vc, const HostTensor& conv, const HostTensor& ssm,
                     int64_t n) {
  StepState s;
  s.k_cache = to_gpu(kc);
  s.v_cache = to_gpu(vc);
  s.conv = to_gpu(conv);
  s.ssm = to_gpu(ssm);
  s.q = to_gpu(HostTensor::make(GgmlType::F32, {128, 4, n, 1}));
  s.k = to_gpu(HostTensor::make(GgmlType::F32, {128 * 2, n, 1, 1}));
  s.v = to_gpu(HostTensor::make(GgmlType::F32, {128 * 2, n, 1, 1}));
  s.x = to_gpu(HostTensor::make(GgmlType::F32, {2 * 64 + 64, n, 1, 1}));
  s.out_attn = to_gpu(HostTensor::make(GgmlType::F32, {128, 4, n, 1}));
  s.out_conv = to_gpu(HostTensor::make(GgmlType::F32, {2 * 64 + 64, n, 1, 1}));
  s.out_delta = to_gpu(HostTensor::make(GgmlType::F32, {64, 1, n, 1}));
  return s;
}

void issue_step(StepState& s, const BatchInfo& b, const Tensor& conv_w) {
  Backend& be = gpu();
  const RopeParams rope{64, 1e6f, true};
  const Tensor k3 = s.k.t.reshape({128, 2, s.k.t.ne[1], 1});
  be.rope(s.q.t, s.q.t, b, rope);
  be.rope(k3, k3, b, rope);
  be.kv_store(s.k_cache.t, s.k.t, b);
  be.kv_store(s.v_cache.t, s.v.t, b);
  be.attention(s.out_attn.t, s.q.t, s.k_cache.t, s.v_cache.t, b, AttentionParams{0.1f, true});
  be.ssm_conv(s.out_conv.t, s.x.t, s.conv.t, conv_w, b);
  const int64_t n = s.x.t.ne[1];
  const Tensor& u = s.out_conv.t;
  const Tensor qv = u.view({64, 1, n, 1}, {0, 64 * kF, u.nb[1], u.nb[1] * size_t(n)});
  const Tensor kv = u.view({64, 1, n, 1}, {0, 64 * kF, u.nb[1], u.nb[1] * size_t(n)}, 64 * kF);
  const Tensor vv = u.view({64, 1, n, 1}, {0, 64 * kF, u.nb[1], u.nb[1] * size_t(n)}, 128 * kF);
  be.l2_norm(qv, qv, 1e-6f);
  be.l2_norm(kv, kv, 1e-6f);
  // g and beta: fixed per-head values, taken from the step's own inputs (x's first elements).
  const Tensor g = s.x.t.view({1, n, 1, 1}, s.x.t.nb, 0);
  const Tensor beta = s.x.t.view({1, n, 1, 1}, s.x.t.nb, kF);
  be.gated_delta_net(s.out_delta.t, qv, kv, vv, g, beta, s.ssm.t, b);
}

std::vector<uint8_t> fetch(const DevTensor& d) {
  std::vector<uint8_t> h(d.size);
  gpu().download(h.data(), byte_tensor(d.buf->data(), d.size));
  return h;
}

TEST(CudaGraphs, ReplayedDecodeStepEqualsDirectIssue) {
  const int64_t n = 2, n_ctx = 3000;
  const HostTensor kc = random_typed(GgmlType::Q8_0, {128 * 2, n_ctx, 2, 1});
  const HostTensor vc = random_typed(GgmlType::F16, {128 * 2, n_ctx, 2, 1});
  const HostTensor conv = random_f32({3 * 192, 2, 1, 1});
  const HostTensor ssm = random_f32({64 * 64, 2, 1, 1}, -0.5f, 0.5f);
  const HostTensor conv_w = random_f32({4, 192, 1, 1});
  const DevTensor d_w = to_gpu(conv_w);
  StepState graphed = make_state(kc, vc, conv, ssm, n), direct = make_state(kc, vc, conv, ssm, n);
  {
    // Plan the workspace first, as the engine does at load: nothing may allocate while recording.
    TestBatch plan;
    plan.add_run(0, 0, 1);
    plan.add_run(1, 0, 1);
    gpu().begin_measure();
    issue_step(graphed, plan.info(), d_w.t);
    gpu().end_measure();
  }
  std::vector<uint8_t> previous;
  // Positions move every step, one sequence far into the context (several attention ranges).
  const int32_t starts[2] = {2500, 7};
  for (int step = 0; step < 4; ++step) {
    TestBatch b;
    b.add_run(0, starts[0] + step * 97, 1);
    b.add_run(1, starts[1] + step, 1);
    // Fresh inputs, uploaded before the step as the engine does (same device addresses).
    const HostTensor q = random_f32({128, 4, n, 1}), k = random_f32({256, n, 1, 1}), v = random_f32({256, n, 1, 1});
    HostTensor x = random_f32({192, n, 1, 1});
    for (int64_t t = 0; t < n; ++t) {
      x.f()[t * 192] = -0.3f * float(t + 1);  // g <= 0
      x.f()[t * 192 + 1] = 0.6f;              // beta
    }
    for (StepState* s : {&graphed, &direct}) {
      gpu().upload(s->q.t, q.f());
      gpu().upload(s->k.t, k.f());
      gpu().upload(s->v.t, v.f());
      gpu().upload(s->x.t, x.f());
    }
    int issued = 0;
    gpu().run_step(b.info(), 42, [&] {
      ++issued;
      issue_step(graphed, b.info(), d_w.t);
    });
    EXPECT_EQ(issued, 1) << "the caller's side of a step runs on every replay";
    gpu().run_step(b.info(), 0, [&] { issue_step(direct, b.info(), d_w.t); });
    for (auto member : {&StepState::out_attn, &StepState::out_conv, &StepState::out_delta, &StepState::k_cache,
                        &StepState::v_cache, &StepState::conv, &StepState::ssm}) {
      EXPECT_EQ(fetch(graphed.*member), fetch(direct.*member)) << "step " << step;
    }
    const std::vector<uint8_t> now = fetch(graphed.out_attn);
    EXPECT_NE(now, previous) << "step " << step;
    previous = now;
  }
}

}  // namespace
}  // namespace moeserve::test
