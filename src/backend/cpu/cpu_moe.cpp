// Routed experts, fused: tokens grouped by expert (counting sort of the (token, slot) pairs), the
// activations quantized once, then gate/up + SiLU and down as tiles of (expert, weight rows) over
// the threads in one job (each expert's weights stream through the cache once per step), whose
// last down tile of each row tile writes those rows' weighted sums. moe_ffn at decode runs its
// router, routing and shared expert in the same job. The tokens routed to one expert go through
// its rows kMaxCols at a time (Kernels::dot_cols: each weight row decoded once for all of them,
// results as one at a time); a token alone on an expert (decode) takes short rows kMaxRows at a
// time (Kernels::dot_rows).
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

// What run_moe computes: the routed experts' weighted sum of x [n_embd, n] into dst, or, for
// moe_ffn, dst += that sum plus the shared expert's output (times sigmoid of its gate logit).
struct CpuBackend::MoeJob {
  Tensor dst;
  bool accumulate = false;  // dst += the result instead of dst = it
  Tensor x;
  ExpertWeights experts;
  // The routing: given (router data null), or computed in the job (router [n_embd, n_expert]
  // into logits, then ids and weights as moe_route does).
  Tensor ids, weights;
  Tensor router, logits;
  bool normalize = true;
  // The shared expert (data null: none; gate and up of one type), its gate row [n_embd, 1] and
  // the gate's logits [1, n] (data null: ungated).
  Tensor shared_gate, shared_up, shared_down, shared_inp, shared_logit;
};

void CpuBackend::do_moe_experts(const Tensor& dst, const Tensor& x, const ExpertWeights& ex, const Tensor& ids,
                                const Tensor& weights) {
  if (times_) label_timed("moe_experts", moe_experts_label(ex, x));
  MoeJob job;
  job.dst = dst;
  job.x = x;
  job.experts = ex;
  job.ids = ids;
  job.weights = weights;
  run_moe(job);
}

// Decode batches (at most kMaxCols tokens): the residual add and norm (one pass), then a single
// job (run_moe) instead of the chain's four and its serial passes. Its items: the router's rows
// (and the shared gate's), whose last one to finish routes the tokens; the shared expert's
// gate/up rows, which need no routing; the routed experts' gate/up tiles; then the shared and
// routed down rows, the last down tile of each 128-row tile adding routed + shared *
// sigmoid(gate) to h. Every value is computed as the chain computes it (the products through
// dot_cols as matmul does, the routing by moe_route's code, the sums through the same axpy calls
// on tiles that start at multiples of 128 elements, the adds in moe_shared_add's order), so h
// (and logits, ids, weights, gate) end bit for bit as the chain's. Scratch routed, shared,
// shared_h and shared_up stay unwritten.
void CpuBackend::do_moe_ffn(const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeFfnWeights& w,
                            const MoeFfnScratch& s) {
  const bool shared = w.shared_gate.data != nullptr, gated = shared && w.shared_inp.data != nullptr;
  const bool shared_ok = !shared || (w.shared_up.type == w.shared_gate.type && w.shared_up.ne == w.shared_gate.ne &&
                                     w.shared_down.ne[0] == w.shared_gate.ne[1] && w.shared_down.ne[1] == h.ne[0] &&
                                     w.shared_gate.ne[2] == 1 && w.shared_down.ne[2] == 1 &&
                                     (!gated || (w.shared_inp.ne[0] == h.ne[0] && w.shared_inp.n_rows() == 1)));
  // Larger batches, and shapes the chain's ops reject with their own messages, take the chain.
  if (!options_.fused_layer_ops || h.ne[1] > kMaxCols || !shared_ok) return Backend::do_moe_ffn(h, y, norm, eps, w, s);
  add_rms_norm(s.m, h, y, norm, eps);
  MoeJob job;
  job.dst = h;
  job.accumulate = true;
  job.x = s.m;
  job.experts = w.experts;
  job.ids = s.ids;
  job.weights = s.weights;
  job.router = w.router;
  job.logits = s.logits;
  job.normalize = w.normalize;
  if (shared) {
    job.shared_gate = w.shared_gate;
    job.shared_up = w.shared_up;
    job.shared_down = w.shared_down;
    if (gated) {
      job.shared_inp = w.shared_inp;
      job.shared_logit = s.gate;
    }
  }
  run_moe(job);
}

