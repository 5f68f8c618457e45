// Backend::moe_ffn on the CUDA backend, whose decode batches run the shared expert on a forked
// second stream, against the chain of ops backend.h defines it as (add_rms_norm, the router
// products, moe_route, moe_experts, matmul_swiglu, matmul, moe_shared_add), issued op by op on the
// same backend. The forked op runs the same kernels on the same tensors, only on two streams, so
// every result is held to the chain's bits: a missing join, or two branches sharing scratch, can
// show as differing (or NaN: scratch and outputs start poisoned) elements. Decode sizes
// (1, 2 and 8 tokens) fork, and with the shared expert's gate the final add is folded into the
// routed down kernel (moe_shared_add's arithmetic, so still the chain's bits); a prefill size
// takes the chain itself. The same comparison runs inside a recorded and replayed decode step.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "gpu_test_util.h"

namespace moeserve::test {
namespace {

struct MoeShape {
  int64_t n_embd = 512, n_expert = 16, k = 4, n_ff = 256, n_ff_sh = 256;
};

struct MoeTypes {
  GgmlType experts, router, shared;  // shared: the shared expert's three matrices
  GgmlType shared_inp;
};

// Host weights of one layer's MoE FFN and their device mirrors.
struct MoeLayer {
  std::vector<DevTensor> keep;
  MoeFfnWeights w;
  Tensor norm;
};

MoeLayer make_layer(const MoeShape& s, const MoeTypes& t, bool shared, bool gated) {
  MoeLayer l;
  auto dev = [&](const HostTensor& h) {
    l.keep.push_back(to_gpu(h));
    return l.keep.back().t;
  };
  l.w.router = dev(random_typed(t.router, {s.n_embd, s.n_expert, 1, 1}));
  l.w.experts.gate = dev(random_typed(t.experts, {s.n_embd, s.n_ff, s.n_expert, 1}));
  l.w.experts.up = dev(random_typed(t.experts, {s.n_embd, s.n_ff, s.n_expert, 1}));
  l.w.experts.down = dev(random_typed(t.experts, {s.n_ff, s.n_embd, s.n_expert, 1}));
  if (shared) {
    l.w.shared_gate = dev(random_typed(t.shared, {s.n_embd, s.n_ff_sh, 1, 1}));
    l.w.shared_up = dev(random_typed(t.shared, {s.n_embd, s.n_ff_sh, 1, 1}));
    l.w.shared_down = dev(random_typed(t.shared, {s.n_ff_sh, s.n_embd, 1, 1}));
    if (gated) l.w.shared_inp = dev(random_typed(t.shared_inp, {s.n_embd, 1, 1, 1}));
  }
  l.w.n_expert_used = s.k;
  l.w.normalize = true;
  l.norm = dev(random_f32({s.n_embd, 1, 1, 1}, 0.5f, 1.5f));
  return l;
}

// One call's activations (h in/out, y) and scratch, every scratch tensor poisoned.
struct MoeCall {
  std::vector<DevTensor> keep;
  DevTensor h, y;
  MoeFfnScratch s;
};

MoeCall make_call(const MoeShape& sh, const MoeLayer& l, const HostTensor& h, const HostTensor& y) {
  MoeCall c;
  c.h = to_gpu(h);
  c.y = to_gpu(y);
  const int64_t n = h.t.ne[1];
  auto scratch = [&](GgmlType type, int64_t d) {
    c.keep.push_back(to_gpu(poisoned(type, {d, n, 1, 1})));
    return c.keep.back().t;
  };
  c.s.m = scratch(GgmlType::F32, sh.n_embd);
  c.s.logits = scratch(GgmlType::F32, sh.n_expert);
  c.s.ids = scratch(GgmlType::I32, sh.k);
  c.s.weights = scratch(GgmlType::F32, sh.k);
  c.s.routed = scratch(GgmlType::F32, sh.n_embd);
  if (l.w.shared_gate.data) {
    c.s.shared = scratch(GgmlType::F32, sh.n_embd);
    c.s.shared_h = scratch(GgmlType::F32, sh.n_ff_sh);
    c.s.shared_up = scratch(GgmlType::F32, sh.n_ff_sh);
    if (l.w.shared_inp.data) c.s.gate = scratch(GgmlType::F32, 1);
  }
  return c;
}

// The op as backend.h defines it, one public op at a time.
void chain(Backend& be, const MoeLayer& l, const MoeCall& c) {
  const MoeFfnWeights& w = l.w;
  const MoeFfnScratch& s = c.s;
  const Tensor& h = c.h.t;
  const bool shared = w.shared_gate.data != nullptr, gated = shared && w.shared_inp.data != nullptr;
  be.add_rms_norm(s.m, h, c.y.t, l.norm, 1e-6f);
  if (gated) {
    be.matmuls(s.m, {{s.logits, w.router}, {s.gate, w.shared_inp}});
  } else {
    be.matmul(s.logits, w.router, s.m);
  }
  be.moe_route(s.ids, s.weights, s.logits, w.normalize);
  be.moe_experts(s.routed, s.m, w.experts, s.ids, s.weights);
  if (shared) {
    be.matmul_swiglu(s.shared_h, w.shared_gate, w.shared_up, s.m, s.shared_up);
    be.matmul(s.shared, w.shared_down, s.shared_h);
    if (gated) return be.moe_shared_add(h, h, s.routed, s.shared, s.gate);
    be.binary(s.routed, s.routed, s.shared, BinaryOp::add);
  }
  be.binary(h, h, s.routed, BinaryOp::add);
}

void forked(Backend& be, const MoeLayer& l, const MoeCall& c) { be.moe_ffn(c.h.t, c.y.t, l.norm, 1e-6f, l.w, c.s); }

std::vector<uint32_t> words(const Tensor& t) {
  std::vector<uint32_t> out(size_t(t.n_elements()));
  gpu().download(out.data(), t);
  return out;
}

// Element for element the same bits; reports the first few that differ.
void expect_same(const Tensor& got, const Tensor& want, const std::string& what) {
  const std::vector<uint32_t> a = words(got), b = words(want);
  ASSERT_EQ(a.size(), b.size()) << what;
  int reported = 0;
  size_t differing = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i]) continue;
    ++differing;
    if (reported++ < 5) {
      float fa, fb;
      std::memcpy(&fa, &a[i], 4);
      std::memcpy(&fb, &b[i], 4);
      ADD_FAILURE() << what << " element " << i << ": forked " << fa << " (0x" << std::hex << a[i] << "), chain " << fb
                    << " (0x" << b[i] << ")" << std::dec;
    }
  }
  EXPECT_EQ(differing, 0u) << what;
}

