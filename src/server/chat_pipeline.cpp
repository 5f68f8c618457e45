#include "server/chat_pipeline.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>

#include "chat/jinja/error.h"
#include "chat/output_parser.h"
#include "chat/reasoning_parser.h"
#include "core/error.h"
#include "grammar/constrained_output.h"
#include "grammar/token_constraint.h"
#include "runtime/sampler.h"
#include "runtime/sampler_stop.h"

namespace moeserve::server {
namespace {

// What the engine thread hands to the request's thread.
struct Channel {
  struct Item {
    std::string text;
    std::optional<server::TokenLogprob> logprob;
    bool started = false;
    bool done = false;
    TaskStats stats;
    bool hit_limit = false;
  };
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<Item> items;

  void push(Item item) {
    {
      std::lock_guard lock(mutex);
      items.push_back(std::move(item));
    }
    ready.notify_one();
  }
  // Waits up to `timeout` for an item.
  std::optional<Item> pop(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex);
    if (!ready.wait_for(lock, timeout, [&] { return !items.empty(); })) return std::nullopt;
    Item item = std::move(items.front());
    items.pop_front();
    return item;
  }
};

SamplingParams sampling_params(const ServeOptions& o, const ChatRequest& r, int32_t n_vocab) {
  SamplingParams p;
  const SamplingRequest& s = r.sampling;
  p.temperature = float(s.temperature.value_or(o.temperature));
  p.top_k = s.top_k.value_or(o.top_k);
  p.top_p = float(s.top_p.value_or(o.top_p));
  p.min_p = float(s.min_p.value_or(o.min_p));
  p.repeat_penalty = float(s.repeat_penalty.value_or(o.repeat_penalty));
  p.presence_penalty = float(s.presence_penalty.value_or(o.presence_penalty));
  p.frequency_penalty = float(s.frequency_penalty.value_or(o.frequency_penalty));
  p.penalty_last_n = int32_t(s.repeat_last_n.value_or(o.repeat_last_n));
  p.typical_p = float(s.typical_p.value_or(o.typical_p));
  for (const auto& [token, bias] : o.logit_bias) {
    if (token >= n_vocab) fail("--logit-bias names token ", token, ", beyond the vocabulary of ", n_vocab);
    p.logit_bias.emplace_back(token, bias);
  }
  for (const auto& [token, bias] : s.logit_bias) {
    if (token >= n_vocab) throw ApiError{400, str_cat("logit_bias names token ", token, ", beyond the vocabulary of ", n_vocab), "invalid_request_error", "logit_bias"};
    p.logit_bias.emplace_back(token, bias);
  }
  if (s.seed) p.seed = *s.seed;
  else if (o.seed >= 0) p.seed = uint64_t(o.seed);
  p.logprobs = r.logprobs;
  p.n_probs = r.top_logprobs;
  return p;
}

int64_t generation_limit(const ServeOptions& o, const ChatRequest& r) {
  int64_t limit = r.max_tokens.value_or(-1);
  if (o.n_predict >= 0 && (limit < 0 || limit > o.n_predict)) limit = o.n_predict;
  return limit;
}

// The part shared by chat and raw completions: runs the task and feeds text to `on_text`.
ChatResult generate(ServedModel& model, const ServeOptions& options, const std::vector<int32_t>& prompt,
                    const ChatRequest& request, ChatStreamSink* sink, const std::function<bool()>& client_alive,
                    const std::function<bool(const std::string&, ChatResult&)>& on_text,
                    std::shared_ptr<const grammar::Grammar> grammar = nullptr) {
  const tokenizer::Tokenizer& tok = model.tokenizer();
  std::shared_ptr<Sampler> sampler;
  try {
    sampler = std::make_shared<Sampler>(sampling_params(options, request, int32_t(model.n_vocab())), int32_t(model.n_vocab()));
  } catch (const Error& e) {
    throw ApiError{400, str_cat("sampling parameters: ", e.what()), "invalid_request_error", ""};
  }
  for (int32_t t : prompt) sampler->accept(t);
  auto channel = std::make_shared<Channel>();
  // Engine-thread state of this generation (touched only by the callbacks, in order).
  struct EngineSide {
    tokenizer::StreamDecoder decoder;
    StopStringMatcher stops;
    SampledToken last;
    int stop_index = -1;
    bool end_of_generation = false;
    std::unique_ptr<grammar::TokenConstraint> constraint;  // constrained output, when asked for
    std::vector<float> masked;
  };
  auto side = std::make_shared<EngineSide>(EngineSide{tokenizer::StreamDecoder(tok), StopStringMatcher(request.stop), {}, -1, false, nullptr, {}});
  if (grammar) side->constraint = std::make_unique<grammar::TokenConstraint>(std::move(grammar), model.token_table());
  // How many fitting tokens the constraint must find, best first: as many as the sampler's top-k
  // keeps (1 for greedy), when nothing (penalties, bias) re-ranks the logits after the mask.
  size_t enough = 0;
  if (const SamplingParams& sp = sampler->params(); sp.repeat_penalty == 1.0f && sp.frequency_penalty == 0.0f &&
                                                     sp.presence_penalty == 0.0f && sp.logit_bias.empty()) {
    if (sp.temperature <= 0.0f && sp.typical_p >= 1.0f) enough = 1;
    else if (sp.top_k > 0) enough = size_t(sp.top_k);
  }
  const bool want_logprobs = request.logprobs;

  GenerationTask task;
  task.prompt = prompt;
  task.max_tokens = generation_limit(options, request);
  if (const tokenizer::TokenId im_end = tok.find("<|im_end|>"); im_end != tokenizer::kNoToken) task.boundary_tokens.push_back(im_end);
  const size_t n_vocab = size_t(model.n_vocab());
  task.sample = [sampler, side, n_vocab, enough](const float* logits, std::span<const int32_t>) {
    if (!side->constraint) {
      side->last = sampler->sample({logits, n_vocab});
      return side->last.token;
    }
    side->masked.assign(logits, logits + n_vocab);
    side->constraint->apply(side->masked, enough);
    side->last = sampler->sample(side->masked);
    side->constraint->accept(side->last.token);
    return side->last.token;
  };
  task.on_start = [channel](const TaskStats& stats) { channel->push({.started = true, .stats = stats}); };
  task.on_token = [&tok, side, channel, want_logprobs](int32_t token) {
    if (tok.is_end_of_generation(token)) {
      side->end_of_generation = true;
      return false;
    }
    Channel::Item item;
    const std::string piece = side->decoder.push(token);
    StopStringMatcher::Result r = side->stops.feed(piece);
    item.text = std::move(r.text);
    if (want_logprobs) {
      server::TokenLogprob lp;
      lp.token = tok.piece(token);
      lp.logprob = side->last.logprob;
      for (const auto& alt : side->last.top) lp.top.emplace_back(tok.piece(alt.token), alt.logprob);
      item.logprob = std::move(lp);
    }
    channel->push(std::move(item));
    if (r.matched >= 0) {
      side->stop_index = r.matched;
      return false;
    }
    return true;
  };
  task.on_done = [side, channel](const TaskStats& stats, bool hit_limit) {
    Channel::Item item;
    if (side->stop_index < 0) {
      const StopStringMatcher::Result r = side->stops.feed(side->decoder.finish());
      item.text = r.text + (r.matched >= 0 ? "" : side->stops.finish());
      if (r.matched >= 0) side->stop_index = r.matched;
    }
    item.done = true;
    item.stats = stats;
    item.hit_limit = hit_limit;
    channel->push(std::move(item));
  };

  std::shared_ptr<TaskHandle> handle;
  try {
    handle = model.scheduler().submit(std::move(task));
  } catch (const Error& e) {
    throw ApiError{400, e.what(), "invalid_request_error", "messages"};
  }

  ChatResult result;
  result.usage.prompt_tokens = int64_t(prompt.size());
  bool sink_open = true;
  // The client is checked between items too: text a parser holds back writes nothing, so a
  // hang-up would otherwise go unnoticed while tokens keep coming.
  auto next_check = std::chrono::steady_clock::now();
  for (;;) {
    std::optional<Channel::Item> item = channel->pop(std::chrono::milliseconds(100));
    if (const auto now = std::chrono::steady_clock::now(); !item || now >= next_check) {
      next_check = now + std::chrono::milliseconds(100);
      if (!client_alive()) handle->cancel();
    }
    if (!item) continue;
    if (item->started) {
      result.usage.cached_tokens = item->stats.n_cached;
      if (sink && sink_open && !sink->on_start(result.usage)) {
        sink_open = false;
        handle->cancel();
      }
      continue;
    }
    if (item->logprob) result.logprobs.push_back(std::move(*item->logprob));
    if (!item->text.empty() && !on_text(item->text, result)) {
      sink_open = false;
      handle->cancel();
    }
    if (item->done) {
      if (!item->stats.error.empty()) fail(item->stats.error);
      result.usage.completion_tokens = item->stats.n_generated;
      result.prompt_seconds = item->stats.prompt_seconds;
      result.generation_seconds = item->stats.generation_seconds;
      result.usage.cached_tokens = item->stats.n_cached;
      if (side->stop_index >= 0) {
        result.finish = FinishReason::stop_sequence;
        result.stop_sequence = request.stop[size_t(side->stop_index)];
      } else if (item->hit_limit && !side->end_of_generation) {
        result.finish = FinishReason::length;
      }
      return result;
    }
  }
}

void forward_events(const chat::EventList& events, ChatResult& result, ChatStreamSink* sink, bool& sink_open) {
  for (const chat::OutputEvent& e : events) {
    switch (e.kind) {
      case chat::EventKind::content:
        result.content += e.text;
        if (sink && sink_open) sink_open = sink->on_content(e.text);
        break;
      case chat::EventKind::reasoning:
        result.reasoning += e.text;
        if (sink && sink_open) sink_open = sink->on_reasoning(e.text);
        break;
      case chat::EventKind::tool_call_end: {
        ToolCall call{e.tool_id, e.tool_name, e.arguments};
        if (sink && sink_open) sink_open = sink->on_tool_call(call);
        result.tool_calls.push_back(std::move(call));
        break;
      }
      case chat::EventKind::tool_call_begin:
      case chat::EventKind::note: break;
    }
  }
}

// The grammar a reply must follow: tool calls when one is required, JSON for a JSON response
// format, nothing otherwise. Schemas the compiler cannot honour are the client's error.
std::shared_ptr<const grammar::Grammar> reply_grammar(const ServedModel& model, const ChatRequest& request, bool in_reasoning) {
  grammar::ReplyShape shape;
  if (in_reasoning) shape.reasoning_end = "</think>";
  const bool tool_required = request.tool_choice == ToolChoice::required || request.tool_choice == ToolChoice::named;
  if (tool_required && !request.tools.empty()) {
    const grammar::ToolSyntax syntax = model.tool_format() == chat::ToolCallFormat::qwen3_coder_xml
                                           ? grammar::ToolSyntax::qwen3_coder_xml
                                           : grammar::ToolSyntax::hermes_json;
    std::vector<std::string> allowed;
    if (request.tool_choice == ToolChoice::named) allowed.push_back(request.tool_choice_name);
    try {
      return grammar::tool_call_grammar(syntax, request.tools, allowed, request.parallel_tool_calls, shape);
    } catch (const Error& e) {
      throw ApiError{400, e.what(), "invalid_request_error", "tool_choice"};
    }
  }
  if (request.response_format == "json_object") return grammar::json_reply_grammar(nullptr, shape);
  if (request.response_format == "json_schema") {
    try {
      return grammar::json_reply_grammar(request.response_schema, shape);
    } catch (const Error& e) {
      throw ApiError{400, str_cat("response_format.json_schema: ", e.what()), "invalid_request_error",
                     "response_format.json_schema.schema"};
    }
  }
  return nullptr;
}

}  // namespace

