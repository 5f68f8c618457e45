// Our engine against llama.cpp itself on the same GGUF files: the prebuilt libllama from the npm
// package @node-llama-cpp/linux-x64 (tests/clients, installed by scripts/setup.sh), driven through
// its C API. Tiny random models of each architecture, F32 weights and F32 KV caches on both sides
// (llama.cpp's F16 paths round attention probabilities to F16), llama.cpp without flash
// attention, ours with and without; the logits of every prompt position must agree within 1e-4
// of their scale (the engines differ in summation order and in the L2-norm epsilon form,
// qwen3next.md §8).
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "model/model.h"
#include "ops_test_util.h"
#include "runtime/engine.h"
#include "tiny_models.h"

namespace moeserve::test {
namespace {

// llama.h's batch (stable layout) and opaque handles. The default parameter structs are only
// passed back unchanged, so they are held as byte buffers larger than the real structs (returned
// and passed in memory either way on x86-64).
struct LlamaBatch {
  int32_t n_tokens;
  int32_t* token;
  float* embd;
  int32_t* pos;
  int32_t* n_seq_id;
  int32_t** seq_id;
  int8_t* logits;
};
struct Params {
  alignas(16) unsigned char bytes[1024];
  int32_t& i32(size_t offset) { return *reinterpret_cast<int32_t*>(bytes + offset); }
};
// Offsets in this build's llama_context_params, checked against its defaults before use.
constexpr size_t kNCtx = 0, kFlashAttnType = 52, kTypeK = 104, kTypeV = 108;

class LlamaCpp {
 public:
  static LlamaCpp& get() {
    static LlamaCpp lib;
    return lib;
  }
  const std::string& error() const { return error_; }

  // Logits of every position of `tokens` (one sequence, one step), row-major [n][n_vocab].
  std::vector<std::vector<float>> logits(const std::string& path, const std::vector<int32_t>& tokens) {
    const Params mp = model_default_params_();
    void* model = model_load_(path.c_str(), mp);
    if (!model) throw std::runtime_error("llama.cpp could not load " + path);
    Params cp = context_default_params_();
    if (cp.i32(kNCtx) != 512 || cp.i32(kFlashAttnType) != -1 || cp.i32(kTypeK) != 1 || cp.i32(kTypeV) != 1) {
      throw std::runtime_error("unexpected llama_context_params layout (another llama.cpp version?)");
    }
    cp.i32(kFlashAttnType) = 0;  // disabled
    cp.i32(kTypeK) = cp.i32(kTypeV) = 0;  // F32
    void* ctx = init_from_model_(model, cp);
    if (!ctx) throw std::runtime_error("llama.cpp could not create a context");
    set_n_threads_(ctx, 1, 1);
    const int32_t n = int32_t(tokens.size());
    std::vector<int32_t> tok(tokens), pos(static_cast<size_t>(n)), n_seq(static_cast<size_t>(n), 1), seq0(1, 0);
    std::vector<int32_t*> seq(static_cast<size_t>(n), seq0.data());
    std::vector<int8_t> want(static_cast<size_t>(n), 1);
    for (int32_t i = 0; i < n; ++i) pos[size_t(i)] = i;
    const LlamaBatch batch{n, tok.data(), nullptr, pos.data(), n_seq.data(), seq.data(), want.data()};
    if (decode_(ctx, batch) != 0) throw std::runtime_error("llama_decode failed");
    const int32_t n_vocab = vocab_n_tokens_(model_get_vocab_(model));
    std::vector<std::vector<float>> out;
    for (int32_t i = 0; i < n; ++i) {
      const float* l = get_logits_ith_(ctx, i);
      out.emplace_back(l, l + n_vocab);
    }
    free_(ctx);
    model_free_(model);
    return out;
  }

