#include "backend/split_backend.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

#include "core/error.h"

namespace moeserve {
namespace {

constexpr size_t kAlign = 256;
// Inputs of a host expert op cross in one transfer when they lie in one allocation of the primary
// (the engine's scratch arena allocates them one after the other) and the bytes between them are
// at most this much more than twice their own size.
constexpr size_t kOneTransferSlack = size_t(64) << 10;

size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Bytes of a contiguous copy of t.
size_t packed_bytes(const Tensor& t) { return t.row_size() * size_t(t.n_rows()); }

double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double gib(size_t bytes) { return double(bytes) / double(size_t(1) << 30); }

// MOESERVE_SPLIT_GPU_SLOTS=N: the primary runs the first N routed slots of every token of a decode
// step's RAM-resident experts (0: all on the host); unset: -1, the default share.
int64_t primary_slots_setting() {
  const char* v = std::getenv("MOESERVE_SPLIT_GPU_SLOTS");
  if (!v) return -1;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  if (*v == '\0' || *end != '\0' || n < 0) {
    fail("MOESERVE_SPLIT_GPU_SLOTS must be a number of routed slots per token (0 = all on the CPU), not '", v, "'");
  }
  return int64_t(n);
}

// Slots [first, first + count) of every token of an ids or weights tensor [k, n].
Tensor slot_view(const Tensor& t, int64_t first, int64_t count) {
  return t.view({count, t.ne[1], t.ne[2], t.ne[3]}, t.nb, size_t(first) * t.nb[0]);
}

// Host memory: the rows of src into dst (contiguous, src's shape).
void pack_rows(const Tensor& dst, const Tensor& src) {
  for (int64_t r = 0; r < src.n_rows(); ++r) std::memcpy(dst.flat_row(r), src.flat_row(r), src.row_size());
}

// The bytes a tensor (view) covers.
struct Range {
  const char* begin = nullptr;
  const char* end = nullptr;
};

Range range_of(const Tensor& t) {
  const char* b = static_cast<const char*>(t.data);
  return {b, b + t.n_bytes()};
}

bool overlaps(const Range& a, const Range& b) { return a.begin < b.end && b.begin < a.end; }

// One layer's routed experts in host memory, as streamed: the byte ranges of gate, up and down
// (gate and up may be two views of one fused tensor) merged into spans, each with its place in a
// stream buffer and in the page-locked copy of the layer.
struct HostLayer {
  struct Span {
    const char* src = nullptr;  // in the weight mapping
    size_t bytes = 0;
    size_t offset = 0;          // in a stream buffer and in `locked`
  };
  ExpertWeights experts;
  std::vector<Span> spans;
  size_t bytes = 0;
  bool lock_tried = false;
  // The spans in page-locked memory (copied once, after the dry runs): the streaming copies read
  // them at DMA speed and the host's kernels read them too. Empty where that memory ran out.
  Buffer locked;
};

HostLayer make_host_layer(const ExpertWeights& e) {
  HostLayer l;
  l.experts = e;
  std::array<Range, 3> r = {range_of(e.gate), range_of(e.up), range_of(e.down)};
  std::sort(r.begin(), r.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (const Range& x : r) {
    if (!l.spans.empty() && x.begin <= l.spans.back().src + l.spans.back().bytes) {
      HostLayer::Span& s = l.spans.back();
      s.bytes = std::max(s.bytes, size_t(x.end - s.src));
    } else {
      l.spans.push_back({x.begin, size_t(x.end - x.begin), 0});
    }
  }
  for (HostLayer::Span& s : l.spans) {
    s.offset = l.bytes;
    l.bytes += aligned(s.bytes);
  }
  return l;
}

// t, one of the layer's expert tensors, as it lies in memory holding the layer's spans at `base`
// (nullptr while measuring) on `device`.
Tensor placed(const HostLayer& l, const Tensor& t, char* base, DeviceId device) {
  const char* p = static_cast<const char*>(t.data);
  for (const HostLayer::Span& s : l.spans) {
    if (p >= s.src && p < s.src + s.bytes) {
      Tensor d = t;
      d.data = base ? base + s.offset + size_t(p - s.src) : nullptr;
      d.device = device;
      return d;
    }
  }
  fail("internal: split backend: an expert tensor outside its layer's spans");
}

ExpertWeights placed(const HostLayer& l, char* base, DeviceId device) {
  return {placed(l, l.experts.gate, base, device), placed(l, l.experts.up, base, device),
          placed(l, l.experts.down, base, device)};
}

// Host time of the RAM-resident expert ops (MOESERVE_SPLIT_PROFILE=1), printed at the end.
struct Profile {
  bool on = std::getenv("MOESERVE_SPLIT_PROFILE") != nullptr;
  int64_t host_ops = 0;
  double overlap_us = 0, wait_us = 0, cpu_us = 0, back_us = 0;
  int64_t streamed_ops = 0, copies = 0;
  size_t copied_bytes = 0;
  size_t locked_bytes = 0, not_locked = 0;
  double lock_s = 0;
  // Decode expert ops split between the primary (reading the page-locked experts) and the host:
  // the slots each side ran and the host's compute time of them (also in cpu_us).
  SplitExpertCounts counts;
  int64_t primary_slots = 0, host_slots = 0;
  double split_cpu_us = 0;

  void print() const {
    if (!on) return;
    const double n = double(std::max<int64_t>(host_ops, 1));
    std::fprintf(stderr,
                 "split profile: %lld expert ops on the host, per op: %.1f us of device work issued meanwhile, "
                 "%.1f us waiting for the inputs, %.1f us computing, %.1f us issuing the result\n",
                 static_cast<long long>(host_ops), overlap_us / n, wait_us / n, cpu_us / n, back_us / n);
    std::fprintf(stderr,
                 "split profile: %lld expert ops streamed to the device, %lld layer copies, %.2f GiB copied; "
                 "%.2f GiB of experts copied to page-locked memory in %.2f s (%.2f GiB left in the mapping)\n",
                 static_cast<long long>(streamed_ops), static_cast<long long>(copies), gib(copied_bytes),
                 gib(locked_bytes), lock_s, gib(not_locked));
    if (counts.shared + counts.primary_only == 0) return;
    const double m = double(std::max<int64_t>(counts.shared, 1));
    std::fprintf(stderr,
                 "split profile: %lld expert ops split, per op %.1f slots on the device (read from page-locked "
                 "memory, issued before the host starts) and %.1f on the host, %.1f us of host compute (%.1f us "
                 "per slot); %lld ops on the device alone\n",
                 static_cast<long long>(counts.shared), double(primary_slots) / m, double(host_slots) / m,
                 split_cpu_us / m, split_cpu_us / double(std::max<int64_t>(host_slots, 1)),
                 static_cast<long long>(counts.primary_only));
  }
};

class SplitBackend final : public Backend {
 public:
  SplitBackend(std::unique_ptr<Backend> primary, std::unique_ptr<Backend> host,
               std::function<DeviceId(const std::string&)> weight_home)
      : Backend(primary->device()), primary_(std::move(primary)), host_(std::move(host)),
        weight_home_(std::move(weight_home)), slots_setting_(primary_slots_setting()) {
    if (primary_->device() == host_->device()) {
      fail("internal: split backend over one device (", device_name(primary_->device()), ")");
    }
  }

  ~SplitBackend() override { profile_.print(); }

  std::string name() const override {
    return str_cat(primary_->name(), " + ", host_->name(), " for weights in ", device_name(host_->device()));
  }

  Buffer alloc(size_t bytes) override { return primary_->alloc(bytes); }
  Buffer alloc_host(size_t bytes) override { return primary_->alloc_host(bytes); }
  bool reads_host_memory() const override { return primary_->reads_host_memory(); }
  const SplitExpertCounts& expert_counts() const { return profile_.counts; }

  DeviceId weight_device(const std::string& name) const override {
    const DeviceId d = weight_home_(name);
    if (d != primary_->device() && d != host_->device()) {
      fail("weight ", name, " is placed on ", device_name(d), ", which this run does not use (",
           device_name(primary_->device()), " and ", device_name(host_->device()), ")");
    }
    return d;
  }

  void run_step(const BatchInfo& batch, uint64_t graph_key, const std::function<void()>& issue) override {
    // The dry runs at load issue every kind of step once, so by the first real step it is known
    // whether steps reach the host; those cannot be replayed as one recorded graph.
    try {
      primary_->run_step(batch, host_ops_seen_ ? 0 : graph_key, [&] {
        issue();
        flush();
      });
    } catch (...) {
      pending_.reset();
      throw;
    }
  }

  void begin_measure() override {
    Backend::begin_measure();
    primary_->begin_measure();
    host_->begin_measure();
    pending_.reset();
  }

  void end_measure() override {
    Backend::end_measure();
    primary_->end_measure();
    host_->end_measure();
    reserve(need_host_, need_device_);
    if (need_stream_ > 0) reserve_stream(need_stream_);
    // The streaming copies and the primary's share of a decode step read the page-locked copy.
    if (need_stream_ > 0 || (primary_->reads_host_memory() && slots_setting_ != 0)) lock_layers();
  }

  uint64_t upload_async(const Tensor& dst, const void* host) override {
    flush();
    return primary_->upload_async(dst, host);
  }
  void wait_upload(uint64_t ticket) override { primary_->wait_upload(ticket); }
  void download_async(void* host, const Tensor& src) override {
    flush();
    primary_->download_async(host, src);
  }
  void sync_downloads() override { primary_->sync_downloads(); }

 protected:
  void do_upload(const Tensor& dst, const void* src) override {
    flush();
    primary_->upload(dst, src);
  }
  void do_download(void* dst, const Tensor& src) override {
    flush();
    primary_->download(dst, src);
  }

  // ---- ops that may read a weight in host memory ----------------------------------------------
  void do_matmul(const Tensor& dst, const Tensor& w, const Tensor& x) override {
    if (!on_host(w)) {
      touch({&dst, &x});
      return primary_->matmul(dst, w, x);
    }
    flush();
    Crossing c = begin_crossing({&dst, &x});
    const Tensor hx = c.in(x);
    const Tensor hdst = c.out(dst);
    host_->matmul(hdst, w, hx);
    c.finish();
  }

  // The fused products run fused where all their weights are on the device, else product by product.
  void do_matmuls(const Tensor& x, std::span<const MatmulProduct> products) override {
    for (const MatmulProduct& p : products) {
      if (on_host(p.w)) return Backend::do_matmuls(x, products);
    }
    touch({&x});
    for (const MatmulProduct& p : products) touch({&p.dst});
    primary_->matmuls(x, products);
  }

  void do_norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                       std::span<const MatmulProduct> products) override {
    for (const MatmulProduct& p : products) {
      if (on_host(p.w)) return Backend::do_norm_matmuls(x, weight, eps, scratch, products);
    }
    primary_only({&x, &weight, &scratch});
    for (const MatmulProduct& p : products) touch({&p.dst});
    primary_->norm_matmuls(x, weight, eps, scratch, products);
  }

  void do_gated_matmul(const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate) override {
    if (on_host(w)) return Backend::do_gated_matmul(dst, w, x, gate);
    primary_only({&dst, &x, &gate});
    primary_->gated_matmul(dst, w, x, gate);
  }

  void do_matmul_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                        const Tensor& scratch) override {
    if (on_host(gate) || on_host(up)) return Backend::do_matmul_swiglu(dst, gate, up, x, scratch);
    touch({&dst, &x, &scratch});
    primary_->matmul_swiglu(dst, gate, up, x, scratch);
  }

