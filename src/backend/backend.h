// The op table: everything the model forwards need, as one narrow interface per device. The forward
// code (src/model) issues these ops in a data-independent order (no host reads of intermediate
// results), so a step can be measured (dry run that plans memory), captured and replayed.
//
// Conventions for every op:
// * shapes in ggml order, ne[0] innermost; "[d, n]" = n rows of d elements;
// * activations are F32; weights may be any registered type (matmul, get_rows, experts);
// * rows of every tensor are contiguous; rows may be strided (views) unless an op says otherwise;
// * dst may alias src exactly (in-place) for the element-wise ops, norms and rope;
// * the public methods check shapes (one internal error naming the op and the shapes) and then
//   call the backend's implementation; in measuring mode nothing runs and backends only record
//   how much workspace the op would need.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>

#include "backend/tensor.h"

namespace moeserve {

// Tokens of one forward step. Tokens of one sequence are contiguous in the step and in position
// order (the engine arranges it); the runs list them.
struct SeqRun {
  int32_t seq = 0;    // sequence slot (KV stream, recurrent-state row)
  int32_t first = 0;  // first token of the run in the step
  int32_t count = 0;
};

struct BatchInfo {
  int32_t n_tokens = 0;
  const int32_t* pos = nullptr;  // [n_tokens] absolute position in its sequence (host memory)
  const int32_t* seq = nullptr;  // [n_tokens] sequence slot
  const SeqRun* runs = nullptr;  // [n_runs]
  int32_t n_runs = 0;
};

enum class UnaryOp { silu, sigmoid, softplus };
enum class BinaryOp { add, mul };

struct RopeParams {
  int n_rot = 0;            // rotated dims at the start of each head (the rest pass through)
  float freq_base = 10000;  // theta_i = pos * freq_base^(-2i / n_rot)
  bool neox = false;        // NeoX: rotate (x[i], x[i + n_rot/2]); normal: rotate (x[2i], x[2i+1])
};

struct AttentionParams {
  float scale = 1.0f;
  bool flash = false;  // tiled online softmax over the cache, reading quantized K/V directly
};

// The three stacked matrices of a routed-expert FFN. gate/up: [n_embd, n_ff, n_expert];
// down: [n_ff, n_embd, n_expert]. gate and up may be two views of one fused gate_up tensor.
struct ExpertWeights {
  Tensor gate;
  Tensor up;
  Tensor down;
};

// The weights of one sparse MoE FFN (Backend::moe_ffn). Without a shared expert its three
// matrices are absent (data null); shared_inp (its sigmoid gate) may be absent on its own.
struct MoeFfnWeights {
  Tensor router;  // [n_embd, n_expert]
  ExpertWeights experts;
  Tensor shared_gate, shared_up;  // [n_embd, n_ff_sh]
  Tensor shared_down;             // [n_ff_sh, n_embd]
  Tensor shared_inp;              // [n_embd, 1]
  int64_t n_expert_used = 0;
  bool normalize = true;  // moe_route's normalize

