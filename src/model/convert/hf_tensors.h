// Where each GGUF tensor comes from in a Hugging Face checkpoint, and how it is transformed
// (shared/spec/qwen3next.md §3-§7). Planning only looks at names and shapes, so a checkpoint that
// does not match its config is refused before anything is written.
#pragma once

#include <string>
#include <vector>

#include "model/convert/model_shape.h"
#include "model/convert/safetensors.h"

namespace moeserve::convert {

struct Recipe {
  enum class Kind {
    Copy,          // same bytes (PyTorch [out, in] == ggml {in, out}); conv1d [C,1,K] == {K, C}
    PlusOne,       // qwen3next zero-centred RMSNorm weight w -> 1 + w
    NegExp,        // qwen3next A_log -> A = -exp(A_log)
    RopePermute,   // llama q/k rows: per head, rotate-half order -> interleaved pairs
    QkvzToQkv,     // qwen3next in_proj_qkvz grouped per k-head -> [q all | k all | v all]
    QkvzToGate,    // ... -> z of all v-heads
    StackExperts,  // per-expert matrices -> one 3-D tensor, expert-major
    FusedGate,     // transformers-5 experts.gate_up_proj [E, 2I, H] -> the gate half of each expert
    FusedUp,       // ... -> the up half
  };
  Kind kind = Kind::Copy;
  std::vector<std::string> sources;
  std::vector<int64_t> source_shape;  // expected PyTorch shape of every source
  int64_t heads = 0;                  // RopePermute: heads the rows are split into
};

// Throws naming the GGUF tensor and the checkpoint tensor when a source is missing or has a
// shape other than the config implies.
Recipe plan_tensor(const TensorSpec& spec, const ModelShape& shape, const SafetensorsSet& st);

// The tensor's F32 data in ggml order (spec.n_elements() values).
std::vector<float> run_recipe(const Recipe& recipe, const TensorSpec& spec, const ModelShape& shape,
                              const SafetensorsSet& st);

// Checkpoint tensors no GGUF tensor is made from, by design (the MTP head, rotary caches).
bool ignored_hf_tensor(const std::string& name);

}  // namespace moeserve::convert