  void do_get_rows(const Tensor& dst, const Tensor& src, const Tensor& ids) override {
    if (!on_host(src)) {
      touch({&dst, &ids});
      return primary_->get_rows(dst, src, ids);
    }
    flush();
    Crossing c = begin_crossing({&dst, &ids});
    const Tensor hids = c.in(ids);
    const Tensor hdst = c.out(dst);
    host_->get_rows(hdst, src, hids);
    c.finish();
  }

  void do_moe_experts(const Tensor& dst, const Tensor& x, const ExpertWeights& experts, const Tensor& ids,
                      const Tensor& weights) override {
    const bool host = on_host(experts.gate);
    if (on_host(experts.up) != host || on_host(experts.down) != host) {
      fail("internal: op moe_experts: gate, up and down of one layer's experts are on different devices");
    }
    if (!host) {
      touch({&dst, &x, &ids, &weights});
      return primary_->moe_experts(dst, x, experts, ids, weights);
    }
    host_ops_seen_ = true;
    flush();
    const size_t layer = layer_index(experts);
    if (x.ne[1] >= kStreamMinTokens) {
      stream_experts(layer, dst, x, ids, weights);
    } else {
      const HostLayer& l = *layers_[layer];
      char* locked = static_cast<char*>(l.locked.data());
      cross_experts(dst, x, locked ? placed(l, locked, host_->device()) : experts, ids, weights,
                    primary_slots(ids.ne[0], l), placed(l, locked, primary_->device()));
    }
  }

