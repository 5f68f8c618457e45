// llama.cpp itself as a reference: libllama from the npm package @node-llama-cpp/linux-x64
// (tests/clients, installed by scripts/setup.sh), loaded with dlopen. LlamaCpp::get().logits()
// runs a GGUF file on a token sequence (one batch from an empty cache, positions 0..n-1) and
// returns the logits of every position, computed in F32 on one CPU thread.
#pragma once

#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"

namespace moeserve::test {

// llama.h's batch (stable layout). The parameter structs are opaque buffers (large enough for
// them) filled by llama.cpp's own default functions; the few context fields changed are checked
// to hold their documented defaults first, so a different layout fails loudly instead of
// silently setting the wrong field.
struct LlamaBatch {
  int32_t n_tokens;
  int32_t* token;
  float* embd;
  int32_t* pos;
  int32_t* n_seq_id;
  int32_t** seq_id;
  int8_t* logits;
};
struct alignas(16) OpaqueParams {
  unsigned char bytes[1024];
};

// llama_context_params fields (byte offsets in this build) and their defaults.
struct CtxField {
  size_t offset;
  int32_t default_value;
  int32_t value;
  const char* name;
};
// F32 KV cache and no flash attention: the default F16 cache rounds K/V (and FA the queries) to
// F16, ~1e-3 relative noise in the logits; in F32 llama.cpp agrees with transformers to ~1e-5.
// One thread: the models are tiny, and spinning workers on a shared 2-core machine are slow.
inline constexpr CtxField kCtxFields[] = {
    {4, 2048, 2048, "n_batch"},      {28, 4, 1, "n_threads"},  {32, 4, 1, "n_threads_batch"},
    {52, -1, 0, "flash_attn_type"},  {104, 1, 0, "type_k"},    {108, 1, 0, "type_v"},
};

class LlamaCpp {
 public:
  static const LlamaCpp& get() {
    static const LlamaCpp lib;
    return lib;
  }
  const std::string& error() const { return error_; }

  // Logits of every position of `tokens` (one batch), n_vocab per row.
  std::vector<float> logits(const std::string& gguf_path, const std::vector<int32_t>& tokens, int64_t* n_vocab) const {
    void* model = model_load_(gguf_path.c_str(), model_params_());
    if (!model) throw Error("llama.cpp refused to load " + gguf_path);
    OpaqueParams cp = context_params_();
    for (const CtxField& f : kCtxFields) {
      int32_t v;
      std::memcpy(&v, cp.bytes + f.offset, 4);
      if (v != f.default_value) {
        model_free_(model);
        throw Error(str_cat("llama_context_params.", f.name, " is not at byte ", f.offset,
                            " in this llama.cpp build (read ", v, "): update kCtxFields from its llama.h"));
      }
      std::memcpy(cp.bytes + f.offset, &f.value, 4);
    }
    void* ctx = init_(model, cp);
    if (!ctx) throw Error("llama.cpp could not create a context for " + gguf_path);
    *n_vocab = vocab_n_tokens_(get_vocab_(model));
    LlamaBatch batch = batch_init_(int32_t(tokens.size()), 0, 1);
    batch.n_tokens = int32_t(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      batch.token[i] = tokens[i];
      batch.pos[i] = int32_t(i);
      batch.n_seq_id[i] = 1;
      batch.seq_id[i][0] = 0;
      batch.logits[i] = 1;
    }
    const int rc = decode_(ctx, batch);
    std::vector<float> out;
    if (rc == 0) {
      for (size_t i = 0; i < tokens.size(); ++i) {
        const float* row = get_logits_ith_(ctx, int32_t(i));
        out.insert(out.end(), row, row + *n_vocab);
      }
    }
    batch_free_(batch);
    free_(ctx);
    model_free_(model);
    if (rc != 0) throw Error("llama_decode failed with " + std::to_string(rc));
    return out;
  }

 private:
  LlamaCpp() {
    const std::string dir =
        std::string(MOESERVE_SOURCE_DIR) + "/tests/clients/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/";
    void* ggml = dlopen((dir + "libggml.v0.4.0.so").c_str(), RTLD_NOW | RTLD_LOCAL);
    handle_ = ggml ? dlopen((dir + "libllama.v0.4.0.so").c_str(), RTLD_NOW | RTLD_LOCAL) : nullptr;
    if (!handle_) {
      error_ = std::string("cannot load llama.cpp (") + dlerror() + "); scripts/setup.sh installs it (npm ci in tests/clients)";
      return;
    }
    const auto sym = [&](void* h, const char* name) {
      void* p = dlsym(h, name);
      if (!p && error_.empty()) error_ = std::string("llama.cpp lacks ") + name;
      return p;
    };
    reinterpret_cast<void (*)(void (*)(int, const char*, void*), void*)>(sym(handle_, "llama_log_set"))(
        [](int, const char*, void*) {}, nullptr);
    reinterpret_cast<void (*)(const char*)>(sym(ggml, "ggml_backend_load_all_from_path"))(dir.c_str());
    reinterpret_cast<void (*)()>(sym(handle_, "llama_backend_init"))();
    model_params_ = reinterpret_cast<OpaqueParams (*)()>(sym(handle_, "llama_model_default_params"));
    context_params_ = reinterpret_cast<OpaqueParams (*)()>(sym(handle_, "llama_context_default_params"));
    model_load_ = reinterpret_cast<void* (*)(const char*, OpaqueParams)>(sym(handle_, "llama_model_load_from_file"));
    init_ = reinterpret_cast<void* (*)(void*, OpaqueParams)>(sym(handle_, "llama_init_from_model"));
    get_vocab_ = reinterpret_cast<const void* (*)(const void*)>(sym(handle_, "llama_model_get_vocab"));
    vocab_n_tokens_ = reinterpret_cast<int32_t (*)(const void*)>(sym(handle_, "llama_vocab_n_tokens"));
    batch_init_ = reinterpret_cast<LlamaBatch (*)(int32_t, int32_t, int32_t)>(sym(handle_, "llama_batch_init"));
    batch_free_ = reinterpret_cast<void (*)(LlamaBatch)>(sym(handle_, "llama_batch_free"));
    decode_ = reinterpret_cast<int (*)(void*, LlamaBatch)>(sym(handle_, "llama_decode"));
    get_logits_ith_ = reinterpret_cast<float* (*)(void*, int32_t)>(sym(handle_, "llama_get_logits_ith"));
    free_ = reinterpret_cast<void (*)(void*)>(sym(handle_, "llama_free"));
    model_free_ = reinterpret_cast<void (*)(void*)>(sym(handle_, "llama_model_free"));
  }

  void* handle_ = nullptr;
  std::string error_;
  OpaqueParams (*model_params_)() = nullptr;
  OpaqueParams (*context_params_)() = nullptr;
  void* (*model_load_)(const char*, OpaqueParams) = nullptr;
  void* (*init_)(void*, OpaqueParams) = nullptr;
  const void* (*get_vocab_)(const void*) = nullptr;
  int32_t (*vocab_n_tokens_)(const void*) = nullptr;
  LlamaBatch (*batch_init_)(int32_t, int32_t, int32_t) = nullptr;
  void (*batch_free_)(LlamaBatch) = nullptr;
  int (*decode_)(void*, LlamaBatch) = nullptr;
  float* (*get_logits_ith_)(void*, int32_t) = nullptr;
  void (*free_)(void*) = nullptr;
  void (*model_free_)(void*) = nullptr;
};

}  // namespace moeserve::test
