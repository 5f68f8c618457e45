// A small HTTP/1.1 server for the API endpoints: keep-alive, Content-Length and chunked request
// bodies, Expect: 100-continue, plain and streamed (chunked, for SSE) responses, detection of
// clients that went away, limits on header and body sizes, and CORS for browser clients.
// One thread per connection: requests are few and long (a generation), so simplicity wins.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moeserve::server {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string version;  // "HTTP/1.1" or "HTTP/1.0"
  std::string target;  // as sent: path plus optional "?query"
  std::string path;    // percent-decoded path without the query
  std::string query;   // raw query string (after '?'), may be empty
  HeaderList headers;  // names lower-cased, in order
  std::string body;
  std::string remote_address;

  const std::string* header(std::string_view lower_name) const;
  // Percent-decoded value of the first `name=` in the query string.
  std::optional<std::string> query_param(std::string_view name) const;
};

// Answers one request: either send() once, or begin_stream() + write()* + end_stream().
class HttpResponder {
 public:
  HttpResponder(int fd, bool head_only, bool keep_alive) : fd_(fd), head_only_(head_only), keep_alive_(keep_alive) {}

  void send(int status, std::string_view content_type, std::string_view body, const HeaderList& extra = {});
  // Sends status and headers with chunked transfer encoding. False if the client is gone.
  bool begin_stream(int status, std::string_view content_type, const HeaderList& extra = {});
  // One chunk; false once the client is gone (then stop producing).
  bool write(std::string_view data);
  void end_stream();
  // Non-blocking check that the peer has not closed or reset the connection.
  bool client_connected() const;

  bool responded() const { return responded_; }
  bool keep_alive() const { return keep_alive_ && !broken_; }

 private:
  bool send_all(std::string_view data);

  int fd_;
  bool head_only_;
  bool keep_alive_;
  bool responded_ = false;
  bool streaming_ = false;
  bool broken_ = false;
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponder&)>;
// Formats the body of an error the server itself produces (bad request line, body too large, no
// such route...), so that every API answers in its own JSON error shape.
using HttpErrorFormatter = std::function<std::string(const HttpRequest&, int status, const std::string& message)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 picks a free port (tests)
  size_t max_header_bytes = 64 * 1024;
  size_t max_body_bytes = 64 * 1024 * 1024;
  int max_connections = 512;
  int idle_timeout_seconds = 600;  // a keep-alive connection with no request for this long is closed
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Exact path match; the same path may have handlers for several methods.
  void route(const std::string& method, const std::string& path, HttpHandler handler);
  void set_error_formatter(HttpErrorFormatter formatter) { error_formatter_ = std::move(formatter); }

  // Binds and listens; throws moeserve::Error naming host and port on failure (e.g. port in use).
  void listen();
  int port() const { return bound_port_; }
  // Accepts connections until stop(); returns after every connection thread has finished.
  void serve();
  // Thread-safe; may be called from a handler or a signal-watching thread.
  void stop();

  int open_connections() const { return open_connections_.load(); }

 private:
  struct Route {
    std::string method;
    std::string path;
    HttpHandler handler;
  };

  void handle_connection(int fd, std::string remote);
  void dispatch(const HttpRequest& request, HttpResponder& responder);
  void send_error(const HttpRequest& request, HttpResponder& responder, int status, const std::string& message);

  HttpServerOptions options_;
  std::vector<Route> routes_;
  HttpErrorFormatter error_formatter_;
  int listen_fd_ = -1;
  int bound_port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> open_connections_{0};
  std::mutex connections_mutex_;
  std::condition_variable connections_done_;
  std::set<int> connection_fds_;
};

const char* http_status_text(int status);

}  // namespace moeserve::server
