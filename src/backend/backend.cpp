// The public side of the op table: shape checks shared by every backend, measuring mode, buffers.
#include "backend/backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace moeserve {

Buffer::Buffer(void* data, size_t size, std::function<void(void*)> release)
    : data_(data), size_(size), release_(std::move(release)) {}

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
      release_(std::move(other.release_)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    if (data_ && release_) release_(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    release_ = std::move(other.release_);
  }
  return *this;
}

Buffer::~Buffer() {
  if (data_ && release_) release_(data_);
}

namespace {

// Shape errors are bugs in the forward code, not user errors; still one clear message.
struct Check {
  const char* op;
  void operator()(bool ok, const char* what) const {
    if (!ok) fail("internal: op ", op, ": ", what);
  }
  void f32(const Tensor& t, const char* name) const {
    if (t.type != GgmlType::F32) fail("internal: op ", op, ": ", name, " must be F32, is ", shape_str(t));
  }
  void same_shape(const Tensor& a, const Tensor& b) const {
    if (a.ne != b.ne) fail("internal: op ", op, ": shapes differ: ", shape_str(a), " vs ", shape_str(b));
  }
  void rows_contiguous(const Tensor& t, const char* name) const {
    if (t.nb[0] != type_traits(t.type).block_bytes) fail("internal: op ", op, ": ", name, " rows not contiguous");
  }
};

bool is_2d(const Tensor& t) { return t.ne[2] == 1 && t.ne[3] == 1; }

}  // namespace

void Backend::run_step(const BatchInfo&, uint64_t, const std::function<void()>& issue) { issue(); }

Backend::OpScope::OpScope(Backend& b, const char* op) : b_(b), op_(op), outer_(b.op_depth_++ == 0) {
  if (outer_ && !b_.measuring_) b_.op_begin(op_);
}

Backend::OpScope::~OpScope() {
  --b_.op_depth_;
  if (outer_ && !b_.measuring_) b_.op_end(op_);
}

void Backend::op_begin(const char*) {}
void Backend::op_end(const char*) {}

Buffer Backend::alloc_host(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) fail("out of memory allocating ", bytes, " bytes of host staging memory");
  std::memset(p, 0, rounded);
  return Buffer(p, bytes, [](void* q) { std::free(q); });
}

bool Backend::one_allocation(const void*, const void*) const { return false; }

DeviceId Backend::weight_device(const std::string&) const { return device_; }

void Backend::begin_measure() {
  measuring_ = true;
  workspace_needed_ = 0;
}

void Backend::end_measure() {
  measuring_ = false;
  if (workspace_needed_ > workspace_.size()) workspace_ = alloc(workspace_needed_);
}

bool Backend::skip(size_t workspace_bytes) {
  if (workspace_bytes > workspace_limit_) {
    fail("internal: an op needs ", workspace_bytes, " bytes of workspace in a region of ", workspace_limit_);
  }
  const size_t end = workspace_bytes ? workspace_offset_ + workspace_bytes : 0;
  if (measuring_) {
    if (end > workspace_needed_) workspace_needed_ = end;
    return true;
  }
  if (end > workspace_.size()) {
    // Ops outside a planned step (tests, one-off calls) get their workspace here, once.
    workspace_ = alloc(end);
  }
  return false;
}

Backend::WorkspaceRegion::WorkspaceRegion(Backend& b, size_t offset, size_t limit)
    : b_(b), offset_(b.workspace_offset_), limit_(b.workspace_limit_) {
  b.workspace_offset_ = offset;
  b.workspace_limit_ = limit;
}

Backend::WorkspaceRegion::~WorkspaceRegion() {
  b_.workspace_offset_ = offset_;
  b_.workspace_limit_ = limit_;
}

void Backend::upload(const Tensor& dst, const void* host) {
  Check{"upload"}(dst.is_contiguous(), "destination must be contiguous");
  if (!measuring_) do_upload(dst, host);
}

void Backend::download(void* host, const Tensor& src) {
  Check{"download"}(src.is_contiguous(), "source must be contiguous");
  if (!measuring_) do_download(host, src);
}

uint64_t Backend::upload_async(const Tensor& dst, const void* host) {
  upload(dst, host);
  return 0;
}

void Backend::wait_upload(uint64_t) {}

void Backend::download_async(void* host, const Tensor& src) { download(host, src); }

