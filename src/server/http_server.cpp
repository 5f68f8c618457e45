#include "server/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <exception>
#include <thread>

#include "core/error.h"
#include "server/http_request_reader.h"

namespace moeserve::server {
namespace {

// Browsers (web UIs) call the API from other origins; the API key, not the origin, guards access.
const HeaderList kCorsHeaders = {
    {"Access-Control-Allow-Origin", "*"},
};

std::string header_block(int status, std::string_view content_type, const HeaderList& extra, bool keep_alive) {
  std::string h = str_cat("HTTP/1.1 ", status, " ", http_status_text(status), "\r\n");
  if (!content_type.empty()) h += str_cat("Content-Type: ", content_type, "\r\n");
  for (const auto& [name, value] : kCorsHeaders) h += name + ": " + value + "\r\n";
  for (const auto& [name, value] : extra) h += name + ": " + value + "\r\n";
  h += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  return h;
}

std::string default_error_body(int status, const std::string& message) {
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    escaped += c;
  }
  return str_cat(R"({"error":{"code":)", status, R"(,"message":")", escaped, R"(","type":"invalid_request_error"}})");
}

// HTTP/1.1 keeps connections open unless told otherwise; HTTP/1.0 only when asked to.
bool wants_keep_alive(const HttpRequest& request) {
  const std::string* connection = request.header("connection");
  std::string value = connection ? *connection : "";
  for (char& c : value) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (request.version == "HTTP/1.0") return value == "keep-alive";
  return value.find("close") == std::string::npos;
}

}  // namespace

const char* http_status_text(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    case 529: return "Overloaded";
    default: return "Status";
  }
}

const std::string* HttpRequest::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return &value;
  }
  return nullptr;
}

std::optional<std::string> HttpRequest::query_param(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    const size_t eq = pair.find('=');
    if (percent_decode(pair.substr(0, eq), true) == name) {
      return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

bool HttpResponder::send_all(std::string_view data) {
  while (!data.empty() && !broken_) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;
      break;
    }
    data.remove_prefix(size_t(n));
  }
  return !broken_;
}

void HttpResponder::send(int status, std::string_view content_type, std::string_view body, const HeaderList& extra) {
  if (responded_) return;
  responded_ = true;
  std::string out = header_block(status, content_type, extra, keep_alive_);
  out += str_cat("Content-Length: ", body.size(), "\r\n\r\n");
  if (!head_only_) out += body;
  send_all(out);
}

bool HttpResponder::begin_stream(int status, std::string_view content_type, const HeaderList& extra) {
  if (responded_) return false;
  responded_ = true;
  streaming_ = true;
  std::string out = header_block(status, content_type, extra, keep_alive_);
  out += "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
  return send_all(out);
}

bool HttpResponder::write(std::string_view data) {
  if (!streaming_ || broken_) return false;
  if (data.empty()) return client_connected();  // an empty chunk would end the stream
  char size_line[32];
  const int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
  std::string out(size_line, size_t(len));
  out.append(data);
  out += "\r\n";
  return send_all(out);
}

void HttpResponder::end_stream() {
  if (!streaming_) return;
  streaming_ = false;
  send_all("0\r\n\r\n");
}

bool HttpResponder::client_connected() const {
  if (broken_) return false;
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) < 0) return errno == EINTR;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return false;
  if (p.revents & POLLIN) {
    char c;
    // Data waiting (a pipelined request) means the peer is alive; 0 bytes means it closed.
    return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
  }
  return true;
}

HttpServer::HttpServer(HttpServerOptions options) : options_(std::move(options)) {}

