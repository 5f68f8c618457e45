#include "server/serve_options.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "server/serve_compat.h"

namespace moeserve::server {
namespace {

struct Args {
  int argc;
  char** argv;
  int i = 1;

  bool done() const { return i >= argc; }
  std::string_view peek() const { return argv[i]; }
  // The value after flag `name`: the next argument, or the part after '=' in "--flag=value".
  std::string value(std::string_view name, const std::optional<std::string>& inline_value) {
    if (inline_value) return *inline_value;
    if (i + 1 >= argc) fail("flag ", name, " needs a value");
    return argv[++i];
  }
};

int64_t to_int(std::string_view flag, const std::string& v, int64_t lo, int64_t hi) {
  int64_t out = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || end != v.data() + v.size()) fail("flag ", flag, ": '", v, "' is not an integer");
  if (out < lo || out > hi) fail("flag ", flag, ": ", out, " is out of range [", lo, ", ", hi, "]");
  return out;
}

double to_double(std::string_view flag, const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0') fail("flag ", flag, ": '", v, "' is not a number");
  return d;
}

GgmlType cache_type(std::string_view flag, const std::string& v) {
  const std::optional<GgmlType> t = type_from_name(v);
  if (!t || (*t != GgmlType::F16 && *t != GgmlType::Q8_0 && *t != GgmlType::Q4_0)) {
    fail("flag ", flag, ": cache type '", v, "' is not supported (f16, q8_0, q4_0)");
  }
  return *t;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end - start));
    if (end == std::string::npos) return out;
    start = end + 1;
  }
}

}  // namespace

std::string serve_usage() {
  return R"(usage: moeserve serve [-m MODEL.gguf] [options]

Serves the model over HTTP: OpenAI (/v1/chat/completions, /v1/completions, /v1/models) and Anthropic
(/v1/messages, /v1/messages/count_tokens) APIs, /health, /metrics, /props, /tokenize, /detokenize.
Without -m it serves the bundled demo model. Flags follow llama-server's names.

  -m, --model FILE            GGUF model (first part of a split model)
  -a, --alias NAME[,NAME..]   model names the API answers to (default: the file name)
      --host HOST             address to listen on (default 127.0.0.1)
      --port PORT             port (default 8080)
  -c, --ctx-size N            context in tokens of all slots together, an equal share each (as
                              llama-server); 0 = the model's maximum (default 0)
  -kvu, --kv-unified          every slot gets the whole -c (each its own cache: -np times the memory)
  -n, --n-predict N           cap on generated tokens per request (default -1: none)
  -np, --parallel N           slots: requests decoded together (default 1)
  -b, --batch-size N          logical batch for prompt processing (default 2048)
  -ub, --ubatch-size N        physical batch per engine step (default 512)
  -cb, --cont-batching        continuous batching (default on); --no-cont-batching turns it off
  -t, --threads N             CPU threads (default: all cores)
  -ctk, --cache-type-k T      K cache type: f16, q8_0, q4_0 (default f16)
  -ctv, --cache-type-v T      V cache type: f16, q8_0, q4_0 (default f16)
  -fa, --flash-attn [on|off|auto]  flash attention (default auto; bare -fa means on)
  -ngl, --n-gpu-layers N      the last N layers on the GPU (default: all, and the output head)
  --n-cpu-moe N, -ncmoe N     keep the experts of the first N layers in RAM
  --cpu-moe, -cmoe            keep all experts in RAM
  -ot, --override-tensor REGEX=DEVICE[,...]  place matching tensors on DEVICE (CPU, CUDA0)
  --jinja                     use the model's Jinja chat template (always on)
  --chat-template-file FILE   Jinja chat template to use instead of the model's
  --chat-template-kwargs JSON extra template variables, e.g. '{"enable_thinking": false}'
  --metrics                   enable the Prometheus /metrics endpoint
  --api-key KEY               require this key (Authorization: Bearer KEY or x-api-key: KEY)
  -to, --timeout N            connection read/write timeout in seconds (default 600)
  --temp, --top-k, --top-p, --min-p, --typical, --repeat-penalty, --repeat-last-n,
  --presence-penalty, --frequency-penalty, -s/--seed   sampling defaults for requests
  -l, --logit-bias ID(+|-)BIAS  bias a token in every request, e.g. 151645+2 or 15043-inf
  --cache-ram MIB             RAM for saved prompt-cache states (default 8192; 0 disables)
  --checkpoint-every N        tokens between recurrent-state checkpoints in a prompt (default 4096)
  --no-mmap                   copy the weights kept in RAM out of the file's mapping (huge pages
                              if the kernel gives them) instead of reading them in place
  -dev, --device CUDA0|none   none: every layer on the CPU
  --reasoning-format F        auto (default) or deepseek: <think> text in reasoning_content;
                              none: left in the content
  --reasoning-budget N        -1 (default): no limit; 0: no thinking (enable_thinking false for
                              templates that read it, unless a request sets it)
  -v, --verbose | --log-disable