  // ---- everything else runs on the primary ----------------------------------------------------
  void do_rms_norm(const Tensor& dst, const Tensor& src, const Tensor* weight, float eps) override {
    primary_only({&dst, &src, weight});
    primary_->rms_norm(dst, src, weight, eps);
  }
  void do_rms_norm_gated(const Tensor& dst, const Tensor& src, const Tensor& weight, const Tensor& z,
                         float eps) override {
    primary_only({&dst, &src, &weight, &z});
    primary_->rms_norm_gated(dst, src, weight, z, eps);
  }
  void do_l2_norm(const Tensor& dst, const Tensor& src, float eps) override {
    primary_only({&dst, &src});
    primary_->l2_norm(dst, src, eps);
  }
  void do_unary(const Tensor& dst, const Tensor& src, UnaryOp op) override {
    primary_only({&dst, &src});
    primary_->unary(dst, src, op);
  }
  void do_binary(const Tensor& dst, const Tensor& a, const Tensor& b, BinaryOp op) override {
    primary_only({&dst, &a, &b});
    primary_->binary(dst, a, b, op);
  }
  void do_scale(const Tensor& dst, const Tensor& src, float factor) override {
    primary_only({&dst, &src});
    primary_->scale(dst, src, factor);
  }
  void do_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up) override {
    primary_only({&dst, &gate, &up});
    primary_->swiglu(dst, gate, up);
  }
  void do_copy(const Tensor& dst, const Tensor& src) override {
    primary_only({&dst, &src});
    primary_->copy(dst, src);
  }
  void do_zero(const Tensor& dst) override {
    primary_only({&dst});
    primary_->zero(dst);
  }
  void do_rope(const Tensor& dst, const Tensor& src, const BatchInfo& batch, const RopeParams& params) override {
    primary_only({&dst, &src});
    primary_->rope(dst, src, batch, params);
  }
  void do_kv_store(const Tensor& cache, const Tensor& src, const BatchInfo& batch) override {
    primary_only({&cache, &src});
    primary_->kv_store(cache, src, batch);
  }
  void do_attention(const Tensor& dst, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                    const BatchInfo& batch, const AttentionParams& params) override {
    primary_only({&dst, &q, &k_cache, &v_cache});
    primary_->attention(dst, q, k_cache, v_cache, batch, params);
  }
  void do_moe_route(const Tensor& ids, const Tensor& weights, const Tensor& logits, bool normalize) override {
    primary_only({&ids, &weights, &logits});
    primary_->moe_route(ids, weights, logits, normalize);
  }
  void do_ssm_conv(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w,
                   const BatchInfo& batch) override {
    primary_only({&dst, &x, &state, &w});
    primary_->ssm_conv(dst, x, state, w, batch);
  }
  void do_gated_delta_net(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                          const Tensor& beta, const Tensor& state, const BatchInfo& batch) override {
    primary_only({&dst, &q, &k, &v, &g, &beta, &state});
    primary_->gated_delta_net(dst, q, k, v, g, beta, state, batch);
  }

