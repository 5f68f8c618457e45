// KV stores and attention on the GPU against the reference: every pair of K/V cache types, flash on
// and off, prefill-sized steps (flash: tensor cores, except for F32 caches) and decode-sized steps
// (the context split across blocks; flash scores on tensor cores except for F32 K), several sequences in one batch, GQA groups of 1, 3, 4 and 8,
// head dims 32 to 256. Both sides attend over the same cache bytes (the reference's kv_store
// output, which the GPU's must equal); outputs start poisoned, so an unwritten row fails.
#include "gpu_test_util.h"

#include "core/error.h"

namespace moeserve::test {
namespace {

const GgmlType kTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0};

struct Shape {
  int64_t dk, dv, n_head, n_head_kv, n_ctx, n_seq;
};

// Caches filled by the reference: sequence s holds positions [0, len[s]).
HostTensor filled_cache(Backend& ref, GgmlType type, int64_t width, const Shape& s, const std::vector<int32_t>& len,
                        uint32_t seed, float range = 2) {
  rng().seed(seed);
  HostTensor cache = HostTensor::make(type, {width, s.n_ctx, s.n_seq, 1});
  TestBatch b;
  for (int32_t q = 0; q < int32_t(len.size()); ++q) b.add_run(q, 0, len[size_t(q)]);
  const HostTensor src = random_f32({width, int64_t(b.pos.size()), 1, 1}, -range, range);
  ref.kv_store(cache.t, src.t, b.info());
  return cache;
}

TEST(CudaKv, StoreMatchesReferenceBytesForEveryType) {
  auto ref = make_ref_backend();
  TestBatch b;
  b.add_run(1, 5, 3);
  b.add_run(0, 0, 1);
  b.add_run(2, 99, 1);
  const int64_t width = 2 * 128;
  const HostTensor src = random_f32({width, 5, 1, 1}, -3, 3);
  const DevTensor d_src = to_gpu(src);
  for (GgmlType type : kTypes) {
    HostTensor want = HostTensor::make(type, {width, 100, 3, 1});
    ref->kv_store(want.t, src.t, b.info());
    const HostTensor cache = HostTensor::make(type, want.t.ne);
    DevTensor d_cache = to_gpu(cache);
    gpu().kv_store(d_cache.t, d_src.t, b.info());
    EXPECT_EQ(count_diff_bytes(from_gpu(d_cache, cache), want), 0u) << type_name(type);
  }
  // Any other engine KV type is a clear error, not a silent CPU fallback.
  const HostTensor q5 = HostTensor::make(GgmlType::Q5_0, {width, 100, 3, 1});
  DevTensor d_q5 = to_gpu(q5);
  try {
    gpu().kv_store(d_q5.t, d_src.t, b.info());
    ADD_FAILURE() << "Q5_0 cache accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not supported"), std::string::npos) << e.what();
  }
}

// q [dk, n_head, n] attends (batch); returns (gpu, ref) outputs. Queries in [-q_range, q_range],
// K in [-2, 2], V in [-v_range, v_range].
void check_attention(const Shape& s, GgmlType kt, GgmlType vt, const TestBatch& batch, const std::vector<int32_t>& len,
                     bool flash, double tol, const std::string& what, float q_range = 1, float v_range = 2) {
  auto ref = make_ref_backend();
  const HostTensor k = filled_cache(*ref, kt, s.dk * s.n_head_kv, s, len, 11);
  const HostTensor v = filled_cache(*ref, vt, s.dv * s.n_head_kv, s, len, 12, v_range);
  const int64_t n = int64_t(batch.pos.size());
  rng().seed(13);
  const HostTensor q = random_f32({s.dk, s.n_head, n, 1}, -q_range, q_range);
  HostTensor want = poisoned(GgmlType::F32, {s.dv, s.n_head, n, 1});
  const float scale = float(1.0 / std::sqrt(double(s.dk)));
  ref->attention(want.t, q.t, k.t, v.t, batch.info(), AttentionParams{scale, flash});
  const HostTensor out = poisoned(GgmlType::F32, want.t.ne);
  DevTensor d_out = to_gpu(out), d_q = to_gpu(q), d_k = to_gpu(k), d_v = to_gpu(v);
  gpu().attention(d_out.t, d_q.t, d_k.t, d_v.t, batch.info(), AttentionParams{scale, flash});
  expect_close(from_gpu(d_out, out), want, tol, what);
}