 private:
  LlamaCpp() {
    const std::string dir =
        std::string(MOESERVE_SOURCE_DIR) + "/tests/clients/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/";
    void* ggml = dlopen((dir + "libggml.v0.4.0.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
    handle_ = ggml ? dlopen((dir + "libllama.v0.4.0.so").c_str(), RTLD_NOW | RTLD_LOCAL) : nullptr;
    if (!handle_) {
      error_ = std::string("cannot load llama.cpp (") + dlerror() + "); scripts/setup.sh installs it (npm ci in tests/clients)";
      return;
    }
    auto load_backend = reinterpret_cast<void* (*)(const char*)>(dlsym(ggml, "ggml_backend_load"));
    // The baseline x86-64 CPU build of ggml (no ISA-specific kernels: plain, portable sums).
    if (!load_backend || !load_backend((dir + "libggml-cpu-x64.so").c_str())) {
      error_ = "cannot load ggml's CPU backend";
      return;
    }
    auto quiet = reinterpret_cast<void (*)(void (*)(int, const char*, void*), void*)>(dlsym(handle_, "llama_log_set"));
    if (quiet) quiet([](int, const char*, void*) {}, nullptr);
    sym(model_default_params_, "llama_model_default_params");
    sym(context_default_params_, "llama_context_default_params");
    sym(model_load_, "llama_model_load_from_file");
    sym(init_from_model_, "llama_init_from_model");
    sym(set_n_threads_, "llama_set_n_threads");
    sym(decode_, "llama_decode");
    sym(get_logits_ith_, "llama_get_logits_ith");
    sym(model_get_vocab_, "llama_model_get_vocab");
    sym(vocab_n_tokens_, "llama_vocab_n_tokens");
    sym(free_, "llama_free");
    sym(model_free_, "llama_model_free");
    reinterpret_cast<void (*)()>(dlsym(handle_, "llama_backend_init"))();
  }
  template <typename Fn>
  void sym(Fn& fn, const char* name) {
    fn = reinterpret_cast<Fn>(dlsym(handle_, name));
    if (!fn && error_.empty()) error_ = std::string("llama.cpp lacks ") + name;
  }

  void* handle_ = nullptr;
  std::string error_;
  Params (*model_default_params_)() = nullptr;
  Params (*context_default_params_)() = nullptr;
  void* (*model_load_)(const char*, Params) = nullptr;
  void* (*init_from_model_)(void*, Params) = nullptr;
  void (*set_n_threads_)(void*, int32_t, int32_t) = nullptr;
  int32_t (*decode_)(void*, LlamaBatch) = nullptr;
  float* (*get_logits_ith_)(void*, int32_t) = nullptr;
  const void* (*model_get_vocab_)(const void*) = nullptr;
  int32_t (*vocab_n_tokens_)(const void*) = nullptr;
  void (*free_)(void*) = nullptr;
  void (*model_free_)(void*) = nullptr;
};

struct Case {
  std::string arch;
  GgmlType weights;
  friend void PrintTo(const Case& c, std::ostream* os) { *os << c.arch << " " << type_name(c.weights); }
};

class MatchesLlamaCpp : public ::testing::TestWithParam<Case> {};

TEST_P(MatchesLlamaCpp, PromptLogits) {
  LlamaCpp& ref = LlamaCpp::get();
  ASSERT_TRUE(ref.error().empty()) << ref.error();
  TinyConfig c;
  c.arch = GetParam().arch;
  c.matrix_type = GetParam().weights;
  const std::string path =
      TinyModelWriter(c).write("moeserve_llama_cpp_" + c.arch + "_" + type_name(c.matrix_type) + ".gguf");
  std::vector<int32_t> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back(int32_t((i * 37 + 11) % c.n_vocab));
  const auto expected = ref.logits(path, tokens);

  auto backend = make_cpu_backend(2);
  auto model = load_model(std::make_shared<const gguf::GgufFile>(gguf::GgufFile::open(path)), *backend);
  for (FlashMode fa : {FlashMode::off, FlashMode::on}) {
    EngineOptions o;
    o.n_ctx = 64;
    o.n_batch = 64;
    o.type_k = o.type_v = GgmlType::F32;
    o.flash = fa;
    Engine e(*model, *backend, o);
    std::vector<BatchToken> batch;
    for (size_t i = 0; i < tokens.size(); ++i) batch.push_back({tokens[i], int32_t(i), 0, true});
    e.decode(batch);
    std::vector<double> errors;
    for (size_t i = 0; i < tokens.size(); ++i) {
      errors.push_back(rel_error(std::vector<float>(e.logits(int64_t(i)), e.logits(int64_t(i)) + e.n_vocab()), expected[i]));
    }
    if (c.matrix_type == GgmlType::F32) {
      EXPECT_LT(*std::max_element(errors.begin(), errors.end()), 1e-4) << "flash " << int(fa);
    } else {
      // Quantized matrices: activations are rounded to int8 blocks, which hides last-bit float
      // differences (the first positions match exactly) until one input lands on the other side
      // of a rounding boundary: that element moves by one step (1/127 of its block's largest
      // value), the logits by about 1e-2, and the recurrent state and KV carry it on. Bound the
      // whole prompt by a few such steps; the start must match as tightly as F32.
      EXPECT_LT(errors[0], 1e-4) << "flash " << int(fa);
      EXPECT_LT(*std::max_element(errors.begin(), errors.end()), 5e-2) << "flash " << int(fa);
    }
  }
}

// Quantized weights: both engines quantize the activations to the same Q8_0 / Q8_1 blocks and sum
// blocks exactly in integers.
INSTANTIATE_TEST_SUITE_P(Arch, MatchesLlamaCpp,
                         ::testing::Values(Case{"qwen3next", GgmlType::F32}, Case{"qwen3moe", GgmlType::F32},
                                           Case{"qwen3", GgmlType::F32}, Case{"llama", GgmlType::F32},
                                           Case{"qwen3next", GgmlType::Q8_0}, Case{"qwen3next", GgmlType::Q4_0},
                                           Case{"qwen3next", GgmlType::Q4_1}, Case{"qwen3moe", GgmlType::Q8_0},
                                           Case{"qwen3moe", GgmlType::Q4_1}),
                         [](const auto& info) { return info.param.arch + "_" + type_name(info.param.weights); });

}  // namespace
}  // namespace moeserve::test
