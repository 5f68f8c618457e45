#include "runtime/engine.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <numeric>

#include "core/error.h"

namespace moeserve {
namespace {

constexpr GgmlType kKvTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0,
                                 GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::IQ4_NL};

void check_kv_type(GgmlType type, int64_t head_dim, const char* which) {
  if (!is_kv_cache_type(type)) fail("KV cache type ", type_name(type), " (", which, ") is not supported");
  const TypeTraits& t = type_traits(type);
  if (!t.quantize || !t.dequantize || !t.vec_dot || !type_traits(t.vec_dot_type).quantize) {
    fail("KV cache type ", t.name, " (", which, ") has no conversion kernels in this build");
  }
  if (head_dim % t.block_size != 0) {
    fail("KV cache type ", t.name, " (", which, ") needs a head size that is a multiple of ", t.block_size,
         "; this model's is ", head_dim);
  }
}

}  // namespace

bool is_kv_cache_type(GgmlType type) {
  return std::find(std::begin(kKvTypes), std::end(kKvTypes), type) != std::end(kKvTypes);
}

Engine::Engine(const Model& model, Backend& backend, const EngineOptions& options)
    : model_(model), be_(backend), options_(options), arena_(backend) {
  const HParams& hp = model.hparams();
  if (options.n_seq < 1) fail("number of sequences must be at least 1, got ", options.n_seq);
  if (options.n_batch < 1) fail("batch size must be at least 1, got ", options.n_batch);
  if (options.n_ctx < 0) fail("context size must not be negative, got ", options.n_ctx);
  n_ctx_ = options.n_ctx == 0 ? hp.n_ctx_train : options.n_ctx;
  if (n_ctx_ > hp.n_ctx_train) {
    fail("context size ", n_ctx_, " exceeds the model's context length ", hp.n_ctx_train);
  }
  flash_ = options.flash != FlashMode::off;
  const std::vector<LayerCacheSpec> specs = model.cache_specs();
  if (hp.n_attention_layers() > 0) {
    check_kv_type(options.type_k, hp.head_dim_k, "K");
    check_kv_type(options.type_v, hp.head_dim_v, "V");
  }

  // Caches.
  caches_.k.resize(specs.size());
  caches_.v.resize(specs.size());
  caches_.conv.resize(specs.size());
  caches_.ssm.resize(specs.size());
  const int64_t n_seq = options.n_seq;
  auto make = [&](GgmlType type, std::array<int64_t, 4> ne) {
    const size_t bytes = row_bytes(type, ne[0]) * size_t(ne[1] * ne[2] * ne[3]);
    cache_buffers_.push_back(be_.alloc(bytes));
    return Tensor::contiguous(type, ne, cache_buffers_.back().data(), be_.device());
  };
  for (size_t il = 0; il < specs.size(); ++il) {
    const LayerCacheSpec& s = specs[il];
    if (s.k_width > 0) {
      caches_.k[il] = make(options.type_k, {s.k_width, n_ctx_, n_seq, 1});
      caches_.v[il] = make(options.type_v, {s.v_width, n_ctx_, n_seq, 1});
      kv_bytes_ += caches_.k[il].n_bytes() + caches_.v[il].n_bytes();
    }
    if (s.ssm_values > 0) {
      caches_.conv[il] = make(GgmlType::F32, {s.conv_values, n_seq, 1, 1});
      caches_.ssm[il] = make(GgmlType::F32, {s.ssm_values, n_seq, 1, 1});
      recurrent_bytes_ += caches_.conv[il].n_bytes() + caches_.ssm[il].n_bytes();
      recurrent_ = true;
    }
  }
  seq_len_.assign(size_t(n_seq), 0);

  // Step inputs and host staging.
  const int64_t nb = options.n_batch;
  input_tokens_ = be_.alloc(size_t(nb) * sizeof(int32_t));
  input_rows_ = be_.alloc(size_t(nb) * sizeof(int32_t));
  logits_.assign(size_t(nb) * size_t(hp.n_vocab), 0.0f);
  step_tokens_.resize(size_t(nb));
  step_pos_.resize(size_t(nb));
  step_seq_.resize(size_t(nb));
  step_rows_.resize(size_t(nb));
  step_runs_.resize(size_t(std::min<int64_t>(nb, n_seq)));
  order_.resize(size_t(nb));

  // Dry runs of the largest step and of a one-token step plan the scratch and the backend's
  // workspace (the per-op needs of the two differ: decode splits attention over the context).
  arena_.begin_measure();
  be_.begin_measure();
  for (int64_t n : {nb, int64_t(1)}) {
    std::iota(step_pos_.begin(), step_pos_.begin() + n, 0);
    std::fill(step_seq_.begin(), step_seq_.begin() + n, 0);
    step_runs_[0] = SeqRun{0, 0, int32_t(n)};
    StepInputs in;
    in.tokens = Tensor::contiguous(GgmlType::I32, {n, 1, 1, 1}, input_tokens_.data(), be_.device());
    in.out_rows = Tensor::contiguous(GgmlType::I32, {n, 1, 1, 1}, input_rows_.data(), be_.device());
    in.batch = BatchInfo{int32_t(n), step_pos_.data(), step_seq_.data(), step_runs_.data(), 1};
    arena_.reset();
    run_step(in, 0);
  }
  be_.end_measure();
  arena_.end_measure();
}

