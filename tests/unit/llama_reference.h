// llama.cpp's quantization as a reference (llama_cpp_reference.h runs models with it): libllama
// from the npm package @node-llama-cpp/linux-x64 (tests/clients) exports
// llama_quant_compute_types, which runs llama-quantize's per-tensor rules (llama_tensor_get_type)
// on tensor descriptions and a mock model built from a few hyperparameters, and
// llama_model_quantize, which quantizes whole files. Tensors are described with ggml_tensor
// objects from libggml-base (ggml_new_tensor in a no-alloc context).
#pragma once

#include <dlfcn.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ggml_type.h"

namespace moeserve::test {

class Llama {
 public:
  static const Llama& get() {
    static const Llama lib;
    return lib;
  }
  const std::string& error() const { return error_; }

  template <typename Fn>
  Fn fn(const char* name) const {
    void* p = handle_ ? dlsym(handle_, name) : nullptr;
    if (!p) throw std::runtime_error(std::string("llama reference lacks symbol ") + name);
    return reinterpret_cast<Fn>(p);
  }

 private:
  Llama() {
    const std::string dir =
        std::string(MOESERVE_SOURCE_DIR) + "/tests/clients/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/";
    handle_ = dlopen((dir + "libllama.v0.4.0.so").c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
      error_ = std::string("cannot load the llama.cpp reference (") + dlerror() +
               "); scripts/setup.sh installs it (npm ci in tests/clients)";
      return;
    }
    using LogCallback = void (*)(int level, const char* text, void* user);
    fn<void (*)(LogCallback, void*)>("llama_log_set")([](int, const char*, void*) {}, nullptr);
  }
  void* handle_ = nullptr;
  std::string error_;
};

// llama_quant_model_desc (src/llama-ext.h).
struct LlamaQuantModelDesc {
  const char* architecture;
  uint32_t n_embd, n_ff, n_layer, n_head, n_head_kv, n_expert, n_embd_head_k, n_embd_head_v;
};

// llama_model_tensor_override: {pattern, type}, the list ended by a null pattern.
struct LlamaTensorOverride {
  const char* pattern;
  int32_t type;
};

// llama_model_quantize_params as llama_model_quantize_default_params() fills it (returned by
// value, i.e. through a hidden pointer, here into a buffer larger than the struct). The fields
// used are at these byte offsets in this build, in llama.h's order: nthread 0, ftype 4,
// output_tensor_type 8, token_embedding_type 12, allow_requantize 0x10, quantize_output_tensor
// 0x11, pure 0x13, imatrix 0x18, tensor type overrides 0x28. Their defaults are checked first, so
// that a build with another layout fails loudly instead of setting the wrong fields.
struct QuantizeParamOffsets {
  static constexpr size_t nthread = 0, ftype = 4, output_tensor_type = 8, token_embedding_type = 12, pure = 0x13,
                          imatrix = 0x18, overrides = 0x28;
};

inline std::array<uint8_t, 256> llama_quantize_default_params() {
  alignas(8) std::array<uint8_t, 256> params{};
  reinterpret_cast<void (*)(void*)>(Llama::get().fn<void*>("llama_model_quantize_default_params"))(params.data());
  auto i32 = [&](size_t offset) {
    int32_t v;
    std::memcpy(&v, params.data() + offset, 4);
    return v;
  };
  auto ptr = [&](size_t offset) {
    void* v;
    std::memcpy(&v, params.data() + offset, sizeof v);
    return v;
  };
  // LLAMA_FTYPE_MOSTLY_Q8_0 (7), GGML_TYPE_COUNT (43 in this build) for both tensor types,
  // allow_requantize false, quantize_output_tensor true, pure false, no imatrix, overrides.
  const bool layout = i32(QuantizeParamOffsets::ftype) == 7 && i32(QuantizeParamOffsets::output_tensor_type) == 43 &&
                      i32(QuantizeParamOffsets::token_embedding_type) == 43 && params[0x10] == 0 &&
                      params[0x11] == 1 && params[QuantizeParamOffsets::pure] == 0 &&
                      ptr(QuantizeParamOffsets::imatrix) == nullptr && ptr(QuantizeParamOffsets::overrides) == nullptr;
  if (!layout) {
    throw std::runtime_error(
        "llama_model_quantize_params has another layout in this llama.cpp build: update QuantizeParamOffsets from its "
        "llama.h");
  }
  return params;
}

// Options of llama_model_quantize_params that change the type choice.
struct RefOptions {
  bool pure = false;
  std::optional<GgmlType> output_type, token_embedding_type;
  std::vector<std::pair<std::string, GgmlType>> overrides;
};

// The tensor types llama-quantize chooses for `tensors` (name, ggml type id, ne) under `ftype`:
// for each tensor, -1 when llama.cpp would not quantize it at all.
struct RefTensor {
  std::string name;
  GgmlType type;
  std::array<int64_t, 4> ne;
};

inline std::vector<int> llama_tensor_types(const LlamaQuantModelDesc& desc, const std::vector<RefTensor>& tensors,
                                           int32_t ftype, const RefOptions& options = {}) {
  const Llama& l = Llama::get();
  struct InitParams {
    size_t mem_size;
    void* mem_buffer;
    bool no_alloc;
  };
  auto overhead = l.fn<size_t (*)()>("ggml_tensor_overhead")();
  void* ctx = l.fn<void* (*)(InitParams)>("ggml_init")({overhead * (tensors.size() + 4), nullptr, true});
  auto new_tensor = l.fn<void* (*)(void*, int, int, const int64_t*)>("ggml_new_tensor");
  auto set_name = l.fn<void* (*)(void*, const char*)>("ggml_set_name");
  std::vector<void*> ggml_tensors;
  for (const RefTensor& t : tensors) {
    void* g = new_tensor(ctx, int(t.type), 4, t.ne.data());
    set_name(g, t.name.c_str());
    ggml_tensors.push_back(g);
  }
  std::array<uint8_t, 256> params = llama_quantize_default_params();
  using O = QuantizeParamOffsets;
  auto field = [&](size_t offset, const void* value, size_t size) { std::memcpy(params.data() + offset, value, size); };
  field(O::ftype, &ftype, 4);
  if (options.output_type) {
    const int32_t t = int32_t(*options.output_type);
    field(O::output_tensor_type, &t, 4);
  }
  if (options.token_embedding_type) {
    const int32_t t = int32_t(*options.token_embedding_type);
    field(O::token_embedding_type, &t, 4);
  }
  field(O::pure, &options.pure, 1);
  std::vector<LlamaTensorOverride> overrides;
  for (const auto& [pattern, type] : options.overrides) overrides.push_back({pattern.c_str(), int32_t(type)});
  overrides.push_back({nullptr, 0});
  const LlamaTensorOverride* list = options.overrides.empty() ? nullptr : overrides.data();
  field(O::overrides, &list, sizeof list);
  void* model = l.fn<void* (*)(const LlamaQuantModelDesc*)>("_Z31llama_quant_model_from_metadataPK22llama_quant_model_desc")(&desc);
  void* qs = l.fn<void* (*)(const void*, const void*)>("_Z16llama_quant_initPK11llama_modelPK27llama_model_quantize_params")(
      model, params.data());
  auto allows = l.fn<bool (*)(const void*, const void*)>(
      "_Z38llama_quant_tensor_allows_quantizationPK19quantize_state_implPK11ggml_tensor");
  std::vector<void*> quantizable;
  std::vector<size_t> index;
  for (size_t i = 0; i < ggml_tensors.size(); ++i) {
    if (!allows(qs, ggml_tensors[i])) continue;
    quantizable.push_back(ggml_tensors[i]);
    index.push_back(i);
  }
  std::vector<int32_t> types(quantizable.size());
  l.fn<void (*)(void*, int32_t, void**, int32_t*, size_t)>(
      "_Z25llama_quant_compute_typesP19quantize_state_impl11llama_ftypePP11ggml_tensorP9ggml_typem")(
      qs, ftype, quantizable.data(), types.data(), quantizable.size());
  std::vector<int> result(tensors.size(), -1);
  for (size_t k = 0; k < index.size(); ++k) result[index[k]] = types[k];
  l.fn<void (*)(void*)>("_Z16llama_quant_freeP19quantize_state_impl")(qs);
  l.fn<void (*)(void*)>("llama_model_free")(model);
  l.fn<void (*)(void*)>("ggml_free")(ctx);
  return result;
}

}  // namespace moeserve::test

#define REQUIRE_LLAMA() \
  ASSERT_TRUE(::moeserve::test::Llama::get().error().empty()) << ::moeserve::test::Llama::get().error()
