// Routed experts, fused: tokens grouped by expert (counting sort of the (token, slot) pairs), the
// activations quantized once, then gate/up + SiLU and down as tiles of (expert, weight rows) over
// the threads so each expert's weights stream through the cache once per step, and a final
// weighted sum per token. The tokens routed to one expert go through its rows kMaxCols at a time
// (Kernels::dot_cols: each weight row decoded once for all of them, results as one at a time).
#include <atomic>
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace moeserve::cpu {
namespace {

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

}  // namespace

void CpuBackend::do_moe_experts(const Tensor& dst, const Tensor& x, const ExpertWeights& ex, const Tensor& ids,
                                const Tensor& weights) {
  const int64_t n_embd = x.ne[0], n_ff = ex.gate.ne[1], n_expert = ex.gate.ne[2];
  const int64_t n_tokens = x.ne[1], k = ids.ne[0], n_slots = n_tokens * k;
  const GgmlType gate_act = type_traits(ex.gate.type).vec_dot_type, up_act = type_traits(ex.up.type).vec_dot_type;
  const GgmlType down_act = type_traits(ex.down.type).vec_dot_type;
  const size_t xg_stride = row_bytes(gate_act, n_embd), xu_stride = row_bytes(up_act, n_embd);
  const size_t ad_stride = row_bytes(down_act, n_ff);
  const bool same_act = gate_act == up_act;

  // Workspace: sorted slots, quantized inputs, expert activations (F32 and quantized), outputs.
  const size_t off_offsets = 0;
  const size_t off_slots = off_offsets + align64(sizeof(int32_t) * size_t(n_expert + 1));
  const size_t off_active = off_slots + align64(sizeof(int32_t) * size_t(n_slots));
  const size_t off_cursor = off_active + align64(sizeof(int32_t) * size_t(n_expert));
  const size_t off_xg = off_cursor + align64(sizeof(int32_t) * size_t(n_expert));
  const size_t off_xu = off_xg + align64(xg_stride * size_t(n_tokens));
  const size_t off_act = off_xu + (same_act ? 0 : align64(xu_stride * size_t(n_tokens)));
  const size_t off_actq = off_act + align64(sizeof(float) * size_t(n_slots * n_ff));
  const size_t off_out = off_actq + align64(ad_stride * size_t(n_slots));
  const size_t total = off_out + align64(sizeof(float) * size_t(n_slots * n_embd));
  if (skip(total)) return;

  if (!kernels_.dot_for(ex.gate.type) || !kernels_.dot_for(ex.up.type) || !kernels_.dot_for(ex.down.type)) {
    fail("moe_experts: no dot product for the expert weight types");
  }

  char* ws = static_cast<char*>(workspace());
  auto* offsets = reinterpret_cast<int32_t*>(ws + off_offsets);
  auto* slots = reinterpret_cast<int32_t*>(ws + off_slots);
  auto* active = reinterpret_cast<int32_t*>(ws + off_active);
  char* xg = ws + off_xg;
  char* xu = same_act ? xg : ws + off_xu;
  auto* act = reinterpret_cast<float*>(ws + off_act);
  char* actq = ws + off_actq;
  auto* out = reinterpret_cast<float*>(ws + off_out);

  // Counting sort of the slots by expert (slot = t * k + j).
  const int32_t* id = ids.as<int32_t>();
  std::memset(offsets, 0, sizeof(int32_t) * size_t(n_expert + 1));
  for (int64_t sl = 0; sl < n_slots; ++sl) {
    if (id[sl] < 0 || id[sl] >= n_expert) fail("internal: moe_experts id ", id[sl], " outside ", n_expert, " experts");
    ++offsets[id[sl] + 1];
  }
  int64_t n_active = 0;
  for (int64_t e = 0; e < n_expert; ++e) {
    if (offsets[e + 1] > 0) active[n_active++] = int32_t(e);
    offsets[e + 1] += offsets[e];
  }
  auto* cursor = reinterpret_cast<int32_t*>(ws + off_cursor);
  std::memcpy(cursor, offsets, sizeof(int32_t) * size_t(n_expert));
  for (int64_t sl = 0; sl < n_slots; ++sl) slots[cursor[id[sl]]++] = int32_t(sl);

  constexpr int64_t kRows = 32;
  const int64_t ff_blocks = (n_ff + kRows - 1) / kRows, embd_blocks = (n_embd + kRows - 1) / kRows;
  const float* wts = weights.as<float>();

  // Five phases: the quantizations and the final sums split over the threads, or on the caller
  // alone when there are fewer rows than threads (decode); the expert tiles handed out
  // dynamically (uneven expert loads) to whichever threads run, so a thread the OS delays holds
  // up neither product.
  const bool few = n_tokens < pool_.size();
  if (few) {
    quantize_rows(x, gate_act, xg, 0, 1);
    if (!same_act) quantize_rows(x, up_act, xu, 0, 1);
  } else {
    pool_.run([&](int ith, int nth) {
      quantize_rows(x, gate_act, xg, ith, nth);
      if (!same_act) quantize_rows(x, up_act, xu, ith, nth);
    });
  }

  for_each_claimed(n_active * ff_blocks, [&](int, int64_t task) {
    const int32_t e = active[task / ff_blocks];
    const int64_t f0 = (task % ff_blocks) * kRows, f1 = std::min(n_ff, f0 + kRows);
    for (int32_t i0 = offsets[e]; i0 < offsets[e + 1]; i0 += kMaxCols) {
      const int nc = std::min<int>(kMaxCols, offsets[e + 1] - i0);
      const void *a_g[kMaxCols], *a_u[kMaxCols];
      float* h[kMaxCols];
      for (int c = 0; c < nc; ++c) {
        const int32_t sl = slots[i0 + c];
        a_g[c] = xg + size_t(sl / k) * xg_stride;
        a_u[c] = xu + size_t(sl / k) * xu_stride;
        h[c] = act + size_t(sl) * size_t(n_ff);
      }
      float g[kMaxCols], u[kMaxCols];
      for (int64_t f = f0; f < f1; ++f) {
        kernels_.dot_cols(ex.gate.type, n_embd, ex.gate.row(f, e), a_g, nc, g);
        kernels_.dot_cols(ex.up.type, n_embd, ex.up.row(f, e), a_u, nc, u);
        for (int c = 0; c < nc; ++c) h[c][f] = g[c] / (1.0f + std::exp(-g[c])) * u[c];
      }
    }
  });

  const auto quantize_act = [&](int64_t b, int64_t e) {
    for (int64_t sl = b; sl < e; ++sl) {
      kernels_.quantize_for(down_act)(act + size_t(sl) * size_t(n_ff), actq + size_t(sl) * ad_stride, n_ff);
    }
  };
  if (n_slots < pool_.size()) {
    quantize_act(0, n_slots);
  } else {
    pool_.run([&](int ith, int nth) {
      const auto [b, e] = share(n_slots, ith, nth);
      quantize_act(b, e);
    });
  }

  for_each_claimed(n_active * embd_blocks, [&](int, int64_t task) {
    const int32_t e = active[task / embd_blocks];
    const int64_t r0 = (task % embd_blocks) * kRows, r1 = std::min(n_embd, r0 + kRows);
    for (int32_t i0 = offsets[e]; i0 < offsets[e + 1]; i0 += kMaxCols) {
      const int nc = std::min<int>(kMaxCols, offsets[e + 1] - i0);
      const void* a[kMaxCols];
      float* o[kMaxCols];
      for (int c = 0; c < nc; ++c) {
        const int32_t sl = slots[i0 + c];
        a[c] = actq + size_t(sl) * ad_stride;
        o[c] = out + size_t(sl) * size_t(n_embd);
      }
      float d[kMaxCols];
      for (int64_t r = r0; r < r1; ++r) {
        kernels_.dot_cols(ex.down.type, n_ff, ex.down.row(r, e), a, nc, d);
        for (int c = 0; c < nc; ++c) o[c][r] = d[c];
      }
    }
  });

  const auto weighted_sum = [&](int64_t tb, int64_t te) {
    for (int64_t t = tb; t < te; ++t) {
      float* y = reinterpret_cast<float*>(dst.row(t));
      std::memset(y, 0, size_t(n_embd) * sizeof(float));
      for (int64_t j = 0; j < k; ++j) {
        kernels_.axpy_f32(n_embd, wts[t * k + j], out + size_t(t * k + j) * size_t(n_embd), y);
      }
    }
  };
  if (few) {
    weighted_sum(0, n_tokens);
  } else {
    pool_.run([&](int ith, int nth) {
      const auto [b, e] = share(n_tokens, ith, nth);
      weighted_sum(b, e);
    });
  }
}

}  // namespace moeserve::cpu