  // ---- fused ops: to the primary's kernels (their default compositions would split them up) ---
  void do_delta_gates(const Tensor& beta, const Tensor& g, const Tensor& b, const Tensor& a, const Tensor& dt_bias,
                      const Tensor& a_coef) override {
    primary_only({&beta, &g, &b, &a, &dt_bias, &a_coef});
    primary_->delta_gates(beta, g, b, a, dt_bias, a_coef);
  }
  void do_qk_l2_norm(const Tensor& q, const Tensor& k, const Tensor& q_src, const Tensor& k_src, float eps,
                     float q_scale) override {
    primary_only({&q, &k, &q_src, &k_src});
    primary_->qk_l2_norm(q, k, q_src, k_src, eps, q_scale);
  }
  void do_qk_norm_rope_store(const Tensor& q, const Tensor& q_src, const Tensor& q_norm, const Tensor& k,
                             const Tensor& k_norm, const Tensor& v, const Tensor& k_cache, const Tensor& v_cache,
                             float eps, const BatchInfo& batch, const RopeParams& rope) override {
    primary_only({&q, &q_src, &q_norm, &k, &k_norm, &v, &k_cache, &v_cache});
    primary_->qk_norm_rope_store(q, q_src, q_norm, k, k_norm, v, k_cache, v_cache, eps, batch, rope);
  }
  void do_delta_net_step(const DeltaNetStep& s, const BatchInfo& batch) override {
    primary_only({&s.y, &s.qkv, &s.z, &s.b, &s.a, &s.dt_bias, &s.a_coef, &s.conv_w, &s.conv_state, &s.ssm_state,
                  &s.norm, &s.u, &s.q, &s.k, &s.beta, &s.g, &s.o});
    primary_->delta_net_step(s, batch);
  }
  void do_mul_sigmoid(const Tensor& dst, const Tensor& x, const Tensor& gate) override {
    primary_only({&dst, &x, &gate});
    primary_->mul_sigmoid(dst, x, gate);
  }
  void do_moe_shared_add(const Tensor& dst, const Tensor& residual, const Tensor& routed, const Tensor& shared,
                         const Tensor& gate) override {
    primary_only({&dst, &residual, &routed, &shared, &gate});
    primary_->moe_shared_add(dst, residual, routed, shared, gate);
  }
  void do_add_rms_norm(const Tensor& dst, const Tensor& h, const Tensor& y, const Tensor& weight, float eps) override {
    primary_only({&dst, &h, &y, &weight});
    primary_->add_rms_norm(dst, h, y, weight, eps);
  }
  // Every weight on the primary: its own version (one chain of kernels there). Otherwise the chain
  // op by op, each where its weight lives: the routed experts on the host while the primary runs
  // the shared expert (moe_experts defers the host's work until its result is needed).
  void do_moe_ffn(const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeFfnWeights& w,
                  const MoeFfnScratch& s) override {
    for (const Tensor* t : w.tensors()) {
      if (t->data && on_host(*t)) return Backend::do_moe_ffn(h, y, norm, eps, w, s);
    }
    for (const Tensor* t : {&h, &y, &norm, &s.m, &s.logits, &s.ids, &s.weights, &s.routed, &s.shared, &s.shared_h,
                            &s.shared_up, &s.gate}) {
      if (t->data) touch({t});
    }
    primary_->moe_ffn(h, y, norm, eps, w, s);
  }

