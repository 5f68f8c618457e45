#include "server/serve_compat.h"

namespace moeserve::server {
namespace {

using enum FlagValue;

constexpr CompatFlag kFlags[] = {
    // Accepted: nothing here depends on them.
    {"--no-context-shift", none, true, "the context never shifts: a request that fills it ends with finish_reason \"length\""},
    {"--context-shift", none, true,
     "context shifting is not implemented: a request that fills the context ends with finish_reason \"length\""},
    {"--fit -fit", optional, true,
     "weights go where -ngl, --n-cpu-moe and -ot say (default: all on the GPU; loading says when that does not fit)"},
    {"--fit-target -fitt --fit-ctx -fitc", required, true, "no automatic fitting: placement follows -ngl, --n-cpu-moe and -ot"},
    {"--cache-reuse", required, true, "the prompt cache reuses the longest cached prefix of each prompt by itself"},
    {"--ctx-checkpoints -ctxcp --swa-checkpoints", required, true,
     "recurrent-state checkpoints are taken every --checkpoint-every tokens"},
    {"--keep", required, true, "the context never shifts, so no tokens are kept across a shift"},
    {"-dt --defrag-thold", required, true, "the KV cache needs no defragmentation"},
    {"--slot-save-path", required, true, "slot save and restore endpoints are not served; the prompt cache keeps states in RAM"},
    {"-sps --slot-prompt-similarity", required, true, "requests go to the slot whose cached prompt they extend most"},
    {"--threads-http", required, true, "connections get a thread each"},
    {"--path --api-prefix", required, true, "no static files are served"},
    {"--prio --prio-batch --poll --poll-batch --numa -C --cpu-mask -Cr --cpu-range -Cb --cpu-mask-batch -Crb "
     "--cpu-range-batch",
     required, true, "thread placement and priority are left to the operating system"},
    {"--cpu-strict --cpu-strict-batch", required, true, "thread placement is left to the operating system"},
    {"-sm --split-mode -mg --main-gpu", required, true, "one GPU (CUDA0) is used"},
    {"--no-webui --webui --slots --no-slots --props --swa-full --no-perf --perf "
     "--no-mmproj --no-mmproj-offload --mmproj-offload --no-op-offload --op-offload --no-repack -nr --repack "
     "--no-escape --escape -e --direct-io -dio --no-direct-io --check-tensors --verbose-prompt --no-warmup --warmup "
     "--mlock",
     none, true, "nothing here depends on it"},
    {"--log-file --log-verbosity -lv --verbosity", required, true, "logs go to stderr; -v for more, --log-disable for none"},
    {"--log-colors --log-prefix --log-timestamps", optional, true, "logs go to stderr without colors or prefixes"},
    {"--dry-multiplier --dry-base --dry-allowed-length --dry-penalty-last-n --dry-sequence-breaker --mirostat "
     "--mirostat-lr --mirostat-ent --xtc-probability --xtc-threshold --top-nsigma --dynatemp-range --dynatemp-exp "
     "--samplers --sampling-seq --sampler-seq",
     required, true,
     "this sampler is not implemented (temperature, top-k, top-p, min-p, typical, penalties and logit bias are)"},
    // Refused: running as asked would mean doing something else than the user expects.
    {"-hf -hfr --hf-repo -hff --hf-file -hft --hf-token -hfd --hf-repo-draft -mu --model-url -dr --docker-repo",
     required, false, "models are not downloaded: pass the file with -m"},
    {"-mm --mmproj -mmu --mmproj-url", required, false, "images and audio are not supported"},
    {"--lora --lora-scaled --control-vector --control-vector-scaled --control-vector-layer-range", required, false,
     "adapters and control vectors are not supported"},
    {"--lora-init-without-apply", none, false, "adapters are not supported"},
    {"--embedding --embeddings --reranking --rerank", none, false, "embeddings and reranking are not served"},
    {"--pooling", required, false, "embeddings are not served"},
    {"-md --model-draft -ngld --n-gpu-layers-draft --gpu-layers-draft --draft --draft-max --draft-n --draft-min "
     "--draft-n-min --draft-p-min -cd --ctx-size-draft -devd --device-draft --spec-replace -ctkd --cache-type-k-draft "
     "-ctvd --cache-type-v-draft",
     required, false, "speculative decoding is not supported"},
    {"--rope-scaling --rope-scale --rope-freq-base --rope-freq-scale --yarn-orig-ctx --yarn-ext-factor "
     "--yarn-attn-factor --yarn-beta-slow --yarn-beta-fast",
     required, false, "RoPE overrides are not supported: the model's own RoPE parameters are used"},
    {"--override-kv", required, false, "metadata overrides are not supported"},
    {"-nkvo --no-kv-offload", none, false, "the KV cache always stays on the device of its layers"},
    {"--grammar --grammar-file --json-schema -j --json-schema-file -jf", required, false,
     "a server-wide grammar is not supported: send response_format or tools with each request"},
    {"-sp --special", none, false, "special tokens are not printed in replies"},
    {"--chat-template", required, false, "built-in template names are not supported: use --chat-template-file FILE"},
    {"--ignore-eos", none, false, "generation always stops at the end-of-generation tokens"},
};

bool has_name(std::string_view names, std::string_view flag) {
  while (!names.empty()) {
    const size_t space = names.find(' ');
    if (names.substr(0, space) == flag) return true;
    if (space == std::string_view::npos) break;
    names.remove_prefix(space + 1);
  }
  return false;
}

}  // namespace

const CompatFlag* compat_flag(std::string_view flag) {
  for (const CompatFlag& f : kFlags) {
    if (has_name(f.names, flag)) return &f;
  }
  return nullptr;
}

}  // namespace moeserve::server
