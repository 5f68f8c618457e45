// KV stores and attention: CPU vs the reference for every cache type, naive and flash (also the
// decode path that splits a long context across threads), flash vs naive, and each cache type vs
// an F32 cache.
#include "ops_test_util.h"

namespace moeserve::test {
namespace {

struct AttnCase {
  int64_t dk = 64, dv = 64, n_head = 4, n_head_kv = 2, n_ctx = 300, n_seq = 2;
};

// Caches with sequence 0 holding positions [0, len0) and sequence 1 [0, len1), written by kv_store
// from random K/V (the same values for every cache type).
struct Filled {
  HostTensor k, v;
};

Filled fill(Backend& be, const AttnCase& c, GgmlType kt, GgmlType vt, int32_t len0, int32_t len1, uint32_t seed) {
  rng().seed(seed);
  Filled f{HostTensor::make(kt, {c.dk * c.n_head_kv, c.n_ctx, c.n_seq, 1}), HostTensor::make(vt, {c.dv * c.n_head_kv, c.n_ctx, c.n_seq, 1})};
  TestBatch b;
  b.add_run(0, 0, len0);
  b.add_run(1, 0, len1);
  const int64_t n = len0 + len1;
  HostTensor k = random_f32({c.dk * c.n_head_kv, n, 1, 1}, -2, 2), v = random_f32({c.dv * c.n_head_kv, n, 1, 1});
  be.kv_store(f.k.t, k.t, b.info());
  be.kv_store(f.v.t, v.t, b.info());
  return f;
}

std::vector<GgmlType> cache_types() {
  std::vector<GgmlType> types;
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
    const TypeTraits& tr = type_traits(t);
    if (tr.quantize && tr.dequantize && tr.vec_dot && type_traits(tr.vec_dot_type).quantize) types.push_back(t);
  }
  return types;
}

// Queries: a prefill of 5 tokens of sequence 0 at positions 40..44 and one decode token of
// sequence 1 at position 290 (long enough that the flash path splits it across threads).
TestBatch query_batch() {
  TestBatch q;
  q.add_run(0, 40, 5);
  q.add_run(1, 290, 1);
  return q;
}

std::vector<float> attend(Backend& be, const AttnCase& c, const Filled& f, const HostTensor& q, bool flash) {
  const TestBatch qb = query_batch();
  HostTensor out = HostTensor::make(GgmlType::F32, {c.dv, c.n_head, q.t.ne[2], 1});
  be.attention(out.t, q.t, f.k.t, f.v.t, qb.info(), AttentionParams{0.125f, flash});
  return to_floats(out.t);
}

TEST(OpsAttention, CpuMatchesReferenceForEveryCacheType) {
  const AttnCase c;
  auto ref = make_ref_backend();
  for (GgmlType kt : cache_types()) {
    for (GgmlType vt : cache_types()) {
      const Filled fr = fill(*ref, c, kt, vt, 45, 291, 5);
      for (int threads : {1, 3}) {
        auto cpu = cpu_backend(threads);
        const Filled fc = fill(*cpu, c, kt, vt, 45, 291, 5);
        EXPECT_EQ(*fr.k.bytes, *fc.k.bytes) << type_name(kt);  // same quantizers
        EXPECT_EQ(*fr.v.bytes, *fc.v.bytes) << type_name(vt);
        rng().seed(9);
        const HostTensor q = random_f32({c.dk, c.n_head, 6, 1}, -1, 1);
        for (bool flash : {false, true}) {
          EXPECT_LT(rel_error(attend(*cpu, c, fc, q, flash), attend(*ref, c, fr, q, flash)), 1e-5)
              << type_name(kt) << "/" << type_name(vt) << " flash " << flash << " threads " << threads;
        }
      }
    }
  }
}

TEST(OpsAttention, FlashAgreesWithNaiveAndCacheTypesWithF32) {
  const AttnCase c;
  auto cpu = cpu_backend(3);
  rng().seed(9);
  const HostTensor q = random_f32({c.dk, c.n_head, 6, 1}, -1, 1);
  const Filled exact = fill(*cpu, c, GgmlType::F32, GgmlType::F32, 45, 291, 5);
  const std::vector<float> base = attend(*cpu, c, exact, q, false);
  // Flash over an F32 cache: same math in another order.
  EXPECT_LT(rel_error(attend(*cpu, c, exact, q, true), base), 1e-5);
  // The output is a convex combination of V rows, so its error is V's rounding plus the effect of
  // rounded scores on the weights: F16 ~2^-11, Q8_0 ~1/254 and Q4_0 ~1/16 of each block's range
  // (flash also rounds the query the same way as K).
  for (GgmlType t : cache_types()) {
    const double tol = t == GgmlType::F32 ? 1e-5 : t == GgmlType::F16 ? 2e-3 : t == GgmlType::Q8_0 ? 2e-2 : 0.15;
    const Filled f = fill(*cpu, c, t, t, 45, 291, 5);
    for (bool flash : {false, true}) {
      EXPECT_LT(rel_error(attend(*cpu, c, f, q, flash), base), tol) << type_name(t) << " flash " << flash;
    }
  }
}

TEST(OpsAttention, KnownValueSingleCell) {
  // One cached cell: attention returns exactly its V row whatever the scores.
  AttnCase c;
  c.n_ctx = 4;
  c.n_seq = 1;
  auto cpu = cpu_backend(1);
  HostTensor kc = HostTensor::make(GgmlType::F32, {c.dk * c.n_head_kv, c.n_ctx, 1, 1});
  HostTensor vc = HostTensor::make(GgmlType::F32, {c.dv * c.n_head_kv, c.n_ctx, 1, 1});
  TestBatch b;
  b.add_run(0, 0, 1);
  HostTensor k = random_f32({c.dk * c.n_head_kv, 1, 1, 1}), v = random_f32({c.dv * c.n_head_kv, 1, 1, 1});
  cpu->kv_store(kc.t, k.t, b.info());
  cpu->kv_store(vc.t, v.t, b.info());
  HostTensor q = random_f32({c.dk, c.n_head, 1, 1});
  HostTensor out = HostTensor::make(GgmlType::F32, {c.dv, c.n_head, 1, 1});
  for (bool flash : {false, true}) {
    cpu->attention(out.t, q.t, kc.t, vc.t, b.info(), AttentionParams{1.0f, flash});
    for (int64_t h = 0; h < c.n_head; ++h) {
      for (int64_t m = 0; m < c.dv; ++m) EXPECT_FLOAT_EQ(out.f()[h * c.dv + m], v.f()[(h / 2) * c.dv + m]);
    }
  }
}

}  // namespace
}  // namespace moeserve::test
