#include "model/convert/converter.h"

#include <filesystem>
#include <set>

#include "core/error.h"
#include "gguf/gguf_writer.h"
#include "model/convert/hf_config.h"
#include "model/convert/hf_tensors.h"
#include "model/convert/safetensors.h"
#include "model/convert/tensor_encode.h"
#include "model/convert/tokenizer_keys.h"

namespace moeserve::convert {
namespace {

std::string model_name(const std::string& dir) {
  std::filesystem::path p(dir);
  if (p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  return p.filename().string();
}

std::string dims(const TensorSpec& t) {
  std::string s = "{";
  for (int i = 0; i < t.n_dims(); ++i) s += str_cat(i ? ", " : "", t.ne[size_t(i)]);
  return s + "}";
}

}  // namespace

bool is_convert_type(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16 || type == GgmlType::Q8_0;
}

uint32_t file_type_for(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return 0;
    case GgmlType::F16: return 1;
    case GgmlType::Q4_0: return 2;
    case GgmlType::Q4_1: return 3;
    case GgmlType::Q8_0: return 7;
    case GgmlType::Q5_0: return 8;
    case GgmlType::Q5_1: return 9;
    case GgmlType::Q2_K: return 10;
    case GgmlType::Q3_K: return 12;  // Q3_K_M
    case GgmlType::Q4_K: return 15;  // Q4_K_M
    case GgmlType::Q5_K: return 17;  // Q5_K_M
    case GgmlType::Q6_K: return 18;
    case GgmlType::IQ2_XXS: return 19;
    case GgmlType::IQ2_XS: return 20;
    case GgmlType::IQ3_XXS: return 23;
    case GgmlType::IQ1_S: return 24;
    case GgmlType::IQ4_NL: return 25;
    case GgmlType::IQ3_S: return 26;
    case GgmlType::IQ2_S: return 28;
    case GgmlType::IQ4_XS: return 30;
    case GgmlType::IQ1_M: return 31;
    case GgmlType::BF16: return 32;
    case GgmlType::TQ1_0: return 36;
    case GgmlType::TQ2_0: return 37;
    case GgmlType::MXFP4: return 38;  // MXFP4_MOE
    default: return 1024;             // GUESSED
  }
}

ConvertResult convert_hf_to_gguf(const ConvertOptions& opt) {
  namespace fs = std::filesystem;
  if (!is_convert_type(opt.type))
    fail("--type ", type_name(opt.type), " is not supported by convert (f32, f16, bf16, q8_0)");
  const fs::path dir(opt.hf_dir);
  if (!fs::is_directory(dir)) fail(opt.hf_dir, ": not a directory");
  const std::string config_path = (dir / "config.json").string();
  if (!fs::is_regular_file(config_path)) fail(opt.hf_dir, ": no config.json");
  const std::string tokenizer_path = (dir / "tokenizer.json").string();
  if (!fs::is_regular_file(tokenizer_path)) fail(opt.hf_dir, ": no tokenizer.json");

  const nlohmann::json config = read_json_file(config_path);
  const SafetensorsSet st = SafetensorsSet::open_dir(opt.hf_dir);
  ConvertResult result;
  result.shape = shape_from_hf_config(config, config_path, st.find("lm_head.weight") != nullptr);
  ModelShape& shape = result.shape;
  shape.legacy_ssm_in = opt.legacy_ssm_in;
  if (opt.legacy_ssm_in && shape.arch != Arch::Qwen3Next) fail("--ssm-in applies to qwen3next models only");
  const auto tokenizer_kv = tokenizer_metadata(load_hf_tokenizer(tokenizer_path), shape.n_vocab, opt.tokenizer_pre);

  // Plan every tensor and account for every checkpoint tensor before creating the output.
  const std::vector<TensorSpec> manifest = tensor_manifest(shape);
  std::vector<Recipe> recipes;
  std::set<std::string> used;
  for (const TensorSpec& spec : manifest) {
    recipes.push_back(plan_tensor(spec, shape, st));
    used.insert(recipes.back().sources.begin(), recipes.back().sources.end());
  }
  if (shape.tied_embeddings) used.insert("lm_head.weight");  // a tied copy, if saved, adds nothing
  for (const auto& [name, t] : st.tensors())
    if (!used.count(name) && !ignored_hf_tensor(name))
      fail("checkpoint tensor '", name, "' has no GGUF counterpart in ", arch_name(shape.arch),
           " (unsupported layout or architecture variant)");

  std::vector<GgmlType> types;
  for (const TensorSpec& spec : manifest) {
    GgmlType t = spec.keep_f32() ? GgmlType::F32 : opt.type;
    if (spec.ne[0] % type_traits(t).block_size != 0) {
      result.notes.push_back(str_cat(spec.name, ": row of ", spec.ne[0], " is not a multiple of the ",
                                     type_name(t), " block (", type_traits(t).block_size, "); written as F16"));
      t = GgmlType::F16;
    }
    types.push_back(t);
  }
  for (const std::string& note : result.notes)
    if (opt.log) opt.log("note: " + note);

  gguf::GgufWriter writer;
  writer.set("general.architecture", gguf::Value::string(arch_name(shape.arch)));
  writer.set("general.type", gguf::Value::string("model"));
  writer.set("general.name", gguf::Value::string(model_name(opt.hf_dir)));
  for (auto& [key, value] : hparams_metadata(shape)) writer.set(key, value);
  writer.set("general.file_type", gguf::Value::u32(file_type_for(opt.type)));
  writer.set("general.quantization_version", gguf::Value::u32(2));
  for (auto& [key, value] : tokenizer_kv) writer.set(key, value);
  for (size_t i = 0; i < manifest.size(); ++i) writer.add_tensor(manifest[i].name, types[i], manifest[i].ne);

  writer.begin(opt.out_path);
  for (size_t i = 0; i < manifest.size(); ++i) {
    const TensorSpec& spec = manifest[i];
    const std::vector<float> data = run_recipe(recipes[i], spec, shape, st);
    const std::vector<uint8_t> bytes = encode_rows(data.data(), spec.ne[0], spec.n_elements() / spec.ne[0], types[i]);
    writer.write_tensor_data(bytes.data(), bytes.size());
    result.data_bytes += bytes.size();
    if (opt.log)
      opt.log(str_cat("[", i + 1, "/", manifest.size(), "] ", spec.name, " ", dims(spec), " ", type_name(types[i])));
  }
  writer.finish();
  result.n_tensors = manifest.size();
  return result;
}

}  // namespace moeserve::convert
