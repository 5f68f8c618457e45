#include "engine_args.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "tokenizer/vocab_gguf.h"

namespace moeserve::cli {

std::string_view flag_value(int argc, char** argv, int& i) {
  if (i + 1 >= argc) fail("option ", argv[i], " needs a value");
  return argv[++i];
}

int64_t parse_int(std::string_view flag, std::string_view text, int64_t min, int64_t max) {
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE) fail("option ", flag, ": '", text, "' is not an integer");
  if (v < min || v > max) fail("option ", flag, ": ", v, " is outside ", min, "..", max);
  return v;
}

double parse_real(std::string_view flag, std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(v)) fail("option ", flag, ": '", text, "' is not a number");
  return v;
}

std::vector<int32_t> parse_ids(std::string_view flag, std::string_view text) {
  std::vector<int32_t> ids;
  std::string token;
  auto flush = [&] {
    if (!token.empty()) ids.push_back(int32_t(parse_int(flag, token, 0, INT32_MAX)));
    token.clear();
  };
  for (const char c : text) {
    if (c == '[' || c == ']' || c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      flush();
    } else {
      token += c;
    }
  }
  flush();
  if (ids.empty()) fail("option ", flag, ": no token ids in '", text, "'");
  return ids;
}

namespace {

GgmlType parse_kv_type(std::string_view flag, std::string_view text) {
  const std::optional<GgmlType> t = type_from_name(text);
  if (!t || !is_kv_cache_type(*t)) {
    fail("option ", flag, ": '", text, "' is not a KV cache type (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl)");
  }
  return *t;
}

FlashMode parse_flash(std::string_view flag, std::string_view text) {
  if (text == "on" || text == "1" || text == "true") return FlashMode::on;
  if (text == "off" || text == "0" || text == "false") return FlashMode::off;
  if (text == "auto") return FlashMode::automatic;
  fail("option ", flag, ": '", text, "' is not on, off or auto");
}

}  // namespace

bool EngineArgs::parse(int argc, char** argv, int& i) {
  const std::string_view a = argv[i];
  if (a == "-m" || a == "--model") {
    model = flag_value(argc, argv, i);
  } else if (a == "-t" || a == "--threads") {
    threads = int(parse_int(a, flag_value(argc, argv, i), 1, 1024));
  } else if (a == "-c" || a == "--ctx-size") {
    n_ctx = parse_int(a, flag_value(argc, argv, i), 0, int64_t(1) << 24);
  } else if (a == "-b" || a == "--batch-size" || a == "-ub" || a == "--ubatch-size") {
    n_batch = parse_int(a, flag_value(argc, argv, i), 1, 1 << 16);
  } else if (a == "-fa" || a == "--flash-attn") {
    flash = parse_flash(a, flag_value(argc, argv, i));
  } else if (a == "-ctk" || a == "--cache-type-k") {
    type_k = parse_kv_type(a, flag_value(argc, argv, i));
  } else if (a == "-ctv" || a == "--cache-type-v") {
    type_v = parse_kv_type(a, flag_value(argc, argv, i));
  } else {
    return false;
  }
  return true;
}

const char* EngineArgs::help() {
  return "  -m, --model FILE       GGUF model (first part of a split model)\n"
         "  -t, --threads N        CPU threads (default: one per core)\n"
         "  -c, --ctx-size N       context size in tokens (default 4096 or the model's if smaller; 0 = the model's)\n"
         "  -b, --batch-size N     most tokens per step (default 512)\n"
         "  -fa, --flash-attn M    flash attention: on, off or auto (default auto = on)\n"
         "  -ctk, --cache-type-k T K cache type: f16 (default), f32, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl\n"
         "  -ctv, --cache-type-v T V cache type (same choices)\n";
}

EngineOptions EngineArgs::engine_options(const HParams& hp) const {
  EngineOptions o;
  o.n_ctx = n_ctx >= 0 ? n_ctx : std::min<int64_t>(4096, hp.n_ctx_train);
  o.n_batch = n_batch;
  o.flash = flash;
  o.type_k = type_k;
  o.type_v = type_v;
  return o;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

LoadedModel load_model(const EngineArgs& args) {
  if (args.model.empty()) fail("missing -m MODEL.gguf");
  LoadedModel m;
  const double t0 = now_seconds();
  m.file = std::make_shared<const gguf::GgufFile>(gguf::GgufFile::open(args.model));
  m.backend = make_cpu_backend(args.threads);
  m.model = moeserve::load_model(m.file, *m.backend);
  m.load_seconds = now_seconds() - t0;
  for (const gguf::TensorInfo& t : m.file->tensors()) m.n_params += uint64_t(t.n_elements());
  return m;
}

tokenizer::Tokenizer model_tokenizer(const gguf::GgufFile& file) {
  return tokenizer::Tokenizer(tokenizer::vocab_from_gguf(file), file.path());
}

}  // namespace moeserve::cli