HttpServer::~HttpServer() {
  stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void HttpServer::route(const std::string& method, const std::string& path, HttpHandler handler) {
  routes_.push_back({method, path, std::move(handler)});
}

void HttpServer::listen() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(options_.port);
  const int rc = ::getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) fail("cannot resolve host '", options_.host, "': ", gai_strerror(rc));
  std::string last_error = "no address";
  for (addrinfo* a = found; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      listen_fd_ = fd;
      break;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (listen_fd_ < 0) fail("cannot listen on ", options_.host, ":", options_.port, ": ", last_error);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  bound_port_ = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                            : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

void HttpServer::serve() {
  if (listen_fd_ < 0) listen();
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, 200);  // wakes regularly to notice stop()
    if (ready <= 0) continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    char host[INET6_ADDRSTRLEN] = "?";
    if (peer.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&peer)->sin_addr, host, sizeof host);
    } else if (peer.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr, host, sizeof host);
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // SSE events go out at once
    if (open_connections_.load() >= options_.max_connections) {
      static constexpr char kBusy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      ::send(fd, kBusy, sizeof kBusy - 1, MSG_NOSIGNAL);
      ::close(fd);
      continue;
    }
    {
      std::lock_guard lock(connections_mutex_);
      connection_fds_.insert(fd);
      ++open_connections_;
    }
    std::thread([this, fd, remote = std::string(host)] { handle_connection(fd, remote); }).detach();
  }
  std::unique_lock lock(connections_mutex_);
  connections_done_.wait(lock, [this] { return open_connections_.load() == 0; });
}

void HttpServer::stop() {
  if (stopping_.exchange(true)) return;
  std::lock_guard lock(connections_mutex_);
  // Wake every connection thread blocked in recv; they close their sockets themselves.
  for (int fd : connection_fds_) ::shutdown(fd, SHUT_RDWR);
}

void HttpServer::handle_connection(int fd, std::string remote) {
  HttpRequestReader reader(fd, options_);
  for (;;) {
    HttpRequest request;
    const auto result = reader.read(request, [fd] {
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      ::send(fd, kContinue, sizeof kContinue - 1, MSG_NOSIGNAL);
    });
    if (result == HttpRequestReader::Result::closed || stopping_) break;
    request.remote_address = remote;
    if (result == HttpRequestReader::Result::error) {
      HttpResponder responder(fd, false, false);
      send_error(request, responder, reader.error().status, reader.error().message);
      break;
    }
    const bool keep_alive = wants_keep_alive(request);
    HttpResponder responder(fd, request.method == "HEAD", keep_alive);
    dispatch(request, responder);
    if (!responder.keep_alive()) break;
  }
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
  std::lock_guard lock(connections_mutex_);
  connection_fds_.erase(fd);
  if (--open_connections_ == 0) connections_done_.notify_all();
}

void HttpServer::dispatch(const HttpRequest& request, HttpResponder& responder) {
  if (request.method == "OPTIONS") {  // CORS preflight
    responder.send(204, "", "",
                   {{"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                    {"Access-Control-Allow-Headers", "*"},
                    {"Access-Control-Max-Age", "86400"}});
    return;
  }
  const std::string method = request.method == "HEAD" ? "GET" : request.method;
  bool path_known = false;
  for (const Route& r : routes_) {
    if (r.path != request.path) continue;
    path_known = true;
    if (r.method != method) continue;
    try {
      r.handler(request, responder);
      if (!responder.responded()) send_error(request, responder, 500, "handler produced no response");
    } catch (const std::exception& e) {
      if (!responder.responded()) {
        send_error(request, responder, 500, str_cat("internal error: ", e.what()));
      } else {
        responder.end_stream();
      }
    }
    return;
  }
  if (path_known) {
    send_error(request, responder, 405, str_cat("method ", request.method, " not allowed on ", request.path));
  } else {
    send_error(request, responder, 404, str_cat("no such endpoint: ", request.method, " ", request.path));
  }
}

void HttpServer::send_error(const HttpRequest& request, HttpResponder& responder, int status, const std::string& message) {
  const std::string body = error_formatter_ ? error_formatter_(request, status, message) : default_error_body(status, message);
  responder.send(status, "application/json; charset=utf-8", body);
}

}  // namespace moeserve::server
