// The scheduler against the engine run directly: continuous batching of several requests, and
// prompt-cache reuse (KV truncation, recurrent checkpoints), must produce exactly the greedy tokens
// each prompt gives alone from an empty cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <thread>

#include "core/error.h"
#include "model/model.h"
#include "runtime/scheduler.h"
#include "tiny_models.h"

namespace moeserve::test {
namespace {

int32_t argmax(const float* logits, int64_t n) { return int32_t(std::max_element(logits, logits + n) - logits); }

struct Fixture {
  std::unique_ptr<Backend> backend = make_cpu_backend(2);
  std::unique_ptr<Model> model;
  std::unique_ptr<Engine> engine;

  Fixture(const std::string& arch, int n_seq) {
    TinyConfig c;
    c.arch = arch;
    const std::string path = TinyModelWriter(c).write("moeserve_sched_" + arch + ".gguf");
    model = load_model(std::make_shared<const gguf::GgufFile>(gguf::GgufFile::open(path)), *backend);
    EngineOptions o;
    o.n_ctx = 256;
    o.n_seq = n_seq;
    o.n_batch = 256;  // the reference runs whole prompts in one step
    o.type_k = o.type_v = GgmlType::F32;
    engine = std::make_unique<Engine>(*model, *backend, o);
  }

  // Greedy tokens for a prompt, straight through the engine from an empty sequence 0.
  std::vector<int32_t> reference(const std::vector<int32_t>& prompt, int n) {
    engine->seq_clear(0);
    std::vector<BatchToken> batch;
    for (size_t i = 0; i < prompt.size(); ++i) batch.push_back({prompt[i], int32_t(i), 0, i + 1 == prompt.size()});
    engine->decode(batch);
    std::vector<int32_t> out{argmax(engine->logits(0), engine->n_vocab())};
    while (int(out.size()) < n) {
      const BatchToken t{out.back(), engine->seq_length(0), 0, true};
      engine->decode({&t, 1});
      out.push_back(argmax(engine->logits(0), engine->n_vocab()));
    }
    engine->seq_clear(0);
    return out;
  }
};

struct Result {
  std::vector<int32_t> tokens;
  TaskStats stats;
  bool hit_limit = false;
};

std::future<Result> submit(Scheduler& s, const std::vector<int32_t>& prompt, int n, int64_t n_vocab) {
  auto promise = std::make_shared<std::promise<Result>>();
  auto result = std::make_shared<Result>();
  GenerationTask t;
  t.prompt = prompt;
  t.max_tokens = n;
  t.boundary_tokens = {5};
  t.sample = [n_vocab](const float* logits, std::span<const int32_t>) { return argmax(logits, n_vocab); };
  t.on_token = [result](int32_t token) {
    result->tokens.push_back(token);
    return true;
  };
  t.on_done = [promise, result](const TaskStats& stats, bool hit_limit) {
    result->stats = stats;
    result->hit_limit = hit_limit;
    promise->set_value(*result);
  };
  s.submit(std::move(t));
  return promise->get_future();
}

std::vector<int32_t> tokens(int n, uint32_t seed) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) {
    const int32_t v = int32_t((seed * 31 + uint32_t(i) * 17 + (uint32_t(i) * uint32_t(i)) % 7) % 90);
    t.push_back(v == 5 ? 6 : v);  // token 5 marks message boundaries: only where a test puts it
  }
  return t;
}

class SchedulerArch : public ::testing::TestWithParam<std::string> {};

TEST_P(SchedulerArch, ConcurrentRequestsMatchSoloRuns) {
  Fixture f(GetParam(), 3);
  const std::vector<std::vector<int32_t>> prompts = {tokens(70, 1), tokens(9, 2), tokens(130, 3), tokens(33, 4)};
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : prompts) expected.push_back(f.reference(p, 12));

  SchedulerOptions o;
  o.n_step_tokens = 48;  // forces chunked prefill interleaved with decoding
  o.checkpoint_every = 32;
  Scheduler s(*f.engine, o);
  std::thread loop([&] { s.run(); });
  std::vector<std::future<Result>> futures;
  for (const auto& p : prompts) futures.push_back(submit(s, p, 12, f.engine->n_vocab()));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const Result r = futures[i].get();
    EXPECT_EQ(r.tokens, expected[i]) << "prompt " << i;
    EXPECT_TRUE(r.hit_limit);
    EXPECT_EQ(r.stats.n_generated, 12);
  }
  s.stop();
  loop.join();
}

