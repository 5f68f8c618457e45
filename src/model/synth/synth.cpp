#include "model/synth/synth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include "core/error.h"
#include "gguf/gguf_writer.h"
#include "model/convert/converter.h"
#include "model/convert/tokenizer_keys.h"
#include "model/synth/presets.h"
#include "model/synth/random_blocks.h"
#include "model/synth/synth_vocab.h"

namespace moeserve::synth {
namespace {

using convert::ModelShape;
using convert::TensorRole;
using convert::TensorSpec;

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// 1-D and F32-only tensors get values of the kind a trained model has: norm gains near 1,
// negative DeltaNet decay rates A, small biases, small conv taps.
// Fills n_rows rows in chunks of about kChunkBytes, each chunk from its own generator seeded by
// (seed, chunk index), on all cores: the bytes depend on the seed only, not on the thread count.
void fill_parallel(const BlockFiller& filler, uint8_t* out, int64_t row_len, int64_t n_rows, size_t row_size,
                   float target_rms, uint64_t seed) {
  constexpr size_t kChunkBytes = size_t(4) << 20;
  const int64_t rows_per_chunk = std::max<int64_t>(1, int64_t(kChunkBytes / row_size));
  const int64_t n_chunks = (n_rows + rows_per_chunk - 1) / rows_per_chunk;
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t c = next++; c < n_chunks; c = next++) {
      const int64_t first = c * rows_per_chunk, count = std::min(rows_per_chunk, n_rows - first);
      Rng rng(seed ^ (uint64_t(c + 1) * 0x9e3779b97f4a7c15ull));
      filler.fill(out + size_t(first) * row_size, row_len, count, target_rms, rng);
    }
  };
  const int64_t n_threads =
      std::min<int64_t>(n_chunks, std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency())));
  std::vector<std::thread> workers;
  for (int64_t i = 1; i < n_threads; ++i) workers.emplace_back(work);
  work();
  for (std::thread& w : workers) w.join();
}

std::vector<float> small_tensor_values(const TensorSpec& t, Rng& rng) {
  std::vector<float> v(size_t(t.n_elements()));
  const float rms = 1.0f / std::sqrt(float(t.ne[0]));
  for (float& x : v) {
    if (ends_with(t.name, "ssm_a")) x = -rng.uniform(0.5f, 8.0f);
    else if (ends_with(t.name, "ssm_dt.bias")) x = rng.uniform(-1.0f, 1.0f);
    else if (ends_with(t.name, "norm.weight")) x = 1.0f + rng.uniform(-0.1f, 0.1f);
    else if (t.role == TensorRole::Conv) x = rng.uniform(-0.5f, 0.5f);
    else x = rng.uniform(-1.0f, 1.0f) * rms * std::sqrt(3.0f);  // router, shared-expert gate
  }
  return v;
}

}  // namespace

SynthResult synthesize(const SynthOptions& opt) {
  const Preset& preset = find_preset(opt.preset);
  SynthResult result;
  ModelShape& s = result.shape;
  s = preset.shape;
  if (opt.layers) {
    if (*opt.layers <= 0) fail("--layers must be positive");
    s.n_layer = *opt.layers;
  }
  if (opt.experts) {
    if (!s.is_moe()) fail("--experts: preset ", preset.name, " has no experts");
    if (*opt.experts <= 0) fail("--experts must be positive");
    s.n_expert = *opt.experts;
    s.n_expert_used = std::min(s.n_expert_used, s.n_expert);
  }
  if (opt.legacy_ssm_in && s.arch != convert::Arch::Qwen3Next) fail("--ssm-in applies to qwen3next presets only");
  s.legacy_ssm_in = opt.legacy_ssm_in;
  convert::validate_shape(s);

  std::vector<std::pair<std::string, gguf::Value>> tokenizer_kv =
      opt.tokenizer_json.empty()
          ? synthetic_vocab(preset.vocab, preset.n_normal_tokens, s.n_vocab, opt.seed)
          : convert::tokenizer_metadata(convert::load_hf_tokenizer(opt.tokenizer_json), s.n_vocab);
  if (!opt.chat_template_file.empty()) {
    std::ifstream in(opt.chat_template_file, std::ios::binary);
    if (!in) fail(opt.chat_template_file, ": cannot open");
    std::erase_if(tokenizer_kv, [](const auto& kv) { return kv.first == "tokenizer.chat_template"; });
    tokenizer_kv.emplace_back("tokenizer.chat_template",
                              gguf::Value::string(std::string(std::istreambuf_iterator<char>(in), {})));
  }

  const BlockFiller expert_filler(opt.expert_type);
  const BlockFiller other_filler(opt.other_type);
  const std::vector<TensorSpec> manifest = convert::tensor_manifest(s);
  std::vector<GgmlType> types;
  for (const TensorSpec& t : manifest) {
    const GgmlType type = t.keep_f32() ? GgmlType::F32
                          : t.role == TensorRole::Experts ? opt.expert_type
                                                           : opt.other_type;
    if (t.ne[0] % type_traits(type).block_size != 0)
      fail(t.name, ": rows of ", t.ne[0], " do not split into ", type_name(type), " blocks of ",
           type_traits(type).block_size, "; pick another type");
    types.push_back(type);
  }

  gguf::GgufWriter writer;
  writer.set("general.architecture", gguf::Value::string(convert::arch_name(s.arch)));
  writer.set("general.type", gguf::Value::string("model"));
  writer.set("general.name", gguf::Value::string("synthetic " + preset.name));
  for (auto& [key, value] : convert::hparams_metadata(s)) writer.set(key, value);
  writer.set("general.file_type", gguf::Value::u32(convert::file_type_for(s.is_moe() ? opt.expert_type : opt.other_type)));
  writer.set("general.quantization_version", gguf::Value::u32(2));
  for (auto& [key, value] : tokenizer_kv) writer.set(key, value);
  for (size_t i = 0; i < manifest.size(); ++i) writer.add_tensor(manifest[i].name, types[i], manifest[i].ne);

  const auto start = std::chrono::steady_clock::now();
  writer.begin(opt.out_path);
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i < manifest.size(); ++i) {
    const TensorSpec& t = manifest[i];
    const int64_t rows = t.n_elements() / t.ne[0];
    bytes.resize(row_bytes(types[i], t.ne[0]) * size_t(rows));
    if (types[i] == GgmlType::F32) {
      Rng rng(opt.seed ^ hash_name(t.name.c_str()));
      const std::vector<float> v = small_tensor_values(t, rng);
      std::memcpy(bytes.data(), v.data(), bytes.size());
    } else {
      const BlockFiller& filler = t.role == TensorRole::Experts ? expert_filler : other_filler;
      fill_parallel(filler, bytes.data(), t.ne[0], rows, row_bytes(types[i], t.ne[0]),
                    1.0f / std::sqrt(float(t.ne[0])), opt.seed ^ hash_name(t.name.c_str()));
    }
    writer.write_tensor_data(bytes.data(), bytes.size());
    result.data_bytes += bytes.size();
    const bool layer_done = i + 1 == manifest.size() || manifest[i + 1].layer != t.layer;
    if (opt.log && layer_done && t.layer >= 0) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      opt.log(str_cat("layer ", t.layer + 1, "/", s.n_layer, ": ", result.data_bytes >> 20, " MiB, ",
                      int64_t(double(result.data_bytes) / (1 << 20) / std::max(secs, 1e-9)), " MiB/s"));
    }
  }
  writer.finish();
  result.n_tensors = manifest.size();
  return result;
}

}  // namespace moeserve::synth