 private:
  // The activations of one synchronous host op crossing over: inputs copied to host staging now,
  // outputs copied back by finish(). Non-contiguous tensors are packed on the primary first (and
  // scattered back after), so every transfer is one contiguous copy.
  class Crossing {
   public:
    explicit Crossing(SplitBackend& be) : be_(be) {}
    Tensor in(const Tensor& t) {
      const Tensor h = host_tensor(t);
      if (be_.measuring()) return h;
      if (t.is_contiguous()) {
        be_.primary_->download(h.data, t);
      } else {
        const Tensor packed = device_tensor(t);
        be_.primary_->copy(packed, t);
        be_.primary_->download(h.data, packed);
      }
      return h;
    }
    // The op's one output.
    Tensor out(const Tensor& t) {
      dst_ = t;
      dst_host_ = host_tensor(t);
      return dst_host_;
    }
    void finish() { be_.upload_result(dst_, dst_host_); }

   private:
    Tensor host_tensor(const Tensor& t) {
      char* base = static_cast<char*>(be_.host_staging_.data());
      Tensor h = Tensor::contiguous(t.type, t.ne, base ? base + host_used_ : nullptr, be_.host_->device());
      host_used_ += aligned(packed_bytes(t));
      return h;
    }
    Tensor device_tensor(const Tensor& t) {
      char* base = static_cast<char*>(be_.device_staging_.data());
      Tensor d = Tensor::contiguous(t.type, t.ne, base ? base + device_used_ : nullptr, be_.primary_->device());
      device_used_ += aligned(packed_bytes(t));
      return d;
    }

    SplitBackend& be_;
    size_t host_used_ = 0, device_used_ = 0;
    Tensor dst_, dst_host_;
  };

  // A host expert op whose inputs are on their way to the host: the host runs it when a later op
  // touches its result (flush), so the primary works on in between.
  // Split (the primary runs the first slots of every token, dst holds its sum): the host's slots
  // are views of the downloaded ids and weights (packed into hids_packed / hweights_packed first
  // when strided), and its sum is uploaded into `partial` and added to dst.
  struct Pending {
    Tensor dst, hdst, hx, hids, hweights;
    ExpertWeights experts;
    double issued_us = 0;
    Tensor partial, hids_packed, hweights_packed;
    int64_t primary_slots = 0;
  };

  bool on_host(const Tensor& w) const { return w.device == host_->device(); }

  // An op on the primary reading or writing these tensors: a pending host result they overlap is
  // computed and uploaded first.
  void touch(std::initializer_list<const Tensor*> tensors) {
    if (!pending_) return;
    const Range r = range_of(pending_->dst);
    for (const Tensor* t : tensors) {
      if (t && overlaps(range_of(*t), r)) {
        flush();
        return;
      }
    }
  }

  void primary_only(std::initializer_list<const Tensor*> tensors) {
    for (const Tensor* t : tensors) {
      if (t && t->device != primary_->device()) {
        fail("internal: split backend: an op without a weight got a tensor on ", device_name(t->device), ": ",
             shape_str(*t));
      }
    }
    touch(tensors);
  }

  // Sizes the staging for the op's tensors (recorded while measuring, allocated at once outside
  // a planned step) and returns the crossing that hands it out.
  Crossing begin_crossing(std::initializer_list<const Tensor*> tensors) {
    host_ops_seen_ = true;
    size_t host = 0, device = 0;
    for (const Tensor* t : tensors) {
      host += aligned(packed_bytes(*t));
      if (!t->is_contiguous()) device += aligned(packed_bytes(*t));
    }
    need(host, device);
    return Crossing(*this);
  }