TEST_P(SchedulerArch, FollowUpTurnReusesThePrefix) {
  Fixture f(GetParam(), 2);
  std::vector<int32_t> turn1 = tokens(100, 7);
  turn1[40] = turn1[80] = 5;  // message boundaries
  std::vector<int32_t> turn2 = turn1;
  for (int32_t t : tokens(30, 8)) turn2.push_back(t);  // the conversation goes on
  std::vector<int32_t> edited = turn1;
  edited.resize(90);  // an earlier part re-rendered differently: only a shorter prefix is shared
  for (int32_t t : tokens(20, 9)) edited.push_back(t);
  const auto expected2 = f.reference(turn2, 8), expected3 = f.reference(edited, 8);

  SchedulerOptions o;
  o.n_step_tokens = 64;
  o.checkpoint_every = 32;
  Scheduler s(*f.engine, o);
  std::thread loop([&] { s.run(); });
  submit(s, turn1, 6, f.engine->n_vocab()).get();
  const Result r2 = submit(s, turn2, 8, f.engine->n_vocab()).get();
  EXPECT_EQ(r2.tokens, expected2);
  // Turn 1's prompt plus the generated tokens the engine ran: all of turn 1 is reusable, through a
  // checkpoint (recurrent) or KV truncation.
  EXPECT_EQ(r2.stats.n_cached, 100);
  const Result r3 = submit(s, edited, 8, f.engine->n_vocab()).get();
  EXPECT_EQ(r3.tokens, expected3);
  if (f.engine->has_recurrent_state()) {
    EXPECT_EQ(r3.stats.n_cached, 81);  // the checkpoint after the message boundary at 80
  } else {
    EXPECT_EQ(r3.stats.n_cached, 90);
  }
  s.stop();
  loop.join();
}

TEST_P(SchedulerArch, EvictedConversationResumesFromTheRamTier) {
  // One slot: conversation B takes it over from A, whose state moves to RAM; A's next turn gets it
  // back (KV cells, recurrent state, checkpoints) and gives exactly the tokens of a cold run.
  Fixture f(GetParam(), 1);
  std::vector<int32_t> a1 = tokens(60, 11);
  a1[30] = 5;
  std::vector<int32_t> a2 = a1;
  for (int32_t t : tokens(25, 12)) a2.push_back(t);
  const std::vector<int32_t> b = tokens(50, 13);
  const auto expected_a2 = f.reference(a2, 8), expected_b = f.reference(b, 6);

  for (const int64_t ram : {int64_t(64) << 20, int64_t(0)}) {
    SchedulerOptions o;
    o.n_step_tokens = 64;
    o.checkpoint_every = 32;
    o.cache_ram_bytes = ram;
    Scheduler s(*f.engine, o);
    std::thread loop([&] { s.run(); });
    submit(s, a1, 4, f.engine->n_vocab()).get();
    EXPECT_EQ(submit(s, b, 6, f.engine->n_vocab()).get().tokens, expected_b);
    const Scheduler::Snapshot mid = s.snapshot();
    const Result r = submit(s, a2, 8, f.engine->n_vocab()).get();
    EXPECT_EQ(r.tokens, expected_a2);
    if (ram > 0) {
      EXPECT_EQ(mid.ram_entries, 1);
      EXPECT_GT(mid.ram_bytes, 0);
      EXPECT_TRUE(r.stats.from_ram);
      EXPECT_EQ(r.stats.n_cached, 60);  // a1 whole: its end (recurrent) or KV truncation
      EXPECT_EQ(s.snapshot().ram_restores, 1);
      EXPECT_EQ(s.snapshot().ram_entries, 1);  // b's state took a's place
    } else {
      EXPECT_EQ(mid.ram_entries, 0);
      EXPECT_FALSE(r.stats.from_ram);
      EXPECT_EQ(r.stats.n_cached, 0);
    }
    s.stop();
    loop.join();
    for (int seq = 0; seq < f.engine->n_seq(); ++seq) f.engine->seq_clear(seq);
  }
}

TEST_P(SchedulerArch, PromptLongerThanContextIsRefused) {
  Fixture f(GetParam(), 1);
  Scheduler s(*f.engine, {});
  GenerationTask t;
  t.prompt = tokens(300, 1);
  EXPECT_THROW(s.submit(std::move(t)), Error);
}

INSTANTIATE_TEST_SUITE_P(Archs, SchedulerArch, ::testing::Values("qwen3next", "qwen3moe", "qwen3", "llama"));

}  // namespace
}  // namespace moeserve::test
