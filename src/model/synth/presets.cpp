#include "model/synth/presets.h"

#include "core/error.h"

namespace moeserve::synth {
namespace {

using convert::Arch;
using convert::ModelShape;

ModelShape qwen3next(double rope_theta) {
  ModelShape s;
  s.arch = Arch::Qwen3Next;
  s.n_vocab = 151936;
  s.n_embd = 2048;
  s.n_layer = 48;
  s.n_head = 16;
  s.n_head_kv = 2;
  s.head_dim = 256;
  s.n_ff = 5120;
  s.n_rot = 64;
  s.rope_theta = rope_theta;
  s.rms_eps = 1e-6;
  s.context_length = 262144;
  s.n_expert = 512;
  s.n_expert_used = 10;
  s.n_ff_exp = 512;
  s.n_ff_shexp = 512;
  s.full_attention_interval = 4;
  s.ssm_conv_kernel = 4;
  s.ssm_k_heads = 16;
  s.ssm_v_heads = 32;
  s.ssm_k_dim = 128;
  s.ssm_v_dim = 128;
  return s;
}

ModelShape dense(Arch arch, int64_t vocab, int64_t embd, int64_t layers, int64_t heads, int64_t kv, int64_t head_dim,
                 int64_t ff, double theta, double eps, int64_t ctx) {
  ModelShape s;
  s.arch = arch;
  s.n_vocab = vocab;
  s.n_embd = embd;
  s.n_layer = layers;
  s.n_head = heads;
  s.n_head_kv = kv;
  s.head_dim = head_dim;
  s.n_ff = ff;
  s.n_rot = head_dim;
  s.rope_theta = theta;
  s.rms_eps = eps;
  s.context_length = ctx;
  return s;
}

ModelShape with_experts(ModelShape s, int64_t n_expert, int64_t used, int64_t ff_exp) {
  s.n_expert = n_expert;
  s.n_expert_used = used;
  s.n_ff_exp = ff_exp;
  return s;
}

std::vector<Preset> make_presets() {
  std::vector<Preset> p;
  p.push_back({"qwen3-coder-next", "Qwen3-Coder-Next (80B-A3B): 48 layers = 12 x (3 Gated DeltaNet + 1 gated attention), 512 experts top-10 + shared",
               qwen3next(5000000.0), VocabStyle::Qwen, 151643});
  p.push_back({"qwen3-next-80b", "Qwen3-Next-80B-A3B-Instruct: as Qwen3-Coder-Next, rope theta 1e7", qwen3next(10000000.0),
               VocabStyle::Qwen, 151643});
  p.push_back({"qwen3-30b-a3b", "Qwen3-30B-A3B: 48 layers, 128 experts top-8",
               with_experts(dense(Arch::Qwen3Moe, 151936, 2048, 48, 32, 4, 128, 6144, 1000000.0, 1e-6, 40960), 128, 8, 768),
               VocabStyle::Qwen, 151643});
  p.push_back({"qwen3-8b", "Qwen3-8B: dense, 36 layers",
               dense(Arch::Qwen3, 151936, 4096, 36, 32, 8, 128, 12288, 1000000.0, 1e-6, 40960), VocabStyle::Qwen, 151643});
  p.push_back({"llama3-8b", "Llama-3-8B(-Instruct): dense, 32 layers",
               dense(Arch::Llama, 128256, 4096, 32, 32, 8, 128, 14336, 500000.0, 1e-5, 8192), VocabStyle::Llama3, 128000});

  // Tiny variants: every row a multiple of 256 so that any weight type fits.
  ModelShape tn = qwen3next(5000000.0);
  tn.n_vocab = 2048;
  tn.n_embd = 256;
  tn.n_layer = 4;
  tn.n_head = 4;
  tn.n_head_kv = 2;
  tn.head_dim = 64;
  tn.n_ff = 512;
  tn.n_rot = 16;
  tn.context_length = 4096;
  tn.n_expert = 8;
  tn.n_expert_used = 2;
  tn.n_ff_exp = 256;
  tn.n_ff_shexp = 256;
  tn.ssm_k_heads = 2;
  tn.ssm_v_heads = 4;
  tn.ssm_k_dim = 64;
  tn.ssm_v_dim = 64;
  p.push_back({"tiny-qwen3next", "tiny qwen3next: 4 layers (3 DeltaNet + 1 attention), 8 experts top-2 + shared", tn,
               VocabStyle::Qwen, 2010});
  p.push_back({"tiny-qwen3moe", "tiny qwen3moe: 2 layers, 8 experts top-2",
               with_experts(dense(Arch::Qwen3Moe, 2048, 256, 2, 4, 2, 64, 512, 1000000.0, 1e-6, 4096), 8, 2, 256),
               VocabStyle::Qwen, 2010});
  ModelShape tq = dense(Arch::Qwen3, 2048, 256, 2, 4, 2, 64, 512, 1000000.0, 1e-6, 4096);
  tq.tied_embeddings = true;
  p.push_back({"tiny-qwen3", "tiny qwen3: dense, 2 layers, tied embeddings", tq, VocabStyle::Qwen, 2010});
  p.push_back({"tiny-llama", "tiny llama: dense, 2 layers",
               dense(Arch::Llama, 2048, 256, 2, 4, 2, 64, 512, 500000.0, 1e-5, 4096), VocabStyle::Llama3, 1792});
  return p;
}

}  // namespace

const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = make_presets();
  return all;
}

const Preset& find_preset(const std::string& name) {
  std::string known;
  for (const Preset& p : presets()) {
    if (p.name == name) return p;
    known += (known.empty() ? "" : ", ") + p.name;
  }
  fail("unknown preset '", name, "' (known: ", known, ")");
}

}  // namespace moeserve::synth
