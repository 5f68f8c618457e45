#include "server/served_model.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "runtime/device_setup.h"
#include "tokenizer/vocab_gguf.h"

namespace moeserve::server {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read chat template file '", path, "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The reply format follows from what the template teaches the model to write.
chat::ToolCallFormat detect_tool_format(const std::string& source) {
  if (source.find("<function=") != std::string::npos) return chat::ToolCallFormat::qwen3_coder_xml;
  if (source.find("<tool_call>") != std::string::npos) return chat::ToolCallFormat::hermes_json;
  return chat::ToolCallFormat::none;
}

// A minimal ChatML template for models whose file carries none (raw base models).
constexpr const char* kChatMlTemplate =
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + (message.content or '') + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

}  // namespace

std::string default_model_path() {
  namespace fs = std::filesystem;
  const fs::path bundled = fs::path(MOESERVE_SOURCE_DIR) / "models" / "moeserve-demo-qwen3next.gguf";
  return bundled.string();
}

ServedModel::ServedModel(const ServeOptions& options) {
  path_ = options.model_path.empty() ? default_model_path() : options.model_path;
  gguf::OpenOptions open_options;
  open_options.map_weights = options.mmap;
  file_ = std::make_shared<const gguf::GgufFile>(gguf::GgufFile::open(path_, open_options));

  names_ = options.aliases;
  const std::filesystem::path p(path_);
  names_.push_back(p.filename().string());
  names_.push_back(p.stem().string());
  if (auto name = file_->get_string("general.name")) names_.push_back(*name);

  threads_ = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const PlacementFlags placement{options.n_gpu_layers, options.n_cpu_moe.value_or(0), options.cpu_moe,
                                 options.override_tensors};
  DeviceSetup setup = make_device_setup(*file_, placement, threads_);
  if (!setup.notice.empty()) std::fprintf(stderr, "moeserve: %s\n", setup.notice.c_str());
  backend_ = std::move(setup.backend);
  model_ = load_model(file_, *backend_);
  tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::vocab_from_gguf(*file_), path_);

  std::string source;
  if (!options.chat_template_file.empty()) {
    source = read_file(options.chat_template_file);
  } else if (auto t = file_->get_string("tokenizer.chat_template")) {
    source = *t;
  } else {
    source = kChatMlTemplate;
  }
  template_ = std::make_unique<chat::ChatTemplate>(source);
  tool_format_ = detect_tool_format(source);
  reasoning_ = source.find("<think>") != std::string::npos;
  const tokenizer::Vocab& vocab = tokenizer_->vocab();
  auto table = std::make_shared<grammar::TokenTable>();
  table->bytes.resize(tokenizer_->n_tokens());
  table->end_of_generation.resize(tokenizer_->n_tokens());
  for (size_t t = 0; t < tokenizer_->n_tokens(); ++t) {
    table->bytes[t] = tokenizer_->piece(tokenizer::TokenId(t));
    table->end_of_generation[t] = tokenizer_->is_end_of_generation(tokenizer::TokenId(t));
  }
  grammar::build_token_trie(*table);
  token_table_ = std::move(table);
  if (vocab.bos != tokenizer::kNoToken) bos_text_ = tokenizer_->piece(vocab.bos, true);
  if (vocab.eos != tokenizer::kNoToken) eos_text_ = tokenizer_->piece(vocab.eos, true);

  EngineOptions eo;
  // llama-server's -c is the context of all slots together, an equal share each (all of it each
  // with --kv-unified, where llama-server's slots share one cache; here each slot has its own).
  const int64_t total_ctx = options.ctx_size > 0 ? options.ctx_size : model_->hparams().n_ctx_train;
  eo.n_ctx = options.kv_unified ? total_ctx : std::max<int64_t>(1, total_ctx / options.parallel);
  eo.n_seq = options.parallel;
  eo.n_batch = std::min(options.ubatch_size, options.batch_size);
  eo.type_k = options.cache_type_k;
  eo.type_v = options.cache_type_v;
  eo.flash = options.flash_attn == "on" ? FlashMode::on : options.flash_attn == "off" ? FlashMode::off : FlashMode::automatic;
  check_caches_fit(setup.gpu, *model_, eo);
  engine_ = std::make_unique<Engine>(*model_, *backend_, eo);

  SchedulerOptions so;
  so.n_step_tokens = eo.n_batch;
  so.checkpoint_every = options.checkpoint_every;
  // -1: no limit, as in llama-server.
  so.cache_ram_bytes = options.cache_ram_mib < 0 ? INT64_MAX : options.cache_ram_mib << 20;
  scheduler_ = std::make_unique<Scheduler>(*engine_, so);
  engine_thread_ = std::thread([this] { scheduler_->run(); });
}

ServedModel::~ServedModel() {
  if (scheduler_) scheduler_->stop();
  if (engine_thread_.joinable()) engine_thread_.join();
}

bool ServedModel::answers_to(const std::string& name) const {
  return std::find(names_.begin(), names_.end(), name) != names_.end();
}

std::string ServedModel::summary() const {
  return str_cat(file_->architecture(), " from ", path_, "; weights ", model_->placement().device_summary(), "; ",
                 engine_->memory_summary(), "; ", threads_, " threads, ",
                 engine_->n_seq(), " slot(s) of ", engine_->n_ctx(), " tokens");
}

}  // namespace moeserve::server