Other llama-server flags: those that change nothing here (--no-context-shift, --fit, --cache-reuse,
--prio, --mlock, --swa-full, ...) are accepted with a notice at start; those asking for what
moeserve does not do (-hf, --mmproj, --lora, draft models, RoPE overrides, ...) stop with an error
saying so.
)";
}

std::optional<ServeOptions> parse_serve_options(int argc, char** argv) {
  ServeOptions o;
  if (const char* key = std::getenv("MOESERVE_API_KEY")) o.api_key = key;
  else if (const char* key = std::getenv("LLAMA_API_KEY")) o.api_key = key;
  Args a{argc, argv};
  for (; !a.done(); ++a.i) {
    std::string flag(a.peek());
    std::optional<std::string> inline_value;
    if (flag.rfind("--", 0) == 0) {
      if (const size_t eq = flag.find('='); eq != std::string::npos) {
        inline_value = flag.substr(eq + 1);
        flag = flag.substr(0, eq);
      }
    }
    auto val = [&] { return a.value(flag, inline_value); };
    if (flag == "-h" || flag == "--help") {
      std::fputs(serve_usage().c_str(), stdout);
      return std::nullopt;
    } else if (flag == "-m" || flag == "--model") {
      o.model_path = val();
    } else if (flag == "-a" || flag == "--alias") {
      for (std::string& name : split(val(), ',')) {
        if (!name.empty()) o.aliases.push_back(std::move(name));
      }
    } else if (flag == "--host") {
      o.host = val();
    } else if (flag == "--port") {
      o.port = int(to_int(flag, val(), 0, 65535));
    } else if (flag == "-c" || flag == "--ctx-size") {
      o.ctx_size = to_int(flag, val(), 0, int64_t(1) << 24);
    } else if (flag == "-n" || flag == "--n-predict" || flag == "--predict") {
      o.n_predict = to_int(flag, val(), -2, int64_t(1) << 30);
    } else if (flag == "-np" || flag == "--parallel") {
      o.parallel = int(to_int(flag, val(), 1, 256));
    } else if (flag == "-b" || flag == "--batch-size") {
      o.batch_size = to_int(flag, val(), 1, 1 << 20);
    } else if (flag == "-ub" || flag == "--ubatch-size" || flag == "--ub") {
      o.ubatch_size = to_int(flag, val(), 1, 1 << 20);
    } else if (flag == "-kvu" || flag == "--kv-unified") {
      o.kv_unified = true;
    } else if (flag == "--no-kv-unified") {
      o.kv_unified = false;
    } else if (flag == "-cb" || flag == "--cont-batching") {
      o.cont_batching = true;
    } else if (flag == "-nocb" || flag == "--no-cont-batching") {
      o.cont_batching = false;
    } else if (flag == "-t" || flag == "--threads" || flag == "-tb" || flag == "--threads-batch") {
      o.threads = int(to_int(flag, val(), -1, 4096));
    } else if (flag == "-ctk" || flag == "--cache-type-k") {
      o.cache_type_k = cache_type(flag, val());
    } else if (flag == "-ctv" || flag == "--cache-type-v") {
      o.cache_type_v = cache_type(flag, val());
    } else if (flag == "-fa" || flag == "--flash-attn") {
      // Older llama-server builds took -fa with no value; accept both forms.
      if (inline_value) {
        o.flash_attn = *inline_value;
      } else if (a.i + 1 < argc && (std::string_view(argv[a.i + 1]) == "on" || std::string_view(argv[a.i + 1]) == "off" ||
                                    std::string_view(argv[a.i + 1]) == "auto")) {
        o.flash_attn = argv[++a.i];
      } else {
        o.flash_attn = "on";
      }
      if (o.flash_attn != "on" && o.flash_attn != "off" && o.flash_attn != "auto") {
        fail("flag ", flag, ": '", o.flash_attn, "' must be on, off or auto");
      }
    } else if (flag == "-ngl" || flag == "--n-gpu-layers" || flag == "--gpu-layers") {
      const std::string v = val();
      if (v == "auto") o.n_gpu_layers.reset();
      else if (v == "all") o.n_gpu_layers = 1 << 20;
      else o.n_gpu_layers = int(to_int(flag, v, -1, 1 << 20));
    } else if (flag == "--n-cpu-moe" || flag == "-ncmoe") {
      o.n_cpu_moe = int(to_int(flag, val(), 0, 1 << 20));
    } else if (flag == "--cpu-moe" || flag == "-cmoe") {
      o.cpu_moe = true;
    } else if (flag == "-ot" || flag == "--override-tensor") {
      for (const std::string& rule : split(val(), ',')) {
        const size_t eq = rule.rfind('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == rule.size()) {
          fail("flag ", flag, ": '", rule, "' must be REGEX=DEVICE (e.g. exps=CPU)");
        }
        o.override_tensors.emplace_back(rule.substr(0, eq), rule.substr(eq + 1));
      }
    } else if (flag == "--jinja") {
      o.jinja = true;
    } else if (flag == "--chat-template-file") {
      o.chat_template_file = val();
    } else if (flag == "--chat-template-kwargs") {
      o.chat_template_kwargs = val();
    } else if (flag == "--metrics") {
      o.metrics = true;
    } else if (flag == "--api-key") {
      o.api_key = val();
    } else if (flag == "-to" || flag == "--timeout") {
      o.timeout_seconds = int(to_int(flag, val(), 1, 1 << 24));
    } else if (flag == "--temp" || flag == "--temperature") {
      o.temperature = to_double(flag, val());
    } else if (flag == "--top-k") {
      o.top_k = int(to_int(flag, val(), 0, 1 << 30));
    } else if (flag == "--top-p") {
      o.top_p = to_double(flag, val());
    } else if (flag == "--min-p") {
      o.min_p = to_double(flag, val());
    } else if (flag == "--repeat-penalty") {
      o.repeat_penalty = to_double(flag, val());
    } else if (flag == "--presence-penalty") {
      o.presence_penalty = to_double(flag, val());
    } else if (flag == "--frequency-penalty") {
      o.frequency_penalty = to_double(flag, val());
    } else if (flag == "--repeat-last-n") {
      o.repeat_last_n = to_int(flag, val(), -1, int64_t(1) << 30);
    } else if (flag == "--typical") {
      o.typical_p = to_double(flag, val());
    } else if (flag == "-l" || flag == "--logit-bias") {
      // llama.cpp's form: TOKEN_ID followed by a signed bias, e.g. 15043+1, 15043-inf.
      const std::string v = val();
      const size_t sign = v.find_first_of("+-", 1);
      if (sign == std::string::npos) fail("flag ", flag, ": '", v, "' must be TOKEN_ID+BIAS or TOKEN_ID-BIAS");
      const int64_t id = to_int(flag, v.substr(0, sign), 0, INT32_MAX);
      const std::string amount = v.substr(sign);
      const float bias = amount == "-inf" ? -INFINITY : amount == "+inf" ? INFINITY : float(to_double(flag, amount));
      o.logit_bias.emplace_back(int32_t(id), bias);
    } else if (flag == "-s" || flag == "--seed") {
      o.seed = to_int(flag, val(), -1, INT64_MAX);
    } else if (flag == "--cache-ram" || flag == "-cram") {
      o.cache_ram_mib = to_int(flag, val(), -1, int64_t(1) << 30);
    } else if (flag == "--checkpoint-every") {
      o.checkpoint_every = to_int(flag, val(), 1, int64_t(1) << 30);
    } else if (flag == "--no-mmap") {
      o.mmap = false;
    } else if (flag == "-dev" || flag == "--device") {
      // llama.cpp's device list: "none" keeps every layer on the CPU; this build's one GPU is CUDA0.
      const std::string v = val();
      if (v == "none") o.n_gpu_layers = 0;
      else if (v != "CUDA0") fail("flag ", flag, ": '", v, "' must be CUDA0 or none");
    } else if (flag == "--reasoning-format") {
      // auto / deepseek: reasoning goes to reasoning_content; none: it stays in the content.
      const std::string v = val();
      if (v != "auto" && v != "deepseek" && v != "deepseek-legacy" && v != "none") {
        fail("flag ", flag, ": '", v, "' must be auto, deepseek, deepseek-legacy or none");
      }
      o.split_reasoning = v != "none";
    } else if (flag == "--reasoning-budget") {
      // llama-server's two budgets: -1 unrestricted, 0 no thinking (enable_thinking false).
      const std::string v = val();
      if (v != "-1" && v != "0") fail("flag ", flag, ": '", v, "' must be -1 (no limit) or 0 (no thinking)");
      o.thinking_off = v == "0";
    } else if (flag == "-v" || flag == "--verbose") {
      o.log_level = "debug";
    } else if (flag == "--log-disable") {
      o.log_level = "off";
    } else if (const CompatFlag* c = compat_flag(flag)) {
      std::string v;
      if (c->value == FlagValue::required ||
          (c->value == FlagValue::optional && (inline_value || (a.i + 1 < argc && argv[a.i + 1][0] != '-')))) {
        v = val();
      }
      if (!c->accepted) fail("flag ", flag, ": ", c->why);
      o.notices.push_back(str_cat(flag, v.empty() ? "" : " " + v, ": no effect here (", c->why, ")"));
    } else {
      fail("unknown flag '", flag, "' (see moeserve serve --help)");
    }
  }
  if (o.ubatch_size > o.batch_size) o.ubatch_size = o.batch_size;
  if (o.threads <= 0) o.threads = 0;
  return o;
}

}  // namespace moeserve::server
