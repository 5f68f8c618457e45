// Any byte string given to the GGUF reader either parses or throws one moeserve::Error. A file that
// parses can then be summarized and reported (what `moeserve inspect` does) without any exception,
// and every byte of a tensor the reader says is present can be read.
#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_report.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (const bool allow_truncated : {false, true}) {
    std::optional<moeserve::gguf::GgufFile> file;
    try {
      file.emplace(moeserve::gguf::GgufFile::parse(data, size, "fuzz.gguf", {.allow_truncated_data = allow_truncated}));
    } catch (const moeserve::Error&) {
      continue;
    }
    (void)moeserve::gguf::report_text(*file, {.all_metadata = true});
    (void)moeserve::gguf::report_json(*file, {}).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    (void)moeserve::gguf::missing_data_message(*file);
    for (const auto& t : file->tensors()) {
      if (t.data && t.n_bytes > 0) {
        volatile uint8_t sink = t.data[0];
        sink = t.data[t.n_bytes - 1];
        (void)sink;
      }
    }
  }
  return 0;
}
