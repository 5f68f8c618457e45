// Internal: validating parser of one GGUF file (one part of a split model) held in memory.
// GgufFile (gguf_file.cpp) maps the parts and merges them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gguf/gguf_file.h"

namespace moeserve::gguf::detail {

struct ParsedPart {
  uint32_t version = 3;
  uint32_t alignment = 32;  // general.alignment, or the default of 32
  uint64_t data_offset = 0;  // absolute offset of the data section
  std::vector<std::pair<std::string, Value>> metadata;
  std::vector<TensorInfo> tensors;  // data points into the bytes, or is null when cut short
  std::vector<std::string> missing;  // tensors (with bytes) whose data runs past the end
};

// Validates everything (shared/spec/gguf.md) and throws one moeserve::Error naming `name` and the
// offending field. `part` is stored in each TensorInfo.
ParsedPart parse_part(const uint8_t* bytes, size_t size, const std::string& name, uint32_t part,
                      bool allow_truncated_data);

}  // namespace moeserve::gguf::detail
