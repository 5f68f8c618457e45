// The CUDA backend's non-weight ops against the scalar reference backend (make_ref_backend), on
// random inputs, odd shapes and the strided views the forward takes. Outputs start poisoned (NaN)
// so an element a kernel forgets shows. Tolerances: plain F32 math differs from the reference
// only in summation order and in float-vs-double accumulators (rows of a few thousand values), so
// ~1e-5 relative to the largest reference value; exceptions are justified where they appear.
#include "gpu_test_util.h"

#include "core/error.h"

namespace moeserve::test {
namespace {

constexpr size_t kF = sizeof(float);

TEST(CudaBackend, NameAndZeroedMemory) {
  EXPECT_EQ(gpu().name().rfind("cuda (", 0), 0u) << gpu().name();
  Buffer b = gpu().alloc(1000);
  std::vector<uint8_t> host(1000, 0xAB);
  gpu().download(host.data(), byte_tensor(b.data(), 1000));
  EXPECT_EQ(std::count(host.begin(), host.end(), 0), 1000);
}

// The query view of an interleaved [q | gate] projection, as the attention block takes it.
HostTensor interleaved_view(const HostTensor& qg, int64_t hd, int64_t n_head, int64_t n, size_t offset = 0) {
  return host_view(qg, {hd, n_head, n, 1}, {0, 2 * size_t(hd) * kF, qg.t.nb[1], qg.t.nb[1] * size_t(n)}, offset);
}

// Rows of up to 256 take a warp each (8 rows a block: 35 rows end inside a block), longer ones
// a block each.
TEST(CudaOps, NormsOnViewsAndInPlace) {
  auto ref = make_ref_backend();
  for (const int64_t hd : {96, 256, 300}) {
    const int64_t nh = 5, n = 7;
    const HostTensor qg = random_f32({2 * hd * nh, n, 1, 1}, -3, 3);
    const HostTensor src = interleaved_view(qg, hd, nh, n);
    const HostTensor w = random_f32({hd, 1, 1, 1}, 0.5f, 1.5f);
    const HostTensor z = random_f32({hd, nh, n, 1}, -4, 4);
    const DevTensor d_src = to_gpu(src), d_w = to_gpu(w), d_z = to_gpu(z);
    for (int kind = 0; kind < 4; ++kind) {
      HostTensor want = poisoned(GgmlType::F32, {hd, nh, n, 1});
      const HostTensor out = poisoned(GgmlType::F32, {hd, nh, n, 1});
      DevTensor d_out = to_gpu(out);
      switch (kind) {
        case 0:
          ref->rms_norm(want.t, src.t, &w.t, 1e-6f);
          gpu().rms_norm(d_out.t, d_src.t, &d_w.t, 1e-6f);
          break;
        case 1:
          ref->rms_norm(want.t, src.t, nullptr, 1e-6f);
          gpu().rms_norm(d_out.t, d_src.t, nullptr, 1e-6f);
          break;
        case 2:
          ref->rms_norm_gated(want.t, src.t, w.t, z.t, 1e-6f);
          gpu().rms_norm_gated(d_out.t, d_src.t, d_w.t, d_z.t, 1e-6f);
          break;
        default:
          ref->l2_norm(want.t, src.t, 1e-6f);
          gpu().l2_norm(d_out.t, d_src.t, 1e-6f);
          break;
      }
      expect_close(from_gpu(d_out, out), want, 1e-5, str_cat("norm kind ", kind, " row ", hd));
    }
  }
  // In place over a wide contiguous row (the model's hidden size class).
  const HostTensor x = random_f32({2048, 3, 1, 1}, -2, 2);
  const HostTensor wx = random_f32({2048, 1, 1, 1});
  HostTensor want = x.clone();
  ref->rms_norm(want.t, want.t, &wx.t, 1e-6f);
  DevTensor d_x = to_gpu(x), d_wx = to_gpu(wx);
  gpu().rms_norm(d_x.t, d_x.t, &d_wx.t, 1e-6f);
  expect_close(from_gpu(d_x, x), want, 1e-5, "rms_norm in place");
}

TEST(CudaOps, ElementwiseWithBroadcastAndViews) {
  auto ref = make_ref_backend();
  // The delta-net gate pattern: views of a grouped [b | a] projection, per-head parameters
  // broadcast over tokens.
  const int64_t ratio = 3, nk = 5, n = 9;
  const HostTensor ba = random_f32({2 * ratio * nk, n, 1, 1}, -3, 3);
  const size_t group = size_t(2 * ratio) * kF;
  const HostTensor b_view = host_view(ba, {ratio, nk, n, 1}, {0, group, ba.t.nb[1], ba.t.nb[1] * size_t(n)});
  const HostTensor a_view = host_view(ba, {ratio, nk, n, 1}, {0, group, ba.t.nb[1], ba.t.nb[1] * size_t(n)}, size_t(ratio) * kF);
  const HostTensor bias = random_f32({ratio, nk, 1, 1});
  const HostTensor col = random_f32({1, nk, n, 1});  // broadcast along dim 0 (the shared-expert gate)
  const DevTensor d_b = to_gpu(b_view), d_a = to_gpu(a_view), d_bias = to_gpu(bias), d_col = to_gpu(col);
  const std::array<int64_t, 4> shape{ratio, nk, n, 1};
  for (UnaryOp op : {UnaryOp::silu, UnaryOp::sigmoid, UnaryOp::softplus}) {
    HostTensor want = poisoned(GgmlType::F32, shape);
    const HostTensor out = poisoned(GgmlType::F32, shape);
    DevTensor d_out = to_gpu(out);
    ref->unary(want.t, b_view.t, op);
    gpu().unary(d_out.t, d_b.t, op);
    expect_close(from_gpu(d_out, out), want, 1e-6, "unary " + std::to_string(int(op)));
  }
  for (BinaryOp op : {BinaryOp::add, BinaryOp::mul}) {
    for (const auto* bb : {&bias, &col, &b_view}) {
      const DevTensor& d_bb = bb == &bias ? d_bias : bb == &col ? d_col : d_b;
      HostTensor want = poisoned(GgmlType::F32, shape);
      const HostTensor out = poisoned(GgmlType::F32, shape);
      DevTensor d_out = to_gpu(out);
      ref->binary(want.t, a_view.t, bb->t, op);
      gpu().binary(d_out.t, d_a.t, d_bb.t, op);
      expect_close(from_gpu(d_out, out), want, 1e-6, "binary " + std::to_string(int(op)));
    }
  }
  {
    HostTensor want = poisoned(GgmlType::F32, shape);
    const HostTensor out = poisoned(GgmlType::F32, shape);
    DevTensor d_out = to_gpu(out);
    ref->scale(want.t, a_view.t, -0.37f);
    gpu().scale(d_out.t, d_a.t, -0.37f);
    expect_close(from_gpu(d_out, out), want, 1e-7, "scale");
    ref->swiglu(want.t, a_view.t, b_view.t);
    gpu().swiglu(d_out.t, d_a.t, d_b.t);
    expect_close(from_gpu(d_out, out), want, 1e-6, "swiglu");
  }
  // In place on a large contiguous tensor (more elements than one grid pass covers).
  const HostTensor big = random_f32({4099, 4100, 1, 1}, -5, 5);
  HostTensor want = big.clone();
  ref->unary(want.t, want.t, UnaryOp::silu);
  DevTensor d_big = to_gpu(big);
  gpu().unary(d_big.t, d_big.t, UnaryOp::silu);
  expect_close(from_gpu(d_big, big), want, 1e-6, "silu in place, 16.8M elements");
}

TEST(CudaOps, CopyConversionsAndViews) {
  auto ref = make_ref_backend();
  const HostTensor x = random_f32({128, 3, 5, 1}, -4, 4);
  const DevTensor d_x = to_gpu(x);
  for (GgmlType type : {GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0}) {
    // F32 -> type: the same bytes as the reference quantizer (same float operations).
    HostTensor want = HostTensor::make(type, x.t.ne);
    ref->copy(want.t, x.t);
    const HostTensor out = poisoned(type, x.t.ne);
    DevTensor d_out = to_gpu(out);
    gpu().copy(d_out.t, d_x.t);
    HostTensor got = from_gpu(d_out, out);
    std::memset(got.bytes->data() + want.t.n_bytes(), 0, got.bytes->size() - want.t.n_bytes());  // slack after the tensor
    EXPECT_EQ(count_diff_bytes(got, want), 0u) << "F32 -> " << type_name(type);
    // type -> F32.
    HostTensor back_want = poisoned(GgmlType::F32, x.t.ne);
    ref->copy(back_want.t, want.t);
    const HostTensor back = poisoned(GgmlType::F32, x.t.ne);
    DevTensor d_back = to_gpu(back);
    gpu().copy(d_back.t, d_out.t);
    expect_close(from_gpu(d_back, back), back_want, 0, str_cat(type_name(type), " -> F32"));
  }
  // Strided F32 views both sides (the legacy qkvz regrouping), and a quantizing copy into a view.
  const int64_t nk = 3, n = 4, dk = 64, vw = 96;
  const HostTensor qkvz = random_f32({(2 * dk + 2 * vw) * nk, n, 1, 1});
  const size_t group = size_t(2 * dk + 2 * vw) * kF;
  const HostTensor src = host_view(qkvz, {vw, nk, n, 1}, {0, group, qkvz.t.nb[1], qkvz.t.nb[1] * size_t(n)}, size_t(2 * dk) * kF);
  const DevTensor d_src = to_gpu(src);
  for (GgmlType type : {GgmlType::F32, GgmlType::Q8_0, GgmlType::F16}) {
    HostTensor base_want = HostTensor::make(type, {2 * vw * nk, n, 1, 1});
    const size_t row = row_bytes(type, vw);
    auto dst_view = [&](const HostTensor& b) {
      return host_view(b, {vw, nk, n, 1}, {0, 2 * row, b.t.nb[1], b.t.nb[1] * size_t(n)}, row);
    };
    HostTensor want = dst_view(base_want);
    ref->copy(want.t, src.t);
    HostTensor base = HostTensor::make(type, base_want.t.ne);
    DevTensor d_dst = to_gpu(dst_view(base));
    gpu().copy(d_dst.t, d_src.t);
    EXPECT_EQ(count_diff_bytes(from_gpu(d_dst, dst_view(base)), base_want), 0u) << "strided copy to " << type_name(type);
  }
  // Same-type copies of quantized rows between views (a sequence's cache rows to another's).
  const HostTensor cache = random_typed(GgmlType::Q4_0, {256, 10, 3, 1});
  HostTensor want = cache.clone();
  const Tensor from = want.t.view({256, 10, 1, 1}, want.t.nb, 2 * want.t.nb[2]);
  const Tensor to = want.t.view({256, 10, 1, 1}, want.t.nb, 0);
  ref->copy(to, from);
  DevTensor d_cache = to_gpu(cache);
  gpu().copy(d_cache.t.view({256, 10, 1, 1}, d_cache.t.nb, 0), d_cache.t.view({256, 10, 1, 1}, d_cache.t.nb, 2 * d_cache.t.nb[2]));
  EXPECT_EQ(count_diff_bytes(from_gpu(d_cache, cache), want), 0u);
  // An unsupported conversion is one clear error.
  const HostTensor q5 = HostTensor::make(GgmlType::Q5_0, x.t.ne);
  DevTensor d_q5 = to_gpu(q5);
  EXPECT_THROW(gpu().copy(d_q5.t, d_x.t), Error);
}

TEST(CudaOps, ZeroStridedLeavesTheRest) {
  auto ref = make_ref_backend();
  const HostTensor x = random_f32({40, 6, 3, 1});
  HostTensor want = x.clone();
  const Tensor v = want.t.view({24, 3, 3, 1}, {0, 2 * want.t.nb[1], want.t.nb[2], want.t.nb[3]}, 8 * kF);
  ref->zero(v);
  DevTensor d = to_gpu(x);
  gpu().zero(d.t.view({24, 3, 3, 1}, {0, 2 * d.t.nb[1], d.t.nb[2], d.t.nb[3]}, 8 * kF));
  EXPECT_EQ(count_diff_bytes(from_gpu(d, x), want), 0u);
}

TEST(CudaOps, RopeNeoxNormalPartialOnViews) {
  auto ref = make_ref_backend();
  TestBatch batch;
  batch.add_run(0, 0, 3);
  batch.add_run(2, 31000, 2);
  batch.add_run(1, 7, 1);
  const int64_t hd = 64, nh = 3, n = 6;
  const HostTensor qg = random_f32({2 * hd * nh, n, 1, 1}, -2, 2);
  const HostTensor src = interleaved_view(qg, hd, nh, n);
  const DevTensor d_src = to_gpu(src);
  for (bool neox : {true, false}) {
    for (int n_rot : {64, 16, 2}) {
      const RopeParams p{n_rot, neox ? 1e7f : 1e4f, neox};
      HostTensor want = poisoned(GgmlType::F32, {hd, nh, n, 1});
      ref->rope(want.t, src.t, batch.info(), p);
      const HostTensor out = poisoned(GgmlType::F32, {hd, nh, n, 1});
      DevTensor d_out = to_gpu(out);
      gpu().rope(d_out.t, d_src.t, batch.info(), p);
      // Same float angle, cos/sin in double on both sides: a few float ulps.
      expect_close(from_gpu(d_out, out), want, 2e-6, str_cat("rope neox ", neox, " n_rot ", n_rot));
      // In place, on a contiguous copy.
      HostTensor inplace = want.clone();
      ref->copy(inplace.t, src.t);
      DevTensor d_in = to_gpu(inplace);
      gpu().rope(d_in.t, d_in.t, batch.info(), p);
      expect_close(from_gpu(d_in, inplace), want, 2e-6, "rope in place");
    }
  }
}

TEST(CudaOps, MoeRouteTopKTiesAndNormalize) {
  auto ref = make_ref_backend();
  // Expert counts from under one per lane to several thousand; k past one warp's 32 slots and k =
  // every expert.
  const std::pair<int64_t, int64_t> shapes[] = {{512, 10}, {61, 5}, {61, 61}, {1000, 40}, {3000, 8}};
  for (const auto& [n_expert, k] : shapes) {
    for (bool normalize : {true, false}) {
      const int64_t n = 7;
      HostTensor logits = random_f32({n_expert, n, 1, 1}, -4, 4);
      logits.f()[3] = logits.f()[9] = 10.0f;  // a tie: the lower index first
      logits.f()[n_expert + 20] = logits.f()[n_expert + 40] = logits.f()[n_expert + 50] = 9.0f;
      HostTensor ids_want = HostTensor::make(GgmlType::I32, {k, n, 1, 1}), w_want = poisoned(GgmlType::F32, {k, n, 1, 1});
      ref->moe_route(ids_want.t, w_want.t, logits.t, normalize);
      const HostTensor ids = poisoned(GgmlType::I32, {k, n, 1, 1}), w = poisoned(GgmlType::F32, {k, n, 1, 1});
      DevTensor d_ids = to_gpu(ids), d_w = to_gpu(w), d_logits = to_gpu(logits);
      gpu().moe_route(d_ids.t, d_w.t, d_logits.t, normalize);
      const HostTensor ids_got = from_gpu(d_ids, ids);
      EXPECT_EQ(std::vector<int32_t>(ids_got.i(), ids_got.i() + k * n), std::vector<int32_t>(ids_want.i(), ids_want.i() + k * n));
      expect_close(from_gpu(d_w, w), w_want, 1e-5, str_cat("router weights ", n_expert, " normalize ", normalize));
      EXPECT_EQ(ids_got.i()[0], 3);
      EXPECT_EQ(ids_got.i()[1], 9);
      EXPECT_EQ(ids_got.i()[k], 20);
      EXPECT_EQ(ids_got.i()[k + 1], 40);
    }
  }
}

}  // namespace
}  // namespace moeserve::test
