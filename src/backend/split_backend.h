// A backend over two devices (design §4, manual hybrid): a primary compute backend (the GPU) that
// owns every activation, cache and scratch buffer, and a host backend (the CPU backend) that runs
// the ops whose weight lives in host memory: matmul whose w, get_rows whose src, and moe_experts
// whose experts are in RAM. For those the activations (x, ids, expert weights) are copied into
// host staging memory (page-locked when the primary provides it), the host backend runs the op
// and the result is copied back. Every other op runs on the primary.
//
// Staging is planned by the dry runs (begin/end_measure) like the workspaces of both backends,
// so a step allocates nothing. A step that contains host ops is not handed to the primary as a
// replayable step (graph key 0): a recorded graph would not contain the host's work.
//
// Decode with experts in RAM crosses per MoE layer: the normed hidden row, the top-k ids and
// weights (a few KiB) down, the expert sum up. Not done yet (design §4):
// * overlap: issue the downloads on a copy stream and let the GPU run the shared expert (and the
//   next layer's pre-work) while the CPU runs the routed experts, the upload waiting on an event;
// * one transfer instead of three: x, ids and weights adjacent in device scratch;
// * replay: record the GPU work between host ops as graph segments so that such steps replay
//   too (today they run eagerly); the embedding rows can be gathered on the CPU from the host
//   copy of the tokens before the step instead of downloading the uploaded ids.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace moeserve {

// weight_home: the device of each weight by name (the primary's or the host's device).
std::unique_ptr<Backend> make_split_backend(std::unique_ptr<Backend> primary, std::unique_ptr<Backend> host,
                                            std::function<DeviceId(const std::string&)> weight_home);

}  // namespace moeserve