// Flash: the reference also accumulates in float with an online softmax; the GPU merges per-warp
// and per-range partial softmaxes in another order, so a few float ulps per merge: 1e-5 of the
// output range. Without flash the reference sums in double over dequantized K/V; the GPU uses
// float: same bound. The query's rounding to K's dot type (flash) is the same on both sides.
// Flash decode scores on tensor cores add nothing beyond that: Q8_0/Q4_0 K give exact integer
// block sums that meet the two scales in float as in the reference's block dot, and products of
// F16/BF16 K with the rounded query are exact in the f32 accumulators (summed in another order).
// Their p·V on tensor cores (tf32) neither: V's elements are exact in tf32 (Q8_0/Q4_0 as their
// integers), the weight times V's block scale is split into two tf32 parts (2^-22 relative), F32
// V into two as well.
constexpr double kTol = 1e-5;

// Flash prefill on tensor cores (every cache pair without F32, head dims 64/128/256, more than 64
// tokens) feeds 16-bit values to the products: the softmax weights P are rounded to V's type
// (f16, or bf16 for a BF16 V) and Q8_0/Q4_0 elements to f16 once dequantized. Each output is a
// convex combination of V rows whose weights carry at most one unit roundoff u of that type, and
// whose V elements carry at most one more (quantized V); the scores' error (Q and K in f16: one
// more u per product, relative) moves the weights by about as much again. So a few u of the
// output range: 4u (u = 2^-11 for f16, 2^-8 for bf16). Products of two 16-bit values are exact in
// the f32 accumulators, so F16/BF16 K add nothing beyond Q's rounding, which the reference shares.
double tensor_core_tol(GgmlType vt) { return 4.0 * std::ldexp(1.0, vt == GgmlType::BF16 ? -8 : -11); }

bool takes_tensor_cores(const Shape& s, GgmlType kt, GgmlType vt, bool flash, int64_t n_tokens) {
  return flash && n_tokens > 64 && kt != GgmlType::F32 && vt != GgmlType::F32 && s.dk == s.dv &&
         (s.dk == 64 || s.dk == 128 || s.dk == 256);
}

double tol_for(const Shape& s, GgmlType kt, GgmlType vt, bool flash, const TestBatch& b) {
  return takes_tensor_cores(s, kt, vt, flash, int64_t(b.pos.size())) ? tensor_core_tol(vt) : kTol;
}

TEST(CudaAttention, EveryCacheTypePairPrefillAndDecode) {
  const Shape s{128, 128, 8, 2, 700, 3};  // GQA group 4
  const std::vector<int32_t> len{700, 300, 650};
  TestBatch prefill;  // 80 tokens: above the split threshold
  prefill.add_run(0, 600, 75);
  prefill.add_run(2, 640, 5);
  TestBatch decode;  // one token per sequence: the context is split across blocks
  decode.add_run(0, 699, 1);
  decode.add_run(1, 0, 1);
  decode.add_run(2, 649, 1);
  for (GgmlType kt : kTypes) {
    for (GgmlType vt : kTypes) {
      for (bool flash : {true, false}) {
        const std::string what = str_cat(type_name(kt), "/", type_name(vt), " flash ", flash);
        check_attention(s, kt, vt, prefill, len, flash, tol_for(s, kt, vt, flash, prefill), what + " prefill");
        check_attention(s, kt, vt, decode, len, flash, kTol, what + " decode");
      }
    }
  }
}

TEST(CudaAttention, HeadShapes) {
  // The reference model's shape (16 heads over 2 KV heads of 256), an MHA shape with odd counts
  // and dk != dv, and a long context split into many ranges.
  struct Case {
    Shape s;
    GgmlType kt, vt;
  };
  const Case cases[] = {
      {{256, 256, 16, 2, 1500, 2}, GgmlType::Q8_0, GgmlType::Q8_0},
      {{256, 256, 16, 2, 1500, 2}, GgmlType::F16, GgmlType::Q4_0},
      {{64, 96, 3, 3, 300, 2}, GgmlType::F16, GgmlType::F16},
      {{64, 32, 9, 3, 300, 2}, GgmlType::Q4_0, GgmlType::F32},
      {{128, 128, 8, 1, 9000, 1}, GgmlType::Q8_0, GgmlType::F16},
  };
  for (const Case& c : cases) {
    const int32_t last = int32_t(c.s.n_ctx) - 1;
    std::vector<int32_t> len(size_t(c.s.n_seq), int32_t(c.s.n_ctx));
    TestBatch decode;
    decode.add_run(0, last, 1);
    if (c.s.n_seq > 1) decode.add_run(1, 17, 1);
    TestBatch prefill;
    prefill.add_run(0, last - 69, 70);  // above the split threshold
    for (bool flash : {true, false}) {
      const std::string what = str_cat("dk ", c.s.dk, " dv ", c.s.dv, " heads ", c.s.n_head, "/", c.s.n_head_kv, " ",
                                       type_name(c.kt), "/", type_name(c.vt), " flash ", flash);
      check_attention(c.s, c.kt, c.vt, decode, len, flash, kTol, what + " decode");
      check_attention(c.s, c.kt, c.vt, prefill, len, flash, tol_for(c.s, c.kt, c.vt, flash, prefill),
                      what + " prefill");
    }
  }
}

