// Everything needed to answer requests for one model: the file, its weights on a backend, the
// engine and its scheduler thread, the tokenizer, the chat template and how replies are parsed.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "chat/chat_template.h"
#include "chat/tool_call_parser.h"
#include "gguf/gguf_file.h"
#include "grammar/token_constraint.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "runtime/scheduler.h"
#include "server/serve_options.h"
#include "tokenizer/tokenizer.h"

namespace moeserve::server {

class ServedModel {
 public:
  // Loads everything; throws moeserve::Error with a clear message (file, tensor, template...).
  explicit ServedModel(const ServeOptions& options);
  ~ServedModel();  // stops the scheduler and joins the engine thread

  const std::string& path() const { return path_; }
  // The names this model answers to: aliases, then the file name and its stem.
  const std::vector<std::string>& names() const { return names_; }
  bool answers_to(const std::string& name) const;

  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  const chat::ChatTemplate& chat_template() const { return *template_; }
  chat::ToolCallFormat tool_format() const { return tool_format_; }
  bool template_has_reasoning() const { return reasoning_; }
  // Every token's bytes, for constrained output.
  std::shared_ptr<const grammar::TokenTable> token_table() const { return token_table_; }
  const std::string& bos_text() const { return bos_text_; }
  const std::string& eos_text() const { return eos_text_; }
  Scheduler& scheduler() { return *scheduler_; }
  const Engine& engine() const { return *engine_; }
  int64_t n_ctx() const { return engine_->n_ctx(); }
  int64_t n_vocab() const { return engine_->n_vocab(); }
  std::string summary() const;  // one line for the log: architecture, size, context, KV, threads

 private:
  std::string path_;
  std::vector<std::string> names_;
  std::shared_ptr<const gguf::GgufFile> file_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<chat::ChatTemplate> template_;
  std::shared_ptr<const grammar::TokenTable> token_table_;
  chat::ToolCallFormat tool_format_ = chat::ToolCallFormat::none;
  bool reasoning_ = false;
  std::string bos_text_, eos_text_;
  int threads_ = 0;
  std::thread engine_thread_;
};

// The bundled demo model (models/ in the source tree), used when `serve` gets no -m.
std::string default_model_path();

}  // namespace moeserve::server
