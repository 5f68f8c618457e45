#include "gguf/gguf_report.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "gguf/gguf_summary.h"
#include "gguf/gguf_text.h"

namespace moeserve::gguf {
namespace {

constexpr size_t kPreviewItems = 8;        // array items shown without --all-metadata
constexpr size_t kPreviewStringBytes = 120;
constexpr size_t kPreviewItemBytes = 40;   // per string item inside an array preview
constexpr size_t kMissingNamesShown = 5;

using nlohmann::json;

std::string type_label(const Value& v) {
  if (v.type != ValueType::ARRAY) return value_type_name(v.type);
  return str_cat("array[", value_type_name(v.as_array().elem_type), "]");
}

std::string float_text(const Value& v) {
  char buf[64];
  const double d = std::get<double>(v.data);
  const auto r = v.type == ValueType::FLOAT32 ? std::to_chars(buf, buf + sizeof(buf), float(d))
                                               : std::to_chars(buf, buf + sizeof(buf), d);
  return std::string(buf, r.ptr);
}

std::string value_text(const Value& v, bool all, size_t string_bytes) {
  switch (v.type) {
    case ValueType::UINT8: case ValueType::UINT16: case ValueType::UINT32: case ValueType::UINT64:
      return std::to_string(std::get<uint64_t>(v.data));
    case ValueType::INT8: case ValueType::INT16: case ValueType::INT32: case ValueType::INT64:
      return std::to_string(std::get<int64_t>(v.data));
    case ValueType::FLOAT32: case ValueType::FLOAT64:
      return float_text(v);
    case ValueType::BOOL:
      return v.as_bool() ? "true" : "false";
    case ValueType::STRING: {
      const std::string& s = v.as_string();
      std::string out = "\"" + printable(s, all ? s.size() : string_bytes) + "\"";
      if (!all && s.size() > string_bytes) out += str_cat(" (", s.size(), " bytes)");
      return out;
    }
    case ValueType::ARRAY: break;
  }
  const Array& a = v.as_array();
  const size_t shown = all ? a.items.size() : std::min(a.items.size(), kPreviewItems);
  std::string out = "[";
  for (size_t i = 0; i < shown; ++i) {
    if (i) out += ", ";
    out += value_text(a.items[i], all, kPreviewItemBytes);
  }
  if (shown < a.items.size()) out += str_cat(", ... (", a.items.size(), " items)");
  return out + "]";
}

json value_json(const Value& v, bool all) {
  switch (v.type) {
    case ValueType::UINT8: case ValueType::UINT16: case ValueType::UINT32: case ValueType::UINT64:
      return std::get<uint64_t>(v.data);
    case ValueType::INT8: case ValueType::INT16: case ValueType::INT32: case ValueType::INT64:
      return std::get<int64_t>(v.data);
    case ValueType::FLOAT32: case ValueType::FLOAT64: {
      // JSON has no NaN or infinity: those are written as strings.
      const double d = std::get<double>(v.data);
      if (std::isfinite(d)) return d;
      return std::isnan(d) ? "nan" : d > 0 ? "inf" : "-inf";
    }
    case ValueType::BOOL: return v.as_bool();
    case ValueType::STRING: return v.as_string();
    case ValueType::ARRAY: break;
  }
  const Array& a = v.as_array();
  const size_t shown = all ? a.items.size() : std::min(a.items.size(), kPreviewItems);
  json items = json::array();
  for (size_t i = 0; i < shown; ++i) items.push_back(value_json(a.items[i], all));
  return items;
}

std::string shape_text(const TensorInfo& t) {
  std::string out;
  for (uint32_t d = 0; d < t.n_dims; ++d) out += str_cat(d ? " x " : "", t.ne[d]);
  return out;
}

json shape_json(const TensorInfo& t) {
  json shape = json::array();
  for (uint32_t d = 0; d < t.n_dims; ++d) shape.push_back(t.ne[d]);
  return shape;
}

struct Missing {
  std::vector<std::string> names;
  uint64_t bytes = 0;           // summed over parts
  size_t first_part = 0;        // first part that is cut short
  uint64_t first_part_needs = 0;
};

Missing find_missing(const GgufFile& file) {
  Missing m;
  std::vector<uint64_t> needs(file.n_parts(), 0);
  for (const TensorInfo& t : file.tensors()) {
    if (t.n_bytes == 0) continue;
    needs[t.part] = std::max(needs[t.part], file.data_offset(t.part) + t.offset + t.n_bytes);
    if (!t.data) m.names.push_back(t.name);
  }
  bool first = true;
  for (size_t p = 0; p < needs.size(); ++p) {
    if (needs[p] <= file.file_size(p)) continue;
    m.bytes += needs[p] - file.file_size(p);
    if (first) {
      m.first_part = p;
      m.first_part_needs = needs[p];
      first = false;
    }
  }
  return m;
}

json totals_json(const TensorTotals& t) {
  return {{"tensors", t.n_tensors}, {"params", t.n_elements}, {"bytes", t.n_bytes}};
}

std::string pad_right(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string pad_left(std::string s, size_t width) {
  if (s.size() < width) s.insert(0, width - s.size(), ' ');
  return s;
}

std::string totals_text(const TensorTotals& t) {
  return pad_left(std::to_string(t.n_tensors), 8) + pad_left(format_count(t.n_elements), 10) +
         pad_left(format_bytes(t.n_bytes), 12) + pad_left(std::to_string(t.n_bytes), 16);
}

}  // namespace

std::optional<std::string> missing_data_message(const GgufFile& file) {
  const Missing m = find_missing(file);
  if (m.names.empty()) return std::nullopt;
  std::string names;
  for (size_t i = 0; i < m.names.size() && i < kMissingNamesShown; ++i) names += (i ? ", " : "") + printable(m.names[i]);
  if (m.names.size() > kMissingNamesShown) names += str_cat(" and ", m.names.size() - kMissingNamesShown, " more");
  return str_cat(file.part_path(m.first_part), ": tensor data is cut short: the file has ", file.file_size(m.first_part),
                 " bytes, its tensors end at byte ", m.first_part_needs, "; ", m.bytes, " bytes (",
                 format_bytes(m.bytes), ") missing; ", m.names.size(), " of ", file.tensors().size(),
                 " tensors have no data: ", names);
}

std::string report_text(const GgufFile& file, const ReportOptions& options) {
  const ModelSummary summary = summarize(file);
  const Missing missing = find_missing(file);
  std::string out;
  uint64_t on_disk = 0;
  for (size_t p = 0; p < file.n_parts(); ++p) on_disk += file.file_size(p);
  out += str_cat("file     ", file.path(), "\n");
  out += str_cat("format   GGUF v", file.version(), ", alignment ", file.alignment(), ", tensor data at byte ",
                 file.data_offset(0), ", ", format_bytes(on_disk), " on disk\n");
  if (file.n_parts() > 1) {
    out += str_cat("parts    ", file.n_parts(), ":");
    for (size_t p = 0; p < file.n_parts(); ++p) out += str_cat(p ? ", " : " ", file.part_path(p));
    out += "\n";
  }
  out += str_cat("summary  ", summary.line(), "\n");

  out += str_cat("\nmetadata: ", file.metadata().size(), " keys\n");
  size_t key_width = 0;
  for (const auto& [key, value] : file.metadata()) key_width = std::max(key_width, printable(key).size());
  for (const auto& [key, value] : file.metadata()) {
    out += "  " + pad_right(printable(key), key_width) + "  " + pad_right(type_label(value), 14) + "  ";
    out += value_text(value, options.all_metadata, kPreviewStringBytes) + "\n";
  }

  out += str_cat("\ntensors: ", file.tensors().size(), " (shape in ggml order, ne[0] first)\n");
  size_t name_width = 4, shape_width = 5;
  for (const TensorInfo& t : file.tensors()) {
    name_width = std::max(name_width, printable(t.name).size());
    shape_width = std::max(shape_width, shape_text(t).size());
  }
  const bool multi_part = file.n_parts() > 1;
  out += "  " + pad_right("name", name_width) + "  " + pad_right("type", 8) + "  " + pad_right("shape", shape_width) +
         "  " + pad_left("bytes", 14) + (multi_part ? "  part" : "") + (missing.names.empty() ? "" : "  data") + "\n";
  for (const TensorInfo& t : file.tensors()) {
    out += "  " + pad_right(printable(t.name), name_width) + "  " + pad_right(type_name(t.type), 8) + "  " +
           pad_right(shape_text(t), shape_width) + "  " + pad_left(std::to_string(t.n_bytes), 14);
    if (multi_part) out += "  " + pad_left(std::to_string(t.part + 1), 4);
    if (!missing.names.empty()) out += (!t.data && t.n_bytes > 0) ? "  MISSING" : "  ok";
    out += "\n";
  }

  const std::string totals_header = "   tensors    params       size           bytes\n";
  out += "\ntotals by type:\n  " + pad_right("type", 10) + totals_header;
  for (const TypeTotals& t : summary.by_type) out += "  " + pad_right(type_name(t.type), 10) + totals_text(t.totals) + "\n";
  if (!summary.by_layer.empty()) {
    out += "\ntotals by layer:\n  " + pad_right("layer", 22) + totals_header;
    for (const LayerTotals& l : summary.by_layer) {
      out += "  " + pad_right(str_cat("blk.", l.layer, " ", l.kind), 22) + totals_text(l.totals) + "\n";
    }
    out += "  " + pad_right("outside blk.N", 22) + totals_text(summary.outside_layers) + "\n";
  }
  out += str_cat("\ntotal    ", summary.total.n_tensors, " tensors, ", format_count(summary.total.n_elements),
                 " params (", summary.total.n_elements, "), ", format_bytes(summary.total.n_bytes), " (",
                 summary.total.n_bytes, " bytes)\n");
  if (!missing.names.empty()) {
    out += str_cat("missing  data of ", missing.names.size(), " tensors (", missing.bytes, " bytes): the file is cut short\n");
  }
  return out;
}

json report_json(const GgufFile& file, const ReportOptions& options) {
  const ModelSummary summary = summarize(file);
  const Missing missing = find_missing(file);
  json doc;
  doc["file"] = file.path();
  doc["version"] = file.version();
  doc["alignment"] = file.alignment();
  json parts = json::array();
  for (size_t p = 0; p < file.n_parts(); ++p) {
    parts.push_back({{"path", file.part_path(p)}, {"size", file.file_size(p)}, {"data_offset", file.data_offset(p)}});
  }
  doc["parts"] = std::move(parts);

  json kinds = json::object();
  for (const auto& [kind, n] : summary.layer_kinds) kinds[kind] = n;
  json expert_types = json::array();
  for (GgmlType t : summary.expert_types) expert_types.push_back(type_name(t));
  doc["summary"] = {{"line", summary.line()},
                    {"architecture", summary.architecture},
                    {"layers", summary.n_layers},
                    {"layer_kinds", std::move(kinds)},
                    {"experts", summary.n_experts},
                    {"experts_used", summary.n_experts_used},
                    {"shared_expert", summary.shared_expert},
                    {"expert_types", std::move(expert_types)},
                    {"params", summary.total.n_elements},
                    {"bytes", summary.total.n_bytes}};

  json metadata = json::array();
  for (const auto& [key, value] : file.metadata()) {
    json entry = {{"key", key}, {"type", type_label(value)}, {"value", value_json(value, options.all_metadata)}};
    if (value.type == ValueType::ARRAY) {
      const size_t n = value.as_array().items.size();
      entry["count"] = n;
      entry["truncated"] = !options.all_metadata && n > kPreviewItems;
    }
    metadata.push_back(std::move(entry));
  }
  doc["metadata"] = std::move(metadata);

  json tensors = json::array();
  for (const TensorInfo& t : file.tensors()) {
    tensors.push_back({{"name", t.name},
                       {"type", type_name(t.type)},
                       {"type_id", int32_t(t.type)},
                       {"shape", shape_json(t)},
                       {"part", t.part},
                       {"offset", t.offset},
                       {"bytes", t.n_bytes},
                       {"elements", t.n_elements()},
                       {"data_missing", !t.data && t.n_bytes > 0}});
  }
  doc["tensors"] = std::move(tensors);

  json by_type = json::array();
  for (const TypeTotals& t : summary.by_type) {
    json row = totals_json(t.totals);
    row["type"] = type_name(t.type);
    by_type.push_back(std::move(row));
  }
  doc["totals_by_type"] = std::move(by_type);
  json by_layer = json::array();
  for (const LayerTotals& l : summary.by_layer) {
    json row = totals_json(l.totals);
    row["layer"] = l.layer;
    row["kind"] = l.kind;
    by_layer.push_back(std::move(row));
  }
  doc["totals_by_layer"] = std::move(by_layer);
  doc["totals_outside_layers"] = totals_json(summary.outside_layers);
  doc["totals"] = totals_json(summary.total);
  doc["missing_data"] = missing.names.empty() ? json(nullptr)
                                              : json{{"tensors", missing.names}, {"bytes_missing", missing.bytes}};
  return doc;
}

}  // namespace moeserve::gguf
