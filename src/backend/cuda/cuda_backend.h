// The CUDA backend: every op on one stream of one device (a decode MoE FFN forks its shared expert
// onto a second, cuda_moe_fork.cu). Internal to src/backend/cuda (the rest of
// the code sees Backend and make_cuda_backend). The weight-side kernels live behind
// cuda_matmul.h; the other ops in cuda_ops_*.cu, one file per family.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_profile.h"

namespace moeserve::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;

  std::string name() const override { return name_; }
  Buffer alloc(size_t bytes) override;
  // Page-locked, so copies from and to it run asynchronously at full speed.
  Buffer alloc_host(size_t bytes) override;
  // With unified addressing a kernel reads cudaHostAlloc memory through its host pointer.
  bool reads_host_memory() const override { return reads_host_memory_; }
  bool one_allocation(const void* begin, const void* end) const override;
  void run_step(const BatchInfo& batch, uint64_t graph_key, const std::function<void()>& issue) override;
  // Uploads on a second (copy) stream, forked from and joined to the compute stream by events;
  // downloads on the compute stream, waited for through an event.
  uint64_t upload_async(const Tensor& dst, const void* host) override;
  void wait_upload(uint64_t ticket) override;
  void download_async(void* host, const Tensor& src) override;
  void sync_downloads() override;

  cudaStream_t stream() const { return stream_; }
  int sm_count() const { return sm_count_; }

 protected:
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
  void do_delta_gates(const Tensor& beta, const Tensor& g, const Tensor& b, const Tensor& a, const Tensor& dt_bias,
                      const Tensor& a_coef) override;
  void do_qk_l2_norm(const Tensor& q, const Tensor& k, const Tensor& q_src, const Tensor& k_src, float eps,
                     float q_scale) override;
  void do_qk_norm_rope_store(const Tensor& q, const Tensor& q_src, const Tensor& q_norm, const Tensor& k,
                             const Tensor& k_norm, const Tensor& v, const Tensor& k_cache, const Tensor& v_cache,
                             float eps, const BatchInfo& batch, const RopeParams& rope) override;
  void do_mul_sigmoid(const Tensor& dst, const Tensor& x, const Tensor& gate) override;
  void do_moe_shared_add(const Tensor& dst, const Tensor& residual, const Tensor& routed, const Tensor& shared,
                         const Tensor& gate) override;
  void do_add_rms_norm(const Tensor& dst, const Tensor& h, const Tensor& y, const Tensor& weight, float eps) override;
  void do_matmuls(const Tensor& x, std::span<const MatmulProduct> products) override;
  void do_norm_matmuls(const Tensor& x, const Tensor& weight, float eps, const Tensor& scratch,
                       std::span<const MatmulProduct> products) override;
  void do_gated_matmul(const Tensor& dst, const Tensor& w, const Tensor& x, const Tensor& gate) override;
  void do_matmul_swiglu(const Tensor& dst, const Tensor& gate, const Tensor& up, const Tensor& x,
                        const Tensor& scratch) override;
  // cuda_delta_step.cu: one kernel for decode batches.
  void do_delta_net_step(const DeltaNetStep& s, const BatchInfo& batch) override;
  // cuda_moe_fork.cu: decode batches run the shared expert on a second stream, beside the router
  // and the routed experts.
  void do_moe_ffn(const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeFfnWeights& w,
                  const MoeFfnScratch& s) override;

 private:
  // Device copies of a batch's positions, sequences and runs. Within a step they were staged by
  // run_step; an op issued outside a step stages its batch here (never while recording a graph:
  // recorded kernels must read what run_step refreshes before each replay).
  DeviceBatch device_batch(const BatchInfo& batch);
  void stage_batch(const BatchInfo& batch);
  bool batch_matches(const BatchInfo& batch) const;
  void clear_graphs();

  int device_ = 0;
  std::string name_;
  int sm_count_ = 0;
  int cc_major_ = 0;  // compute capability
  bool reads_host_memory_ = false;
  cudaStream_t stream_ = nullptr;

  // Batch staging: pinned host memory -> device buffers, one async copy per step.
  size_t batch_capacity_ = 0;  // tokens (runs never outnumber tokens)
  void* batch_host_ = nullptr;   // pinned: pos | seq | runs
  void* batch_device_ = nullptr;
  cudaEvent_t batch_copied_ = nullptr;
  std::vector<int32_t> staged_pos_, staged_seq_;
  std::vector<SeqRun> staged_runs_;
  bool batch_valid_ = false;
  bool recording_ = false;

  // Overlapping copies: tickets count the uploads; a copy's completion is the ring event of its
  // ticket (a later copy re-recording it only makes a wait longer, never wrong: copies complete
  // in order on the one copy stream).
  static constexpr int kUploadEvents = 8;
  cudaStream_t copy_stream_ = nullptr;
  cudaEvent_t fork_ = nullptr;
  cudaEvent_t uploaded_[kUploadEvents] = {};
  cudaEvent_t downloaded_ = nullptr;
  uint64_t n_uploads_ = 0;

  // The forked MoE FFN (cuda_moe_fork.cu): its branch stream, forked from and joined to the
  // compute stream by these events; ops issue on it while a SideStream is open.
  class SideStream;
  cudaStream_t side_stream_ = nullptr;
  cudaEvent_t moe_fork_ = nullptr;
  cudaEvent_t moe_join_ = nullptr;

  std::unique_ptr<OpProfiler> profiler_;  // MOESERVE_PROFILE=1

  std::unordered_map<uint64_t, cudaGraphExec_t> graphs_;
  const void* graph_workspace_ = nullptr;  // the workspace the recorded graphs use
};

}  // namespace moeserve::cuda