RenderedPrompt render_chat_prompt(const ServedModel& model, const ServeOptions& options, const ChatRequest& request) {
  chat::ChatInputs in;
  in.messages = request.messages;
  if (!request.tools.empty() && request.tool_choice != ToolChoice::none) in.tools = request.tools;
  in.add_generation_prompt = true;
  if (!model.bos_text().empty()) in.bos_token = model.bos_text();
  if (!model.eos_text().empty()) in.eos_token = model.eos_text();
  in.extra = ordered_json::parse(options.chat_template_kwargs, nullptr, false);
  if (!in.extra.is_object()) in.extra = ordered_json::object();
  if (options.thinking_off && !in.extra.contains("enable_thinking")) in.extra["enable_thinking"] = false;
  for (const auto& [key, value] : request.chat_template_kwargs.items()) in.extra[key] = value;
  if (request.enable_thinking) in.extra["enable_thinking"] = *request.enable_thinking;

  RenderedPrompt p;
  try {
    p.text = model.chat_template().render(in);
  } catch (const jinja::TemplateError& e) {
    throw ApiError{400, str_cat("the chat template refused this conversation: ", e.what()), "invalid_request_error", "messages"};
  } catch (const Error& e) {
    throw ApiError{400, str_cat("cannot render this conversation: ", e.what()), "invalid_request_error", "messages"};
  }
  tokenizer::EncodeOptions eo;
  // Templates that write the BOS text themselves must not get a second one.
  eo.add_special = model.bos_text().empty() || p.text.rfind(model.bos_text(), 0) != 0;
  p.tokens = model.tokenizer().encode(p.text, eo);
  if (int64_t(p.tokens.size()) >= model.n_ctx()) {
    throw ApiError{400, str_cat("prompt is too long: ", p.tokens.size(), " tokens > ", model.n_ctx() - 1,
                               " maximum (the context is ", model.n_ctx(), " tokens; start the server with a larger -c)"),
                   "invalid_request_error", "messages"};
  }
  return p;
}