std::string Engine::memory_summary() const {
  std::string s;
  if (kv_bytes_) {
    s += str_cat("KV ", type_name(options_.type_k), "/", type_name(options_.type_v), " ", n_ctx_, " x ",
                 options_.n_seq, " seq ", format_bytes(kv_bytes_), ", ");
  }
  if (recurrent_bytes_) s += str_cat("recurrent state ", format_bytes(recurrent_bytes_), ", ");
  s += str_cat("scratch ", format_bytes(arena_.capacity()), ", logits ", format_bytes(logits_.size() * sizeof(float)));
  return s;
}

void Engine::check_seq(int seq) const {
  if (seq < 0 || seq >= options_.n_seq) fail("sequence ", seq, " is out of range (this engine has ", options_.n_seq, ")");
}

void Engine::run_step(const StepInputs& in, uint64_t graph_key) {
  ForwardContext ctx{be_, arena_, caches_, flash_};
  Tensor logits;
  be_.run_step(in.batch, graph_key, [&] { logits = model_.forward(ctx, in); });
  be_.download(logits_.data(), logits);
}

void Engine::decode(std::span<const BatchToken> batch) {
  const int64_t n = int64_t(batch.size());
  n_outputs_ = 0;
  if (n == 0) return;
  if (n > options_.n_batch) fail("batch of ", n, " tokens exceeds the batch size ", options_.n_batch);

  // Validate everything before touching a cache.
  for (const BatchToken& t : batch) {
    check_seq(t.seq);
    if (t.token < 0 || t.token >= n_vocab()) fail("token id ", t.token, " is outside the vocabulary (", n_vocab(), ")");
  }
  // Tokens grouped by sequence, batch order kept within a sequence.
  std::iota(order_.begin(), order_.begin() + n, 0);
  std::stable_sort(order_.begin(), order_.begin() + n, [&](int32_t a, int32_t b) { return batch[size_t(a)].seq < batch[size_t(b)].seq; });
  int32_t n_runs = 0;
  for (int64_t i = 0; i < n; ++i) {
    const BatchToken& t = batch[size_t(order_[size_t(i)])];
    const bool new_run = i == 0 || batch[size_t(order_[size_t(i - 1)])].seq != t.seq;
    if (new_run) step_runs_[size_t(n_runs++)] = SeqRun{t.seq, int32_t(i), 0};
    SeqRun& run = step_runs_[size_t(n_runs - 1)];
    const int32_t expected = seq_len_[size_t(t.seq)] + run.count;
    if (t.pos != expected) {
      fail("sequence ", t.seq, ": token at position ", t.pos, " does not continue the sequence (next position is ",
           expected, ")");
    }
    if (t.pos >= n_ctx_) fail("sequence ", t.seq, ": position ", t.pos, " exceeds the context size ", n_ctx_);
    ++run.count;
    step_tokens_[size_t(i)] = t.token;
    step_pos_[size_t(i)] = t.pos;
    step_seq_[size_t(i)] = t.seq;
  }
  // Output rows, in batch order: the step index of each token that wants logits. step_rows_
  // first holds the inverse of the grouping permutation, then order_ receives the rows.
  for (int64_t i = 0; i < n; ++i) step_rows_[size_t(order_[size_t(i)])] = int32_t(i);
  int64_t n_out = 0;
  for (int64_t b = 0; b < n; ++b) {
    if (batch[size_t(b)].logits) order_[size_t(n_out++)] = step_rows_[size_t(b)];
  }
  const int64_t rows = n_out;  // none asked: the step only advances the caches

  StepInputs in;
  in.tokens = Tensor::contiguous(GgmlType::I32, {n, 1, 1, 1}, input_tokens_.data(), be_.device());
  in.out_rows = Tensor::contiguous(GgmlType::I32, {rows, 1, 1, 1}, input_rows_.data(), be_.device());
  in.batch = BatchInfo{int32_t(n), step_pos_.data(), step_seq_.data(), step_runs_.data(), n_runs};
  be_.upload(in.tokens, step_tokens_.data());
  be_.upload(in.out_rows, order_.data());
  arena_.reset();
  // A decode step (one token per sequence) has the same shape every time it recurs.
  const bool decode_shape = n_runs == n;
  run_step(in, decode_shape ? (uint64_t(n) << 32 | uint64_t(n_out)) : 0);
  for (int32_t r = 0; r < n_runs; ++r) seq_len_[size_t(step_runs_[size_t(r)].seq)] += step_runs_[size_t(r)].count;
  n_outputs_ = n_out;
}

