// Attention over the KV cache. Work items are (token, KV head): the query heads sharing a KV head
// read each K/V row once. Flash: tiles of cells with an online softmax, the query quantized to K's
// dot type, K/V read in their stored format; a long context is also split into ranges of cells
// (decode has few items) whose partial results are merged at the end. Naive: dequantized K/V,
// full score rows, exact softmax.
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace moeserve::cpu {
namespace {

constexpr int64_t kTile = 64;

struct Shape {
  int64_t dk, dv, n_head, n_head_kv, group, n_tokens, n_ctx;
  size_t k_head_bytes, v_head_bytes, q_act_bytes;
};

// Per-thread scratch (bytes) and the number of cell ranges per (token, KV head).
size_t flash_thread_bytes(const Shape& s) {
  return size_t(s.group) * (s.q_act_bytes + sizeof(float) * size_t(kTile)) + sizeof(float) * size_t(s.dv);
}
size_t naive_thread_bytes(const Shape& s) {
  return sizeof(float) * size_t(s.group * s.n_ctx + s.dk + s.dv);
}
int64_t flash_splits(const Shape& s, int n_threads, int64_t max_len) {
  const int64_t items = s.n_tokens * s.n_head_kv;
  if (items >= 2 * n_threads) return 1;
  const int64_t wanted = (2 * n_threads + items - 1) / items;
  return std::max<int64_t>(1, std::min(wanted, max_len / (2 * kTile)));
}
size_t align64(size_t n) { return (n + 63) / 64 * 64; }

}  // namespace

void CpuBackend::do_attention(const Tensor& dst, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                              const BatchInfo& batch, const AttentionParams& params) {
  Shape s{};
  s.dk = q.ne[0];
  s.dv = dst.ne[0];
  s.n_head = q.ne[1];
  s.n_head_kv = k_cache.ne[0] / s.dk;
  s.group = s.n_head / s.n_head_kv;
  s.n_tokens = q.ne[2];
  s.n_ctx = k_cache.ne[1];
  s.k_head_bytes = row_bytes(k_cache.type, s.dk);
  s.v_head_bytes = row_bytes(v_cache.type, s.dv);
  const GgmlType q_type = type_traits(k_cache.type).vec_dot_type;
  s.q_act_bytes = align64(row_bytes(q_type, s.dk));
  const int nth = pool_.size();

  if (!params.flash) {
    const size_t per_thread = align64(naive_thread_bytes(s));
    if (skip(per_thread * size_t(nth))) return;
    char* ws = static_cast<char*>(workspace());
    const DequantizeRowFn deq_k = kernels_.dequantize_for(k_cache.type), deq_v = kernels_.dequantize_for(v_cache.type);
    const int64_t n_items = s.n_tokens * s.n_head_kv;
    for_each_claimed(n_items, [&](int ith, int64_t item) {
      float* scores = reinterpret_cast<float*>(ws + per_thread * size_t(ith));
      float* kbuf = scores + s.group * s.n_ctx;
      float* vbuf = kbuf + s.dk;
      const int64_t t = item / s.n_head_kv, kvh = item % s.n_head_kv;
      const int64_t n_kv = int64_t(batch.pos[t]) + 1, seq = batch.seq[t];
      for (int64_t c = 0; c < n_kv; ++c) {
        deq_k(k_cache.row(c, seq) + size_t(kvh) * s.k_head_bytes, kbuf, s.dk);
        for (int64_t g = 0; g < s.group; ++g) {
          const float* qh = reinterpret_cast<const float*>(q.row(kvh * s.group + g, t));
          scores[g * s.n_ctx + c] = kernels_.dot_f32(s.dk, qh, kbuf) * params.scale;
        }
      }
      for (int64_t g = 0; g < s.group; ++g) {
        float* sc = scores + g * s.n_ctx;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t c = 0; c < n_kv; ++c) mx = std::max(mx, sc[c]);
        float sum = 0;
        for (int64_t c = 0; c < n_kv; ++c) sum += (sc[c] = std::exp(sc[c] - mx));
        for (int64_t c = 0; c < n_kv; ++c) sc[c] /= sum;
        std::memset(dst.row(kvh * s.group + g, t), 0, size_t(s.dv) * sizeof(float));
      }
      for (int64_t c = 0; c < n_kv; ++c) {
        deq_v(v_cache.row(c, seq) + size_t(kvh) * s.v_head_bytes, vbuf, s.dv);
        for (int64_t g = 0; g < s.group; ++g) {
          kernels_.axpy_f32(s.dv, scores[g * s.n_ctx + c], vbuf,
                            reinterpret_cast<float*>(dst.row(kvh * s.group + g, t)));
        }
      }
    });
    return;
  }

  // Flash. Upper bound of the splits for the workspace: positions are not known while measuring.
  const int64_t split_bound = flash_splits(s, nth, s.n_ctx);
  const size_t per_thread = align64(flash_thread_bytes(s));
  const size_t partial_floats = size_t(s.group) * size_t(s.dv + 2);
  const size_t n_partials = size_t(s.n_tokens * s.n_head_kv * split_bound);
  if (skip(per_thread * size_t(nth) + n_partials * partial_floats * sizeof(float))) return;

  int32_t max_pos = 0;
  for (int32_t t = 0; t < batch.n_tokens; ++t) max_pos = std::max(max_pos, batch.pos[t]);
  const int64_t splits = flash_splits(s, nth, int64_t(max_pos) + 1);
  char* ws = static_cast<char*>(workspace());
  float* partials = reinterpret_cast<float*>(ws + per_thread * size_t(nth));
  const QuantizeRowFn quant_q = kernels_.quantize_for(q_type);
  const VecDotFn dot_k = kernels_.dot_for(k_cache.type);
  const DequantizeRowFn deq_v = kernels_.dequantize_for(v_cache.type);
  if (!quant_q || !dot_k || !deq_v) fail("attention: no kernels for a ", type_name(k_cache.type), " K cache");
  const int64_t n_items = s.n_tokens * s.n_head_kv * splits;

  // The ranges, each into its own partial; then the merge of each output row (a second job: every
  // partial is complete when it starts).
  for_each_claimed(n_items, [&](int ith, int64_t item) {
    char* mine = ws + per_thread * size_t(ith);
    char* q_act = mine;                                                              // [group][q_act_bytes]
    float* sc = reinterpret_cast<float*>(mine + size_t(s.group) * s.q_act_bytes);    // [group][kTile]
    float* vbuf = sc + s.group * kTile;                                              // [dv]
    const int64_t split = item % splits, tk = item / splits;
    const int64_t t = tk / s.n_head_kv, kvh = tk % s.n_head_kv;
    const int64_t n_kv = int64_t(batch.pos[t]) + 1, seq = batch.seq[t];
    const int64_t c_begin = n_kv * split / splits, c_end = n_kv * (split + 1) / splits;
    float* part = partials + size_t(item) * partial_floats;  // per head: max, sum, acc[dv]
    for (int64_t g = 0; g < s.group; ++g) {
      quant_q(reinterpret_cast<const float*>(q.row(kvh * s.group + g, t)), q_act + size_t(g) * s.q_act_bytes, s.dk);
      float* ph = part + g * (s.dv + 2);
      ph[0] = -std::numeric_limits<float>::infinity();
      ph[1] = 0;
      std::memset(ph + 2, 0, size_t(s.dv) * sizeof(float));
    }
    for (int64_t c0 = c_begin; c0 < c_end; c0 += kTile) {
      const int64_t len = std::min(kTile, c_end - c0);
      for (int64_t j = 0; j < len; ++j) {
        const char* krow = k_cache.row(c0 + j, seq) + size_t(kvh) * s.k_head_bytes;
        for (int64_t g = 0; g < s.group; ++g) {
          sc[g * kTile + j] = dot_k(s.dk, krow, q_act + size_t(g) * s.q_act_bytes) * params.scale;
        }
      }
      for (int64_t g = 0; g < s.group; ++g) {
        float* ph = part + g * (s.dv + 2);
        float* sg = sc + g * kTile;
        float tile_max = sg[0];
        for (int64_t j = 1; j < len; ++j) tile_max = std::max(tile_max, sg[j]);
        const float m_new = std::max(ph[0], tile_max);
        const float corr = std::exp(ph[0] - m_new);
        if (corr != 1.0f) kernels_.scale_f32(s.dv, corr, ph + 2);
        float sum = ph[1] * corr;
        for (int64_t j = 0; j < len; ++j) sum += (sg[j] = std::exp(sg[j] - m_new));
        ph[0] = m_new;
        ph[1] = sum;
      }
      for (int64_t j = 0; j < len; ++j) {
        deq_v(v_cache.row(c0 + j, seq) + size_t(kvh) * s.v_head_bytes, vbuf, s.dv);
        for (int64_t g = 0; g < s.group; ++g) {
          kernels_.axpy_f32(s.dv, sc[g * kTile + j], vbuf, part + g * (s.dv + 2) + 2);
        }
      }
    }
  });
  // Merge the ranges of each (token, KV head, query head).
  for_each_claimed(s.n_tokens * s.n_head, [&](int, int64_t o) {
    const int64_t t = o / s.n_head, h = o % s.n_head, kvh = h / s.group, g = h % s.group;
    const float* first = partials + size_t((t * s.n_head_kv + kvh) * splits) * partial_floats;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t sp = 0; sp < splits; ++sp) mx = std::max(mx, first[size_t(sp) * partial_floats + size_t(g * (s.dv + 2))]);
    float* out = reinterpret_cast<float*>(dst.row(h, t));
    std::memset(out, 0, size_t(s.dv) * sizeof(float));
    float sum = 0;
    for (int64_t sp = 0; sp < splits; ++sp) {
      const float* ph = first + size_t(sp) * partial_floats + size_t(g * (s.dv + 2));
      if (ph[1] == 0) continue;  // empty range
      const float w = std::exp(ph[0] - mx);
      sum += ph[1] * w;
      kernels_.axpy_f32(s.dv, w, ph + 2, out);
    }
    kernels_.scale_f32(s.dv, 1.0f / sum, out);
  });
}

}  // namespace moeserve::cpu