void CpuBackend::run_moe(const MoeJob& job) {
  const Tensor &x = job.x, &dst = job.dst;
  const ExpertWeights& ex = job.experts;
  const bool shared = job.shared_gate.data != nullptr, gated = job.shared_inp.data != nullptr;
  const bool route = job.router.data != nullptr;
  const int64_t n_embd = x.ne[0], n_ff = ex.gate.ne[1], n_expert = ex.gate.ne[2];
  const int64_t n_tokens = x.ne[1], k = job.ids.ne[0], n_slots = n_tokens * k;
  const int64_t sh_ff = shared ? job.shared_gate.ne[1] : 0;
  const GgmlType down_act = type_traits(ex.down.type).vec_dot_type;
  const GgmlType sh_down_act = shared ? type_traits(job.shared_down.type).vec_dot_type : down_act;
  const size_t ad_stride = row_bytes(down_act, n_ff), sd_stride = row_bytes(sh_down_act, sh_ff);

  // x once per activation type of the products that read it (gate, up, shared gate/up, router,
  // shared gate row).
  constexpr int kMaxActs = 5;
  GgmlType act_types[kMaxActs];
  size_t act_offsets[kMaxActs];
  int n_acts = 0;
  size_t act_bytes = 0;
  const auto act_slot = [&](const Tensor& w) {
    const GgmlType t = type_traits(w.type).vec_dot_type;
    int a = 0;
    while (a < n_acts && act_types[a] != t) ++a;
    if (a == n_acts) {
      act_types[n_acts] = t;
      act_offsets[n_acts++] = act_bytes;
      act_bytes += align64(row_bytes(t, n_embd) * size_t(n_tokens));
    }
    return a;
  };
  const int gate_slot = act_slot(ex.gate), up_slot = act_slot(ex.up);
  const int sh_slot = shared ? act_slot(job.shared_gate) : 0;
  const int router_slot = route ? act_slot(job.router) : 0;
  const int inp_slot = gated ? act_slot(job.shared_inp) : 0;

  // Workspace: sorted slots, quantized inputs, expert activations (F32 and quantized), outputs;
  // then the shared expert's activations and output, and the per-row-tile countdowns.
  constexpr int64_t kFfRows = 32, kEmbdRows = 128, kRouterRows = 16;
  const int64_t ff_tiles = (n_ff + kFfRows - 1) / kFfRows, embd_tiles = (n_embd + kEmbdRows - 1) / kEmbdRows;
  const int64_t sh_tiles = (sh_ff + kFfRows - 1) / kFfRows;
  const size_t off_offsets = 0;
  const size_t off_slots = off_offsets + align64(sizeof(int32_t) * size_t(n_expert + 1));
  const size_t off_active = off_slots + align64(sizeof(int32_t) * size_t(n_slots));
  const size_t off_cursor = off_active + align64(sizeof(int32_t) * size_t(n_expert));
  const size_t off_pending = off_cursor + align64(sizeof(int32_t) * size_t(n_expert));
  const size_t off_ready = off_pending + align64(sizeof(int32_t) * size_t(n_expert + 1));
  const size_t off_x = off_ready + align64(sizeof(int32_t) * size_t(n_expert + 1));
  const size_t off_act = off_x + act_bytes;
  const size_t off_actq = off_act + align64(sizeof(float) * size_t(n_slots * n_ff));
  const size_t off_out = off_actq + align64(ad_stride * size_t(n_slots));
  const size_t off_sh = off_out + align64(sizeof(float) * size_t(n_slots * n_embd));
  const size_t off_shq = off_sh + align64(sizeof(float) * size_t(n_tokens * sh_ff));
  const size_t off_sh_out = off_shq + align64(sd_stride * size_t(shared ? n_tokens : 0));
  const size_t off_left = off_sh_out + align64(sizeof(float) * size_t(shared ? n_tokens * n_embd : 0));
  const size_t total = off_left + align64(sizeof(int32_t) * size_t(embd_tiles));
  if (skip(total)) return;

  if (!kernels_.dot_for(ex.gate.type) || !kernels_.dot_for(ex.up.type) || !kernels_.dot_for(ex.down.type)) {
    fail("moe_experts: no dot product for the expert weight types");
  }
  if ((shared && (!kernels_.dot_for(job.shared_gate.type) || !kernels_.dot_for(job.shared_down.type))) ||
      (route && !kernels_.dot_for(job.router.type)) || (gated && !kernels_.dot_for(job.shared_inp.type))) {
    fail("moe_ffn: no dot product for the router's or the shared expert's weight types");
  }
  for (int a = 0; a < n_acts; ++a) {
    if (!kernels_.quantize_for(act_types[a])) fail("moe_ffn: no conversion of activations to ", type_name(act_types[a]));
  }

  char* ws = static_cast<char*>(workspace());
  auto* offsets = reinterpret_cast<int32_t*>(ws + off_offsets);
  auto* slots = reinterpret_cast<int32_t*>(ws + off_slots);
  auto* active = reinterpret_cast<int32_t*>(ws + off_active);
  // Per active expert (the shared expert last): gate/up tiles not yet done, and whether its
  // activations are quantized.
  auto* pending = reinterpret_cast<int32_t*>(ws + off_pending);
  auto* ready = reinterpret_cast<int32_t*>(ws + off_ready);
  const auto act_row = [&](int slot, int64_t t) {
    return ws + off_x + act_offsets[slot] + size_t(t) * row_bytes(act_types[slot], n_embd);
  };
  auto* act = reinterpret_cast<float*>(ws + off_act);
  char* actq = ws + off_actq;
  auto* out = reinterpret_cast<float*>(ws + off_out);
  auto* sh = reinterpret_cast<float*>(ws + off_sh);
  char* shq = ws + off_shq;
  auto* sh_out = reinterpret_cast<float*>(ws + off_sh_out);
  // Per row tile of the output: down tiles not yet done (routed experts and the shared one).
  auto* left = reinterpret_cast<int32_t*>(ws + off_left);
  auto* cursor = reinterpret_cast<int32_t*>(ws + off_cursor);

  // Counting sort of the slots by expert (slot = t * k + j); returns the number of experts used.
  const auto sort_slots = [&] {
    const int32_t* id = job.ids.as<int32_t>();
    std::memset(offsets, 0, sizeof(int32_t) * size_t(n_expert + 1));
    for (int64_t sl = 0; sl < n_slots; ++sl) {
      if (id[sl] < 0 || id[sl] >= n_expert) fail("internal: moe_experts id ", id[sl], " outside ", n_expert, " experts");
      ++offsets[id[sl] + 1];
    }
    int64_t used = 0;
    for (int64_t e = 0; e < n_expert; ++e) {
      if (offsets[e + 1] > 0) active[used++] = int32_t(e);
      offsets[e + 1] += offsets[e];
    }
    std::memcpy(cursor, offsets, sizeof(int32_t) * size_t(n_expert));
    for (int64_t sl = 0; sl < n_slots; ++sl) slots[cursor[id[sl]]++] = int32_t(sl);
    for (int64_t a = 0; a < used; ++a) {
      pending[a] = int32_t(ff_tiles);
      ready[a] = 0;
    }
    return used;
  };

  // One job for the router and both products. In claiming order: the router's row tiles (and
  // the shared gate's row), the shared expert's gate/up tiles, the routed experts' gate/up tiles,
  // then the shared and routed down tiles. The thread that finishes the last router tile routes
  // the tokens and sorts them by expert; routed tiles wait for that (their count is planned for
  // the most experts the tokens can use; tiles of unused expert places do nothing). The thread
  // that finishes an expert's last gate/up tile quantizes that expert's activations and marks it
  // ready; a down tile waits for its expert. A thread only ever waits for work that was claimed
  // before its own, by a thread that is running it. So the down product of the first experts
  // overlaps the gate/up tiles of the last ones, and there is no pool-wide barrier and no
  // single-threaded quantization between the products. The thread that finishes the last down
  // tile of a row tile writes that tile's rows of the result.
  const int64_t router_tiles = route ? (job.router.ne[1] + kRouterRows - 1) / kRouterRows + (gated ? 1 : 0) : 0;
  const int64_t max_active = route ? std::min(n_slots, n_expert) : 0;
  int64_t n_active = route ? max_active : sort_slots();
  int32_t routed = route ? 0 : 1;  // the tokens are routed and sorted
  int32_t router_left = int32_t(router_tiles);
  const int64_t up_begin = router_tiles + sh_tiles, down_begin = up_begin + n_active * ff_tiles;
  const int64_t routed_down_begin = down_begin + (shared ? embd_tiles : 0);
  const int64_t n_tasks = routed_down_begin + n_active * embd_tiles;
  const QuantizeRowFn quantize_act = kernels_.quantize_for(down_act);
  const QuantizeRowFn quantize_sh = kernels_.quantize_for(sh_down_act);

  const bool few = n_tokens < pool_.size();
  const auto quantize_inputs = [&](int ith, int nth) {
    for (int a = 0; a < n_acts; ++a) quantize_rows(x, act_types[a], act_row(a, 0), ith, nth);
  };
  if (few) {
    quantize_inputs(0, 1);
  } else {
    pool_.run(quantize_inputs);
  }
  // Plain stores: the pool's job start publishes them to the workers.
  pending[n_expert] = int32_t(sh_tiles);
  ready[n_expert] = 0;
  for (int64_t t = 0; t < embd_tiles; ++t) left[t] = int32_t(n_active + (shared ? 1 : 0));

  // Router rows [r0, r1) (or, past the router's rows, the shared gate's row) for every token,
  // through dot_cols like matmuls; the last tile routes.
  const auto router_tile = [&](int64_t tile) {
    const bool inp = tile * kRouterRows >= job.router.ne[1];
    const Tensor& w = inp ? job.shared_inp : job.router;
    const Tensor& dst_logits = inp ? job.shared_logit : job.logits;
    const int slot = inp ? inp_slot : router_slot;
    const int64_t r0 = inp ? 0 : tile * kRouterRows, r1 = inp ? 1 : std::min(w.ne[1], r0 + kRouterRows);
    const TilePrefetch pf(w.row(r0), w.nb[1], w.row_size(), r1 - r0);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kMaxCols) {
      const int nc = int(std::min<int64_t>(kMaxCols, n_tokens - t0));
      const void* a[kMaxCols];
      for (int c = 0; c < nc; ++c) a[c] = act_row(slot, t0 + c);
      float d[kMaxCols];
      for (int64_t r = r0; r < r1; ++r) {
        if (t0 == 0) pf.at(r - r0);
        kernels_.dot_cols(w.type, n_embd, w.row(r), a, nc, d);
        for (int c = 0; c < nc; ++c) reinterpret_cast<float*>(dst_logits.row(t0 + c))[r] = d[c];
      }
    }
    if (std::atomic_ref<int32_t>(router_left).fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    for (int64_t t = 0; t < n_tokens; ++t) {
      route_token(reinterpret_cast<const float*>(job.logits.row(t)), job.logits.ne[0], k, job.normalize,
                  reinterpret_cast<int32_t*>(job.ids.row(t)), reinterpret_cast<float*>(job.weights.row(t)));
    }
    const int64_t used = sort_slots();
    // The down tiles planned for unused places will not count down (none has run yet: they wait
    // for `routed`).
    for (int64_t t = 0; t < embd_tiles; ++t) {
      std::atomic_ref<int32_t>(left[t]).fetch_sub(int32_t(max_active - used), std::memory_order_relaxed);
    }
    std::atomic_ref<int64_t>(n_active).store(used, std::memory_order_relaxed);
    std::atomic_ref<int32_t>(routed).store(1, std::memory_order_release);
  };

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
        a_g[c] = act_row(gate_slot, sl / k);
        a_u[c] = act_row(up_slot, sl / k);
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

  // The shared expert's rows [f0, f1) for every token, through dot_cols like matmul_swiglu.
  const auto shared_gate_up_tile = [&](int64_t f0, int64_t f1) {
    const Tensor &wg = job.shared_gate, &wu = job.shared_up;
    const TilePrefetch pf_gate(wg.row(f0), wg.nb[1], wg.row_size(), f1 - f0);
    const TilePrefetch pf_up(wu.row(f0), wu.nb[1], wu.row_size(), f1 - f0);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kMaxCols) {
      const int nc = int(std::min<int64_t>(kMaxCols, n_tokens - t0));
      const void* a_s[kMaxCols];
      for (int c = 0; c < nc; ++c) a_s[c] = act_row(sh_slot, t0 + c);
      float g[kMaxCols], u[kMaxCols];
      for (int64_t f = f0; f < f1; ++f) {
        if (t0 == 0) {
          pf_gate.at(f - f0);
          pf_up.at(f - f0);
        }
        kernels_.dot_cols(wg.type, n_embd, wg.row(f), a_s, nc, g);
        kernels_.dot_cols(wu.type, n_embd, wu.row(f), a_s, nc, u);
        for (int c = 0; c < nc; ++c) sh[size_t(t0 + c) * size_t(sh_ff) + size_t(f)] = silu(g[c]) * u[c];
      }
    }
    if (std::atomic_ref<int32_t>(pending[n_expert]).fetch_sub(1, std::memory_order_acq_rel) == 1) {
      for (int64_t t = 0; t < n_tokens; ++t) quantize_sh(sh + size_t(t) * size_t(sh_ff), shq + size_t(t) * sd_stride, sh_ff);
      std::atomic_ref<int32_t>(ready[n_expert]).store(1, std::memory_order_release);
    }
  };

  // Rows [r0, r1) of every token's result: the weighted sum as moe_experts' axpy calls make it
  // (tiles start at multiples of 128, so each element takes the same path through the kernel as
  // in a whole-row call), then moe_shared_add's arithmetic.
  const auto finish_rows = [&](int64_t r0, int64_t r1) {
    const int64_t nr = r1 - r0;
    const float* wts = job.weights.as<float>();
    float sum[kEmbdRows];
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::memset(sum, 0, size_t(nr) * sizeof(float));
      for (int64_t j = 0; j < k; ++j) {
        kernels_.axpy_f32(nr, wts[t * k + j], out + size_t(t * k + j) * size_t(n_embd) + size_t(r0), sum);
      }
      float* y = reinterpret_cast<float*>(dst.row(t)) + r0;
      if (!job.accumulate) {
        std::memcpy(y, sum, size_t(nr) * sizeof(float));
      } else if (!shared) {
        for (int64_t i = 0; i < nr; ++i) y[i] = y[i] + sum[i];
      } else {
        const float* s = sh_out + size_t(t) * size_t(n_embd) + size_t(r0);
        if (gated) {
          const float gate = sigmoid(reinterpret_cast<const float*>(job.shared_logit.row(t))[0]);
          for (int64_t i = 0; i < nr; ++i) y[i] = y[i] + (sum[i] + s[i] * gate);
        } else {
          for (int64_t i = 0; i < nr; ++i) y[i] = y[i] + (sum[i] + s[i]);
        }
      }
    }
  };
  const auto down_done = [&](int64_t tile, int64_t r0, int64_t r1) {
    if (std::atomic_ref<int32_t>(left[tile]).fetch_sub(1, std::memory_order_acq_rel) == 1) finish_rows(r0, r1);
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

  const auto shared_down_tile = [&](int64_t r0, int64_t r1) {
    const Tensor& wd = job.shared_down;
    const TilePrefetch pf(wd.row(r0), wd.nb[1], wd.row_size(), r1 - r0);
    wait_until_set(ready[n_expert]);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kMaxCols) {
      const int nc = int(std::min<int64_t>(kMaxCols, n_tokens - t0));
      const void* in[kMaxCols];
      for (int c = 0; c < nc; ++c) in[c] = shq + size_t(t0 + c) * sd_stride;
      float d[kMaxCols];
      for (int64_t r = r0; r < r1; ++r) {
        if (t0 == 0) pf.at(r - r0);
        kernels_.dot_cols(wd.type, sh_ff, wd.row(r), in, nc, d);
        for (int c = 0; c < nc; ++c) sh_out[size_t(t0 + c) * size_t(n_embd) + size_t(r)] = d[c];
      }
    }
  };

  // Whether routed place a is used, once the tokens are routed.
  const auto used = [&](int64_t a) {
    wait_until_set(routed);
    return a < std::atomic_ref<int64_t>(n_active).load(std::memory_order_relaxed);
  };
  for_each_claimed(n_tasks, [&](int, int64_t task) {
    if (task < router_tiles) {
      router_tile(task);
    } else if (task < up_begin) {
      const int64_t f0 = (task - router_tiles) * kFfRows;
      shared_gate_up_tile(f0, std::min(sh_ff, f0 + kFfRows));
    } else if (task < down_begin) {
      const int64_t a = (task - up_begin) / ff_tiles, f0 = ((task - up_begin) % ff_tiles) * kFfRows;
      if (used(a)) gate_up_tile(a, f0, std::min(n_ff, f0 + kFfRows));
    } else {
      const bool is_shared = task < routed_down_begin;
      const int64_t t = is_shared ? task - down_begin : task - routed_down_begin;
      const int64_t tile = t % embd_tiles, r0 = tile * kEmbdRows, r1 = std::min(n_embd, r0 + kEmbdRows);
      if (is_shared) {
        shared_down_tile(r0, r1);
      } else if (used(t / embd_tiles)) {
        down_tile(t / embd_tiles, r0, r1);
      } else {
        return;
      }
      down_done(tile, r0, r1);
    }
  });
}

}  // namespace moeserve::cpu