  void need(size_t host, size_t device) {
    if (measuring()) {
      need_host_ = std::max(need_host_, host);
      need_device_ = std::max(need_device_, device);
    } else {
      reserve(host, device);
    }
  }

  void reserve(size_t host, size_t device) {
    if (host > host_staging_.size()) host_staging_ = primary_->alloc_host(host);
    if (device > device_staging_.size()) device_staging_ = primary_->alloc(device);
  }

  // host (staging) -> dst on the primary, through the device staging when dst is strided.
  void upload_result(const Tensor& dst, const Tensor& host) {
    if (dst.is_contiguous()) {
      primary_->upload(dst, host.data);
    } else {
      const Tensor packed = Tensor::contiguous(dst.type, dst.ne, device_staging_.data(), primary_->device());
      primary_->upload(packed, host.data);
      primary_->copy(dst, packed);
    }
  }

  // ---- experts in RAM, small batches: on the host, overlapped ---------------------------------
  // The share of a decode step's routed slots (per token) the primary runs on layer l's experts,
  // reading its page-locked copy in place while the host runs the others: only where the copy
  // exists (while measuring it does not yet) and the primary can read host memory. Half by
  // default: the H100 host's 16 threads and the PCIe link each move a layer's expert bytes at
  // roughly the same rate (docs/perf.md "ram-split").
  int64_t primary_slots(int64_t k, const HostLayer& l) const {
    if (!primary_->reads_host_memory() || (!measuring() && !l.locked.data())) return 0;
    return std::min(k, slots_setting_ < 0 ? k / 2 : slots_setting_);
  }

  // experts: where the host reads them; on_primary: the page-locked copy as the primary reads it,
  // for its first kg slots of every token.
  void cross_experts(const Tensor& dst, const Tensor& x, const ExpertWeights& experts, const Tensor& ids,
                     const Tensor& weights, int64_t kg, const ExpertWeights& on_primary) {
    const int64_t k = ids.ne[0], kh = k - kg;
    if (kg == k && !measuring()) {
      primary_->moe_experts(dst, x, on_primary, ids, weights);
      ++profile_.counts.primary_only;
      return;
    }
    const std::array<const Tensor*, 3> ins = {&x, &ids, &weights};
    size_t in_bytes = 0, device = 0;
    bool contiguous = true;
    for (const Tensor* t : ins) {
      in_bytes += aligned(packed_bytes(*t));
      if (!t->is_contiguous()) device += aligned(packed_bytes(*t)), contiguous = false;
    }
    // Host staging: room for the inputs' covering range (one transfer) or for the three of them,
    // then dst, then (split) the host's slots of ids and weights packed. Device staging: the
    // strided inputs packed, then dst packed (strided dst) or, split, the primary's slots of ids
    // and weights packed and the host's sum.
    const size_t in_room = aligned(2 * in_bytes + kOneTransferSlack);
    const size_t out_bytes = aligned(packed_bytes(dst));
    const size_t host_slot_bytes = aligned(packed_bytes(slot_view(ids, 0, kh)));
    const size_t primary_slot_bytes = aligned(packed_bytes(slot_view(ids, 0, kg)));
    size_t need_host = in_room + out_bytes, need_device = dst.is_contiguous() ? device : std::max(device, out_bytes);
    if (kg > 0) {
      need_host += 2 * host_slot_bytes;
      need_device = std::max(need_device, device + 2 * primary_slot_bytes + out_bytes);
    }
    need(need_host, need_device);
    char* base = static_cast<char*>(host_staging_.data());
    Pending p;
    p.dst = dst;
    p.experts = experts;
    p.hdst = Tensor::contiguous(dst.type, dst.ne, base ? base + in_room : nullptr, host_->device());
    std::array<Tensor, 3> h;
    for (size_t i = 0; i < ins.size(); ++i) h[i] = Tensor::contiguous(ins[i]->type, ins[i]->ne, nullptr, host_->device());
    if (measuring()) {
      // Both ways: a layer whose experts could not be page-locked runs all its slots on the host.
      host_->moe_experts(p.hdst, h[0], experts, h[1], h[2]);
      if (kg > 0) {
        const Tensor gids = Tensor::contiguous(GgmlType::I32, slot_view(ids, 0, kg).ne, nullptr, primary_->device());
        const Tensor gweights = Tensor::contiguous(GgmlType::F32, gids.ne, nullptr, primary_->device());
        primary_->moe_experts(dst, x, on_primary, gids, gweights);
      }
      return;
    }

    Range span = range_of(x);
    for (const Tensor* t : ins) span = {std::min(span.begin, range_of(*t).begin), std::max(span.end, range_of(*t).end)};
    if (contiguous && size_t(span.end - span.begin) <= in_room && primary_->one_allocation(span.begin, span.end)) {
      const Tensor all = Tensor::contiguous(GgmlType::I8, {span.end - span.begin, 1, 1, 1},
                                            const_cast<char*>(span.begin), primary_->device());
      primary_->download_async(base, all);
      for (size_t i = 0; i < ins.size(); ++i) h[i].data = base + (static_cast<const char*>(ins[i]->data) - span.begin);
    } else {
      size_t host_at = 0, device_at = 0;
      for (size_t i = 0; i < ins.size(); ++i) {
        h[i].data = base + host_at;
        host_at += aligned(packed_bytes(*ins[i]));
        if (ins[i]->is_contiguous()) {
          primary_->download_async(h[i].data, *ins[i]);
        } else {
          const Tensor packed = Tensor::contiguous(ins[i]->type, ins[i]->ne,
                                                   static_cast<char*>(device_staging_.data()) + device_at,
                                                   primary_->device());
          device_at += aligned(packed_bytes(*ins[i]));
          primary_->copy(packed, *ins[i]);
          primary_->download_async(h[i].data, packed);
        }
      }
    }
    p.hx = h[0];
    p.hids = h[1];
    p.hweights = h[2];
    if (kg > 0) {
      // The primary's share, queued after the downloads (which then need not wait for it): its
      // sum lands in dst while the host computes the rest.
      char* dev = static_cast<char*>(device_staging_.data()) + device;
      Tensor gids = slot_view(ids, 0, kg), gweights = slot_view(weights, 0, kg);
      if (!gids.is_contiguous()) {
        const Tensor pi = Tensor::contiguous(GgmlType::I32, gids.ne, dev, primary_->device());
        const Tensor pw = Tensor::contiguous(GgmlType::F32, gids.ne, dev + primary_slot_bytes, primary_->device());
        primary_->copy(pi, gids);
        primary_->copy(pw, gweights);
        gids = pi;
        gweights = pw;
      }
      primary_->moe_experts(dst, x, on_primary, gids, gweights);
      p.partial = Tensor::contiguous(dst.type, dst.ne, dev + 2 * primary_slot_bytes, primary_->device());
      p.hids = slot_view(h[1], kg, kh);
      p.hweights = slot_view(h[2], kg, kh);
      if (!p.hids.is_contiguous()) {
        char* at = base + in_room + out_bytes;
        p.hids_packed = Tensor::contiguous(GgmlType::I32, p.hids.ne, at, host_->device());
        p.hweights_packed = Tensor::contiguous(GgmlType::F32, p.hids.ne, at + host_slot_bytes, host_->device());
      }
      p.primary_slots = kg;
    }
    if (profile_.on) p.issued_us = now_us();
    pending_ = std::move(p);
  }

