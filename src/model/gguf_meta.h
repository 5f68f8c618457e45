// Typed access to an architecture's GGUF keys ("<arch>.<name>") with one clear error per missing
// or malformed key, naming the file and the key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf_file.h"

namespace moeserve {

class GgufMeta {
 public:
  GgufMeta(const gguf::GgufFile& file, std::string arch) : file_(file), arch_(std::move(arch)) {}

  const std::string& arch() const { return arch_; }
  std::string key(std::string_view name) const { return arch_ + "." + std::string(name); }

  // Required positive integer (> 0 unless allow_zero).
  int64_t count(std::string_view name, bool allow_zero = false) const;
  std::optional<int64_t> count_opt(std::string_view name) const;
  float real(std::string_view name) const;
  std::optional<float> real_opt(std::string_view name) const;
  std::optional<bool> flag_opt(std::string_view name) const;
  // A key that is either one integer or one integer per layer.
  std::vector<int64_t> per_layer(std::string_view name, int64_t n_layer) const;
  bool has(std::string_view name) const { return file_.find(key(name)) != nullptr; }

  [[noreturn]] void fail_key(std::string_view name, const std::string& why) const;

 private:
  const gguf::GgufFile& file_;
  std::string arch_;
};

}  // namespace moeserve