TEST(CudaAttention, TensorCorePrefillSeveralSequences) {
  // Blocks of 64 query rows (8 tokens of 8 heads, 21 of 3, 64 of 1) straddle sequence boundaries:
  // runs of odd lengths, one from position 0 (its first row sees one cell), one deep in the cache,
  // one of a single token between them. Every 16-bit and block type as K and as V.
  struct Case {
    Shape s;
    GgmlType kt, vt;
  };
  const Case cases[] = {
      {{256, 256, 16, 2, 600, 3}, GgmlType::Q8_0, GgmlType::Q8_0},
      {{256, 256, 16, 2, 600, 3}, GgmlType::Q4_0, GgmlType::F16},
      {{256, 256, 16, 2, 600, 3}, GgmlType::BF16, GgmlType::Q4_0},
      {{128, 128, 6, 2, 600, 3}, GgmlType::F16, GgmlType::BF16},
      {{64, 64, 5, 5, 600, 3}, GgmlType::Q8_0, GgmlType::BF16},
      {{64, 64, 4, 1, 600, 3}, GgmlType::BF16, GgmlType::F16},
  };
  const std::vector<int32_t> len{600, 400, 600};
  TestBatch b;
  b.add_run(1, 0, 101);
  b.add_run(2, 450, 1);
  b.add_run(0, 530, 67);
  b.add_run(2, 500, 33);
  for (const Case& c : cases) {
    ASSERT_TRUE(takes_tensor_cores(c.s, c.kt, c.vt, true, int64_t(b.pos.size())));
    const std::string what = str_cat("dk ", c.s.dk, " heads ", c.s.n_head, "/", c.s.n_head_kv, " ", type_name(c.kt),
                                     "/", type_name(c.vt));
    check_attention(c.s, c.kt, c.vt, b, len, true, tensor_core_tol(c.vt), what);
  }
}

TEST(CudaAttention, DecodeLongContextManyRanges) {
  // One token per sequence deep in a long cache (ranges of many shared-memory tiles, the merge of
  // many ranges), the reference model's shape; rows 4-byte (Q8_0 dk 64: 68 bytes), 8-byte and
  // 16-byte aligned (the three copy widths).
  struct Case {
    Shape s;
    GgmlType kt, vt;
  };
  const Case cases[] = {
      {{256, 256, 16, 2, 6000, 2}, GgmlType::Q8_0, GgmlType::Q8_0},
      {{256, 256, 16, 2, 6000, 2}, GgmlType::Q4_0, GgmlType::BF16},
      {{128, 128, 4, 1, 6000, 2}, GgmlType::Q8_0, GgmlType::Q4_0},
      {{64, 64, 2, 1, 6000, 2}, GgmlType::Q8_0, GgmlType::F32},
  };
  for (const Case& c : cases) {
    const std::vector<int32_t> len{6000, 4321};
    TestBatch b;
    b.add_run(1, 4320, 1);
    b.add_run(0, 5999, 1);
    for (bool flash : {true, false}) {
      const std::string what = str_cat("dk ", c.s.dk, " heads ", c.s.n_head, "/", c.s.n_head_kv, " ",
                                       type_name(c.kt), "/", type_name(c.vt), " flash ", flash);
      check_attention(c.s, c.kt, c.vt, b, len, flash, kTol, what);
    }
  }
}

