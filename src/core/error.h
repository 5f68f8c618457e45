// Errors: every failure the user can cause (bad file, bad flag, bad request) is an Error with one
// clear message naming what is wrong; callers at the edge (CLI, server) print it and carry on.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace moeserve {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Concatenates any streamable values: str_cat("tensor ", name, ": ", n, " bytes").
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace moeserve
