// `moeserve serve`: the HTTP endpoints over one served model. The server listens at once and
// answers /health with 503 while the model loads, as llama-server does.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "server/http_server.h"
#include "server/metrics.h"
#include "server/serve_options.h"
#include "server/served_model.h"

namespace moeserve::server {

class ApiServer {
 public:
  explicit ApiServer(ServeOptions options);
  ~ApiServer();

  // Binds (moeserve::Error when the port is taken) and starts loading the model in the background.
  void start();
  int port() const { return http_.port(); }
  // Serves until stop(); returns the process exit code (1 when the model failed to load).
  int serve();
  void stop();

 private:
  enum class Api { openai, anthropic, plain };
  struct Call;

  void add_routes();
  // Runs `body` with the checks every API endpoint shares (key, model loaded, JSON body) and the
  // error shape of `api`; counts the request in the metrics.
  void handle(Api api, const char* endpoint, const HttpRequest& req, HttpResponder& res,
              const std::function<void(Call&)>& body, bool needs_model = true);
  std::shared_ptr<ServedModel> model() const;
  bool authorized(const HttpRequest& req) const;

  void chat_completions(Call& call);
  void completions(Call& call);
  void messages(Call& call);
  void count_tokens(Call& call);
  void models(Call& call);

  ServeOptions options_;
  HttpServer http_;
  Metrics metrics_;
  mutable std::mutex model_mutex_;
  std::shared_ptr<ServedModel> model_;
  std::atomic<bool> load_failed_{false};
  std::thread loader_;
};

}  // namespace moeserve::server