ChatResult run_chat(ServedModel& model, const ServeOptions& options, const ChatRequest& request, const RenderedPrompt& prompt,
                    ChatStreamSink* sink, const std::function<bool()>& client_alive) {
  chat::OutputParserOptions po;
  const bool opens_reasoning = model.template_has_reasoning() && chat::prompt_opens_reasoning(prompt.text);
  po.reasoning = model.template_has_reasoning() && options.split_reasoning;
  po.starts_in_reasoning = po.reasoning && opens_reasoning;
  if (!request.tools.empty() && request.tool_choice != ToolChoice::none) {
    po.tool_format = model.tool_format();
    po.tools = chat::ToolSet::from_openai(nlohmann::json::parse(request.tools.dump()));
  }
  po.id_seed = request.sampling.seed.value_or(std::random_device{}());
  std::shared_ptr<const grammar::Grammar> constraint = reply_grammar(model, request, opens_reasoning);
  if (constraint && po.tool_format == chat::ToolCallFormat::none && !request.tools.empty() &&
      request.tool_choice != ToolChoice::none) {
    po.tool_format = chat::ToolCallFormat::hermes_json;  // the syntax the constraint imposes
  }
  chat::OutputParser parser(std::move(po));
  bool sink_open = true;
  chat::EventList events;
  ChatResult result = generate(model, options, prompt.tokens, request, sink, client_alive,
                               [&](const std::string& text, ChatResult& r) {
                                 events.clear();
                                 parser.feed(text, events);
                                 forward_events(events, r, sink, sink_open);
                                 return sink_open;
                               },
                               std::move(constraint));
  events.clear();
  parser.finish(events);
  forward_events(events, result, sink, sink_open);
  if (!result.tool_calls.empty() && result.finish == FinishReason::stop) result.finish = FinishReason::tool_calls;
  if (sink && sink_open) sink->on_finish(result);
  return result;
}

ChatResult run_completion(ServedModel& model, const ServeOptions& options, const std::vector<int32_t>& prompt,
                          const ChatRequest& request, ChatStreamSink* sink, const std::function<bool()>& client_alive) {
  if (int64_t(prompt.size()) >= model.n_ctx()) {
    throw ApiError{400, str_cat("prompt is too long: ", prompt.size(), " tokens > ", model.n_ctx() - 1, " maximum"),
                   "invalid_request_error", "prompt"};
  }
  bool sink_open = true;
  ChatResult result = generate(model, options, prompt, request, sink, client_alive, [&](const std::string& text, ChatResult& r) {
    r.content += text;
    if (sink && sink_open) sink_open = sink->on_content(text);
    return sink_open;
  });
  if (sink && sink_open) sink->on_finish(result);
  return result;
}

}  // namespace moeserve::server
