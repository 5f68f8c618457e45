// A backend over two devices (design §4, manual hybrid): a primary compute backend (the GPU) that
// owns every activation, cache and scratch buffer, and a host backend (the CPU backend) that runs
// the ops whose weight lives in host memory: matmul whose w, get_rows whose src, and moe_experts
// whose experts are in RAM. For those the activations (x, ids, expert weights) are copied into
// host staging memory (page-locked when the primary provides it), the host backend runs the op
// and the result is copied back. Every other op runs on the primary.
//
// Staging and the streaming buffers are planned by the dry runs (begin/end_measure) like the
// workspaces of both backends, so a step allocates nothing.
//
// Routed experts in RAM (design §4), two ways by batch size:
// * batches of at least kStreamMinTokens tokens (prefill): the layer's expert weights are copied
//   to the device and the primary's MoE kernel runs there. Two device buffers take turns: the
//   copy of the next RAM-resident layer is queued when this one's op is issued, so it runs on the
//   copy queue while the device computes. The experts are copied once (after the dry runs) from
//   the mapping to page-locked memory (alloc_host) so the copies run at DMA speed; the host's
//   kernels read them there too. (Page-locking the file mapping in place would save that copy;
//   a first try with cudaHostRegister on the mapping stalled loading on the H100 machine, for a
//   reason not established yet.)
// * smaller batches (decode): x, ids and weights cross to the host in one transfer when they lie
//   close together (else one per tensor), queued without waiting; the host runs the experts only
//   when a later op touches the result (or at the end of the step), so the device runs the ops in
//   between (the shared expert) meanwhile; the sum goes back in one upload. Where the primary
//   can read host memory in place (Backend::reads_host_memory: CUDA with unified addressing) and
//   the layer's experts are in page-locked memory, the primary runs the first slots of every
//   token's routed experts itself, reading that memory over the bus, while the host runs the
//   others; its sum lands in dst and the host's is added after the upload. The result differs
//   from the host's alone only as two backends' sums over the slots do (order and rounding).
// Steps with host ops are not handed to the primary as replayable steps (graph key 0): a
// recorded graph would not contain the host's work.
//
// MOESERVE_SPLIT_PROFILE=1 prints where the host time of those ops went when the backend closes.
// MOESERVE_SPLIT_GPU_SLOTS=N sets how many of a token's routed slots the primary runs in a decode
// step (0: all on the host, as before this option; k or more: all on the primary); unset:
// half of them.
//
// Not done yet: record the device work between host ops as graph segments (decode launches
// eagerly today); copy only the experts a streamed batch routes to; gather the embedding rows on
// the host from the host copy of the tokens instead of downloading the uploaded ids.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace moeserve {

// weight_home: the device of each weight by name (the primary's or the host's device).
// Batches of at least this many tokens run RAM-resident experts on the primary, streamed.
constexpr int64_t kStreamMinTokens = 32;

// What a split backend's decode expert ops with experts in RAM did so far: ops whose slots the
// primary and the host shared, ops the primary ran alone, ops the host ran alone.
struct SplitExpertCounts {
  int64_t shared = 0, primary_only = 0, host_only = 0;
};
// Zeros for a backend that is not a split backend.
SplitExpertCounts split_expert_counts(const Backend& backend);

std::unique_ptr<Backend> make_split_backend(std::unique_ptr<Backend> primary, std::unique_ptr<Backend> host,
                                            std::function<DeviceId(const std::string&)> weight_home);

}  // namespace moeserve