  // Every weight tensor, the absent ones (data null) included.
  std::array<const Tensor*, 8> tensors() const {
    return {&router, &experts.gate, &experts.up, &experts.down, &shared_gate, &shared_up, &shared_down, &shared_inp};
  }
};

// Scratch of Backend::moe_ffn for n tokens: m, routed [n_embd, n], logits [n_expert, n], ids
// [n_expert_used, n] I32, weights [n_expert_used, n]; with a shared expert shared [n_embd, n],
// shared_h, shared_up [n_ff_sh, n], and with its gate gate [1, n]. Every one F32 unless noted.
struct MoeFfnScratch {
  Tensor m, logits, ids, weights, routed;
  Tensor shared, shared_h, shared_up, gate;
};

// One product of Backend::matmuls: dst = w times the shared input.
struct MatmulProduct {
  Tensor dst;
  Tensor w;
};

// The tensors of Backend::delta_net_step, the delta-net block between its input projections and
// its output projection (qwen3next.md §4.3), for n tokens:
//   u = ssm_conv(qkv) (conv_state updated); q, k = heads of u l2-normalized (q times q_scale);
//   beta = sigmoid(b); g = a_coef * softplus(a + dt_bias);
//   o = gated_delta_net(q, k, v heads of u, g, beta) (ssm_state updated); y = rms_norm_gated(o, norm, z).
struct DeltaNetStep {
  Tensor y;           // [d_v, n_v_heads, n] output
  Tensor qkv;         // [C, n] conv input [q heads | k heads | v heads], C = 2*d_k*n_k_heads + d_v*n_v_heads
  Tensor z;           // [d_v, n_v_heads, n] gate of the norm
  Tensor b, a;        // [ratio, n_k_heads, n] (value head kh*ratio + r); ratio = n_v_heads / n_k_heads
  Tensor dt_bias;     // [ratio, n_k_heads] F32
  Tensor a_coef;      // [ratio, n_k_heads] F32
  Tensor conv_w;      // [K, C] F32
  Tensor conv_state;  // [(K-1)*C, n_seq], as ssm_conv's
  Tensor ssm_state;   // [d_k*d_v*n_v_heads, n_seq], as gated_delta_net's
  Tensor norm;        // [d_v] F32
  float eps = 1e-6f;  // of both norms
  float q_scale = 1.0f;
  // Scratch (contiguous F32): u [C, n], q, k [d_k, n_k_heads, n], beta, g [ratio, n_k_heads, n],
  // o [d_v, n_v_heads, n].
  Tensor u, q, k, beta, g, o;
};

// Memory owned on a device; freed by its destructor.
class Buffer {
 public:
  Buffer() = default;
  Buffer(void* data, size_t size, std::function<void(void*)> release);
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
  std::function<void(void*)> release_;
};

class Backend {
 public:
  explicit Backend(DeviceId device) : device_(device) {}
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  DeviceId device() const { return device_; }
  virtual std::string name() const = 0;  // "ref", "cpu (avx2, 8 threads)", ...

  // Device memory, zero-filled.
  virtual Buffer alloc(size_t bytes) = 0;
  // Host memory for staging copies to and from the device, zero-filled: page-locked where the
  // device can copy from it directly (CUDA), plain 64-byte aligned memory by default.
  virtual Buffer alloc_host(size_t bytes);
  // Whether this backend's ops can take tensors in memory from alloc_host() where they read,
  // given by its host pointer (the split backend lets the accelerator read part of a layer's
  // experts in RAM that way). Backends over host memory can; CUDA where the device shares one
  // address space with the host.
  virtual bool reads_host_memory() const { return true; }
  // Whether the bytes [begin, end) lie within one allocation of this backend's memory, so that one
  // copy may cover them whole (the split backend fetches a step's inputs that way when they lie
  // close together). False where the backend cannot tell.
  virtual bool one_allocation(const void* begin, const void* end) const;
  // Where this backend keeps the weight named `name` (a GGUF tensor name). A one-device backend
  // keeps them all on device(); a backend over several devices (SplitBackend) answers from its
  // placement plan. The weight loader maps weights whose home is the CPU from the file (zero copy)
  // and allocates and uploads the others.
  virtual DeviceId weight_device(const std::string& name) const;
  // Host <-> device copies of contiguous tensors, in order with the ops issued before them: when
  // download returns the host memory holds the result of every earlier op; when upload returns
  // the host memory may be reused (the split backend relies on both).
  void upload(const Tensor& dst, const void* host);
  void download(void* host, const Tensor& src);

  // Copies that overlap the ops (the split backend streams expert weights to the device and lets
  // expert inputs cross to the host while the device works on). The defaults are the synchronous
  // upload/download above, which keep every ordering promise.
  // Queues a copy of host memory (from alloc_host, for full speed) into dst (contiguous) that
  // starts once every op issued before the call has finished and runs alongside the ops issued
  // after it; returns its ticket.
  virtual uint64_t upload_async(const Tensor& dst, const void* host);
  // Ops issued after this call see the copy of `ticket` (and of every earlier ticket) complete.
  virtual void wait_upload(uint64_t ticket);
  // Queues a copy of src (contiguous) into host memory from alloc_host, in order with the ops,
  // without waiting for it; sync_downloads() returns once every queued one is complete.
  virtual void download_async(void* host, const Tensor& src);
  virtual void sync_downloads();

