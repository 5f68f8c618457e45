// The only switch on the architecture name.
#include "core/error.h"
#include "model/arch/arch.h"
#include "model/model.h"

namespace moeserve {
namespace {

struct ArchEntry {
  const char* name;
  std::unique_ptr<Model> (*load)(std::shared_ptr<const gguf::GgufFile>, Backend&);
};

constexpr ArchEntry kArchitectures[] = {
    {"qwen3next", arch::load_qwen3next},
    {"qwen3moe", arch::load_qwen3moe},
    {"qwen3", arch::load_qwen3},
    {"llama", arch::load_llama},
};

}  // namespace

std::vector<std::string> supported_architectures() {
  std::vector<std::string> names;
  for (const ArchEntry& a : kArchitectures) names.emplace_back(a.name);
  return names;
}

std::unique_ptr<Model> load_model(std::shared_ptr<const gguf::GgufFile> file, Backend& backend) {
  const std::string arch = file->architecture();
  if (arch.empty()) fail(file->path(), ": missing key general.architecture");
  for (const ArchEntry& a : kArchitectures) {
    if (arch == a.name) return a.load(std::move(file), backend);
  }
  std::string known;
  for (const ArchEntry& a : kArchitectures) known += str_cat(known.empty() ? "" : ", ", a.name);
  fail(file->path(), ": unsupported architecture '", arch, "' (supported: ", known, ")");
}

}  // namespace moeserve
