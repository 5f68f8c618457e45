#include "runtime/scheduler.h"

#include <algorithm>
#include <chrono>
#include <exception>

#include "core/error.h"

namespace moeserve {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

Scheduler::Scheduler(Engine& engine, const SchedulerOptions& options)
    : engine_(engine), options_(options), recurrent_(engine.has_recurrent_state()), slots_(size_t(engine.n_seq())) {
  options_.n_step_tokens = std::clamp<int64_t>(options_.n_step_tokens, 1, engine_.n_batch());
  options_.max_checkpoints = std::max(options_.max_checkpoints, 2);
}

Scheduler::~Scheduler() { stop(); }

std::shared_ptr<TaskHandle> Scheduler::submit(GenerationTask task) {
  if (task.prompt.empty()) fail("the prompt is empty");
  // One position must stay free for the first generated token.
  if (int64_t(task.prompt.size()) >= engine_.n_ctx()) {
    fail("the prompt has ", task.prompt.size(), " tokens, more than the context of ", engine_.n_ctx(),
         " tokens allows (start the server with a larger -c)");
  }
  auto handle = std::make_shared<TaskHandle>();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) fail("the server is shutting down");
    queue_.push_back({std::move(task), handle});
  }
  wake_.notify_one();
  return handle;
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
}

Scheduler::Snapshot Scheduler::snapshot() const {
  Snapshot s;
  s.slots_total = int(slots_.size());
  s.slots_busy = busy_.load();
  {
    std::lock_guard lock(mutex_);
    s.queue_length = int(queue_.size());
  }
  const double capacity = double(engine_.n_ctx()) * double(slots_.size());
  s.kv_usage = capacity > 0 ? double(cached_positions_.load()) / capacity : 0.0;
  s.checkpoint_bytes = checkpoint_bytes_.load();
  s.ram_entries = ram_entries_.load();
  s.ram_bytes = ram_bytes_gauge_.load();
  s.ram_restores = ram_restores_.load();
  return s;
}

void Scheduler::run() {
  for (;;) {
    std::deque<Queued> admitted;
    {
      std::unique_lock lock(mutex_);
      const auto has_free_slot = [this] {
        return std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.active; });
      };
      wake_.wait(lock, [&] { return stopping_ || busy_.load() > 0 || (!queue_.empty() && has_free_slot()); });
      if (stopping_) break;
      // Admit as many queued tasks as there are free slots, oldest first.
      int free_slots = int(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.active; }));
      while (free_slots-- > 0 && !queue_.empty()) {
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    for (Queued& q : admitted) admit(std::move(q));
    if (busy_.load() > 0) step();
  }
  // Shutting down: every task still known ends, so no request thread waits forever.
  for (size_t seq = 0; seq < slots_.size(); ++seq) {
    if (slots_[seq].active) finish(int(seq), false, "the server is shutting down");
  }
  std::lock_guard lock(mutex_);
  for (Queued& q : queue_) {
    TaskStats stats;
    stats.error = "the server is shutting down";
    if (q.task.on_done) q.task.on_done(stats, false);
  }
  queue_.clear();
}

size_t Scheduler::reusable_prefix(const std::vector<int32_t>& tokens, const std::vector<Checkpoint>& checkpoints,
                                  const std::vector<int32_t>& prompt, const Checkpoint** checkpoint) const {
  *checkpoint = nullptr;
  // At least the last prompt token must run, to produce the logits of the first new token.
  const size_t limit = std::min(common_prefix(tokens, prompt), prompt.size() - 1);
  if (!recurrent_ || tokens.size() <= limit) return recurrent_ ? tokens.size() : limit;
  for (auto it = checkpoints.rbegin(); it != checkpoints.rend(); ++it) {
    if (size_t(it->state.n_pos) <= limit) {
      *checkpoint = &*it;
      return size_t(it->state.n_pos);
    }
  }
  return 0;
}

int Scheduler::pick_slot(const std::vector<int32_t>& prompt) const {
  int best = -1;
  size_t best_reuse = 0;
  for (size_t seq = 0; seq < slots_.size(); ++seq) {
    const Slot& slot = slots_[seq];
    if (slot.active) continue;
    const Checkpoint* cp = nullptr;
    const size_t reuse = reusable_prefix(slot.tokens, slot.checkpoints, prompt, &cp);
    // Longest reusable prefix; among equals the least recently used slot, whose cache is the
    // least likely to be asked for again.
    if (best < 0 || reuse > best_reuse || (reuse == best_reuse && slot.last_used < slots_[size_t(best)].last_used)) {
      best = int(seq);
      best_reuse = reuse;
    }
  }
  return best;
}

