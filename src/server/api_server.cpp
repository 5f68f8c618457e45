#include "server/api_server.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>

#include "core/error.h"
#include "server/api/anthropic_api.h"
#include "server/api/json_fields.h"
#include "server/api/openai_api.h"
#include "server/chat_pipeline.h"

namespace moeserve::server {
namespace {

constexpr const char* kJson = "application/json; charset=utf-8";

std::string random_id(const char* prefix, size_t n = 24) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = prefix;
  for (size_t i = 0; i < n; ++i) id += kChars[rng() % (sizeof kChars - 1)];
  return id;
}

int64_t unix_now() { return int64_t(std::time(nullptr)); }

std::string error_body(bool anthropic, const ApiError& e) {
  return anthropic ? anthropic_error_body(e) : openai_error_body(e);
}

}  // namespace

// The state of one API call while its handler runs.
struct ApiServer::Call {
  const HttpRequest& req;
  HttpResponder& res;
  Api api;
  std::shared_ptr<ServedModel> model;
  ordered_json body;
  int status = 200;
  ChatResult result;  // for the metrics
};

ApiServer::ApiServer(ServeOptions options) : options_(std::move(options)), http_([&] {
  HttpServerOptions h;
  h.host = options_.host;
  h.port = options_.port;
  h.idle_timeout_seconds = options_.timeout_seconds;
  return h;
}()) {
  http_.set_error_formatter([](const HttpRequest& req, int status, const std::string& message) {
    return error_body(req.path.rfind("/v1/messages", 0) == 0, ApiError{status, message});
  });
  add_routes();
}

ApiServer::~ApiServer() {
  stop();
  if (loader_.joinable()) loader_.join();
}

void ApiServer::start() {
  http_.listen();
  loader_ = std::thread([this] {
    try {
      auto m = std::make_shared<ServedModel>(options_);
      std::fprintf(stderr, "moeserve: model loaded: %s\n", m->summary().c_str());
      std::lock_guard lock(model_mutex_);
      model_ = std::move(m);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "moeserve serve: error: %s\n", e.what());
      load_failed_ = true;
      http_.stop();
    }
  });
}

int ApiServer::serve() {
  http_.serve();
  if (loader_.joinable()) loader_.join();
  return load_failed_ ? 1 : 0;
}

void ApiServer::stop() { http_.stop(); }

std::shared_ptr<ServedModel> ApiServer::model() const {
  std::lock_guard lock(model_mutex_);
  return model_;
}

bool ApiServer::authorized(const HttpRequest& req) const {
  if (options_.api_key.empty()) return true;
  if (const std::string* key = req.header("x-api-key"); key && *key == options_.api_key) return true;
  const std::string* auth = req.header("authorization");
  return auth && *auth == "Bearer " + options_.api_key;
}

void ApiServer::handle(Api api, const char* endpoint, const HttpRequest& req, HttpResponder& res,
                       const std::function<void(Call&)>& body, bool needs_model) {
  Call call{req, res, api, nullptr, {}};
  const bool anthropic = api == Api::anthropic;
  try {
    if (!authorized(req)) throw ApiError{401, "invalid or missing API key", anthropic ? "authentication_error" : "invalid_request_error"};
    if (needs_model) {
      call.model = model();
      if (!call.model) throw ApiError{503, "Loading model", anthropic ? "overloaded_error" : "unavailable_error"};
    }
    if (req.method == "POST") call.body = parse_json_body(req.body);
    body(call);
  } catch (const ApiError& e) {
    call.status = e.status;
    if (!res.responded()) {
      res.send(e.status, kJson, error_body(anthropic, e));
    } else {
      // Mid-stream: the status is sent already; say what went wrong in the stream's own terms.
      res.write(anthropic ? "event: error\ndata: " + anthropic_error_body(e) + "\n\n" : "data: " + openai_error_body(e) + "\n\n");
      res.end_stream();
    }
  } catch (const std::exception& e) {
    call.status = 500;
    const ApiError err{500, str_cat("internal error: ", e.what()), anthropic ? "api_error" : "server_error"};
    std::fprintf(stderr, "moeserve: %s %s: %s\n", req.method.c_str(), req.path.c_str(), e.what());
    if (!res.responded()) {
      res.send(500, kJson, error_body(anthropic, err));
    } else {
      res.write(anthropic ? "event: error\ndata: " + anthropic_error_body(err) + "\n\n" : "data: " + openai_error_body(err) + "\n\n");
      res.end_stream();
    }
  }
  metrics_.count_request(endpoint, call.status);
  const Usage& u = call.result.usage;
  std::fprintf(stderr, "moeserve: %s %s %d prompt=%lld cached=%lld generated=%lld\n", req.method.c_str(), req.path.c_str(),
               call.status, (long long)u.prompt_tokens, (long long)u.cached_tokens, (long long)u.completion_tokens);
  if (call.status == 200 && (u.prompt_tokens > 0 || u.completion_tokens > 0)) {
    metrics_.add_request_work(u.prompt_tokens - u.cached_tokens, call.result.prompt_seconds, u.completion_tokens,
                              call.result.generation_seconds, u.cached_tokens);
    metrics_.count_prompt_cache_lookup(call.result.usage.cached_tokens > 0);
  }
}

