// Backend::moe_ffn for decode batches with the shared expert on a forked branch. A decode step's
// time per layer is the length of its chain of dependent launches, and the shared expert's two
// products read only the normed input m: not the router, the routing or the routed experts. So
// they run on a second stream, beside the routed half:
//
//   compute stream: add_rms_norm -> fork -> matmuls (router, shared gate logit) -> moe_route
//                                        -> moe_experts -> join -> moe_shared_add
//   side stream:                    fork -> matmul_swiglu (shared gate, up) -> matmul (shared down) -> join
//
// fork and join are an event record on one stream and a wait for it on the other, which stream
// capture turns into two parallel branches of the recorded decode graph (and which order the
// streams when ops are issued directly). Every op is the one the chain (Backend::do_moe_ffn)
// issues, on the same tensors, with the same kernels: results are the chain's bit for bit.
// Where the routed experts take the 8-bit decode kernels and the shared expert has its gate, the
// final add goes into the routed down kernel (MoeSharedAdd, the same arithmetic), and the join
// moves to just before that kernel: one launch fewer on the critical path.
// MOESERVE_CUDA_MOE_FORK=0 keeps the chain, for measurements.
#include <algorithm>
#include <cstdint>
#include <span>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_matmul.h"
#include "backend/cuda/cuda_matvec.h"
#include "core/env_switch.h"
#include "core/error.h"

namespace moeserve::cuda {
namespace {

// Up to this many tokens the products take the decode kernels, short and latency-bound; larger
// batches keep the GPU busy with each op alone and take the chain.
constexpr int64_t kMaxForkTokens = 8;
// The side branch's workspace region comes first; the main branch's starts at this alignment.
constexpr size_t kRegionAlign = 256;

bool moe_fork_enabled() {
  static const bool enabled = env_switch_on("MOESERVE_CUDA_MOE_FORK");
  return enabled;
}

}  // namespace

// Issues the ops of its scope on the side stream (every op launches on stream_).
class CudaBackend::SideStream {
 public:
  explicit SideStream(CudaBackend& b) : b_(b), saved_(b.stream_) { b.stream_ = b.side_stream_; }
  ~SideStream() { b_.stream_ = saved_; }
  SideStream(const SideStream&) = delete;
  SideStream& operator=(const SideStream&) = delete;

 private:
  CudaBackend& b_;
  cudaStream_t saved_;
};

void CudaBackend::do_moe_ffn(const Tensor& h, const Tensor& y, const Tensor& norm, float eps, const MoeFfnWeights& w,
                             const MoeFfnScratch& s) {
  const bool shared = w.shared_gate.data != nullptr, gated = shared && w.shared_inp.data != nullptr;
  bool supported = true;  // weights of a type without kernels: the chain's products report them
  for (const Tensor* t : w.tensors()) {
    if (t->data && !supports_weight_type(t->type)) supported = false;
  }
  if (!shared || !supported || h.ne[1] > kMaxForkTokens || !moe_fork_enabled()) {
    return Backend::do_moe_ffn(h, y, norm, eps, w, s);
  }
  const bool fold = gated && q8_moe_usable(s.m, w.experts);
  if (profiler_ && !measuring()) {
    profiler_->label("moe_ffn", str_cat("moe_ffn, shared expert forked", fold ? ", add folded" : "", ", n=", h.ne[1]));
  }
  add_rms_norm(s.m, h, y, norm, eps);

  // Workspace: the side branch's products (matmul_swiglu fused, or its two matmuls; the down
  // matmul) get [0, side_bytes), the main branch's (the router products, the routed experts)
  // [main_at, main_at + main_bytes). Both are allocated before the fork, so no op of either
  // branch grows (reallocates) the workspace while the other's kernels may be using it; each
  // region's limit makes an op that needs more than sized here an internal error, also when
  // planning.
  const MatmulProduct router_products[] = {{s.logits, w.router}, {s.gate, w.shared_inp}};
  const std::span<const MatmulProduct> router(router_products, gated ? 2 : 1);
  const size_t side_bytes = std::max({matmul_workspace_bytes(s.shared_h, w.shared_gate, s.m),
                                      matmul_workspace_bytes(s.shared_up, w.shared_up, s.m),
                                      matmul_workspace_bytes(s.shared, w.shared_down, s.shared_h)});
  const size_t main_bytes = std::max(gated ? matmuls_workspace_bytes(s.m, router)
                                           : matmul_workspace_bytes(s.logits, w.router, s.m),
                                     moe_experts_workspace_bytes(s.routed, s.m, w.experts, s.ids));
  const size_t main_at = (side_bytes + kRegionAlign - 1) / kRegionAlign * kRegionAlign;
  skip(main_at + main_bytes);

  const bool issue = !measuring();  // a replayed step issues its ops in measuring mode: no events then
  if (issue) {
    MOESERVE_CUDA_CHECK(cudaEventRecord(moe_fork_, stream_));
    MOESERVE_CUDA_CHECK(cudaStreamWaitEvent(side_stream_, moe_fork_, 0));
  }
  try {
    {
      const SideStream side(*this);
      const WorkspaceRegion region(*this, 0, side_bytes);
      matmul_swiglu(s.shared_h, w.shared_gate, w.shared_up, s.m, s.shared_up);
      matmul(s.shared, w.shared_down, s.shared_h);
      if (issue) MOESERVE_CUDA_CHECK(cudaEventRecord(moe_join_, side_stream_));
    }
    const WorkspaceRegion region(*this, main_at, main_bytes);
    if (gated) {
      matmuls(s.m, router);
    } else {
      matmul(s.logits, w.router, s.m);
    }
    moe_route(s.ids, s.weights, s.logits, w.normalize);
    if (fold) {
      // moe_experts with moe_shared_add in its last kernel, which waits for the join itself
      // (s.routed is left unwritten).
      if (skip(moe_experts_workspace_bytes(s.routed, s.m, w.experts, s.ids))) return;
      const MoeSharedAdd add{h, s.shared, s.gate, moe_join_};
      return q8_moe_experts(stream_, s.routed, s.m, w.experts, s.ids, s.weights, workspace(), &add);
    }
    moe_experts(s.routed, s.m, w.experts, s.ids, s.weights);
  } catch (...) {
    // Join anyway, so that the side stream leaves a capture with the compute stream.
    if (issue) {
      cudaEventRecord(moe_join_, side_stream_);
      cudaStreamWaitEvent(stream_, moe_join_, 0);
    }
    throw;
  }
  if (issue) MOESERVE_CUDA_CHECK(cudaStreamWaitEvent(stream_, moe_join_, 0));
  if (gated) return moe_shared_add(h, h, s.routed, s.shared, s.gate);
  binary(s.routed, s.routed, s.shared, BinaryOp::add);
  binary(h, h, s.routed, BinaryOp::add);
}

}  // namespace moeserve::cuda