void Scheduler::save_to_ram(int seq) {
  Slot& slot = slots_[size_t(seq)];
  if (options_.cache_ram_bytes <= 0 || slot.tokens.empty()) return;
  RamEntry e;
  e.state = engine_.seq_save(seq, true);
  e.tokens = slot.tokens;
  e.checkpoints = slot.checkpoints;
  e.bytes = int64_t(e.state.bytes() + e.tokens.size() * sizeof(int32_t));
  for (const Checkpoint& c : e.checkpoints) e.bytes += c.bytes;
  if (e.bytes > options_.cache_ram_bytes) return;
  // Entries this one extends are superseded.
  for (auto it = ram_.begin(); it != ram_.end();) {
    if (it->tokens.size() <= e.tokens.size() && std::equal(it->tokens.begin(), it->tokens.end(), e.tokens.begin())) {
      ram_bytes_ -= it->bytes;
      it = ram_.erase(it);
    } else {
      ++it;
    }
  }
  ram_bytes_ += e.bytes;
  ram_.push_front(std::move(e));
  while (ram_bytes_ > options_.cache_ram_bytes) {
    ram_bytes_ -= ram_.back().bytes;
    ram_.pop_back();
  }
}

bool Scheduler::restore_from_ram(int seq, std::list<RamEntry>::iterator entry, size_t reuse, const Checkpoint* cp) {
  Slot& slot = slots_[size_t(seq)];
  try {
    engine_.seq_restore(seq, entry->state);
    if (cp) engine_.seq_restore(seq, cp->state);
    else if (!recurrent_) engine_.seq_truncate(seq, int32_t(reuse));
  } catch (const std::exception&) {
    return false;  // the caller clears the slot
  }
  slot.tokens = std::move(entry->tokens);
  slot.tokens.resize(reuse);
  slot.checkpoints = std::move(entry->checkpoints);
  ram_bytes_ -= entry->bytes;
  ram_.erase(entry);
  ++ram_restores_;
  return true;
}

void Scheduler::admit(Queued queued) {
  if (queued.handle->cancelled) {
    if (queued.task.on_done) queued.task.on_done(TaskStats{}, false);
    return;
  }
  const std::vector<int32_t>& prompt = queued.task.prompt;
  int seq = pick_slot(prompt);
  const Checkpoint* cp = nullptr;
  size_t reuse = reusable_prefix(slots_[size_t(seq)].tokens, slots_[size_t(seq)].checkpoints, prompt, &cp);
  // The RAM tier, when one of its conversations goes further than every free slot's.
  auto ram_best = ram_.end();
  const Checkpoint* ram_cp = nullptr;
  size_t ram_reuse = 0;
  for (auto it = ram_.begin(); it != ram_.end(); ++it) {
    const Checkpoint* c = nullptr;
    const size_t r = reusable_prefix(it->tokens, it->checkpoints, prompt, &c);
    if (r > ram_reuse) {
      ram_best = it;
      ram_reuse = r;
      ram_cp = c;
    }
  }
  bool from_ram = false;
  if (ram_best != ram_.end() && ram_reuse > reuse) {
    // The least recently used free slot takes it; what that slot held moves to RAM.
    for (size_t s = 0; s < slots_.size(); ++s) {
      if (!slots_[s].active && slots_[s].last_used < slots_[size_t(seq)].last_used) seq = int(s);
    }
    save_to_ram(seq);
    from_ram = restore_from_ram(seq, ram_best, ram_reuse, ram_cp);
    if (!from_ram) {
      engine_.seq_clear(seq);
      slots_[size_t(seq)].tokens.clear();
      slots_[size_t(seq)].checkpoints.clear();
    }
  } else {
    Slot& slot = slots_[size_t(seq)];
    // Taken over by another conversation (less than half of what it holds is re-used): keep its
    // state in RAM.
    if (common_prefix(slot.tokens, prompt) * 2 < slot.tokens.size()) save_to_ram(seq);
    try {
      if (reuse == 0) {
        engine_.seq_clear(seq);
        slot.tokens.clear();
      } else if (cp) {
        engine_.seq_restore(seq, cp->state);
        slot.tokens.resize(reuse);
      } else if (!recurrent_) {
        engine_.seq_truncate(seq, int32_t(reuse));
        slot.tokens.resize(reuse);
      }
    } catch (const std::exception&) {
      // A state that cannot be restored is simply not reused.
      engine_.seq_clear(seq);
      slot.tokens.clear();
      slot.checkpoints.clear();
    }
  }
  Slot& slot = slots_[size_t(seq)];
  // Checkpoints past the resumed position describe tokens about to be overwritten.
  std::erase_if(slot.checkpoints, [&](const Checkpoint& c) { return size_t(c.state.n_pos) > slot.tokens.size(); });

  auto active = std::make_unique<Active>();
  active->task = std::move(queued.task);
  active->handle = std::move(queued.handle);
  active->n_processed = slot.tokens.size();
  active->stats.n_prompt = int64_t(active->task.prompt.size());
  active->stats.n_cached = int64_t(slot.tokens.size());
  active->stats.from_ram = from_ram;
  active->stats.slot = seq;
  active->t_start = now_seconds();
  plan_checkpoints(*active, slot.tokens.size());
  slot.active = std::move(active);
  ++busy_;
  update_gauges();
  Active& a = *slot.active;
  if (a.task.on_start) {
    try {
      a.task.on_start(a.stats);
    } catch (const std::exception&) {
      // A request thread's callback must not take the engine loop down.
    }
  }
}

