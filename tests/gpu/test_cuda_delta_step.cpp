// The fused delta-net step (Backend::delta_net_step) on the CUDA backend against its default
// composition on the scalar reference backend: random inputs laid out as the block passes them
// (the grouped [b | a] projection, the conv input [q | k | v]), outputs and scratch poisoned, and
// the updated conv and recurrent states compared too. Decode batches (one token per run, slots
// out of order and not contiguous) take the one kernel; multi-token batches and shapes the kernel
// does not cover take the composition. A recorded step replayed with other sequence slots gives
// the bytes a directly issued step gives.
#include "gpu_test_util.h"

#include "core/error.h"

namespace moeserve::test {
namespace {

constexpr size_t kF = sizeof(float);

struct Shape {
  int64_t dk, dv, nk, nv;
  int64_t taps = 4;
};

// One step's host inputs and states; views as delta_net.cpp builds them.
struct HostStep {
  HostTensor qkv, z, ba, dt_bias, a_coef, conv_w, conv_state, ssm_state, norm;
};

HostStep random_step(const Shape& s, int64_t n, int64_t n_states) {
  const int64_t channels = 2 * s.dk * s.nk + s.dv * s.nv, ratio = s.nv / s.nk;
  HostStep h;
  h.qkv = random_f32({channels, n, 1, 1}, -2, 2);
  h.z = random_f32({s.dv, s.nv, n, 1}, -3, 3);
  h.ba = random_f32({2 * s.nv, n, 1, 1}, -4, 4);
  h.dt_bias = random_f32({ratio, s.nk, 1, 1}, -1, 1);
  h.a_coef = random_f32({ratio, s.nk, 1, 1}, -3, -0.1f);
  h.conv_w = random_f32({s.taps, channels, 1, 1});
  h.conv_state = random_f32({(s.taps - 1) * channels, n_states, 1, 1}, -2, 2);
  h.ssm_state = random_f32({s.dk * s.dv * s.nv, n_states, 1, 1}, -0.5f, 0.5f);
  h.norm = random_f32({s.dv, 1, 1, 1}, 0.5f, 1.5f);
  return h;
}

// The op's arguments over tensors t(...) gives for each host tensor (the host ones, or their
// device mirrors), with fresh poisoned scratch and output from make(...).
template <typename T, typename M>
DeltaNetStep step_args(const Shape& s, int64_t n, const HostStep& h, T t, M make) {
  const int64_t ratio = s.nv / s.nk;
  const size_t group = size_t(2 * ratio) * kF;
  const HostTensor& ba = h.ba;
  const std::array<size_t, 4> nb{0, group, ba.t.nb[1], ba.t.nb[1] * size_t(n)};
  DeltaNetStep a;
  a.y = make({s.dv, s.nv, n, 1});
  a.qkv = t(h.qkv);
  a.z = t(h.z);
  a.b = t(host_view(ba, {ratio, s.nk, n, 1}, nb));
  a.a = t(host_view(ba, {ratio, s.nk, n, 1}, nb, size_t(ratio) * kF));
  a.dt_bias = t(h.dt_bias);
  a.a_coef = t(h.a_coef);
  a.conv_w = t(h.conv_w);
  a.conv_state = t(h.conv_state);
  a.ssm_state = t(h.ssm_state);
  a.norm = t(h.norm);
  a.eps = 1e-6f;
  a.q_scale = float(1.0 / std::sqrt(double(s.dk)));
  a.u = make({2 * s.dk * s.nk + s.dv * s.nv, n, 1, 1});
  a.q = make({s.dk, s.nk, n, 1});
  a.k = make({s.dk, s.nk, n, 1});
  a.beta = make({ratio, s.nk, n, 1});
  a.g = make({ratio, s.nk, n, 1});
  a.o = make({s.dv, s.nv, n, 1});
  return a;
}

// Device mirrors of a HostStep's tensors, kept alive by the test; views map into them.
struct DevStep {
  std::vector<std::pair<const HostTensor*, DevTensor>> mirrors;
  std::vector<DevTensor> scratch;