  // Runs the pending host expert op (if any) and queues its result's upload.
  void flush() {
    if (!pending_) return;
    const Pending p = std::move(*pending_);
    pending_.reset();
    const double t0 = profile_.on ? now_us() : 0;
    primary_->sync_downloads();
    const double t1 = profile_.on ? now_us() : 0;
    if (p.hids_packed.data) {
      pack_rows(p.hids_packed, p.hids);
      pack_rows(p.hweights_packed, p.hweights);
    }
    host_->moe_experts(p.hdst, p.hx, p.experts, p.hids_packed.data ? p.hids_packed : p.hids,
                       p.hweights_packed.data ? p.hweights_packed : p.hweights);
    const double t2 = profile_.on ? now_us() : 0;
    if (p.partial.data) {
      // dst holds the primary's slots: the sum over the slots is theirs plus these.
      primary_->upload(p.partial, p.hdst.data);
      primary_->binary(p.dst, p.dst, p.partial, BinaryOp::add);
    } else {
      upload_result(p.dst, p.hdst);
    }
    ++(p.primary_slots > 0 ? profile_.counts.shared : profile_.counts.host_only);
    if (profile_.on) {
      ++profile_.host_ops;
      if (p.primary_slots > 0) {
        profile_.primary_slots += p.primary_slots;
        profile_.host_slots += p.hids.ne[0];
        profile_.split_cpu_us += t2 - t1;
      }
      profile_.overlap_us += t0 - p.issued_us;
      profile_.wait_us += t1 - t0;
      profile_.cpu_us += t2 - t1;
      profile_.back_us += now_us() - t2;
    }
  }