void Scheduler::update_gauges() {
  int64_t positions = 0, bytes = 0;
  for (const Slot& s : slots_) {
    positions += int64_t(s.tokens.size());
    for (const Checkpoint& c : s.checkpoints) bytes += c.bytes;
  }
  cached_positions_ = positions;
  checkpoint_bytes_ = bytes;
  ram_entries_ = int64_t(ram_.size());
  ram_bytes_gauge_ = ram_bytes_;
}

void Scheduler::plan_checkpoints(Active& a, size_t from) const {
  a.cut_at.clear();
  if (!recurrent_) return;
  const std::vector<int32_t>& prompt = a.task.prompt;
  const size_t n = prompt.size();
  for (size_t p = (from / size_t(options_.checkpoint_every) + 1) * size_t(options_.checkpoint_every); p < n;
       p += size_t(options_.checkpoint_every)) {
    a.cut_at.push_back(int32_t(p));
  }
  // Ends of the last few messages: an agent's next turn usually re-renders only the last ones.
  std::vector<int32_t> boundaries;
  for (size_t i = from; i + 1 < n; ++i) {
    if (std::find(a.task.boundary_tokens.begin(), a.task.boundary_tokens.end(), prompt[i]) != a.task.boundary_tokens.end()) {
      boundaries.push_back(int32_t(i + 1));
    }
  }
  const size_t keep = std::min<size_t>(boundaries.size(), 3);
  a.cut_at.insert(a.cut_at.end(), boundaries.end() - long(keep), boundaries.end());
  a.cut_at.push_back(int32_t(n));
  std::sort(a.cut_at.begin(), a.cut_at.end());
  a.cut_at.erase(std::unique(a.cut_at.begin(), a.cut_at.end()), a.cut_at.end());
}

void Scheduler::save_checkpoint(int seq) {
  Slot& slot = slots_[size_t(seq)];
  Checkpoint c{engine_.seq_save(seq), 0};
  c.bytes = int64_t((c.state.conv.size() + c.state.ssm.size()) * sizeof(float));
  slot.checkpoints.push_back(std::move(c));
  // Too many: drop the one whose neighbours are closest, keeping the spread even; the newest two
  // (end of the last messages) always stay.
  while (int(slot.checkpoints.size()) > options_.max_checkpoints) {
    size_t drop = 1;
    int32_t best_gap = INT32_MAX;
    for (size_t i = 1; i + 2 < slot.checkpoints.size(); ++i) {
      const int32_t gap = slot.checkpoints[i + 1].state.n_pos - slot.checkpoints[i - 1].state.n_pos;
      if (gap < best_gap) {
        best_gap = gap;
        drop = i;
      }
    }
    slot.checkpoints.erase(slot.checkpoints.begin() + long(drop));
  }
}