  Tensor map(const HostTensor& h) {
    for (auto& [host, dev] : mirrors) {
      if (host->bytes == h.bytes) {
        Tensor v = h.t;
        v.data = static_cast<char*>(dev.buf->data()) + (static_cast<const uint8_t*>(h.t.data) - h.bytes->data());
        v.device = gpu().device();
        return v;
      }
    }
    ADD_FAILURE() << "tensor without a device mirror";
    return h.t;
  }
  Tensor make(std::array<int64_t, 4> ne) {
    scratch.push_back(to_gpu(poisoned(GgmlType::F32, ne)));
    return scratch.back().t;
  }
};

DevStep mirror(const HostStep& h) {
  DevStep d;
  for (const HostTensor* t : {&h.qkv, &h.z, &h.ba, &h.dt_bias, &h.a_coef, &h.conv_w, &h.conv_state, &h.ssm_state,
                              &h.norm}) {
    d.mirrors.emplace_back(t, to_gpu(*t));
  }
  return d;
}

DevTensor& dev_of(DevStep& d, const HostTensor& h) {
  for (auto& [host, dev] : d.mirrors) {
    if (host->bytes == h.bytes) return dev;
  }
  throw Error("no device mirror");
}

// `calls` steps on the GPU and the reference from the same states (each step new inputs): y and
// both states agree after every step.
void check_steps(const Shape& s, const TestBatch& b, int64_t n_states, int calls, double tol,
                 const std::string& what) {
  auto ref = make_ref_backend();
  const int64_t n = int64_t(b.pos.size());
  HostStep host = random_step(s, n, n_states);
  HostStep want = host;  // the inputs shared, the states the reference's own
  want.conv_state = host.conv_state.clone();
  want.ssm_state = host.ssm_state.clone();
  DevStep dev = mirror(host);
  for (int call = 0; call < calls; ++call) {
    if (call > 0) {
      const HostStep fresh = random_step(s, n, n_states);
      for (auto [dst, src] : {std::pair{&host.qkv, &fresh.qkv}, {&host.z, &fresh.z}, {&host.ba, &fresh.ba}}) {
        std::memcpy(dst->bytes->data(), src->bytes->data(), dst->bytes->size());
        gpu().upload(byte_tensor(dev_of(dev, *dst).buf->data(), dst->bytes->size()), dst->bytes->data());
      }
    }
    std::vector<HostTensor> ref_scratch;  // y first
    const DeltaNetStep ra = step_args(
        s, n, want, [](const HostTensor& h) { return h.t; },
        [&](std::array<int64_t, 4> ne) {
          ref_scratch.push_back(poisoned(GgmlType::F32, ne));
          return ref_scratch.back().t;
        });
    ref->delta_net_step(ra, b.info());
    const HostTensor y_ref = ref_scratch.front();

    const DeltaNetStep ga = step_args(
        s, n, host, [&](const HostTensor& h) { return dev.map(h); },
        [&](std::array<int64_t, 4> ne) { return dev.make(ne); });
    gpu().delta_net_step(ga, b.info());
    HostTensor y_got = HostTensor::make(GgmlType::F32, {s.dv, s.nv, n, 1});
    gpu().download(y_got.f(), ga.y);
    const std::string at = str_cat(what, " dk ", s.dk, " dv ", s.dv, " heads ", s.nk, "/", s.nv, " call ", call);
    expect_close(y_got, y_ref, tol, at + " y");
    expect_close(from_gpu(dev_of(dev, host.conv_state), host.conv_state), want.conv_state, 0, at + " conv state");
    expect_close(from_gpu(dev_of(dev, host.ssm_state), host.ssm_state), want.ssm_state, tol, at + " ssm state");
  }
}

// Decode batches: three sequences in slots out of order with gaps.
TestBatch decode_batch() {
  TestBatch b;
  b.add_run(3, 17, 1);
  b.add_run(0, 4, 1);
  b.add_run(5, 250, 1);
  return b;
}

TEST(CudaDeltaStep, DecodeMatchesComposition) {
  // The model's heads (128 x 128, two value heads per key head), one value head per key head,
  // smaller heads, and dims that end inside a warp's columns or rows (80, 48).
  const std::vector<Shape> shapes = {{128, 128, 2, 4}, {128, 128, 3, 3}, {64, 64, 2, 4}, {48, 80, 1, 1},
                                     {128, 128, 1, 8}};
  for (const Shape& s : shapes) check_steps(s, decode_batch(), 6, 3, 1e-5, "decode");
}

TEST(CudaDeltaStep, OtherConvWidthsAndOneSequence) {
  TestBatch one;
  one.add_run(1, 9, 1);
  for (int64_t taps : {2, 3, 5}) check_steps(Shape{64, 64, 2, 4, taps}, one, 2, 2, 1e-5, str_cat("taps ", taps));
}

// Multi-token runs (prefill next to decode) and shapes outside the kernel's (d_v not a multiple
// of 4) take the composition of the plain kernels: the same results within their tolerance (the
// recurrence compounds rounding over a run, see test_cuda_step.cpp).
TEST(CudaDeltaStep, MultiTokenAndOtherShapesTakeTheComposition) {
  TestBatch mixed;
  mixed.add_run(1, 10, 37);
  mixed.add_run(0, 3, 1);
  mixed.add_run(2, 0, 5);
  check_steps({128, 128, 2, 4}, mixed, 3, 2, 5e-5, "multi-token");
  check_steps({64, 66, 2, 2}, decode_batch(), 6, 2, 1e-5, "d_v 66");
}

// A recorded decode step replayed with other slots and inputs: the bytes of a direct issue.
TEST(CudaDeltaStep, ReplayedStepEqualsDirectIssue) {
  const Shape s{128, 128, 2, 4};
  const int64_t n = 2, n_states = 4;
  const HostStep host = random_step(s, n, n_states);
  DevStep graphed = mirror(host), direct = mirror(host);
  const DeltaNetStep ga = step_args(
      s, n, host, [&](const HostTensor& h) { return graphed.map(h); },
      [&](std::array<int64_t, 4> ne) { return graphed.make(ne); });
  const DeltaNetStep da = step_args(
      s, n, host, [&](const HostTensor& h) { return direct.map(h); },
      [&](std::array<int64_t, 4> ne) { return direct.make(ne); });
  {
    TestBatch plan;
    plan.add_run(0, 0, 1);
    plan.add_run(1, 0, 1);
    gpu().begin_measure();
    gpu().delta_net_step(ga, plan.info());
    gpu().end_measure();
  }
  const int32_t slots[3][2] = {{2, 0}, {0, 3}, {1, 2}};
  std::vector<uint8_t> previous;
  for (int step = 0; step < 3; ++step) {
    TestBatch b;
    b.add_run(slots[step][0], 5 + step, 1);
    b.add_run(slots[step][1], 40 + step, 1);
    const HostStep fresh = random_step(s, n, n_states);
    for (DevStep* d : {&graphed, &direct}) {
      for (const HostTensor* t : {&fresh.qkv, &fresh.z, &fresh.ba}) {
        const HostTensor& same = t == &fresh.qkv ? host.qkv : t == &fresh.z ? host.z : host.ba;
        gpu().upload(byte_tensor(dev_of(*d, same).buf->data(), t->bytes->size()), t->bytes->data());
      }
    }
    int issued = 0;
    gpu().run_step(b.info(), 77, [&] {
      ++issued;
      gpu().delta_net_step(ga, b.info());
    });
    EXPECT_EQ(issued, 1) << "the caller's side of a step runs on every replay";
    gpu().run_step(b.info(), 0, [&] { gpu().delta_net_step(da, b.info()); });
    auto fetch = [](const Tensor& t, size_t bytes) {
      std::vector<uint8_t> out(bytes);
      gpu().download(out.data(), byte_tensor(t.data, bytes));
      return out;
    };
    const size_t y_bytes = size_t(s.dv * s.nv * n) * kF;
    const std::vector<uint8_t> y = fetch(ga.y, y_bytes);
    EXPECT_EQ(y, fetch(da.y, y_bytes)) << "y, step " << step;
    EXPECT_NE(y, previous) << "step " << step;
    previous = y;
    for (const HostTensor* st : {&host.conv_state, &host.ssm_state}) {
      EXPECT_EQ(fetch(graphed.map(*st), st->bytes->size() - 64), fetch(direct.map(*st), st->bytes->size() - 64))
          << "state, step " << step;
    }
  }
}

}  // namespace
}  // namespace moeserve::test