const float* Engine::logits(int64_t i) const {
  if (i < 0 || i >= n_outputs_) fail("logits row ", i, " was not computed (", n_outputs_, " rows)");
  return logits_.data() + size_t(i) * size_t(n_vocab());
}

int32_t Engine::seq_length(int seq) const {
  check_seq(seq);
  return seq_len_[size_t(seq)];
}

void Engine::seq_clear(int seq) {
  check_seq(seq);
  seq_len_[size_t(seq)] = 0;
  for (size_t il = 0; il < caches_.conv.size(); ++il) {
    if (!caches_.conv[il].data) continue;
    be_.zero(caches_.conv[il].rows(seq, 1));
    be_.zero(caches_.ssm[il].rows(seq, 1));
  }
}

void Engine::seq_truncate(int seq, int32_t n) {
  check_seq(seq);
  if (n < 0) fail("cannot truncate sequence ", seq, " to a negative length ", n);
  if (n >= seq_len_[size_t(seq)]) return;
  if (n == 0) return seq_clear(seq);
  if (recurrent_) {
    fail("sequence ", seq, ": this model has recurrent layers, whose state cannot be rolled back to position ", n,
         "; restore a saved state instead");
  }
  seq_len_[size_t(seq)] = n;
}

void Engine::seq_copy(int src, int dst, int32_t n) {
  check_seq(src);
  check_seq(dst);
  if (n < 0 || n > seq_len_[size_t(src)]) {
    fail("cannot copy ", n, " positions of sequence ", src, ", which has ", seq_len_[size_t(src)]);
  }
  if (recurrent_ && n != seq_len_[size_t(src)]) {
    fail("sequence ", src, ": this model has recurrent layers; only the whole sequence (", seq_len_[size_t(src)],
         " positions) can be copied");
  }
  if (src == dst) return seq_truncate(src, n);
  for (size_t il = 0; il < caches_.k.size(); ++il) {
    for (const Tensor* cache : {&caches_.k[il], &caches_.v[il]}) {
      if (!cache->data || n == 0) continue;
      const Tensor from = cache->view({cache->ne[0], n, 1, 1}, cache->nb, size_t(src) * cache->nb[2]);
      const Tensor to = cache->view({cache->ne[0], n, 1, 1}, cache->nb, size_t(dst) * cache->nb[2]);
      be_.copy(to, from);
    }
    for (const Tensor* state : {&caches_.conv[il], &caches_.ssm[il]}) {
      if (state->data) be_.copy(state->rows(dst, 1), state->rows(src, 1));
    }
  }
  seq_len_[size_t(dst)] = n;
}

