// The HTTP server against a real client (curl) and against raw, malformed traffic.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "server/http_server.h"

namespace moeserve::server {
namespace {

std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// Sends raw bytes on a fresh connection and returns everything the server answers until it closes.
std::string raw_exchange(int port, const std::string& bytes, bool half_close = true) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "connect failed";
  }
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  if (half_close) ::shutdown(fd, SHUT_WR);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, size_t(n));
  ::close(fd);
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions options;
    options.port = 0;
    options.max_body_bytes = 1 << 20;
    options.max_header_bytes = 8192;
    server_ = std::make_unique<HttpServer>(options);
    server_->route("GET", "/hello", [](const HttpRequest& req, HttpResponder& res) {
      res.send(200, "text/plain", "hello " + req.query_param("name").value_or("nobody"));
    });
    server_->route("POST", "/echo", [](const HttpRequest& req, HttpResponder& res) {
      res.send(200, "application/octet-stream", req.body);
    });
    server_->route("GET", "/stream", [this](const HttpRequest&, HttpResponder& res) {
      res.begin_stream(200, "text/event-stream");
      for (int i = 0; i < 5; ++i) {
        if (!res.write("data: " + std::to_string(i) + "\n\n")) return;
      }
      res.end_stream();
      streams_completed_++;
    });
    server_->route("GET", "/endless", [this](const HttpRequest&, HttpResponder& res) {
      res.begin_stream(200, "text/event-stream");
      for (int i = 0; i < 2000; ++i) {  // bounded: 20 s at most
        if (!res.client_connected() || !res.write("data: tick\n\n")) {
          disconnects_seen_++;
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      res.end_stream();
    });
    server_->route("GET", "/throws", [](const HttpRequest&, HttpResponder&) { throw std::runtime_error("boom"); });
    server_->listen();
    port_ = server_->port();
    thread_ = std::thread([this] { server_->serve(); });
  }
  void TearDown() override {
    server_->stop();
    thread_.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> streams_completed_{0};
  std::atomic<int> disconnects_seen_{0};
};

TEST_F(HttpServerTest, CurlGetWithQuery) {
  EXPECT_EQ(run_command("curl -s '" + url("/hello?name=a%20b") + "'"), "hello a b");
}

TEST_F(HttpServerTest, CurlKeepAliveReusesOneConnection) {
  const std::string out = run_command("curl -sv '" + url("/hello") + "' '" + url("/hello?name=x") + "' 2>&1");
  EXPECT_NE(out.find("hello nobody"), std::string::npos);
  EXPECT_NE(out.find("hello x"), std::string::npos);
  EXPECT_NE(out.find("Re-using existing connection"), std::string::npos) << out;
}

TEST_F(HttpServerTest, CurlPostLargeBodyWithExpectContinue) {
  char path[] = "/tmp/moeserve_http_body_XXXXXX";
  const int fd = ::mkstemp(path);
  std::string body(300000, 'x');
  for (size_t i = 0; i < body.size(); i += 7) body[i] = char('a' + i % 26);
  ASSERT_EQ(::write(fd, body.data(), body.size()), ssize_t(body.size()));
  ::close(fd);
  const std::string out = run_command("curl -s --data-binary @" + std::string(path) + " '" + url("/echo") + "'");
  EXPECT_EQ(out, body);
  const std::string chunked = run_command("curl -s -H 'Transfer-Encoding: chunked' --data-binary @" + std::string(path) +
                                          " '" + url("/echo") + "'");
  EXPECT_EQ(chunked, body);
  ::unlink(path);
}

TEST_F(HttpServerTest, CurlStreamsChunks) {
  EXPECT_EQ(run_command("curl -sN '" + url("/stream") + "'"), "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n");
  EXPECT_EQ(streams_completed_.load(), 1);
}

TEST_F(HttpServerTest, ClientDisconnectStopsTheStream) {
  // curl gives up after 300 ms; the handler must notice within its next ticks.
  run_command("curl -s -m 0.3 '" + url("/endless") + "' >/dev/null 2>&1");
  for (int i = 0; i < 200 && disconnects_seen_.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(disconnects_seen_.load(), 1);
  EXPECT_EQ(run_command("curl -s '" + url("/hello") + "'"), "hello nobody");
}

TEST_F(HttpServerTest, ErrorsKeepTheServerServing) {
  EXPECT_NE(raw_exchange(port_, "GARBAGE\r\n\r\n").find("HTTP/1.1 400"), std::string::npos);
  EXPECT_NE(raw_exchange(port_, "GET /hello HTTP/9.9\r\n\r\n").find("HTTP/1.1 505"), std::string::npos);
  EXPECT_NE(raw_exchange(port_, "GET /hello HTTP/1.1\r\nX: " + std::string(10000, 'a') + "\r\n\r\n").find("HTTP/1.1 431"),
            std::string::npos);
  EXPECT_NE(raw_exchange(port_, "POST /echo HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").find("HTTP/1.1 413"),
            std::string::npos);
  EXPECT_NE(raw_exchange(port_, "POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n").find("HTTP/1.1 400"), std::string::npos);
  EXPECT_NE(raw_exchange(port_, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").find("HTTP/1.1 400"),
            std::string::npos);
  EXPECT_NE(raw_exchange(port_, "GET /nope HTTP/1.1\r\n\r\n").find("HTTP/1.1 404"), std::string::npos);
  EXPECT_NE(raw_exchange(port_, "DELETE /hello HTTP/1.1\r\n\r\n").find("HTTP/1.1 405"), std::string::npos);
  EXPECT_NE(raw_exchange(port_, "GET /throws HTTP/1.1\r\n\r\n").find("HTTP/1.1 500"), std::string::npos);
  // A body cut short, then the client closes: no answer needed, no crash.
  raw_exchange(port_, "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc");
  // Binary junk.
  std::string junk;
  for (int i = 0; i < 5000; ++i) junk.push_back(char((i * 7919) & 0xff));
  raw_exchange(port_, junk);
  EXPECT_EQ(run_command("curl -s '" + url("/hello") + "'"), "hello nobody");
}

TEST_F(HttpServerTest, PipelinedRequestsAnsweredInOrder) {
  const std::string out = raw_exchange(port_,
                                       "GET /hello?name=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                       "GET /hello?name=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const size_t first = out.find("hello 1"), second = out.find("hello 2");
  ASSERT_NE(first, std::string::npos);
  ASSERT_NE(second, std::string::npos);
  EXPECT_LT(first, second);
}

TEST_F(HttpServerTest, CorsPreflight) {
  const std::string out = raw_exchange(port_, "OPTIONS /v1/chat/completions HTTP/1.1\r\nOrigin: http://x\r\n\r\n");
  EXPECT_NE(out.find("HTTP/1.1 204"), std::string::npos);
  EXPECT_NE(out.find("Access-Control-Allow-Origin: *"), std::string::npos);
}

TEST(HttpServer, PortInUseIsAClearError) {
  HttpServerOptions options;
  options.port = 0;
  HttpServer first(options);
  first.listen();
  options.port = first.port();
  HttpServer second(options);
  try {
    second.listen();
    FAIL() << "second listen succeeded";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(first.port())), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace moeserve::server
