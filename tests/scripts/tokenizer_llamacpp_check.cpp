// Checks moeserve's tokenizer against llama.cpp itself on the same GGUF vocabulary: the
// vocabulary of a tokenizer_reference.mjs case file (a real tokenizer.json) is written to a
// vocab-only GGUF with vocab_to_gguf_metadata, read back with vocab_from_gguf, every case is
// encoded by both (with and without parse_special) and decoded by both, and every token's piece
// is compared. llama.cpp is the shared
// library shipped prebuilt in the npm package @node-llama-cpp/linux-x64 (tests/clients).
// Prints "N passed, M failed".
//
//   tokenizer_llamacpp_check CASES.json WORK_DIR
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_gguf.h"
#include "tokenizer/vocab_hf.h"

namespace tk = moeserve::tokenizer;

namespace {

// llama_model_params of this llama.cpp build, as llama_model_default_params fills it: 80 bytes,
// the six bools (vocab_only, check_tensors, use_extra_bufts, no_host, no_alloc, load_mtp) from
// byte 72. Checked against the defaults before use, as the layout is not part of any header here.
struct LlamaModelParams {
  unsigned char bytes[80];
};
constexpr size_t kVocabOnly = 72, kUseExtraBufts = 74;

class Llama {
 public:
  explicit Llama(const std::string& dir) {
    ggml_ = dlopen((dir + "libggml.v0.4.0.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
    llama_ = ggml_ ? dlopen((dir + "libllama.v0.4.0.so").c_str(), RTLD_NOW | RTLD_LOCAL) : nullptr;
    if (!llama_) throw std::runtime_error(std::string("cannot load llama.cpp: ") + dlerror());
    fn<void (*)(void (*)(int, const char*, void*), void*)>(llama_, "llama_log_set")(
        [](int, const char*, void*) {}, nullptr);
    fn<void (*)(const char*)>(ggml_, "ggml_backend_load_all_from_path")(dir.c_str());
  }
  void load(const std::string& gguf) {
    LlamaModelParams p = fn<LlamaModelParams (*)()>(llama_, "llama_model_default_params")();
    if (p.bytes[kVocabOnly] != 0 || p.bytes[kUseExtraBufts] != 1)
      throw std::runtime_error("llama_model_params defaults are not laid out as expected");
    p.bytes[kVocabOnly] = 1;
    model_ = fn<void* (*)(const char*, LlamaModelParams)>(llama_, "llama_model_load_from_file")(gguf.c_str(), p);
    if (!model_) throw std::runtime_error("llama.cpp could not load " + gguf);
    vocab_ = fn<void* (*)(void*)>(llama_, "llama_model_get_vocab")(model_);
  }
  std::vector<tk::TokenId> tokenize(const std::string& text, bool add_special, bool parse_special) const {
    auto f = fn<int32_t (*)(void*, const char*, int32_t, int32_t*, int32_t, bool, bool)>(llama_, "llama_tokenize");
    std::vector<tk::TokenId> ids(text.size() + 4);
    int32_t n = f(vocab_, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), add_special, parse_special);
    if (n < 0) {
      ids.resize(size_t(-n));
      n = f(vocab_, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()), add_special, parse_special);
    }
    ids.resize(size_t(std::max(n, 0)));
    return ids;
  }
  std::string piece(tk::TokenId id, bool special) const {
    auto f = fn<int32_t (*)(void*, int32_t, char*, int32_t, int32_t, bool)>(llama_, "llama_token_to_piece");
    std::string out(64, '\0');
    int32_t n = f(vocab_, id, out.data(), int32_t(out.size()), 0, special);
    if (n < 0) {
      out.resize(size_t(-n));
      n = f(vocab_, id, out.data(), int32_t(out.size()), 0, special);
    }
    out.resize(size_t(std::max(n, 0)));
    return out;
  }
  std::string detokenize(const std::vector<tk::TokenId>& ids, bool special) const {
    auto f = fn<int32_t (*)(void*, const int32_t*, int32_t, char*, int32_t, bool, bool)>(llama_, "llama_detokenize");
    std::string out(ids.size() * 8 + 16, '\0');
    int32_t n = f(vocab_, ids.data(), int32_t(ids.size()), out.data(), int32_t(out.size()), false, special);
    if (n < 0) {
      out.resize(size_t(-n));
      n = f(vocab_, ids.data(), int32_t(ids.size()), out.data(), int32_t(out.size()), false, special);
    }
    out.resize(size_t(std::max(n, 0)));
    return out;
  }