TEST(CudaAttention, DecodeEveryPairAtSeveralDepths) {
  // The reference model's shape, one token per sequence at depths 1, 65, 1001 and 2200 cells
  // (ranges of 64-cell tiles: lengths on and off their multiples), every K/V pair, flash on (the
  // tensor-core scores for 16-bit and block K) and off.
  const Shape s{256, 256, 16, 2, 2200, 4};
  const std::vector<int32_t> len{1, 65, 1001, 2200};
  TestBatch b;
  b.add_run(3, 2199, 1);
  b.add_run(0, 0, 1);
  b.add_run(2, 1000, 1);
  b.add_run(1, 64, 1);
  for (GgmlType kt : kTypes) {
    for (GgmlType vt : kTypes) {
      for (bool flash : {true, false}) {
        check_attention(s, kt, vt, b, len, flash, kTol,
                        str_cat(type_name(kt), "/", type_name(vt), " flash ", flash));
      }
    }
  }
}

TEST(CudaAttention, DecodeHeadTilesAndMultiTileRanges) {
  // Shapes around the 8 heads of a tensor-core block and the 16-byte, 8-byte and 4-byte copies:
  // MHA (one head of 8 used), a group of 12 (tiles of 8 and 4), dk 64 Q8_0 rows of 68 bytes;
  // several tokens of several sequences per step (small cache, many KV heads: ranges of several
  // tiles), and a cache below one tile (a single range writing the output directly).
  struct Case {
    Shape s;
    GgmlType kt, vt;
  };
  const Case cases[] = {
      {{64, 64, 16, 16, 3000, 3}, GgmlType::Q8_0, GgmlType::F16},
      {{128, 128, 24, 2, 3000, 3}, GgmlType::Q4_0, GgmlType::Q8_0},
      {{128, 128, 6, 6, 3000, 3}, GgmlType::BF16, GgmlType::Q4_0},
      {{256, 256, 16, 2, 3000, 3}, GgmlType::F16, GgmlType::BF16},
      {{256, 256, 16, 2, 40, 3}, GgmlType::Q8_0, GgmlType::Q8_0},
  };
  for (const Case& c : cases) {
    const int32_t n = int32_t(c.s.n_ctx);
    const std::vector<int32_t> len{n, n - 555 > 0 ? n - 555 : n / 2, 7};
    TestBatch b;
    b.add_run(0, n - 3, 3);  // three consecutive tokens of one sequence
    b.add_run(2, 6, 1);
    b.add_run(1, len[1] - 1, 1);
    for (bool flash : {true, false}) {
      const std::string what = str_cat("dk ", c.s.dk, " heads ", c.s.n_head, "/", c.s.n_head_kv, " ctx ", n, " ",
                                       type_name(c.kt), "/", type_name(c.vt), " flash ", flash);
      check_attention(c.s, c.kt, c.vt, b, len, flash, kTol, what);
    }
  }
}

TEST(CudaAttention, DecodePeakyWeightsAndWideValues) {
  // Queries 8 times as large (scores spread over about +-18: most weights far below 2^-24 of the
  // maximum, and the maxima move often within a range), V of large magnitude (Q8_0 block scales
  // near 16: a weight times a scale spans many binades) and of small magnitude (scales below
  // 2^-14, F16 subnormals). Every V type under a Q8_0 and an F16 K (the tensor-core p·V carries
  // V's block scale with the weight), flash on, depths off the 64-cell tiles; the same 1e-5 of the
  // output range.
  const Shape s{256, 256, 16, 2, 3000, 2};
  const std::vector<int32_t> len{3000, 1234};
  TestBatch b;
  b.add_run(1, 1233, 1);
  b.add_run(0, 2999, 1);
  for (GgmlType kt : {GgmlType::Q8_0, GgmlType::F16}) {
    for (GgmlType vt : kTypes) {
      for (float v_range : {2000.0f, 2e-3f}) {
        check_attention(s, kt, vt, b, len, true, kTol,
                        str_cat(type_name(kt), "/", type_name(vt), " V range ", v_range), 8.0f, v_range);
      }
    }
  }
}

TEST(CudaAttention, UnsupportedCacheTypeIsAnError) {
  const HostTensor k = HostTensor::make(GgmlType::IQ4_NL, {64, 8, 1, 1}), v = HostTensor::make(GgmlType::F16, {64, 8, 1, 1});
  const HostTensor q = random_f32({64, 2, 1, 1}), out = HostTensor::make(GgmlType::F32, {64, 2, 1, 1});
  DevTensor d_k = to_gpu(k), d_v = to_gpu(v), d_q = to_gpu(q), d_out = to_gpu(out);
  TestBatch b;
  b.add_run(0, 3, 1);
  EXPECT_THROW(gpu().attention(d_out.t, d_q.t, d_k.t, d_v.t, b.info(), AttentionParams{1.0f, true}), Error);
}

}  // namespace
}  // namespace moeserve::test