  // Runs one forward step: `issue` issues its ops. A nonzero `graph_key` marks a step whose shape
  // recurs (decode: the same token and output counts, one token per sequence): a backend that can
  // record steps (CUDA graphs) records the first step of each key and replays it afterwards, so
  // its kernels must read per-step data (positions, sequences, runs) from device copies of `batch`
  // that it refreshes before each replay, never from values baked in at recording. The default
  // just issues the ops.
  virtual void run_step(const BatchInfo& batch, uint64_t graph_key, const std::function<void()>& issue);

  // Dry-run mode: ops check shapes and record their workspace needs without touching data.
  // Backends over other backends forward both to them.
  virtual void begin_measure();
  // Ends the dry run and makes sure the workspace fits every op seen since begin_measure().
  virtual void end_measure();

  // ---- ops -------------------------------------------------------------------------------------
  // dst [n_cols, n] F32 = rows ids[i] of src [n_cols, n_src_rows] (any type), dequantized.
  void get_rows(const Tensor& dst, const Tensor& src, const Tensor& ids);
  // dst = src / sqrt(mean(src^2) + eps) * weight, per row; weight [d] F32 or none.
  void rms_norm(const Tensor& dst, const Tensor& src, const Tensor* weight, float eps);
  // dst = rms_norm(src) * weight * silu(z), per row (the gated norm of the delta-net block).
  void rms_norm_gated(const Tensor& dst, const Tensor& src, const Tensor& weight, const Tensor& z, float eps);
  // dst = src * rsqrt(sum(src^2) + eps), per row.
  void l2_norm(const Tensor& dst, const Tensor& src, float eps);
  // dst [m, n] F32 = w [k, m] (any type) times each of the n columns of x [k, n] F32. The
  // activations are quantized to the weight type's vec_dot_type first (quants.md §4).
  void matmul(const Tensor& dst, const Tensor& w, const Tensor& x);
  void unary(const Tensor& dst, const Tensor& src, UnaryOp op);
  // dst = a (op) b; b is broadcast along every dim where b.ne[d] == 1.
  void binary(const Tensor& dst, const Tensor& a, const Tensor& b, BinaryOp op);
  void scale(const Tensor& dst, const Tensor& src, float factor);
  // dst = silu(gate) * up.
  void swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up);
  // Same dims, any strides. Same type: bytes; to F32: dequantize; from F32: quantize.
  void copy(const Tensor& dst, const Tensor& src);
  void zero(const Tensor& dst);
  // src [head_dim, n_head, n]: rotates each head by its token's position (batch.pos).
  void rope(const Tensor& dst, const Tensor& src, const BatchInfo& batch, const RopeParams& params);

  // cache [width, n_ctx, n_seq] (F32/F16/Q8_0/Q4_0...): row t of src [width, n] F32 goes to cell
  // (batch.pos[t], batch.seq[t]), converted to the cache type.
  void kv_store(const Tensor& cache, const Tensor& src, const BatchInfo& batch);
  // Causal attention over the cache: token t attends cells 0..pos[t] of stream seq[t].
  // dst [head_dim_v, n_head, n] F32; q [head_dim_k, n_head, n] F32; k_cache [head_dim_k*n_head_kv,
  // n_ctx, n_seq]; v_cache [head_dim_v*n_head_kv, n_ctx, n_seq]. Query head h reads KV head
  // h / (n_head / n_head_kv).
  void attention(const Tensor& dst, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                 const BatchInfo& batch, const AttentionParams& params);