// The outputs and the scratch both forms write alike: h, m, the logits, ids, weights and, without
// the shared expert's gate, the routed sum (with it, the folded add leaves that scratch unwritten,
// and the shared expert's scratch may be left as the fused add leaves it).
void expect_same_call(const MoeCall& got, const MoeCall& want, const std::string& what) {
  expect_same(got.h.t, want.h.t, what + ": h");
  expect_same(got.s.m, want.s.m, what + ": m");
  expect_same(got.s.logits, want.s.logits, what + ": logits");
  expect_same(got.s.ids, want.s.ids, what + ": ids");
  expect_same(got.s.weights, want.s.weights, what + ": weights");
  if (!got.s.gate.data) expect_same(got.s.routed, want.s.routed, what + ": routed");
}

struct Variant {
  const char* name;
  bool shared, gated;
};
constexpr Variant kVariants[] = {{"shared expert with its gate", true, true},
                                 {"shared expert without a gate", true, false},
                                 {"no shared expert", false, false}};

TEST(CudaMoeFork, ForkedOpEqualsTheChain) {
  const MoeShape sh;
  // The synth model's types (F32 router and gate vector, Q8_0 shared expert, IQ2_XS experts), and
  // a K-quant set with a quantized router.
  const MoeTypes types[] = {{GgmlType::IQ2_XS, GgmlType::F32, GgmlType::Q8_0, GgmlType::F32},
                            {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::F32}};
  for (const MoeTypes& t : types) {
    for (const Variant& v : kVariants) {
      const MoeLayer l = make_layer(sh, t, v.shared, v.gated);
      for (const int64_t n : {1, 2, 8, 40}) {
        const std::string what = str_cat(type_name(t.experts), " experts, ", v.name, ", n=", n);
        const HostTensor h = random_f32({sh.n_embd, n, 1, 1}, -2, 2), y = random_f32({sh.n_embd, n, 1, 1}, -1, 1);
        const MoeCall a = make_call(sh, l, h, y), b = make_call(sh, l, h, y);
        forked(gpu(), l, a);
        chain(gpu(), l, b);
        expect_same_call(a, b, what);
        // The op did run: h moved from h + y, and every element is finite.
        const std::vector<uint32_t> out = words(a.h.t);
        std::vector<float> got(out.size());
        std::memcpy(got.data(), out.data(), out.size() * 4);
        int64_t moved = 0, bad = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          bad += std::isfinite(got[i]) ? 0 : 1;
          moved += got[i] != h.f()[i] + y.f()[i];
        }
        EXPECT_EQ(bad, 0) << what;
        EXPECT_GT(moved, int64_t(got.size()) / 2) << what;
      }
    }
  }
}