SequenceState Engine::seq_save(int seq, bool with_kv) const {
  check_seq(seq);
  SequenceState s;
  s.n_pos = seq_len_[size_t(seq)];
  for (size_t il = 0; il < caches_.conv.size(); ++il) {
    if (!caches_.conv[il].data) continue;
    for (auto [t, out] : {std::pair{&caches_.conv[il], &s.conv}, std::pair{&caches_.ssm[il], &s.ssm}}) {
      const size_t at = out->size();
      out->resize(at + size_t(t->ne[0]));
      be_.download(out->data() + at, t->rows(seq, 1));
    }
  }
  if (with_kv) {
    s.has_kv = true;
    s.kv.resize(kv_cells_bytes(s.n_pos));
    size_t at = 0;
    for_each_kv_cells(seq, s.n_pos, [&](const Tensor& cells) {
      be_.download(s.kv.data() + at, cells);
      at += cells.n_bytes();
    });
  }
  return s;
}

size_t Engine::kv_cells_bytes(int32_t n_pos) const {
  size_t bytes = 0;
  for (size_t il = 0; il < caches_.k.size(); ++il) {
    for (const Tensor* cache : {&caches_.k[il], &caches_.v[il]}) {
      if (cache->data) bytes += size_t(n_pos) * cache->nb[1];
    }
  }
  return bytes;
}

void Engine::for_each_kv_cells(int seq, int32_t n_pos, const std::function<void(const Tensor&)>& fn) const {
  if (n_pos == 0) return;
  for (size_t il = 0; il < caches_.k.size(); ++il) {
    for (const Tensor* cache : {&caches_.k[il], &caches_.v[il]}) {
      if (cache->data) fn(cache->view({cache->ne[0], n_pos, 1, 1}, cache->nb, size_t(seq) * cache->nb[2]));
    }
  }
}

void Engine::seq_restore(int seq, const SequenceState& state) {
  check_seq(seq);
  if (state.has_kv) {
    if (state.n_pos < 0 || state.n_pos > n_ctx_) fail("saved state of ", state.n_pos, " positions does not fit the context of ", n_ctx_);
    if (state.kv.size() != kv_cells_bytes(state.n_pos)) fail("saved state's KV cells do not match this engine's caches");
  } else if (state.n_pos < 0 || state.n_pos > seq_len_[size_t(seq)]) {
    fail("sequence ", seq, ": saved state at position ", state.n_pos, " is beyond the sequence's ",
         seq_len_[size_t(seq)], " cached positions");
  }
  size_t conv_at = 0, ssm_at = 0;
  for (size_t il = 0; il < caches_.conv.size(); ++il) {
    if (!caches_.conv[il].data) continue;
    conv_at += size_t(caches_.conv[il].ne[0]);
    ssm_at += size_t(caches_.ssm[il].ne[0]);
  }
  if (conv_at != state.conv.size() || ssm_at != state.ssm.size()) fail("saved state does not match this model's layers");
  conv_at = ssm_at = 0;
  for (size_t il = 0; il < caches_.conv.size(); ++il) {
    if (!caches_.conv[il].data) continue;
    be_.upload(caches_.conv[il].rows(seq, 1), state.conv.data() + conv_at);
    be_.upload(caches_.ssm[il].rows(seq, 1), state.ssm.data() + ssm_at);
    conv_at += size_t(caches_.conv[il].ne[0]);
    ssm_at += size_t(caches_.ssm[il].ne[0]);
  }
  if (state.has_kv) {
    size_t at = 0;
    for_each_kv_cells(seq, state.n_pos, [&](const Tensor& cells) {
      be_.upload(cells, state.kv.data() + at);
      at += cells.n_bytes();
    });
  }
  seq_len_[size_t(seq)] = state.n_pos;
}

}  // namespace moeserve
