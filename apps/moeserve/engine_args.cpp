#include "engine_args.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "runtime/device_setup.h"
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
  } else if (a == "-ngl" || a == "--n-gpu-layers" || a == "--gpu-layers") {
    const std::string_view v = flag_value(argc, argv, i);
    if (v == "auto" || v == "all") {
      placement.n_gpu_layers.reset();
    } else {
      placement.n_gpu_layers = int(parse_int(a, v, -1, 1 << 20));
    }
  } else if (a == "-ncmoe" || a == "--n-cpu-moe") {
    placement.n_cpu_moe = int(parse_int(a, flag_value(argc, argv, i), 0, 1 << 20));
  } else if (a == "-cmoe" || a == "--cpu-moe") {
    placement.cpu_moe = true;
  } else if (a == "--no-mmap") {
    mmap = false;
  } else if (a == "-mmp" || a == "--mmap") {  // llama-bench's form
    mmap = parse_int(a, flag_value(argc, argv, i), 0, 1) == 1;
  } else if (a == "-ot" || a == "--override-tensor" || a == "--override-tensors") {
    const std::string v(flag_value(argc, argv, i));
    size_t start = 0;
    while (start <= v.size()) {
      const size_t comma = std::min(v.find(',', start), v.size());
      const std::string rule = v.substr(start, comma - start);
      const size_t eq = rule.rfind('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == rule.size()) {
        fail("option ", a, ": '", rule, "' must be REGEX=DEVICE (e.g. exps=CPU)");
      }
      placement.overrides.emplace_back(rule.substr(0, eq), rule.substr(eq + 1));
      start = comma + 1;
    }
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
         "  -ctv, --cache-type-v T V cache type (same choices)\n"
         "  -ngl, --n-gpu-layers N the last N layers on the GPU (N > layers: the output head too; default all)\n"
         "  -ncmoe, --n-cpu-moe N  keep the routed experts of the first N layers in RAM (run on the CPU)\n"
         "  -cmoe, --cpu-moe       keep every layer's routed experts in RAM\n"
         "  -ot, --override-tensor REGEX=DEV[,...]  tensors matching REGEX on DEV (CPU, CUDA0); first match wins\n"
         "  --no-mmap, -mmp 0      copy the weights kept in RAM out of the file's mapping (huge pages if the\n"
         "                         kernel gives them) instead of reading them where the file is mapped\n";
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
  gguf::OpenOptions open_options;
  open_options.map_weights = args.mmap;
  m.file = std::make_shared<const gguf::GgufFile>(gguf::GgufFile::open(args.model, open_options));
  DeviceSetup setup = make_device_setup(*m.file, args.placement, args.threads);
  if (!setup.notice.empty()) std::fprintf(stderr, "moeserve: %s\n", setup.notice.c_str());
  m.backend = std::move(setup.backend);
  m.gpu = setup.gpu;
  m.model = moeserve::load_model(m.file, *m.backend);
  m.load_seconds = now_seconds() - t0;
  for (const gguf::TensorInfo& t : m.file->tensors()) m.n_params += uint64_t(t.n_elements());
  return m;
}

std::unique_ptr<Engine> make_engine(const LoadedModel& m, const EngineOptions& options) {
  check_caches_fit(m.gpu, *m.model, options);
  return std::make_unique<Engine>(*m.model, *m.backend, options);
}

tokenizer::Tokenizer model_tokenizer(const gguf::GgufFile& file) {
  return tokenizer::Tokenizer(tokenizer::vocab_from_gguf(file), file.path());
}

}  // namespace moeserve::cli