void Backend::sync_downloads() {}

void Backend::get_rows(const Tensor& dst, const Tensor& src, const Tensor& ids) {
  Check c{"get_rows"};
  const OpScope scope(*this, "get_rows");
  c.f32(dst, "dst");
  c(ids.type == GgmlType::I32 && ids.is_contiguous() && ids.n_elements() == dst.ne[1], "ids must be I32 [n]");
  c(is_2d(dst) && is_2d(src) && dst.ne[0] == src.ne[0], "dst [d, n] and src [d, rows] must agree on d");
  c.rows_contiguous(src, "src");
  do_get_rows(dst, src, ids);
}

void Backend::rms_norm(const Tensor& dst, const Tensor& src, const Tensor* weight, float eps) {
  Check c{"rms_norm"};
  const OpScope scope(*this, "rms_norm");
  c.f32(dst, "dst");
  c.f32(src, "src");
  c.same_shape(dst, src);
  if (weight) {
    c.f32(*weight, "weight");
    c(weight->ne[0] == src.ne[0] && weight->n_rows() == 1, "weight must be [d]");
  }
  do_rms_norm(dst, src, weight, eps);
}

void Backend::rms_norm_gated(const Tensor& dst, const Tensor& src, const Tensor& weight, const Tensor& z, float eps) {
  Check c{"rms_norm_gated"};
  const OpScope scope(*this, "rms_norm_gated");
  c.f32(dst, "dst");
  c.f32(src, "src");
  c.f32(z, "z");
  c.f32(weight, "weight");
  c.same_shape(dst, src);
  c.same_shape(z, src);
  c(weight.ne[0] == src.ne[0] && weight.n_rows() == 1, "weight must be [d]");
  do_rms_norm_gated(dst, src, weight, z, eps);
}

void Backend::l2_norm(const Tensor& dst, const Tensor& src, float eps) {
  Check c{"l2_norm"};
  const OpScope scope(*this, "l2_norm");
  c.f32(dst, "dst");
  c.f32(src, "src");
  c.same_shape(dst, src);
  do_l2_norm(dst, src, eps);
}

void Backend::matmul(const Tensor& dst, const Tensor& w, const Tensor& x) {
  Check c{"matmul"};
  const OpScope scope(*this, "matmul");
  c.f32(dst, "dst");
  c.f32(x, "x");
  if (!(is_2d(dst) && is_2d(w) && is_2d(x) && w.ne[0] == x.ne[0] && dst.ne[0] == w.ne[1] && dst.ne[1] == x.ne[1])) {
    fail("internal: op matmul: dst ", shape_str(dst), " = w ", shape_str(w), " x ", shape_str(x));
  }
  c.rows_contiguous(w, "w");
  do_matmul(dst, w, x);
}

void Backend::unary(const Tensor& dst, const Tensor& src, UnaryOp op) {
  Check c{"unary"};
  const OpScope scope(*this, "unary");
  c.f32(dst, "dst");
  c.f32(src, "src");
  c.same_shape(dst, src);
  do_unary(dst, src, op);
}

void Backend::binary(const Tensor& dst, const Tensor& a, const Tensor& b, BinaryOp op) {
  Check c{"binary"};
  const OpScope scope(*this, "binary");
  c.f32(dst, "dst");
  c.f32(a, "a");
  c.f32(b, "b");
  c.same_shape(dst, a);
  for (int d = 0; d < 4; ++d) {
    if (b.ne[d] != a.ne[d] && b.ne[d] != 1) fail("internal: op binary: cannot broadcast ", shape_str(b), " to ", shape_str(a));
  }
  do_binary(dst, a, b, op);
}

void Backend::scale(const Tensor& dst, const Tensor& src, float factor) {
  Check c{"scale"};
  const OpScope scope(*this, "scale");
  c.f32(dst, "dst");
  c.f32(src, "src");
  c.same_shape(dst, src);
  do_scale(dst, src, factor);
}

void Backend::swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up) {
  Check c{"swiglu"};
  const OpScope scope(*this, "swiglu");
  c.f32(dst, "dst");
  c.f32(gate, "gate");
  c.f32(up, "up");
  c.same_shape(dst, gate);
  c.same_shape(dst, up);
  do_swiglu(dst, gate, up);
}