void Scheduler::finish(int seq, bool hit_limit, const std::string& error) {
  Slot& slot = slots_[size_t(seq)];
  std::unique_ptr<Active> a = std::move(slot.active);
  if (!a) return;
  const double t = now_seconds();
  if (a->generating) {
    a->stats.generation_seconds = t - a->t_first;
  } else {
    a->stats.prompt_seconds = t - a->t_start;
  }
  a->stats.error = error;
  slot.last_used = ++clock_;
  --busy_;
  if (a->task.on_done) {
    try {
      a->task.on_done(a->stats, hit_limit);
    } catch (const std::exception&) {
      // A request thread's callback must not take the engine loop down.
    }
  }
}

void Scheduler::step() {
  struct Entry {
    int seq;
    int32_t count;   // tokens this step
    bool generate;   // one generated token, or a chunk of the prompt
  };
  std::vector<BatchToken> batch;
  std::vector<Entry> entries;
  int64_t budget = options_.n_step_tokens;

  for (size_t seq = 0; seq < slots_.size(); ++seq) {
    Slot& slot = slots_[seq];
    if (slot.active && slot.active->handle->cancelled) finish(int(seq), false);
  }
  // Generating slots first: one token each keeps every stream moving.
  for (size_t seq = 0; seq < slots_.size() && budget > 0; ++seq) {
    Slot& slot = slots_[seq];
    if (!slot.active || !slot.active->generating) continue;
    batch.push_back({slot.active->next_token, int32_t(slot.tokens.size()), int32_t(seq), true});
    entries.push_back({int(seq), 1, true});
    --budget;
  }
  // Then prompt chunks, cut at checkpoint positions.
  for (size_t seq = 0; seq < slots_.size() && budget > 0; ++seq) {
    Slot& slot = slots_[seq];
    if (!slot.active || slot.active->generating) continue;
    Active& a = *slot.active;
    size_t end = a.task.prompt.size();
    if (!a.cut_at.empty()) end = std::min(end, size_t(a.cut_at.front()));
    const int32_t count = int32_t(std::min<int64_t>(budget, int64_t(end - a.n_processed)));
    for (int32_t i = 0; i < count; ++i) {
      const size_t p = a.n_processed + size_t(i);
      batch.push_back({a.task.prompt[p], int32_t(p), int32_t(seq), p + 1 == a.task.prompt.size()});
    }
    entries.push_back({int(seq), count, false});
    budget -= count;
  }
  if (batch.empty()) return;

  try {
    engine_.decode(batch);
  } catch (const std::exception& e) {
    for (const Entry& entry : entries) {
      Slot& slot = slots_[size_t(entry.seq)];
      engine_.seq_clear(entry.seq);
      slot.tokens.clear();
      slot.checkpoints.clear();
      finish(entry.seq, false, str_cat("engine error: ", e.what()));
    }
    return;
  }

  int64_t output = 0;
  for (const Entry& entry : entries) {
    Slot& slot = slots_[size_t(entry.seq)];
    Active& a = *slot.active;
    const float* logits = nullptr;
    if (entry.generate) {
      slot.tokens.push_back(a.next_token);
      logits = engine_.logits(output++);
    } else {
      slot.tokens.insert(slot.tokens.end(), a.task.prompt.begin() + long(a.n_processed),
                         a.task.prompt.begin() + long(a.n_processed + size_t(entry.count)));
      a.n_processed += size_t(entry.count);
      if (!a.cut_at.empty() && a.n_processed == size_t(a.cut_at.front())) {
        save_checkpoint(entry.seq);
        a.cut_at.erase(a.cut_at.begin());
      }
      if (a.n_processed < a.task.prompt.size()) continue;
      logits = engine_.logits(output++);
      a.generating = true;
      a.t_first = now_seconds();
      a.stats.prompt_seconds = a.t_first - a.t_start;
    }
    int32_t token = -1;
    bool keep_going = false;
    try {
      token = a.task.sample(logits, slot.tokens);
      ++a.stats.n_generated;
      keep_going = a.task.on_token(token);
    } catch (const std::exception& e) {
      finish(entry.seq, false, str_cat("sampling failed: ", e.what()));
      continue;
    }
    if (!keep_going) {
      finish(entry.seq, false);
    } else if (a.task.max_tokens >= 0 && a.stats.n_generated >= a.task.max_tokens) {
      finish(entry.seq, true);
    } else if (int64_t(slot.tokens.size()) >= engine_.n_ctx()) {
      finish(entry.seq, true);  // the context is full: the sampled token has no position left
    } else {
      a.next_token = token;
    }
  }
  update_gauges();
}

}  // namespace moeserve
