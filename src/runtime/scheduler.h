// Continuous batching over the engine's sequence slots, with a prompt cache.
//
// One engine thread runs steps; each step carries one token of every generating slot and chunks
// of prompts being prefilled, so running streams keep flowing while a long prompt is processed.
// A new request takes the idle slot whose cached tokens share the longest prefix with its prompt
// and only processes the rest. For models with recurrent (delta-net) layers, whose state cannot be
// rewound, slots keep checkpoints of that state (every `checkpoint_every` tokens of a prompt, at
// message ends near the end of the prompt, and at its end), so that a follow-up agent turn resumes
// from the last checkpoint inside the shared prefix.
//
// When a slot is taken over by another conversation, its state (KV cells, recurrent state and
// checkpoints) moves to a RAM tier bounded by `cache_ram_bytes` (least recently used entries go
// first); a request whose prompt continues a saved conversation further than any slot's does gets
// that state back.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace moeserve {

struct TaskStats {
  int64_t n_prompt = 0;     // tokens of the prompt
  int64_t n_cached = 0;     // of which re-used from the slot's cache
  bool from_ram = false;    // the re-used state came back from the RAM tier
  int64_t n_generated = 0;
  double prompt_seconds = 0;
  double generation_seconds = 0;
  int slot = -1;
  std::string error;        // set when the task failed inside the engine (an engine fault)
};

struct GenerationTask {
  std::vector<int32_t> prompt;
  int64_t max_tokens = -1;  // -1: until the context is full
  // Picks the next token from the logits; `context` holds the sequence's tokens so far.
  std::function<int32_t(const float* logits, std::span<const int32_t> context)> sample;
  // Called on the engine thread once the task has a slot: stats.n_cached says how much of the
  // prompt the cache supplies.
  std::function<void(const TaskStats& stats)> on_start;
  // Called on the engine thread for each generated token; false ends the generation.
  std::function<bool(int32_t token)> on_token;
  // Called once, on the engine thread, when the task ends (finished, cancelled or failed).
  // `hit_limit`: stopped by max_tokens or a full context.
  std::function<void(const TaskStats& stats, bool hit_limit)> on_done;
  // Tokens after which a checkpoint is worth keeping (e.g. the end-of-message token).
  std::vector<int32_t> boundary_tokens;
};

// Shared between the engine thread and the request's thread.
struct TaskHandle {
  std::atomic<bool> cancelled{false};
  void cancel() { cancelled = true; }
};

struct SchedulerOptions {
  int64_t n_step_tokens = 512;    // tokens per engine step (<= the engine's n_batch)
  int64_t checkpoint_every = 4096;
  int max_checkpoints = 12;       // per slot; older ones are thinned out
  int64_t cache_ram_bytes = int64_t(8192) << 20;  // RAM tier for evicted slot states; 0: off
};

class Scheduler {
 public:
  Scheduler(Engine& engine, const SchedulerOptions& options);
  ~Scheduler();

  // Queues a task. Its prompt must be non-empty and fit the context (checked here: moeserve::Error).
  std::shared_ptr<TaskHandle> submit(GenerationTask task);

  // The engine loop; returns after stop().
  void run();
  void stop();

  struct Snapshot {
    int slots_total = 0;
    int slots_busy = 0;
    int queue_length = 0;
    double kv_usage = 0;      // cached positions / capacity over all slots
    int64_t checkpoint_bytes = 0;
    int64_t ram_entries = 0;   // saved states in the RAM tier
    int64_t ram_bytes = 0;
    int64_t ram_restores = 0;  // requests that resumed from the RAM tier, since start
  };
  Snapshot snapshot() const;

 private:
  struct Checkpoint {
    SequenceState state;
    int64_t bytes = 0;
  };
  struct Active {
    GenerationTask task;
    std::shared_ptr<TaskHandle> handle;
    TaskStats stats;
    size_t n_processed = 0;        // prompt tokens already in the engine
    std::vector<int32_t> cut_at;   // prompt positions at which to checkpoint, ascending
    bool generating = false;
    int32_t next_token = -1;       // sampled, not yet run
    double t_start = 0, t_first = 0;
  };
  struct Slot {
    std::vector<int32_t> tokens;  // what the engine's sequence holds, position by position
    std::vector<Checkpoint> checkpoints;  // ascending n_pos
    std::unique_ptr<Active> active;
    uint64_t last_used = 0;
  };

  // A conversation's state saved from a slot that another one took over.
  struct RamEntry {
    std::vector<int32_t> tokens;
    SequenceState state;  // with KV, at tokens.size()
    std::vector<Checkpoint> checkpoints;
    int64_t bytes = 0;
  };

  struct Queued {
    GenerationTask task;
    std::shared_ptr<TaskHandle> handle;
  };

  void admit(Queued queued);
  int pick_slot(const std::vector<int32_t>& prompt) const;
  size_t reusable_prefix(const std::vector<int32_t>& tokens, const std::vector<Checkpoint>& checkpoints,
                         const std::vector<int32_t>& prompt, const Checkpoint** checkpoint) const;
  void save_to_ram(int seq);
  bool restore_from_ram(int seq, std::list<RamEntry>::iterator entry, size_t reuse, const Checkpoint* cp);
  void plan_checkpoints(Active& a, size_t from) const;
  void step();
  void save_checkpoint(int seq);
  void finish(int seq, bool hit_limit, const std::string& error = "");
  void update_gauges();

  Engine& engine_;
  SchedulerOptions options_;
  bool recurrent_ = false;
  std::vector<Slot> slots_;
  uint64_t clock_ = 0;
  std::list<RamEntry> ram_;  // most recently used first
  int64_t ram_bytes_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Queued> queue_;
  bool stopping_ = false;
  // Gauges read by snapshot() from other threads.
  std::atomic<int> busy_{0};
  std::atomic<int64_t> cached_positions_{0};
  std::atomic<int64_t> checkpoint_bytes_{0};
  std::atomic<int64_t> ram_entries_{0}, ram_bytes_gauge_{0}, ram_restores_{0};
};

}  // namespace moeserve
