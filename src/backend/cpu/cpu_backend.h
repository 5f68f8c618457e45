// The fast CPU backend: ops split across a thread pool, inner loops through the kernel table.
// Internal to src/backend/cpu (the rest of the code sees only Backend and make_cpu_backend).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <span>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/op_times.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"

namespace moeserve::cpu {

// The SiLU of every CPU op that applies it (unary, swiglu, the fused products, the experts, the
// conv, the gated norm): one expression, so fused and separate ops give the same bits.
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
// Likewise for the gates (unary, the fused delta-net step, the MoE shared-expert gate).
inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

// moe_route for one token: id [k] = the k largest of the logits l [n_expert] (ties: lower index
// first), w [k] their softmax probabilities (normalized over the k when asked).
void route_token(const float* l, int64_t n_expert, int64_t k, bool normalize, int32_t* id, float* w);
// The second step of CpuBackend::rms_norm_row: y = x * s * weight (weight null: x * s) on [begin, end).
void rms_apply(const float* x, float s, const float* weight, float* y, int64_t begin, int64_t end);

// [begin, end) of thread ith's share of n items.
inline std::pair<int64_t, int64_t> share(int64_t n, int ith, int nth) {
  const int64_t per = (n + nth - 1) / nth;
  const int64_t begin = std::min(n, per * ith);
  return {begin, std::min(n, begin + per)};
}

// Software prefetch of a tile's weight rows (consecutive rows `stride` bytes apart), about
// kPrefetchBytes ahead of the row being computed: the tile's first rows are requested at once when
// it starts (many misses in flight rather than one row's at a time), then one row per row
// computed. The hardware prefetchers stop at page boundaries and start late on each new stream,
// and a decode step reads its weights as many short tiles at scattered addresses.
class TilePrefetch {
 public:
  static constexpr size_t kPrefetchBytes = 2048;
  TilePrefetch(const void* first_row, size_t stride, size_t row_bytes, int64_t n_rows)
      : base_(static_cast<const char*>(first_row)), stride_(stride), row_bytes_(row_bytes), n_rows_(n_rows),
        ahead_(int64_t((kPrefetchBytes + stride - 1) / stride)) {
    for (int64_t r = 0; r < std::min(ahead_, n_rows_); ++r) prefetch(r);
  }
  // Before computing row i of the tile.
  void at(int64_t i) const {
    if (i + ahead_ < n_rows_) prefetch(i + ahead_);
  }

 private:
  void prefetch(int64_t r) const {
    const char* p = base_ + size_t(r) * stride_;
    for (size_t off = 0; off < row_bytes_; off += 64) __builtin_prefetch(p + off);
  }
  const char* base_;
  size_t stride_, row_bytes_;
  int64_t n_rows_, ahead_;
};

struct CpuOptions {
  int n_threads = 0;          // 0: one per core
  Isa isa = Isa::avx512;      // highest kernel level allowed (capped by the CPU)
  GridLookup grid_lookup = preferred_grid_lookup();
  // Delta-net runs at least this long use the chunked (parallel) form; shorter ones recur.
  int delta_net_chunk_min = 8;
  // The CPU's own one-job forms of add_rms_norm, delta_net_step, moe_ffn, gated_matmul and
  // norm_matmuls, and decode products quantizing their input inside their job; off,
  // they run their default chains of ops (same results). MOESERVE_CPU_FUSE=0 turns them off, to
  // measure both in one binary.
  bool fused_layer_ops = fused_layer_ops_default();
  static bool fused_layer_ops_default();
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuOptions& options);
  ~CpuBackend() override;
  std::string name() const override;
  Buffer alloc(size_t bytes) override;

  const Kernels& kernels() const { return kernels_; }

 protected:
  // MOESERVE_PROFILE=1: the wall time of every outermost op.
  void op_begin(const char* op) override;
  void op_end(const char* op) override;