 private:
  template <typename Fn>
  static Fn fn(void* lib, const char* name) {
    void* p = dlsym(lib, name);
    if (!p) throw std::runtime_error(std::string("llama.cpp lacks ") + name);
    return reinterpret_cast<Fn>(p);
  }
  void* ggml_ = nullptr;
  void* llama_ = nullptr;
  void* model_ = nullptr;
  void* vocab_ = nullptr;
};

std::string ids_text(const std::vector<tk::TokenId>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size() && i < 30; ++i) out += (i ? " " : "") + std::to_string(ids[i]);
  return out + (ids.size() > 30 ? " ..." : "");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: tokenizer_llamacpp_check CASES.json WORK_DIR\n");
    return 2;
  }
  try {
    std::ifstream in(argv[1], std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    const nlohmann::json doc = nlohmann::json::parse(buf.str());
    const std::string tokenizer_json = doc["tokenizer_json"];
    const bool add_special = doc["add_special"];

    const tk::Vocab hf = tk::load_hf_vocab(tokenizer_json);
    auto metadata = tk::vocab_to_gguf_metadata(hf);
    // llama.cpp loads a vocabulary only for an architecture it knows; any one will do.
    metadata.insert(metadata.begin(), {"general.architecture", moeserve::gguf::Value::string(
                                                                   hf.model == "gpt2" ? "qwen3" : "llama")});
    const std::string gguf = std::string(argv[2]) + "/tokenizer_llamacpp_" + hf.model + ".gguf";
    moeserve::gguf::GgufWriter::write_file(gguf, metadata, {});
    const tk::Tokenizer ours(tk::vocab_from_gguf(moeserve::gguf::GgufFile::open(gguf)), gguf);
    Llama llama(std::string(MOESERVE_SOURCE_DIR) +
                "/tests/clients/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/");
    llama.load(gguf);

    size_t passed = 0, failed = 0;
    auto check = [&](bool ok, const std::string& what) {
      if (ok) {
        ++passed;
      } else if (failed++ < 25) {
        std::printf("FAIL %s\n", what.c_str());
      }
    };
    for (const auto& c : doc["cases"]) {
      const std::string text = c["text"];
      for (bool parse_special : {true, false}) {
        tk::EncodeOptions options;
        options.add_special = add_special;
        options.parse_special = parse_special;
        const std::vector<tk::TokenId> want = llama.tokenize(text, add_special, parse_special);
        const std::vector<tk::TokenId> got = ours.encode(text, options);
        check(want == got, "ids (parse_special=" + std::to_string(parse_special) + ") of " +
                               nlohmann::json(text).dump() + "\n  llama.cpp " + ids_text(want) + "\n  ours      " +
                               ids_text(got));
        // Whole-text decoding. llama.cpp drops the space a SentencePiece encoder prefixed only from
        // the first token, even when that token prints nothing (a BOS, a control token skipped);
        // HF's decoders, and ours, drop it at the start of the text. So a leading BOS is left out,
        // and texts whose first token prints nothing are compared by pieces alone.
        std::vector<tk::TokenId> ids = got;
        if (!ids.empty() && ids[0] == ours.vocab().bos && add_special) ids.erase(ids.begin());
        for (bool special : {true, false}) {
          if (ours.vocab().model == "llama" && !ids.empty() && ours.piece(ids[0], special).empty()) continue;
          const std::string want_text = llama.detokenize(ids, special);
          const std::string got_text = ours.decode(ids, special);
          check(want_text == got_text, "text (special=" + std::to_string(special) + ") of " + ids_text(ids) +
                                           "\n  llama.cpp " + nlohmann::json(want_text).dump() + "\n  ours      " +
                                           nlohmann::json(got_text).dump());
        }
      }
    }
    // Every token's piece, as streaming emits it. llama.cpp also promotes ordinary tokens whose
    // text is a known end-of-text marker ("</s>" is 128247 in Qwen's vocabulary) to control
    // tokens; tokenizer.json, and so moeserve, keeps them ordinary text.
    for (size_t id = 0; id < ours.n_tokens(); ++id) {
      if (ours.vocab().types[id] == tk::TokenType::Normal && ours.vocab().tokens[id] == "</s>") continue;
      for (bool special : {true, false}) {
        const std::string want = llama.piece(tk::TokenId(id), special);
        const std::string& got = ours.piece(tk::TokenId(id), special);
        check(want == got, "piece of token " + std::to_string(id) + " (special=" + std::to_string(special) +
                               ")\n  llama.cpp " + nlohmann::json(want).dump(-1, ' ', false,
                               nlohmann::json::error_handler_t::replace) +
                               "\n  ours      " + nlohmann::json(got).dump(-1, ' ', false,
                               nlohmann::json::error_handler_t::replace));
      }
    }
    std::printf("%zu passed, %zu failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenizer_llamacpp_check: %s\n", e.what());
    return 2;
  }
}
