#include "backend/split_backend.h"

#include <algorithm>
#include <initializer_list>
#include <utility>

#include "core/error.h"

namespace moeserve {
namespace {

constexpr size_t kAlign = 256;

size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Bytes of a contiguous copy of t.
size_t packed_bytes(const Tensor& t) { return t.row_size() * size_t(t.n_rows()); }

class SplitBackend final : public Backend {
 public:
  SplitBackend(std::unique_ptr<Backend> primary, std::unique_ptr<Backend> host,
               std::function<DeviceId(const std::string&)> weight_home)
      : Backend(primary->device()), primary_(std::move(primary)), host_(std::move(host)),
        weight_home_(std::move(weight_home)) {
    if (primary_->device() == host_->device()) {
      fail("internal: split backend over one device (", device_name(primary_->device()), ")");
    }
  }

  std::string name() const override {
    return str_cat(primary_->name(), " + ", host_->name(), " for weights in ", device_name(host_->device()));
  }

  Buffer alloc(size_t bytes) override { return primary_->alloc(bytes); }
  Buffer alloc_host(size_t bytes) override { return primary_->alloc_host(bytes); }

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
    primary_->run_step(batch, host_ops_seen_ ? 0 : graph_key, issue);
  }

  void begin_measure() override {
    Backend::begin_measure();
    primary_->begin_measure();
    host_->begin_measure();
  }

  void end_measure() override {
    Backend::end_measure();
    primary_->end_measure();
    host_->end_measure();
    reserve(need_host_, need_device_);
  }

 protected:
  void do_upload(const Tensor& dst, const void* src) override { primary_->upload(dst, src); }
  void do_download(void* dst, const Tensor& src) override { primary_->download(dst, src); }

  // ---- ops that may read a weight in host memory ----------------------------------------------
  void do_matmul(const Tensor& dst, const Tensor& w, const Tensor& x) override {
    if (!on_host(w)) return primary_->matmul(dst, w, x);
    Crossing c = begin_crossing({&dst, &x});
    const Tensor hx = c.in(x);
    const Tensor hdst = c.out(dst);
    host_->matmul(hdst, w, hx);
    c.finish();
  }

  void do_get_rows(const Tensor& dst, const Tensor& src, const Tensor& ids) override {
    if (!on_host(src)) return primary_->get_rows(dst, src, ids);
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
    if (!host) return primary_->moe_experts(dst, x, experts, ids, weights);
    Crossing c = begin_crossing({&dst, &x, &ids, &weights});
    const Tensor hx = c.in(x);
    const Tensor hids = c.in(ids);
    const Tensor hweights = c.in(weights);
    const Tensor hdst = c.out(dst);
    host_->moe_experts(hdst, hx, experts, hids, hweights);
    c.finish();
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

 private:
  // The activations of one host op crossing over: inputs copied to host staging now, outputs
  // copied back by finish(). Non-contiguous tensors are packed on the primary first (and
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
    void finish() {
      if (dst_.is_contiguous()) {
        be_.primary_->upload(dst_, dst_host_.data);
      } else {
        const Tensor packed = device_tensor(dst_);
        be_.primary_->upload(packed, dst_host_.data);
        be_.primary_->copy(dst_, packed);
      }
    }

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

  bool on_host(const Tensor& w) const { return w.device == host_->device(); }

  void primary_only(std::initializer_list<const Tensor*> tensors) const {
    for (const Tensor* t : tensors) {
      if (t && t->device != primary_->device()) {
        fail("internal: split backend: an op without a weight got a tensor on ", device_name(t->device), ": ",
             shape_str(*t));
      }
    }
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
    if (measuring()) {
      need_host_ = std::max(need_host_, host);
      need_device_ = std::max(need_device_, device);
    } else {
      reserve(host, device);
    }
    return Crossing(*this);
  }

  void reserve(size_t host, size_t device) {
    if (host > host_staging_.size()) host_staging_ = primary_->alloc_host(host);
    if (device > device_staging_.size()) device_staging_ = primary_->alloc(device);
  }

  std::unique_ptr<Backend> primary_;
  std::unique_ptr<Backend> host_;
  std::function<DeviceId(const std::string&)> weight_home_;
  Buffer host_staging_, device_staging_;
  size_t need_host_ = 0, need_device_ = 0;
  bool host_ops_seen_ = false;
};

}  // namespace

std::unique_ptr<Backend> make_split_backend(std::unique_ptr<Backend> primary, std::unique_ptr<Backend> host,
                                            std::function<DeviceId(const std::string&)> weight_home) {
  return std::make_unique<SplitBackend>(std::move(primary), std::move(host), std::move(weight_home));
}

}  // namespace moeserve
