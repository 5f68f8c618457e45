// The ggml reference for the quant tests: ggml's own shared libraries, shipped prebuilt in the npm
// package @node-llama-cpp/linux-x64 (tests/clients, installed by scripts/setup.sh), loaded with
// dlopen. Tests compare our quantizers, dequantizers and dot products with its functions.
#pragma once

#include <dlfcn.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/ggml_type.h"

namespace moeserve::test {

// Layouts of ggml's public trait structs (ggml.h, ggml-cpu.h).
struct GgmlTypeTraits {
  const char* type_name;
  int64_t blck_size;
  int64_t blck_size_interleave;
  size_t type_size;
  bool is_quantized;
  void* to_float;
  void* from_float_ref;
};
struct GgmlTypeTraitsCpu {
  void* from_float;
  void* vec_dot;
  int32_t vec_dot_type;
  int64_t nrows;
};

using GgmlDequantize = void (*)(const void*, float*, int64_t);
using GgmlQuantize = void (*)(const float*, void*, int64_t);
using GgmlVecDot = void (*)(int n, float* s, size_t bs, const void* x, size_t bx, const void* y, size_t by, int nrc);

class Ggml {
 public:
  static const Ggml& get() {
    static const Ggml lib;
    return lib;
  }
  const std::string& error() const { return error_; }

  template <typename Fn>
  Fn fn(const std::string& name) const {
    void* p = handle_ ? dlsym(handle_, name.c_str()) : nullptr;
    if (!p) throw std::runtime_error("ggml reference lacks symbol " + name);
    return reinterpret_cast<Fn>(p);
  }

 private:
  Ggml() {
    const std::string dir =
        std::string(MOESERVE_SOURCE_DIR) + "/tests/clients/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/";
    // The baseline x86-64 CPU build: its *_generic dot products are plain C.
    handle_ = dlopen((dir + "libggml-cpu-x64.so").c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
      error_ = std::string("cannot load the ggml reference (") + dlerror() +
               "); scripts/setup.sh installs it (npm ci in tests/clients)";
      return;
    }
    fn<void (*)()>("ggml_cpu_init")();  // fills the fp16 tables the CPU dot products use
  }
  void* handle_ = nullptr;
  std::string error_;
};


// ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix): what llama-quantize calls.
using GgmlQuantizeChunk = size_t (*)(int type, const float* src, void* dst, int64_t start, int64_t nrows,
                                     int64_t n_per_row, const float* imatrix);

// ggml's lower-case type name, used in its function names ("q4_K", "iq2_xxs").
inline std::string ggml_name(GgmlType t) {
  std::string s = type_name(t);
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (s.size() > 2 && s.substr(s.size() - 2) == "_k") s.back() = 'K';
  return s;
}

}  // namespace moeserve::test

#define REQUIRE_GGML() \
  ASSERT_TRUE(::moeserve::test::Ggml::get().error().empty()) << ::moeserve::test::Ggml::get().error()
