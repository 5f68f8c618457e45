#include <cstdio>
#include <string>
#include <string_view>

#include "commands.h"
#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_report.h"

namespace moeserve::cli {

namespace {

constexpr const char* kUsage =
    "usage: moeserve inspect FILE.gguf [--json] [--all-metadata]\n\n"
    "Validates a GGUF file and prints its metadata (long arrays and strings shortened), one row per\n"
    "tensor (name, type, shape in ggml order, bytes), totals per tensor type and per layer, and a\n"
    "summary line (layers by kind, experts, parameters, size). The first part of a split model\n"
    "(NAME-00001-of-0000N.gguf) loads every part.\n\n"
    "  --json          print one JSON document instead of text\n"
    "  --all-metadata  print metadata arrays and strings in full\n\n"
    "Exit status 1 when the file is invalid, or when its tensor data is cut short (the header is\n"
    "still listed, with the missing tensors and bytes named).\n";

}  // namespace

int cmd_inspect(int argc, char** argv) {
  std::string path;
  bool json = false;
  gguf::ReportOptions report;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "--json") {
      json = true;
    } else if (arg == "--all-metadata") {
      report.all_metadata = true;
    } else if (arg.size() > 1 && arg[0] == '-') {
      fail("unknown option '", arg, "' (see moeserve inspect --help)");
    } else if (path.empty()) {
      path = arg;
    } else {
      fail("one file at a time: got '", path, "' and '", arg, "'");
    }
  }
  if (path.empty()) fail("missing FILE.gguf (see moeserve inspect --help)");

  gguf::OpenOptions options;
  options.allow_truncated_data = true;
  const gguf::GgufFile file = gguf::GgufFile::open(path, options);
  if (json) {
    const std::string doc = gguf::report_json(file, report).dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
    std::fwrite(doc.data(), 1, doc.size(), stdout);
    std::fputc('\n', stdout);
  } else {
    const std::string text = gguf::report_text(file, report);
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  std::fflush(stdout);
  if (const auto missing = gguf::missing_data_message(file)) fail(*missing);
  return 0;
}

}  // namespace moeserve::cli