void ApiServer::add_routes() {
  using namespace std::placeholders;
  auto route = [this](const char* method, const char* path, Api api, const char* endpoint, void (ApiServer::*fn)(Call&),
                      bool needs_model = true) {
    http_.route(method, path, [this, api, endpoint, fn, needs_model](const HttpRequest& req, HttpResponder& res) {
      handle(api, endpoint, req, res, [this, fn](Call& c) { (this->*fn)(c); }, needs_model);
    });
  };
  for (const char* p : {"/v1/chat/completions", "/chat/completions"}) route("POST", p, Api::openai, "/v1/chat/completions", &ApiServer::chat_completions);
  for (const char* p : {"/v1/completions", "/completions"}) route("POST", p, Api::openai, "/v1/completions", &ApiServer::completions);
  for (const char* p : {"/v1/models", "/models"}) route("GET", p, Api::openai, "/v1/models", &ApiServer::models, false);
  route("POST", "/v1/messages", Api::anthropic, "/v1/messages", &ApiServer::messages);
  route("POST", "/v1/messages/count_tokens", Api::anthropic, "/v1/messages/count_tokens", &ApiServer::count_tokens);

  http_.route("GET", "/health", [this](const HttpRequest& req, HttpResponder& res) {
    if (model()) {
      res.send(200, kJson, R"({"status":"ok"})");
    } else {
      res.send(503, kJson, openai_error_body(ApiError{503, "Loading model", "unavailable_error"}));
    }
    metrics_.count_request("/health", model() ? 200 : 503);
  });
  http_.route("GET", "/metrics", [this](const HttpRequest& req, HttpResponder& res) {
    handle(Api::plain, "/metrics", req, res, [this](Call& c) {  // answers while loading too
      if (!options_.metrics) throw ApiError{501, "this server does not serve metrics: start it with --metrics", "not_supported_error"};
      Metrics::Gauges g;
      if (const std::shared_ptr<ServedModel> m = model()) {
        const Scheduler::Snapshot s = m->scheduler().snapshot();
        g = {s.slots_total, s.slots_busy, s.queue_length, s.kv_usage, s.checkpoint_bytes, s.ram_entries, s.ram_bytes,
             s.ram_restores};
      }
      c.res.send(200, "text/plain; version=0.0.4; charset=utf-8", metrics_.render(g));
    }, false);
  });
  http_.route("GET", "/props", [this](const HttpRequest& req, HttpResponder& res) {
    handle(Api::plain, "/props", req, res, [this](Call& c) {
      const ServedModel& m = *c.model;
      ordered_json props = {
          {"default_generation_settings",
           {{"n_ctx", m.n_ctx()},
            {"params", {{"temperature", options_.temperature}, {"top_k", options_.top_k}, {"top_p", options_.top_p},
                        {"min_p", options_.min_p}, {"typical_p", options_.typical_p},
                        {"repeat_penalty", options_.repeat_penalty}, {"repeat_last_n", options_.repeat_last_n},
                        {"presence_penalty", options_.presence_penalty},
                        {"frequency_penalty", options_.frequency_penalty}, {"n_predict", options_.n_predict}}}}},
          {"total_slots", options_.parallel},
          {"model_path", m.path()},
          {"model_alias", m.names().front()},
          {"chat_template", m.chat_template().source()},
          {"modalities", {{"vision", false}, {"audio", false}}},
          {"build_info", "moeserve " MOESERVE_VERSION_STRING}};
      c.res.send(200, kJson, props.dump());
    });
  });
  http_.route("POST", "/tokenize", [this](const HttpRequest& req, HttpResponder& res) {
    handle(Api::plain, "/tokenize", req, res, [](Call& c) {
      const auto content = opt_string(c.body, "content");
      if (!content) bad_request("content", "'content' is required");
      tokenizer::EncodeOptions eo;
      eo.add_special = opt_bool(c.body, "add_special").value_or(false);
      eo.parse_special = opt_bool(c.body, "parse_special").value_or(true);
      const bool pieces = opt_bool(c.body, "with_pieces").value_or(false);
      const auto ids = c.model->tokenizer().encode(*content, eo);
      ordered_json tokens = ordered_json::array();
      for (int32_t id : ids) {
        if (pieces) tokens.push_back({{"id", id}, {"piece", c.model->tokenizer().piece(id, true)}});
        else tokens.push_back(id);
      }
      c.res.send(200, kJson, ordered_json{{"tokens", std::move(tokens)}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    });
  });
  http_.route("POST", "/detokenize", [this](const HttpRequest& req, HttpResponder& res) {
    handle(Api::plain, "/detokenize", req, res, [](Call& c) {
      const ordered_json* tokens = opt_array(c.body, "tokens");
      if (!tokens) bad_request("tokens", "'tokens' is required");
      std::vector<int32_t> ids;
      for (const ordered_json& t : *tokens) {
        if (!t.is_number_integer()) bad_request("tokens", "'tokens' must be an array of token ids");
        ids.push_back(t.get<int32_t>());
      }
      const std::string text = c.model->tokenizer().decode(ids);
      c.res.send(200, kJson, ordered_json{{"content", text}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    });
  });
}

namespace {

// Anthropic clients (Claude Code) name Claude models; this server answers for its one model.
bool accepts_model(const ServedModel& m, const std::string& name, bool anthropic) {
  return name.empty() || m.answers_to(name) || (anthropic && name.rfind("claude", 0) == 0);
}

void check_model(const ServedModel& m, const std::string& name, bool anthropic) {
  if (!accepts_model(m, name, anthropic)) {
    throw ApiError{404, "model '" + name + "' is not served here (this server has '" + m.names().front() + "')",
                   anthropic ? "not_found_error" : "invalid_request_error", "model"};
  }
}

}  // namespace

void ApiServer::chat_completions(Call& c) {
  const ChatRequest r = parse_openai_chat_request(c.body);
  check_model(*c.model, r.model, false);
  const RenderedPrompt prompt = render_chat_prompt(*c.model, options_, r);
  const ResponseMeta meta{random_id("chatcmpl-"), r.model.empty() ? c.model->names().front() : r.model, unix_now()};
  auto alive = [&c] { return c.res.client_connected(); };
  if (r.stream) {
    c.res.begin_stream(200, "text/event-stream");
    auto sink = make_openai_chat_stream([&c](const std::string& f) { return c.res.write(f); }, meta, r.include_usage);
    c.result = run_chat(*c.model, options_, r, prompt, sink.get(), alive);
    c.res.end_stream();
  } else {
    c.result = run_chat(*c.model, options_, r, prompt, nullptr, alive);
    c.res.send(200, kJson, openai_chat_response(c.result, meta).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}

void ApiServer::completions(Call& c) {
  const CompletionRequest cr = parse_openai_completion_request(c.body);
  check_model(*c.model, cr.model, false);
  std::vector<int32_t> prompt;
  if (cr.prompt.is_string()) {
    tokenizer::EncodeOptions eo;
    eo.add_special = true;
    prompt = c.model->tokenizer().encode(cr.prompt.get<std::string>(), eo);
  } else {
    for (const ordered_json& t : cr.prompt) {
      const int64_t id = t.get<int64_t>();
      if (id >= c.model->n_vocab()) bad_request("prompt", str_cat("token id ", id, " is beyond the vocabulary of ", c.model->n_vocab()));
      prompt.push_back(int32_t(id));
    }
  }
  if (prompt.empty()) bad_request("prompt", "'prompt' is empty");
  ChatRequest r;
  r.max_tokens = cr.max_tokens;
  if (!r.max_tokens) r.max_tokens = 16;  // OpenAI's default for completions
  r.stop = cr.stop;
  r.sampling = cr.sampling;
  const ResponseMeta meta{random_id("cmpl-"), cr.model.empty() ? c.model->names().front() : cr.model, unix_now()};
  auto alive = [&c] { return c.res.client_connected(); };
  if (cr.stream) {
    c.res.begin_stream(200, "text/event-stream");
    auto sink = make_openai_completion_stream([&c](const std::string& f) { return c.res.write(f); }, meta, cr.include_usage);
    c.result = run_completion(*c.model, options_, prompt, r, sink.get(), alive);
    c.res.end_stream();
  } else {
    c.result = run_completion(*c.model, options_, prompt, r, nullptr, alive);
    if (cr.echo) c.result.content = (cr.prompt.is_string() ? cr.prompt.get<std::string>() : c.model->tokenizer().decode(prompt)) + c.result.content;
    c.res.send(200, kJson, openai_completion_response(c.result, meta).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}

void ApiServer::messages(Call& c) {
  const ChatRequest r = parse_anthropic_request(c.body);
  check_model(*c.model, r.model, true);
  const RenderedPrompt prompt = render_chat_prompt(*c.model, options_, r);
  const ResponseMeta meta{random_id("msg_"), r.model, unix_now()};
  auto alive = [&c] { return c.res.client_connected(); };
  if (r.stream) {
    c.res.begin_stream(200, "text/event-stream");
    auto sink = make_anthropic_stream([&c](const std::string& f) { return c.res.write(f); }, meta);
    c.result = run_chat(*c.model, options_, r, prompt, sink.get(), alive);
    c.res.end_stream();
  } else {
    c.result = run_chat(*c.model, options_, r, prompt, nullptr, alive);
    c.res.send(200, kJson, anthropic_response(c.result, meta).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}

void ApiServer::count_tokens(Call& c) {
  const ChatRequest r = parse_anthropic_request(c.body, true);
  check_model(*c.model, r.model, true);
  const RenderedPrompt prompt = render_chat_prompt(*c.model, options_, r);
  c.res.send(200, kJson, ordered_json{{"input_tokens", prompt.tokens.size()}}.dump());
}

void ApiServer::models(Call& c) {
  const std::shared_ptr<ServedModel> m = model();
  const std::string id = m ? m->names().front() : options_.aliases.empty() ? "moeserve" : options_.aliases.front();
  if (c.req.header("anthropic-version")) {
    ordered_json data = ordered_json::array({{{"type", "model"}, {"id", id}, {"display_name", id}, {"created_at", "2026-01-01T00:00:00Z"}}});
    c.res.send(200, kJson, ordered_json{{"data", data}, {"has_more", false}, {"first_id", id}, {"last_id", id}}.dump());
    return;
  }
  ordered_json model = {{"id", id}, {"object", "model"}, {"created", unix_now()}, {"owned_by", "moeserve"}};
  if (m) model["meta"] = {{"n_ctx", m->n_ctx()}, {"n_vocab", m->n_vocab()}};
  c.res.send(200, kJson, ordered_json{{"object", "list"}, {"data", ordered_json::array({model})}}.dump());
}

}  // namespace moeserve::server