// A recorded decode step holding the forked op, replayed with fresh inputs at the same addresses,
// against the chain issued directly.
TEST(CudaMoeFork, ReplayedStepEqualsTheChain) {
  const MoeShape sh;
  const MoeTypes t{GgmlType::IQ2_XS, GgmlType::F32, GgmlType::Q8_0, GgmlType::F32};
  uint64_t key = 600;
  for (const Variant& v : kVariants) {
    const MoeLayer l = make_layer(sh, t, v.shared, v.gated);
    for (const int64_t n : {1, 2}) {
      const std::string what = str_cat(v.name, ", n=", n);
      const HostTensor h0 = random_f32({sh.n_embd, n, 1, 1}, -2, 2), y0 = random_f32({sh.n_embd, n, 1, 1}, -1, 1);
      const MoeCall graphed = make_call(sh, l, h0, y0), direct = make_call(sh, l, h0, y0);
      TestBatch b;
      for (int32_t s = 0; s < int32_t(n); ++s) b.add_run(s, 10, 1);
      // Plan the workspace first, as the engine does at load: nothing may allocate while recording.
      gpu().begin_measure();
      forked(gpu(), l, graphed);
      chain(gpu(), l, direct);
      gpu().end_measure();
      ++key;
      std::vector<uint32_t> previous;
      for (int step = 0; step < 3; ++step) {
        const HostTensor h = random_f32({sh.n_embd, n, 1, 1}, -2, 2), y = random_f32({sh.n_embd, n, 1, 1}, -1, 1);
        for (const MoeCall* c : {&graphed, &direct}) {
          gpu().upload(c->h.t, h.f());
          gpu().upload(c->y.t, y.f());
        }
        int issued = 0;
        gpu().run_step(b.info(), key, [&] {
          ++issued;
          forked(gpu(), l, graphed);
        });
        EXPECT_EQ(issued, 1) << what;
        gpu().run_step(b.info(), 0, [&] { chain(gpu(), l, direct); });
        expect_same_call(graphed, direct, str_cat(what, ", step ", step));
        const std::vector<uint32_t> now = words(graphed.h.t);
        EXPECT_NE(now, previous) << what << ", step " << step;
        previous = now;
      }
    }
  }
}

}  // namespace
}  // namespace moeserve::test