void Backend::copy(const Tensor& dst, const Tensor& src) {
  Check c{"copy"};
  const OpScope scope(*this, "copy");
  c.same_shape(dst, src);
  c(dst.type == src.type || dst.type == GgmlType::F32 || src.type == GgmlType::F32,
    "conversions go through F32 (same type, to F32 or from F32)");
  // Same type: bytes (the split backend packs strided I32 ids so).
  const bool same = dst.type == src.type;
  c(same || dst.type == GgmlType::F32 || type_traits(dst.type).quantize != nullptr, "no quantizer for the destination type");
  c(same || src.type == GgmlType::F32 || type_traits(src.type).dequantize != nullptr, "no dequantizer for the source type");
  do_copy(dst, src);
}

void Backend::zero(const Tensor& dst) {
  const OpScope scope(*this, "zero");
  do_zero(dst);
}

void Backend::rope(const Tensor& dst, const Tensor& src, const BatchInfo& batch, const RopeParams& params) {
  Check c{"rope"};
  const OpScope scope(*this, "rope");
  c.f32(dst, "dst");
  c.f32(src, "src");
  c.same_shape(dst, src);
  c(src.ne[3] == 1 && src.ne[2] == batch.n_tokens, "src must be [head_dim, n_head, n_tokens]");
  c(params.n_rot > 0 && params.n_rot % 2 == 0 && params.n_rot <= src.ne[0], "n_rot must be even and <= head_dim");
  do_rope(dst, src, batch, params);
}

void Backend::kv_store(const Tensor& cache, const Tensor& src, const BatchInfo& batch) {
  Check c{"kv_store"};
  const OpScope scope(*this, "kv_store");
  c.f32(src, "src");
  c(cache.is_contiguous() && cache.ne[3] == 1, "cache must be contiguous [width, n_ctx, n_seq]");
  c(is_2d(src) && src.ne[0] == cache.ne[0] && src.ne[1] == batch.n_tokens, "src must be [width, n_tokens]");
  c(type_traits(cache.type).quantize != nullptr || cache.type == GgmlType::F32, "no quantizer for the cache type");
  for (int32_t t = 0; t < batch.n_tokens && !measuring_; ++t) {
    c(batch.pos[t] >= 0 && batch.pos[t] < cache.ne[1] && batch.seq[t] >= 0 && batch.seq[t] < cache.ne[2],
      "token position or sequence outside the cache");
  }
  do_kv_store(cache, src, batch);
}

void Backend::attention(const Tensor& dst, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                        const BatchInfo& batch, const AttentionParams& params) {
  Check c{"attention"};
  const OpScope scope(*this, "attention");
  c.f32(dst, "dst");
  c.f32(q, "q");
  c(q.ne[3] == 1 && q.ne[2] == batch.n_tokens, "q must be [head_dim_k, n_head, n_tokens]");
  c(dst.ne[1] == q.ne[1] && dst.ne[2] == q.ne[2] && dst.ne[3] == 1, "dst must be [head_dim_v, n_head, n_tokens]");
  c(k_cache.is_contiguous() && v_cache.is_contiguous(), "caches must be contiguous");
  c(k_cache.ne[0] % q.ne[0] == 0, "K cache width must be a multiple of head_dim_k");
  const int64_t n_head_kv = k_cache.ne[0] / q.ne[0];
  c(n_head_kv > 0 && q.ne[1] % n_head_kv == 0, "n_head must be a multiple of n_head_kv");
  c(v_cache.ne[0] == dst.ne[0] * n_head_kv, "V cache width must be head_dim_v * n_head_kv");
  c(k_cache.ne[1] == v_cache.ne[1] && k_cache.ne[2] == v_cache.ne[2], "K and V caches must have the same cells");
  c(q.ne[0] % type_traits(k_cache.type).block_size == 0 && dst.ne[0] % type_traits(v_cache.type).block_size == 0,
    "head dims must be multiples of the cache types' block sizes");
  for (int32_t t = 0; t < batch.n_tokens && !measuring_; ++t) {
    c(batch.pos[t] >= 0 && batch.pos[t] < k_cache.ne[1] && batch.seq[t] >= 0 && batch.seq[t] < k_cache.ne[2],
      "token position or sequence outside the cache");
  }
  do_attention(dst, q, k_cache, v_cache, batch, params);
}