  // Router: p = softmax(logits [n_expert, n]); ids [k, n] I32 = the k largest (ties: lower
  // index first, in descending order); weights [k, n] = p of those, divided by their sum
  // (clamped below at 6.103515625e-5) when normalize.
  void moe_route(const Tensor& ids, const Tensor& weights, const Tensor& logits, bool normalize);
  // dst [n_embd, n] = sum_j weights[j] * down_e(silu(gate_e x) * up_e x), e = ids[j] per token.
  void moe_experts(const Tensor& dst, const Tensor& x, const ExpertWeights& experts, const Tensor& ids,
                   const Tensor& weights);

  // Causal depthwise conv + SiLU, per sequence run: x [C, n], w [K, C] F32 (tap 0 = oldest),
  // state [(K-1)*C, n_seq] F32 (the K-1 previous raw inputs, oldest first), updated.
  void ssm_conv(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w, const BatchInfo& batch);
  // Gated delta rule (qwen3next.md §4.3 step 8), per sequence run, from the saved state:
  // q, k [d_k, n_k_heads, n] (q already scaled), v [d_v, n_v_heads, n], g, beta [n_v_heads, n],
  // state [d_k*d_v*n_v_heads, n_seq] F32 (head h: S[i][m] at h*d_k*d_v + i*d_v + m), updated;
  // dst [d_v, n_v_heads, n]. Value head j reads key/query head j / (n_v_heads / n_k_heads).
  void gated_delta_net(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                       const Tensor& beta, const Tensor& state, const BatchInfo& batch);

