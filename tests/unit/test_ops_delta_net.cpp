// Gated DeltaNet ops: the CPU conv and delta rule (chunked and recurrent) against the reference's
// token-by-token recurrence, and state carried across calls equal to one long call.
#include "ops_test_util.h"

namespace moeserve::test {
namespace {

struct DeltaInputs {
  HostTensor q, k, v, g, beta, state;
};

// Realistic magnitudes: unit-norm q/k heads (q scaled by 1/sqrt(dk)), log-decays <= 0,
// betas in (0, 1), a non-zero saved state.
DeltaInputs make_inputs(int64_t dk, int64_t dv, int64_t n_kh, int64_t n_vh, int64_t n, int64_t n_seq) {
  DeltaInputs in;
  in.q = random_f32({dk, n_kh, n, 1});
  in.k = random_f32({dk, n_kh, n, 1});
  for (HostTensor* t : {&in.q, &in.k}) {
    for (int64_t r = 0; r < t->t.n_rows(); ++r) {
      float* x = t->f() + r * dk;
      double ss = 0;
      for (int64_t i = 0; i < dk; ++i) ss += double(x[i]) * x[i];
      const float s = float(1.0 / std::sqrt(ss)) * (t == &in.q ? float(1.0 / std::sqrt(double(dk))) : 1.0f);
      for (int64_t i = 0; i < dk; ++i) x[i] *= s;
    }
  }
  in.v = random_f32({dv, n_vh, n, 1});
  in.g = random_f32({n_vh, n, 1, 1}, -2.0f, 0.0f);
  in.beta = random_f32({n_vh, n, 1, 1}, 0.05f, 0.95f);
  in.state = random_f32({dk * dv * n_vh, n_seq, 1, 1}, -0.5f, 0.5f);
  return in;
}

void run_delta(Backend& be, const DeltaInputs& in, HostTensor& out, HostTensor& state, const TestBatch& batch) {
  be.gated_delta_net(out.t, in.q.t, in.k.t, in.v.t, in.g.t, in.beta.t, state.t, batch.info());
}

TEST(OpsDeltaNet, ChunkedAndRecurrentMatchReference) {
  const int64_t dk = 16, dv = 24, n_kh = 2, n_vh = 4;
  TestBatch batch;
  batch.add_run(1, 10, 150);  // crosses two chunk boundaries (64) and ends in a partial chunk
  batch.add_run(0, 3, 5);
  batch.add_run(2, 0, 1);
  const int64_t n = int64_t(batch.pos.size());
  DeltaInputs in = make_inputs(dk, dv, n_kh, n_vh, n, 3);
  auto ref = make_ref_backend();
  HostTensor ref_out = HostTensor::make(GgmlType::F32, {dv, n_vh, n, 1}), ref_state = in.state.clone();
  run_delta(*ref, in, ref_out, ref_state, batch);
  for (int chunk_min : {1, 8, 1 << 30}) {  // all chunked, mixed, all recurrent
    for (int threads : {1, 3}) {
      auto cpu = cpu_backend(threads, cpu::Isa::avx512, chunk_min);
      HostTensor out = HostTensor::make(GgmlType::F32, {dv, n_vh, n, 1}), state = in.state.clone();
      run_delta(*cpu, in, out, state, batch);
      EXPECT_LT(rel_error(to_floats(out.t), to_floats(ref_out.t)), 1e-5) << chunk_min << " " << threads;
      EXPECT_LT(rel_error(to_floats(state.t), to_floats(ref_state.t)), 1e-5) << chunk_min << " " << threads;
    }
  }
}

TEST(OpsDeltaNet, StateCarriesAcrossCalls) {
  // One call of 100 tokens == 37 + 63 tokens in two calls starting from the saved state.
  const int64_t dk = 8, dv = 8, n_kh = 1, n_vh = 2, n = 100;
  DeltaInputs in = make_inputs(dk, dv, n_kh, n_vh, n, 1);
  auto cpu = cpu_backend(2, cpu::Isa::avx512, 4);
  TestBatch whole;
  whole.add_run(0, 0, int32_t(n));
  HostTensor out = HostTensor::make(GgmlType::F32, {dv, n_vh, n, 1}), state = in.state.clone();
  run_delta(*cpu, in, out, state, whole);

  HostTensor out2 = HostTensor::make(GgmlType::F32, {dv, n_vh, n, 1}), state2 = in.state.clone();
  for (auto [first, count] : {std::pair<int64_t, int64_t>{0, 37}, {37, 63}}) {
    TestBatch part;
    part.add_run(0, int32_t(first), int32_t(count));
    auto slice = [&](const HostTensor& t) {
      HostTensor s = t;
      s.t = t.t.view({t.t.ne[0], t.t.ne[1], count, 1}, t.t.nb, size_t(first) * t.t.nb[2]);
      return s;
    };
    auto slice2 = [&](const HostTensor& t) {
      HostTensor s = t;
      s.t = t.t.view({t.t.ne[0], count, 1, 1}, t.t.nb, size_t(first) * t.t.nb[1]);
      return s;
    };
    DeltaInputs pin{slice(in.q), slice(in.k), slice(in.v), slice2(in.g), slice2(in.beta), state2};
    HostTensor pout = slice(out2);
    run_delta(*cpu, pin, pout, state2, part);
  }
  EXPECT_LT(rel_error(to_floats(out2.t), to_floats(out.t)), 1e-5);
  EXPECT_LT(rel_error(to_floats(state2.t), to_floats(state.t)), 1e-5);
}

TEST(OpsDeltaNet, ConvMatchesReferenceAndCarriesState) {
  const int64_t channels = 40, kernel = 4;
  TestBatch batch;
  batch.add_run(1, 7, 6);
  batch.add_run(0, 0, 2);
  const int64_t n = int64_t(batch.pos.size());
  HostTensor x = random_f32({channels, n, 1, 1}, -2, 2), w = random_f32({kernel, channels, 1, 1});
  HostTensor state0 = random_f32({(kernel - 1) * channels, 2, 1, 1});
  auto ref = make_ref_backend();
  HostTensor ref_out = HostTensor::make(GgmlType::F32, x.t.ne), ref_state = state0.clone();
  ref->ssm_conv(ref_out.t, x.t, ref_state.t, w.t, batch.info());
  auto cpu = cpu_backend(3);
  HostTensor out = HostTensor::make(GgmlType::F32, x.t.ne), state = state0.clone();
  cpu->ssm_conv(out.t, x.t, state.t, w.t, batch.info());
  EXPECT_LT(rel_error(to_floats(out.t), to_floats(ref_out.t)), 1e-6);
  EXPECT_EQ(to_floats(state.t), to_floats(ref_state.t));
  // The new state of sequence 1 is its last 3 raw inputs (tokens 3, 4, 5 of the batch).
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t c = 0; c < channels; ++c) {
      EXPECT_EQ(ref_state.f()[(kernel - 1) * channels + i * channels + c], x.f()[(3 + i) * channels + c]);
    }
  }
  // Known value: token 0 of sequence 1, channel 0 = silu(sum of taps over [state..., x]).
  const float* w0 = w.f();
  const float* h1 = state0.f() + (kernel - 1) * channels;
  const float pre = w0[0] * h1[0] + w0[1] * h1[channels] + w0[2] * h1[2 * channels] + w0[3] * x.f()[0];
  EXPECT_NEAR(ref_out.f()[0], pre / (1 + std::exp(-pre)), 1e-6);
}

}  // namespace
}  // namespace moeserve::test