void Backend::moe_route(const Tensor& ids, const Tensor& weights, const Tensor& logits, bool normalize) {
  Check c{"moe_route"};
  const OpScope scope(*this, "moe_route");
  c.f32(logits, "logits");
  c.f32(weights, "weights");
  c(ids.type == GgmlType::I32 && ids.is_contiguous() && weights.is_contiguous(), "ids, weights must be contiguous");
  c(is_2d(logits) && is_2d(ids) && ids.ne == weights.ne && ids.ne[1] == logits.ne[1], "ids/weights must be [k, n]");
  c(ids.ne[0] >= 1 && ids.ne[0] <= logits.ne[0], "k must be in 1..n_expert");
  do_moe_route(ids, weights, logits, normalize);
}

void Backend::moe_experts(const Tensor& dst, const Tensor& x, const ExpertWeights& experts, const Tensor& ids,
                          const Tensor& weights) {
  Check c{"moe_experts"};
  const OpScope scope(*this, "moe_experts");
  c.f32(dst, "dst");
  c.f32(x, "x");
  c.f32(weights, "weights");
  c.same_shape(dst, x);
  c(is_2d(x), "x must be [n_embd, n]");
  const Tensor &g = experts.gate, &u = experts.up, &d = experts.down;
  c(g.ne[0] == x.ne[0] && u.ne[0] == x.ne[0] && g.ne[1] == u.ne[1] && g.ne[2] == u.ne[2], "gate/up must be [n_embd, n_ff, n_expert]");
  c(d.ne[0] == g.ne[1] && d.ne[1] == x.ne[0] && d.ne[2] == g.ne[2], "down must be [n_ff, n_embd, n_expert]");
  c.rows_contiguous(g, "gate");
  c.rows_contiguous(u, "up");
  c.rows_contiguous(d, "down");
  c(ids.type == GgmlType::I32 && ids.is_contiguous() && weights.is_contiguous() && ids.ne == weights.ne, "ids/weights [k, n]");
  c(ids.ne[1] == x.ne[1], "ids must have one column per token");
  do_moe_experts(dst, x, experts, ids, weights);
}

void Backend::ssm_conv(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w, const BatchInfo& batch) {
  Check c{"ssm_conv"};
  const OpScope scope(*this, "ssm_conv");
  c.f32(dst, "dst");
  c.f32(x, "x");
  c.f32(state, "state");
  c.f32(w, "w");
  c.same_shape(dst, x);
  c(is_2d(x) && x.ne[1] == batch.n_tokens, "x must be [channels, n_tokens]");
  c(is_2d(w) && w.ne[1] == x.ne[0] && w.ne[0] >= 2, "w must be [kernel, channels]");
  c(state.ne[0] == (w.ne[0] - 1) * x.ne[0] && state.is_contiguous(), "state must be [(kernel-1)*channels, n_seq]");
  for (int32_t r = 0; r < batch.n_runs && !measuring_; ++r) c(batch.runs[r].seq < state.ne[1], "sequence outside the state");
  do_ssm_conv(dst, x, state, w, batch);
}

void Backend::gated_delta_net(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                              const Tensor& beta, const Tensor& state, const BatchInfo& batch) {
  Check c{"gated_delta_net"};
  const OpScope scope(*this, "gated_delta_net");
  for (const Tensor* t : {&dst, &q, &k, &v, &g, &beta, &state}) c.f32(*t, "operands");
  c.same_shape(q, k);
  c.same_shape(dst, v);
  c(q.ne[2] == batch.n_tokens && v.ne[2] == batch.n_tokens && q.ne[3] == 1 && v.ne[3] == 1, "q/k/v must be [d, heads, n]");
  c(v.ne[1] % q.ne[1] == 0, "value heads must be a multiple of key heads");
  c(g.ne[0] == v.ne[1] && g.ne[1] == batch.n_tokens && is_2d(g), "g must be [n_v_heads, n]");
  c.same_shape(g, beta);
  c(state.is_contiguous() && state.ne[0] == q.ne[0] * v.ne[0] * v.ne[1], "state must be [d_k*d_v*n_v_heads, n_seq]");
  for (int32_t r = 0; r < batch.n_runs && !measuring_; ++r) c(batch.runs[r].seq < state.ne[1], "sequence outside the state");
  do_gated_delta_net(dst, q, k, v, g, beta, state, batch);
}

}  // namespace moeserve