  void do_upload(const Tensor& dst, const void* host) override;
  void do_download(void* host, const Tensor& src) override;
  void do_get_rows(const Tensor& dst, const Tensor& src, const Tensor& ids) override;
  void do_rms_norm(const Tensor& dst, const Tensor& src, const Tensor* weight, float eps) override;
  void do_rms_norm_gated(const Tensor& dst, const Tensor& src, const Tensor& weight, const Tensor& z,
                         float eps) override;
  void do_l2_norm(const Tensor& dst, const Tensor& src, float eps) override;
  void do_matmul(const Tensor& dst, const Tensor& w, const Tensor& x) override;
  void do_matmuls(const Tensor& x, std::span<const MatmulProduct> products) override;
  void do_matmul_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                        const Tensor& scratch) override;
  void do_gated_matmul(const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate) override;
  void do_norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                       std::span<const MatmulProduct> products) override;
  void do_unary(const Tensor& dst, const Tensor& src, UnaryOp op) override;
  void do_binary(const Tensor& dst, const Tensor& a, const Tensor& b, BinaryOp op) override;
  void do_scale(const Tensor& dst, const Tensor& src, float factor) override;
  void do_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up) override;
  void do_copy(const Tensor& dst, const Tensor& src) override;
  void do_zero(const Tensor& dst) override;
  void do_rope(const Tensor& dst, const Tensor& src, const BatchInfo& batch, const RopeParams& params) override;
  void do_kv_store(const Tensor& cache, const Tensor& src, const BatchInfo& batch) override;
  void do_attention(const Tensor& dst, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                    const BatchInfo& batch, const AttentionParams& params) override;
  void do_moe_route(const Tensor& ids, const Tensor& weights, const Tensor& logits, bool normalize) override;
  void do_moe_experts(const Tensor& dst, const Tensor& x, const ExpertWeights& experts, const Tensor& ids,
                      const Tensor& weights) override;
  void do_ssm_conv(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w,
                   const BatchInfo& batch) override;
  void do_gated_delta_net(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                          const Tensor& beta, const Tensor& state, const BatchInfo& batch) override;
  // Fused ops: one pool job where the default composition runs several (add_rms_norm in
  // cpu_backend.cpp, delta_net_step in cpu_delta_net.cpp, moe_ffn in cpu_moe.cpp).
  void do_add_rms_norm(const Tensor& dst, const Tensor& h, const Tensor& y, const Tensor& weight, float eps) override;
  void do_delta_net_step(const DeltaNetStep& s, const BatchInfo& batch) override;
  void do_moe_ffn(const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeFfnWeights& w,
                  const MoeFfnScratch& s) override;

 private:
  // Runs f(ith, item) for every item in [0, n), items claimed one at a time by the threads that
  // take part (a delayed thread does not hold the op up); ith names the thread's scratch space.
  // Which thread takes an item never changes its result.
  template <typename F>
  void for_each_claimed(int64_t n, F&& f) {
    std::atomic<int64_t> next{0};
    pool_.run_dynamic([&](int ith, int) {
      for (int64_t item = next.fetch_add(1, std::memory_order_relaxed); item < n;
           item = next.fetch_add(1, std::memory_order_relaxed)) {
        f(ith, item);
      }
    });
  }

  // Like for_each_claimed, but [0, n) is first cut into one contiguous span per thread: each
  // thread claims its own span's items in order, then helps with the other spans (claiming from
  // their fronts), so a delayed thread still does not hold the op up. Weight products use it: a
  // thread streams through one contiguous range of weight memory instead of every nth tile.
  template <typename F>
  void for_each_claimed_in_spans(int64_t n, F&& f) {
    for_each_claimed_in_spans(n, f, [](int) {});
  }
  // The same, each thread that takes part calling start(ith) first.
  template <typename F, typename S>
  void for_each_claimed_in_spans(int64_t n, F&& f, S&& start) {
    struct alignas(64) Span {
      std::atomic<int64_t> next;
      int64_t end;
    };
    const int nth = pool_.size();
    std::vector<Span> spans(static_cast<size_t>(nth));
    for (int t = 0; t < nth; ++t) {
      const auto [b, e] = share(n, t, nth);
      spans[size_t(t)].next.store(b, std::memory_order_relaxed);
      spans[size_t(t)].end = e;
    }
    pool_.run_dynamic([&](int ith, int) {
      start(ith);
      for (int s = 0; s < nth; ++s) {
        Span& span = spans[size_t((ith + s) % nth)];
        for (int64_t item = span.next.fetch_add(1, std::memory_order_relaxed); item < span.end;
             item = span.next.fetch_add(1, std::memory_order_relaxed)) {
          f(ith, item);
        }
      }
    });
  }

  // Runs f(begin, end) over [0, n) in chunks (about four per thread) that the threads claim
  // dynamically (a delayed thread does not hold the op up), or on the caller alone when the work
  // (n * cost_per_item, roughly in flops) is too small to pay for waking the workers.
  template <typename F>
  void parallel_for(int64_t n, int64_t cost_per_item, F&& f) {
    if (n <= 0) return;
    if (pool_.size() == 1 || n == 1 || n * cost_per_item < kMinParallelWork) {
      f(int64_t(0), n);
      return;
    }
    const int64_t chunk = std::max<int64_t>(1, n / (4 * int64_t(pool_.size())));
    for_each_claimed((n + chunk - 1) / chunk, [&](int, int64_t c) { f(c * chunk, std::min(n, (c + 1) * chunk)); });
  }
  static constexpr int64_t kMinParallelWork = 32768;

  // Quantizes the rows of x [k, n] F32 to `type` into the workspace at `out` (row stride
  // row_bytes(type, k)), inside a pool job (all threads take part).
  void quantize_rows(const Tensor& x, GgmlType type, char* out, int ith, int nth) const;

  // The weight products of matmul, matmuls, matmul_swiglu and gated_matmul as one pool job
  // (cpu_matmul.cpp). A prologue is element-wise work on x done in the job before x is quantized:
  // prologue(row, begin, end) rewrites elements [begin, end) of that row of x in place.
  struct WeightProduct;
  using ActPrologue = std::function<void(int64_t row, int64_t begin, int64_t end)>;
  void run_products(const Tensor& x, std::span<WeightProduct> products, const ActPrologue* prologue = nullptr);

  // Row and channel helpers shared by the basic ops and the fused ops built from them, so both
  // compute every value with the same code (cpu_backend.cpp, cpu_delta_net.cpp).
  void rms_norm_row(int64_t d, const float* x, const float* weight, float* y, float eps) const;
  // rms_norm_row in two steps: the row's scale, then y = x * s * weight on [begin, end).
  float rms_scale(int64_t d, const float* x, float eps) const;
  void rms_norm_gated_row(int64_t d, const float* x, const float* weight, const float* z, float* y, float eps) const;
  void l2_norm_row(int64_t d, const float* x, float* y, float eps) const;
  // Causal conv + SiLU of channels [cb, ce) over the tokens of one run (ssm_conv).
  void conv_run(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w, const SeqRun& run,
                int64_t cb, int64_t ce) const;

  // The routed experts (plus, for moe_ffn, the shared expert and the residual) as one job
  // (cpu_moe.cpp).
  struct MoeJob;
  void run_moe(const MoeJob& job);

  // Delta-net helpers (cpu_delta_net.cpp), one value head of one run.
  void delta_net_recurrent(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                           const Tensor& beta, float* s, int64_t h, const SeqRun& run) const;
  void delta_net_chunked(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                         const Tensor& beta, float* s, int64_t h, const SeqRun& run, float* scratch) const;

  // Names the op being timed after what it computed (matmul_label, ...) when that op is `op`
  // itself, not a fused op composing it.
  void label_timed(const char* op, std::string name) {
    if (timed_op_ == op) timed_op_ = std::move(name);
  }

  CpuOptions options_;
  Kernels kernels_;
  ThreadPool pool_;
  // MOESERVE_PROFILE=1: the totals, the op being timed and when it began.
  std::unique_ptr<OpTimes> times_;
  std::string timed_op_;
  std::chrono::steady_clock::time_point timed_since_;
};

}  // namespace moeserve::cpu
