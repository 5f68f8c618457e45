// Reads HTTP/1.1 requests off a connection, enforcing the server's limits. Kept apart from the
// socket loop so the parsing rules are in one place.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "server/http_server.h"

namespace moeserve::server {

// A request the server must refuse; `status` is the HTTP status to answer with (400, 413, 431, 501...).
struct HttpReadError {
  int status;
  std::string message;
};

class HttpRequestReader {
 public:
  HttpRequestReader(int fd, const HttpServerOptions& options) : fd_(fd), options_(options) {}

  enum class Result { request, closed, error };
  // Reads the next request. `closed`: the peer closed (or timed out) between requests.
  // `error`: `error()` says what to answer; the connection must be closed afterwards.
  // `send_continue` is called when the client waits for "100 Continue" before sending its body.
  Result read(HttpRequest& request, const std::function<void()>& send_continue);
  const HttpReadError& error() const { return error_; }

 private:
  Result fail(int status, std::string message);
  // Ensures at least `n` unread bytes are buffered; false on EOF, timeout or error.
  bool fill(size_t n);
  bool read_line(std::string& line, size_t limit);
  bool read_chunked_body(std::string& body);

  int fd_;
  const HttpServerOptions& options_;
  std::string buffer_;
  size_t pos_ = 0;
  HttpReadError error_{0, ""};
};

// Percent-decoding ('+' stays '+' in paths; in query values it means space).
std::string percent_decode(std::string_view s, bool plus_is_space);

}  // namespace moeserve::server
