#include "server/http_request_reader.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>

namespace moeserve::server {
namespace {

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(char(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

HttpRequestReader::Result HttpRequestReader::fail(int status, std::string message) {
  error_ = {status, std::move(message)};
  return Result::error;
}

bool HttpRequestReader::fill(size_t n) {
  if (pos_ > 0 && pos_ == buffer_.size()) {
    buffer_.clear();
    pos_ = 0;
  }
  while (buffer_.size() - pos_ < n) {
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, options_.idle_timeout_seconds * 1000);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;  // timeout or error
    char chunk[16384];
    const ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    buffer_.append(chunk, size_t(got));
  }
  return true;
}

bool HttpRequestReader::read_line(std::string& line, size_t limit) {
  for (;;) {
    const size_t eol = buffer_.find('\n', pos_);
    if (eol != std::string::npos) {
      if (eol - pos_ > limit) return false;
      size_t end = eol;
      if (end > pos_ && buffer_[end - 1] == '\r') --end;
      line.assign(buffer_, pos_, end - pos_);
      pos_ = eol + 1;
      return true;
    }
    if (buffer_.size() - pos_ > limit) return false;
    if (!fill(buffer_.size() - pos_ + 1)) return false;
  }
}

HttpRequestReader::Result HttpRequestReader::read(HttpRequest& request, const std::function<void()>& send_continue) {
  request = HttpRequest{};
  std::string line;
  // Tolerate empty lines before a request line (RFC 9112 §2.2).
  do {
    if (!read_line(line, options_.max_header_bytes)) {
      if (buffer_.size() - pos_ > options_.max_header_bytes) return fail(431, "request line too long");
      return Result::closed;
    }
  } while (line.empty());

  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos || line.find(' ', sp2 + 1) != std::string::npos) {
    return fail(400, "malformed request line");
  }
  request.method = line.substr(0, sp1);
  request.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  request.version = line.substr(sp2 + 1);
  const std::string& version = request.version;
  if (request.method.empty() || !std::all_of(request.method.begin(), request.method.end(), is_token_char)) {
    return fail(400, "malformed request method");
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return fail(505, "unsupported HTTP version '" + version + "'");
  if (request.target.empty() || request.target[0] != '/') {
    // Absolute-form targets ("http://host/path") are allowed by HTTP/1.1; keep their path.
    const size_t scheme = request.target.find("://");
    const size_t slash = scheme == std::string::npos ? std::string::npos : request.target.find('/', scheme + 3);
    if (slash == std::string::npos) return fail(400, "malformed request target");
    request.target = request.target.substr(slash);
  }
  const size_t q = request.target.find('?');
  request.path = percent_decode(std::string_view(request.target).substr(0, q), false);
  if (q != std::string::npos) request.query = request.target.substr(q + 1);

  size_t header_bytes = line.size();
  for (;;) {
    if (!read_line(line, options_.max_header_bytes)) {
      return buffer_.size() - pos_ > options_.max_header_bytes ? fail(431, "request headers too large")
                                                              : fail(400, "connection closed inside the headers");
    }
    if (line.empty()) break;
    header_bytes += line.size() + 2;
    if (header_bytes > options_.max_header_bytes) return fail(431, "request headers too large");
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0 ||
        !std::all_of(line.begin(), line.begin() + long(colon), is_token_char)) {
      return fail(400, "malformed header line");
    }
    request.headers.emplace_back(to_lower(std::string_view(line).substr(0, colon)),
                                 std::string(trim(std::string_view(line).substr(colon + 1))));
  }

  const std::string* transfer_encoding = request.header("transfer-encoding");
  const std::string* content_length = request.header("content-length");
  const bool chunked = transfer_encoding && to_lower(*transfer_encoding).find("chunked") != std::string::npos;
  if (transfer_encoding && !chunked) return fail(501, "unsupported transfer encoding '" + *transfer_encoding + "'");
  size_t length = 0;
  if (content_length && !chunked) {
    const std::string& v = *content_length;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), length);
    if (ec != std::errc() || end != v.data() + v.size() || v.empty()) return fail(400, "invalid Content-Length");
    if (length > options_.max_body_bytes) {
      return fail(413, "request body of " + v + " bytes exceeds the limit of " + std::to_string(options_.max_body_bytes));
    }
  }
  const std::string* expect = request.header("expect");
  if (expect && to_lower(*expect) == "100-continue" && (chunked || length > 0)) send_continue();

  if (chunked) {
    if (!read_chunked_body(request.body)) return error_.status ? Result::error : fail(400, "malformed chunked body");
  } else if (length > 0) {
    if (!fill(length)) return fail(400, "connection closed before the body was complete");
    request.body.assign(buffer_, pos_, length);
    pos_ += length;
  }
  return Result::request;
}

bool HttpRequestReader::read_chunked_body(std::string& body) {
  std::string line;
  for (;;) {
    if (!read_line(line, 1024)) return false;
    size_t size = 0;
    const std::string_view hex = trim(std::string_view(line).substr(0, line.find(';')));
    auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), size, 16);
    if (ec != std::errc() || end != hex.data() + hex.size() || hex.empty()) return false;
    if (size == 0) break;
    if (size > options_.max_body_bytes || body.size() + size > options_.max_body_bytes) {
      fail(413, "request body exceeds the limit of " + std::to_string(options_.max_body_bytes) + " bytes");
      return false;
    }
    if (!fill(size + 2)) return false;
    body.append(buffer_, pos_, size);
    pos_ += size;
    if (!read_line(line, 2) || !line.empty()) return false;  // the CRLF after the chunk data
  }
  // Trailer fields, up to the empty line.
  for (size_t trailer_bytes = 0;;) {
    if (!read_line(line, options_.max_header_bytes)) return false;
    if (line.empty()) return true;
    trailer_bytes += line.size();
    if (trailer_bytes > options_.max_header_bytes) return false;
  }
}

}  // namespace moeserve::server
