// The report `moeserve inspect` prints: metadata (long values summarized), one row per tensor,
// totals per type and per layer, the architecture summary line; as text for people or one JSON
// document for machines. In the library (not the app) so the fuzz target exercises it too.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "gguf/gguf_file.h"

namespace moeserve::gguf {

struct ReportOptions {
  bool all_metadata = false;  // print arrays and strings in full instead of their first items
};

std::string report_text(const GgufFile& file, const ReportOptions& options);
// Strings from the file are kept as bytes: dump with nlohmann::json::error_handler_t::replace.
nlohmann::json report_json(const GgufFile& file, const ReportOptions& options);

// One line saying which tensors' data is missing and how many bytes, naming the file; nullopt when
// every tensor's data is present (open the file with allow_truncated_data to get here).
std::optional<std::string> missing_data_message(const GgufFile& file);

}  // namespace moeserve::gguf
