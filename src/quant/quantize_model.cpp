#include "quant/quantize_model.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/mapped_file.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "quant/imatrix_file.h"
#include "quant/quantize.h"

namespace moeserve::quant {
namespace {

// ggml's quantization format version (GGML_QNT_VERSION), stored by llama-quantize.
constexpr uint32_t kQuantizationVersion = 2;
// Tensors are quantized in pieces of at most about this many elements.
constexpr int64_t kChunkElements = int64_t(1) << 22;

// A scalar key, or the first element of a per-layer array (llama.cpp reads layer 0 for these).
int first_int(const gguf::GgufFile& file, const std::string& key, int fallback) {
  const gguf::Value* v = file.find(key);
  if (!v) return fallback;
  if (v->type == gguf::ValueType::ARRAY) {
    const gguf::Array& a = v->as_array();
    return a.items.empty() ? fallback : int(a.items.front().as_int());
  }
  return int(v->as_int());
}

ModelInfo model_info(const gguf::GgufFile& file) {
  ModelInfo m;
  m.arch = file.architecture();
  const std::string p = m.arch + ".";
  m.n_layer = first_int(file, p + "block_count", 0);
  m.n_expert = first_int(file, p + "expert_count", 0);
  m.n_head = first_int(file, p + "attention.head_count", 0);
  m.n_head_kv = first_int(file, p + "attention.head_count_kv", m.n_head);
  return m;
}

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", double(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string shape_of(const std::array<int64_t, 4>& ne, int n_dims) {
  std::string s = "[";
  for (int i = 0; i < std::max(n_dims, 1); ++i) s += str_cat(i ? ", " : "", ne[size_t(i)]);
  return s + "]";
}

// Converts n elements of a tensor's data (any type with a reference dequantizer) to float.
void to_float(GgmlType type, const uint8_t* data, float* out, int64_t n) {
  const TypeTraits& t = type_traits(type);
  if (type == GgmlType::F32) {
    std::memcpy(out, data, size_t(n) * sizeof(float));
  } else {
    t.dequantize(data, out, n);
  }
}

// Quantizes a whole tensor into out. Work is split into pieces of a few rows of one matrix (each
// matrix of a 3-D expert tensor has its own importance weights), which the threads take in turn,
// each converting its rows to float itself.
void quantize_tensor(const TensorDesc& t, const uint8_t* data, GgmlType type, const std::vector<float>* imatrix,
                     uint8_t* out, int n_threads) {
  const int64_t n_per_row = t.ne[0], rows_per_matrix = t.ne[1], n_matrices = t.ne[2] * t.ne[3];
  const size_t out_row = row_bytes(type, n_per_row), in_row = row_bytes(t.type, n_per_row);
  // Enough pieces for every thread, small enough to keep the float rows in cache.
  const int64_t piece_rows = std::clamp<int64_t>(kChunkElements / n_per_row, 1, std::max<int64_t>(1, rows_per_matrix / n_threads));
  const int64_t pieces_per_matrix = (rows_per_matrix + piece_rows - 1) / piece_rows;
  const int64_t n_pieces = pieces_per_matrix * n_matrices;
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    std::vector<float> floats;
    try {
      for (int64_t p = next++; p < n_pieces; p = next++) {
        const int64_t m = p / pieces_per_matrix, r = (p % pieces_per_matrix) * piece_rows;
        const int64_t n_rows = std::min(piece_rows, rows_per_matrix - r), row = m * rows_per_matrix + r;
        const float* weights = imatrix ? imatrix->data() + (m % t.ne[2]) * n_per_row : nullptr;
        const float* src;
        if (t.type == GgmlType::F32) {
          src = reinterpret_cast<const float*>(data + size_t(row) * in_row);
        } else {
          floats.resize(size_t(n_rows * n_per_row));
          to_float(t.type, data + size_t(row) * in_row, floats.data(), n_rows * n_per_row);
          src = floats.data();
        }
        quantize_rows(type, src, out + size_t(row) * out_row, n_rows, n_per_row, weights, 1);
      }
    } catch (...) {
      const std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next = n_pieces;
    }
  };
  const int64_t threads = std::clamp<int64_t>(n_threads, 1, n_pieces);
  std::vector<std::thread> workers;
  for (int64_t i = 1; i < threads; ++i) workers.emplace_back(work);
  work();
  for (std::thread& w : workers) w.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace

bool wants_imatrix(const std::string& tensor_name, GgmlType type, const FileType& ftype) {
  if (tensor_name == "token_embd.weight" || tensor_name == "per_layer_token_embd.weight" ||
      tensor_name == "output.weight") {
    return false;
  }
  switch (type) {
    case GgmlType::IQ3_XXS:
    case GgmlType::IQ2_XXS:
    case GgmlType::IQ2_XS:
    case GgmlType::IQ2_S:
    case GgmlType::IQ1_M:
    case GgmlType::IQ1_S: return true;
    case GgmlType::Q2_K: return std::string_view(ftype.name) == "Q2_K_S";
    default: return false;
  }
}

QuantizeModelReport quantize_model(const std::string& input, const std::string& output,
                                   QuantizeModelOptions options) {
  if (!options.recipe.ftype) fail("internal: no file type given");
  std::error_code ec;
  if (std::filesystem::exists(output, ec) && std::filesystem::equivalent(input, output, ec)) {
    fail(output, ": the output file must not be the input file");
  }
  auto log = [&](const std::string& line) {
    if (options.log) options.log(line);
  };
  auto warn = [&](const std::string& line) {
    if (options.warn) options.warn(line);
  };

  const gguf::GgufFile in = gguf::GgufFile::open(input);
  ImatrixFile imatrix;
  if (!options.imatrix_path.empty()) {
    imatrix = read_imatrix(options.imatrix_path);
    options.recipe.has_imatrix = true;
  }

  // Tensors in llama-quantize's order, which the counting rules of the recipes depend on.
  std::vector<TensorDesc> descs;
  std::vector<const gguf::TensorInfo*> infos;
  for (size_t i : [&] {
         std::vector<TensorDesc> all;
         for (const gguf::TensorInfo& t : in.tensors()) all.push_back({t.name, t.type, int(t.n_dims), t.ne});
         return llama_tensor_order(all);
       }()) {
    const gguf::TensorInfo& t = in.tensors()[i];
    descs.push_back({t.name, t.type, int(t.n_dims), t.ne});
    infos.push_back(&t);
  }
  const std::vector<TensorPlan> plans = plan_types(model_info(in), options.recipe, descs);

  // What the plan needs from the input and the importance matrix, checked before writing.
  std::map<std::string, size_t> missing_imatrix;  // type -> tensors quantized without one
  for (size_t i = 0; i < descs.size(); ++i) {
    const TensorDesc& t = descs[i];
    if (!plans[i].quantize) continue;
    const TypeTraits& from = type_traits(t.type);
    if (from.quantized && !options.allow_requantize) {
      fail(input, ": tensor ", t.name, " is already ", from.name,
           "; quantizing it again loses more quality (allow it with --allow-requantize)");
    }
    if (!from.dequantize) fail(input, ": tensor ", t.name, " has type ", from.name, ", which cannot be converted");
    if (!can_quantize(plans[i].type)) fail("tensor ", t.name, ": moeserve cannot quantize to ", type_name(plans[i].type));
    const std::vector<float>* w = imatrix.find(t.name);
    if (w && w->size() != size_t(t.ne[0] * t.ne[2]) && t.name != "token_embd.weight") {
      fail(options.imatrix_path, ": importance matrix for ", t.name, " has ", w->size(), " values, the tensor needs ",
           t.ne[0] * t.ne[2], " (", t.ne[0], " columns x ", t.ne[2], " matrices)");
    }
    const bool has_weights = w && w->size() == size_t(t.ne[0] * t.ne[2]);
    if (!has_weights && wants_imatrix(t.name, plans[i].type, *options.recipe.ftype)) {
      ++missing_imatrix[type_name(plans[i].type)];
    }
  }
  for (const auto& [type, count] : missing_imatrix) {
    warn(str_cat(count, " tensor(s) quantized to ", type, " without an importance matrix: llama-quantize refuses "
                 "this (pass --imatrix); every column is weighted the same, which costs quality at this bit width"));
  }

  if (!options.imatrix_path.empty()) {
    log(str_cat("importance matrix: ", imatrix.entries.size(), " entries from ", options.imatrix_path,
                imatrix.chunk_count ? str_cat(", ", imatrix.chunk_count, " chunks") : std::string()));
  }
  gguf::GgufWriter out(in.alignment());
  for (const auto& [key, value] : in.metadata()) {
    if (key.starts_with("split.")) continue;  // the output is one file
    out.set(key, value);
  }
  out.set("general.quantization_version", gguf::Value::u32(kQuantizationVersion));
  out.set("general.file_type", gguf::Value::u32(uint32_t(options.recipe.ftype->id)));
  if (!options.imatrix_path.empty()) {
    out.set("quantize.imatrix.file", gguf::Value::string(options.imatrix_path));
    if (!imatrix.datasets.empty()) out.set("quantize.imatrix.dataset", gguf::Value::string(imatrix.datasets.front()));
    out.set("quantize.imatrix.entries_count", gguf::Value::u32(uint32_t(imatrix.entries.size())));
    if (imatrix.chunk_count > 0) out.set("quantize.imatrix.chunks_count", gguf::Value::u32(imatrix.chunk_count));
  }
  for (size_t i = 0; i < descs.size(); ++i) out.add_tensor(descs[i].name, plans[i].type, descs[i].ne);
  out.begin(output);

  QuantizeModelReport report;
  report.n_tensors = descs.size();
  std::vector<uint8_t> buffer;
  for (size_t i = 0; i < descs.size(); ++i) {
    const TensorDesc& t = descs[i];
    const gguf::TensorInfo& info = *infos[i];
    const TensorPlan& plan = plans[i];
    std::string line = str_cat("[", i + 1, "/", descs.size(), "] ", t.name, " ", shape_of(t.ne, t.n_dims), " ",
                               type_name(t.type));
    report.bytes_in += info.n_bytes;
    if (!plan.quantize) {
      out.write_tensor_data(info.data, info.n_bytes);
      MappedFile::release(info.data, info.n_bytes);
      report.bytes_out += info.n_bytes;
      log(line + ", " + mib(info.n_bytes) + " copied");
      continue;
    }
    ++report.n_quantized;
    if (!plan.note.empty() && plan.note.starts_with("rows")) ++report.n_fallback;
    const std::vector<float>* w = imatrix.find(t.name);
    if (w && w->size() != size_t(t.ne[0] * t.ne[2])) w = nullptr;  // the embedding's may be stale
    if (!options.imatrix_path.empty() && !w) line += " (no importance matrix)";

    buffer.resize(row_bytes(plan.type, t.ne[0]) * size_t(t.ne[1] * t.ne[2] * t.ne[3]));
    quantize_tensor(t, info.data, plan.type, w, buffer.data(), options.n_threads);
    MappedFile::release(info.data, info.n_bytes);
    out.write_tensor_data(buffer.data(), buffer.size());
    report.bytes_out += buffer.size();
    log(str_cat(line, " -> ", type_name(plan.type), ", ", mib(info.n_bytes), " -> ", mib(buffer.size()),
                plan.note.empty() ? "" : " (" + plan.note + ")"));
  }
  out.finish();
  log(str_cat("model size ", mib(report.bytes_in), " -> ", mib(report.bytes_out), ", ", report.n_quantized, " of ",
              report.n_tensors, " tensors quantized",
              report.n_fallback ? str_cat(", ", report.n_fallback, " with a fallback type") : std::string()));
  return report;
}

}  // namespace moeserve::quant
