#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "commands.h"
#include "core/error.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_gguf.h"
#include "tokenizer/vocab_hf.h"

namespace moeserve::cli {
namespace {

constexpr const char* kUsage =
    "usage: moeserve tokenize (-m MODEL.gguf | --tokenizer-json tokenizer.json) (-p TEXT | -f FILE)\n"
    "                         [--ids] [--no-parse-special] [--show-count]\n"
    "\n"
    "Tokenizes text with a model's vocabulary (BOS/EOS added as the vocabulary asks).\n"
    "  -m FILE                 GGUF model whose tokenizer.ggml.* metadata to use\n"
    "  --tokenizer-json FILE   Hugging Face tokenizer.json (tokenizer_config.json and config.json\n"
    "                          next to it are read too)\n"
    "  -p TEXT                 text to tokenize\n"
    "  -f FILE                 read the text from FILE\n"
    "  --ids                   print only the ids, as one JSON array\n"
    "  --no-parse-special      treat control-token texts such as <|im_start|> as plain text\n"
    "  --show-count            print the number of tokens at the end\n";

// A piece made printable on one line: escapes for control characters, quotes, backslashes and
// bytes that are not valid UTF-8.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t pos = 0; pos < s.size();) {
    size_t len;
    const uint32_t cp = tokenizer::decode_utf8(s, pos, &len);
    char buf[8];
    if (cp == tokenizer::kInvalidByte || cp < 0x20 || cp == 0x7F) {
      switch (cp) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(uint8_t(s[pos])));
          out += buf;
      }
    } else if (cp == '\\' || cp == '\'') {
      out += '\\';
      out += char(cp);
    } else {
      out.append(s, pos, len);
    }
    pos += len;
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("-f ", path, ": cannot open");
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  std::string model_path, json_path, text, file_path;
  bool have_text = false, ids_only = false, show_count = false;
  tokenizer::EncodeOptions options;
  options.add_special = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(arg, " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::printf("\nCharacter classes of the pre-tokenizers: Unicode %s.\n", tokenizer::unicode_version());
      return 0;
    } else if (arg == "-m" || arg == "--model") {
      model_path = value();
    } else if (arg == "--tokenizer-json") {
      json_path = value();
    } else if (arg == "-p" || arg == "--prompt") {
      text = value();
      have_text = true;
    } else if (arg == "-f" || arg == "--file") {
      file_path = value();
    } else if (arg == "--ids") {
      ids_only = true;
    } else if (arg == "--no-parse-special") {
      options.parse_special = false;
    } else if (arg == "--show-count") {
      show_count = true;
    } else {
      fail("unknown argument '", arg, "' (see moeserve tokenize --help)");
    }
  }
  if (model_path.empty() == json_path.empty()) fail("give exactly one of -m MODEL.gguf and --tokenizer-json FILE");
  if (have_text == !file_path.empty()) fail("give exactly one of -p TEXT and -f FILE");
  if (!file_path.empty()) text = read_file(file_path);

  tokenizer::Vocab vocab;
  std::string source;
  if (!json_path.empty()) {
    vocab = tokenizer::load_hf_vocab(json_path);
    source = json_path;
  } else {
    vocab = tokenizer::vocab_from_gguf(gguf::GgufFile::open(model_path));
    source = model_path;
  }
  const tokenizer::Tokenizer tok(std::move(vocab), source);
  const std::vector<tokenizer::TokenId> ids = tok.encode(text, options);

  if (ids_only) {
    std::string line = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) line += ", ";
      line += std::to_string(ids[i]);
    }
    line += "]\n";
    std::fputs(line.c_str(), stdout);
  } else {
    for (tokenizer::TokenId id : ids)
      std::printf("%6d -> '%s'\n", id, printable(tok.piece(id, /*special=*/true)).c_str());
  }
  if (show_count) std::printf("Total number of tokens: %zu\n", ids.size());
  return 0;
}

}  // namespace moeserve::cli
