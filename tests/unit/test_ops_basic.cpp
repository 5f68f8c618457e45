// CPU backend vs the scalar reference: rows, norms, element-wise ops, copies, rope, router.
// Tolerances: the reference sums in double, the CPU in float (SIMD partial sums), so sums over d
// terms differ by about d * 2^-24 relative; 1e-5 covers the row lengths used here.
#include "ops_test_util.h"

namespace moeserve::test {
namespace {

class OpsBasic : public ::testing::TestWithParam<int> {
 protected:
  std::unique_ptr<Backend> ref = make_ref_backend();
  std::unique_ptr<cpu::CpuBackend> cpu = cpu_backend(GetParam());
};

TEST_P(OpsBasic, GetRowsEveryType) {
  for (const TypeTraits* tr = all_types().begin; tr != all_types().end; ++tr) {
    if (!tr->dequantize || !tr->quantize) continue;
    const int64_t d = tr->block_size * 3;
    HostTensor src = random_typed(tr->type, {d, 11, 1, 1});
    HostTensor ids = HostTensor::make(GgmlType::I32, {5, 1, 1, 1});
    const int32_t picks[5] = {3, 0, 10, 3, 7};
    std::memcpy(ids.i(), picks, sizeof picks);
    HostTensor a = HostTensor::make(GgmlType::F32, {d, 5, 1, 1}), b = a.clone();
    ref->get_rows(a.t, src.t, ids.t);
    cpu->get_rows(b.t, src.t, ids.t);
    EXPECT_EQ(to_floats(a.t), to_floats(b.t)) << tr->name;
    // Row 2 of the output is source row 10, dequantized by the registry.
    std::vector<float> row(static_cast<size_t>(d));
    tr->dequantize(src.t.row(10), row.data(), d);
    EXPECT_EQ(std::vector<float>(a.f() + 2 * d, a.f() + 3 * d), row) << tr->name;
  }
}

TEST_P(OpsBasic, RmsNormPlainWeightedAndStrided) {
  for (int64_t d : {1, 7, 64, 333}) {
    HostTensor x = random_f32({d, 5, 3, 1}, -3, 3), w = random_f32({d, 1, 1, 1});
    HostTensor a = HostTensor::make(GgmlType::F32, x.t.ne), b = a.clone();
    ref->rms_norm(a.t, x.t, &w.t, 1e-6f);
    cpu->rms_norm(b.t, x.t, &w.t, 1e-6f);
    EXPECT_LT(rel_error(to_floats(b.t), to_floats(a.t)), 1e-5) << d;
    ref->rms_norm(a.t, x.t, nullptr, 1e-6f);
    cpu->rms_norm(b.t, x.t, nullptr, 1e-6f);
    EXPECT_LT(rel_error(to_floats(b.t), to_floats(a.t)), 1e-5) << d;
    // Known value: a row of equal values normalizes to ones (times the weight).
    HostTensor c = HostTensor::make(GgmlType::F32, {d, 1, 1, 1}), y = c.clone();
    for (int64_t i = 0; i < d; ++i) c.f()[i] = 2.5f;
    cpu->rms_norm(y.t, c.t, nullptr, 0.0f);
    for (int64_t i = 0; i < d; ++i) EXPECT_NEAR(y.f()[i], 1.0f, 1e-6);
  }
  // Strided source: every other head of [8, 6, 4] (the query half of an interleaved projection).
  HostTensor x = random_f32({16, 6, 4, 1});
  const Tensor view = x.t.view({8, 6, 4, 1}, {0, x.t.nb[1], x.t.nb[2], x.t.nb[3]}, 8 * sizeof(float));
  HostTensor a = HostTensor::make(GgmlType::F32, {8, 6, 4, 1}), b = a.clone();
  ref->rms_norm(a.t, view, nullptr, 1e-6f);
  cpu->rms_norm(b.t, view, nullptr, 1e-6f);
  EXPECT_LT(rel_error(to_floats(b.t), to_floats(a.t)), 1e-5);
}

TEST_P(OpsBasic, GatedNormAndL2Norm) {
  HostTensor x = random_f32({128, 6, 5, 1}, -2, 2), z = random_f32({128, 6, 5, 1}, -4, 4);
  HostTensor w = random_f32({128, 1, 1, 1});
  HostTensor a = HostTensor::make(GgmlType::F32, x.t.ne), b = a.clone();
  ref->rms_norm_gated(a.t, x.t, w.t, z.t, 1e-6f);
  cpu->rms_norm_gated(b.t, x.t, w.t, z.t, 1e-6f);
  EXPECT_LT(rel_error(to_floats(b.t), to_floats(a.t)), 1e-5);
  ref->l2_norm(a.t, x.t, 1e-6f);
  cpu->l2_norm(b.t, x.t, 1e-6f);
  EXPECT_LT(rel_error(to_floats(b.t), to_floats(a.t)), 1e-5);
  double ss = 0;
  for (int i = 0; i < 128; ++i) ss += double(b.f()[i]) * b.f()[i];
  EXPECT_NEAR(ss, 1.0, 1e-5);
}

TEST_P(OpsBasic, UnaryBinaryScaleSwiglu) {
  HostTensor x = random_f32({37, 9, 2, 1}, -30, 30), y = random_f32({37, 9, 2, 1}, -3, 3);
  HostTensor a = HostTensor::make(GgmlType::F32, x.t.ne), b = a.clone();
  for (UnaryOp op : {UnaryOp::silu, UnaryOp::sigmoid, UnaryOp::softplus}) {
    ref->unary(a.t, x.t, op);
    cpu->unary(b.t, x.t, op);
    EXPECT_LT(rel_error(to_floats(b.t), to_floats(a.t)), 1e-6) << int(op);
  }
  // Broadcasts: full, one row, one value per row, one value per matrix.
  for (std::array<int64_t, 4> bne : {std::array<int64_t, 4>{37, 9, 2, 1}, {37, 1, 1, 1}, {1, 9, 2, 1}, {1, 1, 2, 1}}) {
    HostTensor c = random_f32(bne);
    for (BinaryOp op : {BinaryOp::add, BinaryOp::mul}) {
      ref->binary(a.t, x.t, c.t, op);
      cpu->binary(b.t, x.t, c.t, op);
      EXPECT_EQ(to_floats(b.t), to_floats(a.t));
    }
  }
  ref->scale(a.t, x.t, 0.37f);
  cpu->scale(b.t, x.t, 0.37f);
  EXPECT_EQ(to_floats(b.t), to_floats(a.t));
  ref->swiglu(a.t, x.t, y.t);
  cpu->swiglu(b.t, x.t, y.t);
  EXPECT_LT(rel_error(to_floats(b.t), to_floats(a.t)), 1e-6);
  // In place.
  HostTensor inplace = x.clone();
  cpu->unary(inplace.t, inplace.t, UnaryOp::sigmoid);
  ref->unary(a.t, x.t, UnaryOp::sigmoid);
  EXPECT_LT(rel_error(to_floats(inplace.t), to_floats(a.t)), 1e-6);
}

TEST_P(OpsBasic, CopyConvertsAndRegroups) {
  // F32 -> F16 / Q8_0 and back, through strided views (the legacy qkvz regrouping pattern).
  HostTensor x = random_f32({64, 3, 5, 1});
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
    HostTensor a = HostTensor::make(type, x.t.ne), b = a.clone();
    ref->copy(a.t, x.t);
    cpu->copy(b.t, x.t);
    EXPECT_EQ(*a.bytes, *b.bytes) << type_name(type);
    HostTensor back = HostTensor::make(GgmlType::F32, x.t.ne);
    cpu->copy(back.t, b.t);
    EXPECT_LE(rel_error(to_floats(back.t), to_floats(x.t)), type == GgmlType::F32 ? 0 : 1e-2);
  }
  // dst view: the first 32 of every 64 elements gets src [32, 3, 5].
  HostTensor small = random_f32({32, 3, 5, 1});
  HostTensor a = HostTensor::make(GgmlType::F32, x.t.ne), b = a.clone();
  const Tensor va = a.t.view({32, 3, 5, 1}, {0, a.t.nb[1], a.t.nb[2], a.t.nb[3]}, 0);
  const Tensor vb = b.t.view({32, 3, 5, 1}, {0, b.t.nb[1], b.t.nb[2], b.t.nb[3]}, 0);
  ref->copy(va, small.t);
  cpu->copy(vb, small.t);
  EXPECT_EQ(*a.bytes, *b.bytes);
  EXPECT_EQ(a.f()[64 + 5], small.f()[32 + 5]);
  EXPECT_EQ(a.f()[64 + 40], 0.0f);
}

TEST_P(OpsBasic, RopeNeoxNormalPartial) {
  TestBatch batch;
  batch.add_run(0, 0, 3);
  batch.add_run(1, 4000, 2);
  for (bool neox : {true, false}) {
    for (int n_rot : {64, 16, 2}) {
      HostTensor x = random_f32({64, 3, 5, 1});
      HostTensor a = HostTensor::make(GgmlType::F32, x.t.ne), b = x.clone();
      const RopeParams p{n_rot, 1e6f, neox};
      ref->rope(a.t, x.t, batch.info(), p);
      cpu->rope(b.t, b.t, batch.info(), p);  // in place
      EXPECT_LT(rel_error(to_floats(b.t), to_floats(a.t)), 2e-6) << neox << n_rot;
      // Position 0 is the identity; dims past n_rot pass through.
      for (int i = 0; i < 64 * 3; ++i) EXPECT_FLOAT_EQ(a.f()[i], x.f()[i]);
      for (int i = n_rot; i < 64; ++i) EXPECT_EQ(a.f()[4 * 64 * 3 + i], x.f()[4 * 64 * 3 + i]);
    }
  }
  // A known rotation: NeoX pairs (x[i], x[i + n_rot/2]); pair 0 turns by exactly pos radians.
  HostTensor x = HostTensor::make(GgmlType::F32, {4, 1, 1, 1});
  x.f()[0] = 1.0f;
  TestBatch one;
  one.add_run(0, 1, 1);
  HostTensor y = HostTensor::make(GgmlType::F32, x.t.ne);
  cpu->rope(y.t, x.t, one.info(), RopeParams{4, 10000.0f, true});
  EXPECT_NEAR(y.f()[0], std::cos(1.0), 1e-6);
  EXPECT_NEAR(y.f()[2], std::sin(1.0), 1e-6);
  cpu->rope(y.t, x.t, one.info(), RopeParams{4, 10000.0f, false});
  EXPECT_NEAR(y.f()[0], std::cos(1.0), 1e-6);
  EXPECT_NEAR(y.f()[1], std::sin(1.0), 1e-6);
}

TEST_P(OpsBasic, RouterTopKSoftmax) {
  for (bool normalize : {true, false}) {
    HostTensor logits = random_f32({61, 7, 1, 1}, -4, 4);
    logits.f()[3] = logits.f()[9] = 10.0f;  // a tie: the lower index comes first
    HostTensor ia = HostTensor::make(GgmlType::I32, {5, 7, 1, 1}), ib = ia.clone();
    HostTensor wa = HostTensor::make(GgmlType::F32, {5, 7, 1, 1}), wb = wa.clone();
    ref->moe_route(ia.t, wa.t, logits.t, normalize);
    cpu->moe_route(ib.t, wb.t, logits.t, normalize);
    EXPECT_EQ(std::vector<int32_t>(ia.i(), ia.i() + 35), std::vector<int32_t>(ib.i(), ib.i() + 35));
    EXPECT_LT(rel_error(to_floats(wb.t), to_floats(wa.t)), 1e-5);
    EXPECT_EQ(ia.i()[0], 3);
    EXPECT_EQ(ia.i()[1], 9);
    if (normalize) {
      float sum = 0;
      for (int j = 0; j < 5; ++j) sum += wa.f()[j];
      EXPECT_NEAR(sum, 1.0f, 1e-6);
    }
  }
}

// The model's shape (512 experts, top 10) with logits on a few levels: ties everywhere, also
// across the k-th place, where the lower indices must win as in the reference's k passes.
TEST_P(OpsBasic, RouterTopKManyTies) {
  HostTensor logits = random_f32({512, 6, 1, 1}, -3, 3);
  for (int64_t i = 0; i < logits.size(); ++i) logits.f()[i] = std::round(logits.f()[i]);
  for (int i = 0; i < 512; ++i) logits.f()[5 * 512 + i] = 1.0f;  // one token: all equal
  HostTensor ia = HostTensor::make(GgmlType::I32, {10, 6, 1, 1}), ib = ia.clone();
  HostTensor wa = HostTensor::make(GgmlType::F32, {10, 6, 1, 1}), wb = wa.clone();
  ref->moe_route(ia.t, wa.t, logits.t, true);
  cpu->moe_route(ib.t, wb.t, logits.t, true);
  EXPECT_EQ(std::vector<int32_t>(ia.i(), ia.i() + 60), std::vector<int32_t>(ib.i(), ib.i() + 60));
  EXPECT_LT(rel_error(to_floats(wb.t), to_floats(wa.t)), 1e-6);
  for (int j = 0; j < 10; ++j) EXPECT_EQ(ib.i()[50 + j], j);
}

INSTANTIATE_TEST_SUITE_P(Threads, OpsBasic, ::testing::Values(1, 3));

}  // namespace
}  // namespace moeserve::test