  // ---- fused ops: chains the forward issues per token, one op each. The default implementation
  // composes the ops above (so results are those of the chain, bit for bit); a backend overrides
  // it with one kernel. Inputs marked scratch may be overwritten (the default works in place).
  // beta = sigmoid(b); g = a_coef * softplus(a + dt_bias); dt_bias, a_coef broadcast as binary's b.
  void delta_gates(const Tensor& beta, const Tensor& g, const Tensor& b, const Tensor& a, const Tensor& dt_bias,
                   const Tensor& a_coef);
  // q = l2_norm(q_src) * q_scale; k = l2_norm(k_src).
  void qk_l2_norm(const Tensor& q, const Tensor& k, const Tensor& q_src, const Tensor& k_src, float eps, float q_scale);
  // q [hd, n_head, n] = rope(rms_norm(q_src) * q_norm); k [hd, n_head_kv, n] = rope(rms_norm(k) *
  // k_norm) in place; then kv_store(k_cache, k) and kv_store(v_cache, v) (k, v [width, n] rows).
  void qk_norm_rope_store(const Tensor& q, const Tensor& q_src, const Tensor& q_norm, const Tensor& k,
                          const Tensor& k_norm, const Tensor& v, const Tensor& k_cache, const Tensor& v_cache,
                          float eps, const BatchInfo& batch, const RopeParams& rope);
  // dst = x * sigmoid(gate), gate broadcast as binary's b; gate is scratch.
  void mul_sigmoid(const Tensor& dst, const Tensor& x, const Tensor& gate);
  // dst = residual + (routed + shared * sigmoid(gate)), gate [1, n]; shared and gate are scratch.
  void moe_shared_add(const Tensor& dst, const Tensor& residual, const Tensor& routed, const Tensor& shared,
                      const Tensor& gate);
  // h = h + y; dst = rms_norm(h) * weight.
  void add_rms_norm(const Tensor& dst, const Tensor& h, const Tensor& y, const Tensor& weight, float eps);
  // The MoE half of a layer: h = h + y; m = rms_norm(h) * norm; h = h + moe(m), where moe(m) is
  // the router's softmax top-k (moe_route) over the routed experts (moe_experts) plus the shared
  // expert, times sigmoid(shared_inp . m) where it has that gate. Ops in the order of that chain
  // (add_rms_norm, matmuls, moe_route, moe_experts, matmul_swiglu, matmul, moe_shared_add); the
  // scratch holds their intermediates (a backend's own version may leave some unwritten).
  void moe_ffn(const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeFfnWeights& w,
               const MoeFfnScratch& s);
  // Products of one input: p.dst = p.w times x for each of the (1 to kMaxMatmuls) products, as
  // that many matmul calls in order (a backend may run them as one pass: one quantization of x,
  // one launch).
  static constexpr int kMaxMatmuls = 4;
  void matmuls(const Tensor& x, std::initializer_list<MatmulProduct> products);
  void matmuls(const Tensor& x, std::span<const MatmulProduct> products);
  // dst [m, n] = silu(gate x) * (up x) for gate, up [k, m] of one type (the SwiGLU FFN's first
  // half); scratch [m, n] F32 is scratch (the default keeps up x there).
  void matmul_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x, const Tensor& scratch);
  // The products of rms_norm(x) * weight (weight [k] F32): scratch [k, n] F32 = rms_norm(x) * weight,
  // then matmuls(scratch, products). A backend may fold the norm into the products' input
  // prologue and leave scratch unwritten; scratch may alias x exactly (x is then scratch too).
  void norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                    std::initializer_list<MatmulProduct> products);
  void norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                    std::span<const MatmulProduct> products);
  // dst [m, n] = w [d0 * d1, m] times x * sigmoid(gate), x [d0, d1, n] contiguous and gate of its
  // shape (any strides): mul_sigmoid(x, x, gate), then the matmul. x and gate are scratch.
  void gated_matmul(const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate);
  // The delta-net block's recurrent middle (DeltaNetStep): delta_gates, ssm_conv, qk_l2_norm,
  // gated_delta_net and rms_norm_gated, in that order, by default.
  void delta_net_step(const DeltaNetStep& s, const BatchInfo& batch);

 protected:
  // Marks one public op call for the profiling hooks below (ops a fused default composes count
  // as part of the fused op, not again). Every public op opens one.
  class OpScope {
   public:
    OpScope(Backend& b, const char* op);
    ~OpScope();
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;

   private:
    Backend& b_;
    const char* op_;
    bool outer_;
  };
  // Called around every outermost op outside measuring mode: a backend that can time its ops
  // (the CUDA backend with MOESERVE_PROFILE=1) overrides them. The defaults do nothing.
  virtual void op_begin(const char* op);
  virtual void op_end(const char* op);

  // Implementations call skip(bytes) first: in measuring mode it records the workspace the op
  // needs and returns true (do nothing); otherwise it returns false and workspace() holds bytes.
  bool skip(size_t workspace_bytes = 0);
  bool measuring() const { return measuring_; }
  void* workspace() const { return static_cast<char*>(workspace_.data()) + workspace_offset_; }
  size_t workspace_size() const { return workspace_.size() > workspace_offset_ ? workspace_.size() - workspace_offset_ : 0; }
  // While one is open, ops use the workspace from `offset` bytes on (skip plans offset + bytes)
  // and may need at most `limit` bytes (more is an internal error): ops of two branches that run
  // at once (the CUDA backend's forked MoE FFN) get disjoint regions.
  class WorkspaceRegion {
   public:
    WorkspaceRegion(Backend& b, size_t offset, size_t limit);
    ~WorkspaceRegion();
    WorkspaceRegion(const WorkspaceRegion&) = delete;
    WorkspaceRegion& operator=(const WorkspaceRegion&) = delete;

   private:
    Backend& b_;
    size_t offset_, limit_;
  };

  virtual void do_get_rows(const Tensor& dst, const Tensor& src, const Tensor& ids) = 0;
  virtual void do_rms_norm(const Tensor& dst, const Tensor& src, const Tensor* weight, float eps) = 0;
  virtual void do_rms_norm_gated(const Tensor& dst, const Tensor& src, const Tensor& weight, const Tensor& z,
                                 float eps) = 0;
  virtual void do_l2_norm(const Tensor& dst, const Tensor& src, float eps) = 0;
  virtual void do_matmul(const Tensor& dst, const Tensor& w, const Tensor& x) = 0;
  virtual void do_unary(const Tensor& dst, const Tensor& src, UnaryOp op) = 0;
  virtual void do_binary(const Tensor& dst, const Tensor& a, const Tensor& b, BinaryOp op) = 0;
  virtual void do_scale(const Tensor& dst, const Tensor& src, float factor) = 0;
  virtual void do_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up) = 0;
  virtual void do_copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void do_zero(const Tensor& dst) = 0;
  virtual void do_rope(const Tensor& dst, const Tensor& src, const BatchInfo& batch, const RopeParams& params) = 0;
  virtual void do_kv_store(const Tensor& cache, const Tensor& src, const BatchInfo& batch) = 0;
  virtual void do_attention(const Tensor& dst, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                            const BatchInfo& batch, const AttentionParams& params) = 0;
  virtual void do_moe_route(const Tensor& ids, const Tensor& weights, const Tensor& logits, bool normalize) = 0;
  virtual void do_moe_experts(const Tensor& dst, const Tensor& x, const ExpertWeights& experts, const Tensor& ids,
                              const Tensor& weights) = 0;
  virtual void do_ssm_conv(const Tensor& dst, const Tensor& x, const Tensor& state, const Tensor& w,
                           const BatchInfo& batch) = 0;
  virtual void do_gated_delta_net(const Tensor& dst, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& g, const Tensor& beta, const Tensor& state,
                                  const BatchInfo& batch) = 0;
  virtual void do_delta_gates(const Tensor& beta, const Tensor& g, const Tensor& b, const Tensor& a,
                              const Tensor& dt_bias, const Tensor& a_coef);
  virtual void do_qk_l2_norm(const Tensor& q, const Tensor& k, const Tensor& q_src, const Tensor& k_src, float eps,
                             float q_scale);
  virtual void do_qk_norm_rope_store(const Tensor& q, const Tensor& q_src, const Tensor& q_norm, const Tensor& k,
                                     const Tensor& k_norm, const Tensor& v, const Tensor& k_cache,
                                     const Tensor& v_cache, float eps, const BatchInfo& batch, const RopeParams& rope);
  virtual void do_mul_sigmoid(const Tensor& dst, const Tensor& x, const Tensor& gate);
  virtual void do_moe_shared_add(const Tensor& dst, const Tensor& residual, const Tensor& routed, const Tensor& shared,
                                 const Tensor& gate);
  virtual void do_add_rms_norm(const Tensor& dst, const Tensor& h, const Tensor& y, const Tensor& weight, float eps);
  virtual void do_matmuls(const Tensor& x, std::span<const MatmulProduct> products);
  virtual void do_matmul_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                                const Tensor& scratch);
  virtual void do_norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                               std::span<const MatmulProduct> products);
  virtual void do_gated_matmul(const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate);
  virtual void do_delta_net_step(const DeltaNetStep& s, const BatchInfo& batch);
  virtual void do_moe_ffn(const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeFfnWeights& w,
                          const MoeFfnScratch& s);
  virtual void do_upload(const Tensor& dst, const void* host) = 0;
  virtual void do_download(void* host, const Tensor& src) = 0;

 private:
  DeviceId device_;
  bool measuring_ = false;
  int op_depth_ = 0;
  size_t workspace_needed_ = 0;
  size_t workspace_offset_ = 0;
  size_t workspace_limit_ = SIZE_MAX;
  Buffer workspace_;
};

// The scalar reference of every op (single thread, plain loops, no workspace reuse tricks). Its
// memory is host memory; `device` labels it (tests let it stand in for an accelerator).
std::unique_ptr<Backend> make_ref_backend(DeviceId device = {});
// The fast CPU backend: n_threads workers (0 = one per core), kernels picked by cpuid.
std::unique_ptr<Backend> make_cpu_backend(int n_threads);
// The CUDA backend on GPU `device` (one stream; decode steps recorded as CUDA graphs). A build
// without CUDA fails with a clear error.
std::unique_ptr<Backend> make_cuda_backend(int device);

}  // namespace moeserve