  // ---- experts in RAM, large batches: streamed to the primary ---------------------------------
  size_t layer_index(const ExpertWeights& e) {
    for (size_t i = 0; i < layers_.size(); ++i) {
      if (layers_[i]->experts.gate.data == e.gate.data) return i;
    }
    layers_.push_back(std::make_unique<HostLayer>(make_host_layer(e)));
    return layers_.size() - 1;
  }

  // Layer i's experts as they lie in stream buffer i % 2.
  ExpertWeights in_buffer(size_t i) const {
    return placed(*layers_[i], static_cast<char*>(stream_[i % 2].data()), primary_->device());
  }

  void stream_experts(size_t i, const Tensor& dst, const Tensor& x, const Tensor& ids, const Tensor& weights) {
    if (measuring()) {
      for (const auto& l : layers_) need_stream_ = std::max(need_stream_, l->bytes);
      primary_->moe_experts(dst, x, in_buffer(i), ids, weights);
      return;
    }
    size_t largest = 0;
    for (const auto& l : layers_) largest = std::max(largest, l->bytes);
    reserve_stream(largest);
    queue_copy(i);
    // The next RAM-resident layer's copy runs while this layer and the ops up to the next one
    // compute (it waits for the op that last read its buffer, issued before this one).
    if (i + 1 < layers_.size()) queue_copy(i + 1);
    primary_->wait_upload(ticket_[i % 2]);
    primary_->moe_experts(dst, x, in_buffer(i), ids, weights);
    ++profile_.streamed_ops;
  }

  void queue_copy(size_t i) {
    const size_t slot = i % 2;
    HostLayer& l = *layers_[i];
    if (holds_[slot] == &l) return;
    if (!l.lock_tried) lock_layers();
    char* base = static_cast<char*>(stream_[slot].data());
    const char* locked = static_cast<const char*>(l.locked.data());
    for (const HostLayer::Span& s : l.spans) {
      const Tensor d = Tensor::contiguous(GgmlType::I8, {int64_t(s.bytes), 1, 1, 1}, base + s.offset, primary_->device());
      ticket_[slot] = primary_->upload_async(d, locked ? locked + s.offset : s.src);
    }
    holds_[slot] = &l;
    ++profile_.copies;
    profile_.copied_bytes += l.bytes;
  }

  void reserve_stream(size_t bytes) {
    if (bytes <= stream_[0].size()) return;
    for (size_t s = 0; s < 2; ++s) {
      stream_[s] = Buffer();
      stream_[s] = primary_->alloc(bytes);
      holds_[s] = nullptr;
    }
  }

  // Copies the layers not tried yet to page-locked memory. Where that memory runs out the layer
  // stays in the mapping: streaming it is slower (staged by the driver), the results the same.
  void lock_layers() {
    const double t0 = now_us();
    for (const auto& l : layers_) {
      if (l->lock_tried) continue;
      l->lock_tried = true;
      try {
        l->locked = primary_->alloc_host(l->bytes);
      } catch (const Error&) {
        profile_.not_locked += l->bytes;
        continue;
      }
      for (const HostLayer::Span& s : l->spans) std::memcpy(static_cast<char*>(l->locked.data()) + s.offset, s.src, s.bytes);
      profile_.locked_bytes += l->bytes;
    }
    profile_.lock_s += (now_us() - t0) * 1e-6;
  }

  std::unique_ptr<Backend> primary_;
  std::unique_ptr<Backend> host_;
  std::function<DeviceId(const std::string&)> weight_home_;
  Buffer host_staging_, device_staging_;
  size_t need_host_ = 0, need_device_ = 0, need_stream_ = 0;
  bool host_ops_seen_ = false;
  int64_t slots_setting_ = -1;  // MOESERVE_SPLIT_GPU_SLOTS, -1: the default
  std::optional<Pending> pending_;
  // RAM-resident expert layers in the order the steps reach them, and the two stream buffers.
  std::vector<std::unique_ptr<HostLayer>> layers_;
  std::array<Buffer, 2> stream_;
  std::array<const HostLayer*, 2> holds_ = {nullptr, nullptr};  // what each buffer holds or receives
  std::array<uint64_t, 2> ticket_ = {0, 0};
  Profile profile_;
};

}  // namespace

SplitExpertCounts split_expert_counts(const Backend& backend) {
  const auto* split = dynamic_cast<const SplitBackend*>(&backend);
  return split ? split->expert_counts() : SplitExpertCounts{};
}

std::unique_ptr<Backend> make_split_backend(std::unique_ptr<Backend> primary, std::unique_ptr<Backend> host,
                                            std::function<DeviceId(const std::string&)> weight_home) {
  return std::make_unique<SplitBackend>(std::move(primary), std::move(host), std::move(weight_home));
}

}  // namespace moeserve
