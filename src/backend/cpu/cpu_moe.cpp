// Routed experts, fused: tokens grouped by expert (counting sort of the (token, slot) pairs), the
// activations quantized once, then gate/up + SiLU and down as tiles of (expert, weight rows) over
// the threads in one job (each expert's weights stream through the cache once per step), and a
// final weighted sum per token. The tokens routed to one expert go through its rows kMaxCols at a time
// (Kernels::dot_cols: each weight row decoded once for all of them, results as one at a time);
// a token alone on an expert (decode) takes short rows kMaxRows at a time (Kernels::dot_rows).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace moeserve::cpu {
namespace {

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

// Rows per kernel call for one token: several short rows (an expert's down rows, 2 super-blocks)
// share the call and interleave their work, and together read one short contiguous span. Longer
// rows stay one per call: interleaving several of them block by block reads as many streams at
// once, which the hardware prefetchers follow badly (IQ2_XS rows of 2048 weights, 592 bytes,
// from RAM: 5.8 GB/s one at a time, 4.0 two at a time, 2.9 four at a time on one Zen 4 thread;
// rows of 296 bytes or less gain 15-30% in groups of four).
int rows_per_call(size_t row_bytes) { return row_bytes <= 512 ? kMaxRows : 1; }

// Waits for another thread's release store of a non-zero value. The setter is running (it
// claimed its work before the waiter claimed its own), so this spins, yielding after a while in
// case that thread has lost its core.
void wait_until_set(int32_t& flag) {
  for (int spin = 1; !std::atomic_ref<int32_t>(flag).load(std::memory_order_acquire); ++spin) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if (spin % 1024 == 0) std::this_thread::yield();
  }
}

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
  const size_t off_pending = off_cursor + align64(sizeof(int32_t) * size_t(n_expert));
  const size_t off_ready = off_pending + align64(sizeof(int32_t) * size_t(n_expert));
  const size_t off_xg = off_ready + align64(sizeof(int32_t) * size_t(n_expert));
  const size_t off_xu = off_xg + align64(xg_stride * size_t(n_tokens));
  const size_t off_act = off_xu + (same_act ? 0 : align64(xu_stride * size_t(n_tokens)));
  const size_t off_actq = off_act + align64(sizeof(float) * size_t(n_slots * n_ff));
  const size_t off_out = off_actq + align64(ad_stride * size_t(n_slots));
  const size_t total = off_out + align64(sizeof(float) * size_t(n_slots * n_embd));
  if (skip(total)) return;
  if (times_) label_timed("moe_experts", moe_experts_label(ex, x));

  if (!kernels_.dot_for(ex.gate.type) || !kernels_.dot_for(ex.up.type) || !kernels_.dot_for(ex.down.type)) {
    fail("moe_experts: no dot product for the expert weight types");
  }

  char* ws = static_cast<char*>(workspace());
  auto* offsets = reinterpret_cast<int32_t*>(ws + off_offsets);
  auto* slots = reinterpret_cast<int32_t*>(ws + off_slots);
  auto* active = reinterpret_cast<int32_t*>(ws + off_active);
  // Per active expert: gate/up tiles not yet done, and whether its activations are quantized.
  auto* pending = reinterpret_cast<int32_t*>(ws + off_pending);
  auto* ready = reinterpret_cast<int32_t*>(ws + off_ready);
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

  // One job for both products: the gate/up tiles of every expert come first in claiming order,
  // then the down tiles. The thread that finishes an expert's last gate/up tile quantizes that
  // expert's activations and marks it ready; a thread whose down tile finds its expert not ready
  // yet waits (every gate/up tile has been claimed by then, by a thread that is running it). So
  // the down product of the first experts overlaps the gate/up tiles of the last ones, and there
  // is no pool-wide barrier and no single-threaded quantization between the two products.
  constexpr int64_t kFfRows = 32, kEmbdRows = 128;
  const int64_t ff_tiles = (n_ff + kFfRows - 1) / kFfRows, embd_tiles = (n_embd + kEmbdRows - 1) / kEmbdRows;
  const int64_t n_up_tasks = n_active * ff_tiles;
  const float* wts = weights.as<float>();
  const QuantizeRowFn quantize_act = kernels_.quantize_for(down_act);

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
  // Plain stores: the pool's job start publishes them to the workers.
  for (int64_t a = 0; a < n_active; ++a) {
    pending[a] = int32_t(ff_tiles);
    ready[a] = 0;
  }

  const auto gate_up_tile = [&](int64_t a, int64_t f0, int64_t f1) {
    const int32_t e = active[a];
    const TilePrefetch pf_gate(ex.gate.row(f0, e), ex.gate.nb[1], ex.gate.row_size(), f1 - f0);
    const TilePrefetch pf_up(ex.up.row(f0, e), ex.up.nb[1], ex.up.row_size(), f1 - f0);
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
      float g[std::max(kMaxCols, kMaxRows)], u[std::max(kMaxCols, kMaxRows)];
      if (nc == 1) {
        // One token (every expert at decode, or the last of an expert's tokens).
        const int step = std::min(rows_per_call(ex.gate.row_size()), rows_per_call(ex.up.row_size()));
        for (int64_t f = f0; f < f1; f += step) {
          const int nr = int(std::min<int64_t>(step, f1 - f));
          for (int r = 0; r < nr && i0 == offsets[e]; ++r) {
            pf_gate.at(f - f0 + r);
            pf_up.at(f - f0 + r);
          }
          kernels_.dot_rows(ex.gate.type, n_embd, ex.gate.row(f, e), ex.gate.nb[1], a_g[0], nr, g);
          kernels_.dot_rows(ex.up.type, n_embd, ex.up.row(f, e), ex.up.nb[1], a_u[0], nr, u);
          for (int r = 0; r < nr; ++r) h[0][f + r] = silu(g[r]) * u[r];
        }
        continue;
      }
      for (int64_t f = f0; f < f1; ++f) {
        if (i0 == offsets[e]) {
          pf_gate.at(f - f0);
          pf_up.at(f - f0);
        }
        kernels_.dot_cols(ex.gate.type, n_embd, ex.gate.row(f, e), a_g, nc, g);
        kernels_.dot_cols(ex.up.type, n_embd, ex.up.row(f, e), a_u, nc, u);
        for (int c = 0; c < nc; ++c) h[c][f] = silu(g[c]) * u[c];
      }
    }
    if (std::atomic_ref<int32_t>(pending[a]).fetch_sub(1, std::memory_order_acq_rel) == 1) {
      for (int32_t i = offsets[e]; i < offsets[e + 1]; ++i) {
        const int32_t sl = slots[i];
        quantize_act(act + size_t(sl) * size_t(n_ff), actq + size_t(sl) * ad_stride, n_ff);
      }
      std::atomic_ref<int32_t>(ready[a]).store(1, std::memory_order_release);
    }
  };

  const auto down_tile = [&](int64_t a, int64_t r0, int64_t r1) {
    const int32_t e = active[a];
    const TilePrefetch pf(ex.down.row(r0, e), ex.down.nb[1], ex.down.row_size(), r1 - r0);
    wait_until_set(ready[a]);
    for (int32_t i0 = offsets[e]; i0 < offsets[e + 1]; i0 += kMaxCols) {
      const int nc = std::min<int>(kMaxCols, offsets[e + 1] - i0);
      const void* in[kMaxCols];
      float* o[kMaxCols];
      for (int c = 0; c < nc; ++c) {
        const int32_t sl = slots[i0 + c];
        in[c] = actq + size_t(sl) * ad_stride;
        o[c] = out + size_t(sl) * size_t(n_embd);
      }
      float d[std::max(kMaxCols, kMaxRows)];
      if (nc == 1) {
        const int step = rows_per_call(ex.down.row_size());
        for (int64_t r = r0; r < r1; r += step) {
          const int nr = int(std::min<int64_t>(step, r1 - r));
          for (int i = 0; i < nr && i0 == offsets[e]; ++i) pf.at(r - r0 + i);
          kernels_.dot_rows(ex.down.type, n_ff, ex.down.row(r, e), ex.down.nb[1], in[0], nr, d);
          for (int i = 0; i < nr; ++i) o[0][r + i] = d[i];
        }
        continue;
      }
      for (int64_t r = r0; r < r1; ++r) {
        if (i0 == offsets[e]) pf.at(r - r0);
        kernels_.dot_cols(ex.down.type, n_ff, ex.down.row(r, e), in, nc, d);
        for (int c = 0; c < nc; ++c) o[c][r] = d[c];
      }
    }
  };

  for_each_claimed(n_up_tasks + n_active * embd_tiles, [&](int, int64_t task) {
    if (task < n_up_tasks) {
      const int64_t f0 = (task % ff_tiles) * kFfRows;
      gate_up_tile(task / ff_tiles, f0, std::min(n_ff, f0 + kFfRows));
    } else {
      const int64_t t = task - n_up_tasks, r0 = (t % embd_tiles) * kEmbdRows;
      down_tile(t / embd_tiles, r0, std::min(n_embd, r0 + kEmbdRows));
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
