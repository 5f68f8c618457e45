// The engine: one model on one backend with its caches (KV for attention layers, conv + recurrent
// state for delta-net layers) for n_seq sequences, and a step function over batches of tokens
// from several sequences. Memory (caches, step scratch, logits) is planned and allocated here, at
// construction; decode() allocates nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "backend/arena.h"
#include "backend/backend.h"
#include "model/model.h"

namespace moeserve {

enum class FlashMode { off, on, automatic };

struct EngineOptions {
  int64_t n_ctx = 4096;  // positions per sequence; 0 = the model's training context
  int n_seq = 1;         // sequences (slots) with their own caches
  int64_t n_batch = 512; // most tokens per decode() call
  GgmlType type_k = GgmlType::F16;
  GgmlType type_v = GgmlType::F16;
  FlashMode flash = FlashMode::automatic;
};

struct BatchToken {
  int32_t token = 0;
  int32_t pos = 0;   // must continue its sequence: seq_length(seq), then +1 per token
  int32_t seq = 0;
  bool logits = false;
};

// A saved sequence state. Without KV (a prompt-cache checkpoint) it holds the recurrent state and
// restoring it rewinds the sequence to n_pos; with KV it is the whole sequence, which can be
// restored into any slot (the RAM tier of the prompt cache).
struct SequenceState {
  int32_t n_pos = 0;
  std::vector<float> conv;  // every delta-net layer's rolling conv inputs, in layer order
  std::vector<float> ssm;   // every delta-net layer's recurrent state, in layer order
  bool has_kv = false;
  std::vector<uint8_t> kv;  // with has_kv: per attention layer, K then V cells [0, n_pos), in cache type
  size_t bytes() const { return (conv.size() + ssm.size()) * sizeof(float) + kv.size(); }
};

// The KV types the cache accepts (-ctk / -ctv).
bool is_kv_cache_type(GgmlType type);

class Engine {
 public:
  Engine(const Model& model, Backend& backend, const EngineOptions& options);

  const Model& model() const { return model_; }
  Backend& backend() const { return be_; }
  int64_t n_ctx() const { return n_ctx_; }
  int n_seq() const { return options_.n_seq; }
  int64_t n_batch() const { return options_.n_batch; }
  int64_t n_vocab() const { return model_.hparams().n_vocab; }
  bool flash_attention() const { return flash_; }
  // Delta-net (recurrent) layers: their state rewinds only by restoring a saved SequenceState.
  bool has_recurrent_state() const { return recurrent_; }
  GgmlType type_k() const { return options_.type_k; }
  GgmlType type_v() const { return options_.type_v; }
  size_t kv_bytes() const { return kv_bytes_; }
  size_t recurrent_bytes() const { return recurrent_bytes_; }
  size_t scratch_bytes() const { return arena_.capacity(); }
  // "KV f16/f16 4096 x 1 seq 96.0 MiB, recurrent 75.4 MiB, scratch 40.1 MiB, logits 296.8 MiB"
  std::string memory_summary() const;

  // Runs the tokens (at most n_batch). Afterwards logits(i) is the i-th token of the batch (in
  // batch order) that asked for logits. Bad tokens, sequences or positions: moeserve::Error, and
  // no cache was changed.
  void decode(std::span<const BatchToken> batch);
  int64_t n_outputs() const { return n_outputs_; }
  const float* logits(int64_t i) const;

  // Sequence operations.
  int32_t seq_length(int seq) const;
  void seq_clear(int seq);
  // Keeps positions [0, n). Models with recurrent layers can only keep all or nothing (restore a
  // saved state to rewind them).
  void seq_truncate(int seq, int32_t n);
  // dst becomes the first n positions of src (recurrent models: n must be src's length).
  void seq_copy(int src, int dst, int32_t n);
  // `with_kv`: also the KV cells of the sequence's positions (device -> host).
  SequenceState seq_save(int seq, bool with_kv = false) const;
  // Rewinds seq to the saved state. Without KV, the KV cells below state.n_pos must still be those
  // of seq; with KV they are written back (host -> device), into this or any other sequence.
  void seq_restore(int seq, const SequenceState& state);

 private:
  void check_seq(int seq) const;
  size_t kv_cells_bytes(int32_t n_pos) const;
  // The K and V cells [0, n_pos) of seq, layer by layer (contiguous views).
  void for_each_kv_cells(int seq, int32_t n_pos, const std::function<void(const Tensor&)>& fn) const;
  void run_step(const StepInputs& in, uint64_t graph_key);

  const Model& model_;
  Backend& be_;
  EngineOptions options_;
  int64_t n_ctx_ = 0;
  bool flash_ = true;
  bool recurrent_ = false;

  std::vector<Buffer> cache_buffers_;
  LayerCaches caches_;
  size_t kv_bytes_ = 0, recurrent_bytes_ = 0;
  Arena arena_;
  Buffer input_tokens_, input_rows_;  // I32 [n_batch] each, on the device
  std::vector<float> logits_;         // host [n_batch][n_vocab]
  int64_t n_outputs_ = 0;
  std::vector<int32_t> seq_len_;

  // Host staging for one step, sized at construction.
  std::vector<int32_t> step_tokens_, step_pos_, step_seq_, step_rows_;
  std::vector<SeqRun> step_runs_;
  std::vector<int32_t> order_;
};

}  // namespace moeserve
