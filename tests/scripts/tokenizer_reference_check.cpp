// Checks moeserve's tokenizer against what reference implementations produced:
// - tokenizer_reference.mjs: for every case, identical ids; decode(ids) == text where the case
//   round-trips; decode(ids) == the reference's decoding; the streaming decoder's output (valid
//   UTF-8 in every chunk) equals the pieces;
//   special tokens' ids and types given by the spec.
// - pretokenizer_reference.mjs: identical pieces from each pre-tokenizer.
// Prints "N passed, M failed".
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_hf.h"

namespace tk = moeserve::tokenizer;

namespace {

std::string escaped(const std::string& s, size_t max = 160) {
  std::string out;
  for (size_t pos = 0; pos < s.size() && out.size() < max;) {
    size_t len;
    const uint32_t cp = tk::decode_utf8(s, pos, &len);
    char buf[16];
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == tk::kInvalidByte || cp == 0x2028 ||
        cp == 0x2029 || (cp >= 0x200B && cp <= 0x200F)) {
      std::snprintf(buf, sizeof buf, "\\u{%x}", cp == tk::kInvalidByte ? unsigned(uint8_t(s[pos])) : cp);
      out += buf;
    } else {
      out.append(s, pos, len);
    }
    pos += len;
  }
  return out;
}

std::string ids_text(const std::vector<tk::TokenId>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size() && i < 40; ++i) out += (i ? " " : "") + std::to_string(ids[i]);
  if (ids.size() > 40) out += " ...";
  return out;
}

bool valid_utf8(const std::string& s) {
  for (size_t pos = 0; pos < s.size();) {
    size_t len;
    if (tk::decode_utf8(s, pos, &len) == tk::kInvalidByte) return false;
    pos += len;
  }
  return true;
}

int check_pre_tokenizers(const nlohmann::json& cases) {
  size_t passed = 0, failed = 0;
  std::vector<std::string_view> pieces;
  for (const auto& c : cases) {
    const std::string name = c["pre"];
    const std::string text = c["text"];
    const std::vector<std::string> want = c["pieces"];
    tk::pre_tokenize(tk::pre_tokenizer_from_name(name, "test"), text, pieces);
    if (std::equal(pieces.begin(), pieces.end(), want.begin(), want.end())) {
      ++passed;
      continue;
    }
    if (failed++ < 25) {
      std::string w, g;
      for (const auto& p : want) w += "[" + escaped(p) + "]";
      for (const auto& p : pieces) g += "[" + escaped(std::string(p)) + "]";
      std::printf("FAIL %s pieces of \"%s\"\n  want %s\n  got  %s\n", name.c_str(), escaped(text).c_str(),
                  w.c_str(), g.c_str());
    }
  }
  std::printf("%zu passed, %zu failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: tokenizer_reference_check CASES.json\n");
    return 2;
  }
  try {
    std::ifstream in(argv[1], std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    const nlohmann::json doc = nlohmann::json::parse(buf.str());
    if (doc.contains("pre_tokenizer_cases")) return check_pre_tokenizers(doc["pre_tokenizer_cases"]);
    const std::string tokenizer_json = doc["tokenizer_json"];
    const tk::Tokenizer tok(tk::load_hf_vocab(tokenizer_json), tokenizer_json);
    tk::EncodeOptions options;
    options.add_special = doc["add_special"].get<bool>();

    size_t passed = 0, failed = 0;
    auto report = [&](const std::string& what) {
      if (failed < 25) std::printf("FAIL %s\n", what.c_str());
      ++failed;
    };
    for (const auto& c : doc["cases"]) {
      const std::string text = c["text"];
      const std::vector<tk::TokenId> want = c["ids"];
      const std::vector<tk::TokenId> got = tok.encode(text, options);
      bool ok = true;
      if (got != want) {
        report("ids for \"" + escaped(text) + "\"\n  want " + ids_text(want) + "\n  got  " + ids_text(got));
        ok = false;
      }
      if (tok.decode(got, true) != c["decoded"].get<std::string>()) {
        report("decode of \"" + escaped(text) + "\" gave \"" + escaped(tok.decode(got, true)) + "\", the reference \"" +
               escaped(c["decoded"]) + "\"");
        ok = false;
      }
      if (c["decoded_skip"].is_string() && tok.decode(got, false) != c["decoded_skip"].get<std::string>()) {
        report("decode without specials of \"" + escaped(text) + "\" gave \"" + escaped(tok.decode(got, false)) +
               "\", the reference \"" + escaped(c["decoded_skip"]) + "\"");
        ok = false;
      }
      const std::string decoded = tok.decode(got, /*special=*/!options.add_special);
      if (c["roundtrip"].get<bool>() && decoded != text) {
        report("decode(encode(s)) for \"" + escaped(text) + "\" gave \"" + escaped(decoded) + "\"");
        ok = false;
      }
      // Streaming gives the pieces as they are (no start-of-text space removal).
      tk::StreamDecoder stream(tok, /*special=*/!options.add_special);
      std::string streamed, pieces;
      bool chunks_valid = true;
      for (tk::TokenId id : got) {
        const std::string chunk = stream.push(id);
        chunks_valid = chunks_valid && valid_utf8(chunk);
        streamed += chunk;
        pieces += tok.piece(id, !options.add_special);
      }
      streamed += stream.finish();
      if (!chunks_valid || streamed != pieces) {
        report("streaming decode for \"" + escaped(text) + "\" gave \"" + escaped(streamed) + "\"" +
               (chunks_valid ? "" : " (a chunk was not valid UTF-8)"));
        ok = false;
      }
      ok ? ++passed : 0;
    }
    for (const auto& s : doc["spec_tokens"]) {
      const std::string text = s["text"];
      const tk::TokenId id = s["id"];
      const tk::TokenId found = tok.find(text);
      const char* type = found == tk::kNoToken ? "absent" : tk::token_type_name(tok.vocab().types[found]);
      const std::vector<tk::TokenId> encoded = tok.encode(text);
      if (found != id || type != s["type"].get<std::string>() || encoded != std::vector<tk::TokenId>{id}) {
        report("spec token " + text + ": want id " + std::to_string(id) + " (" + s["type"].get<std::string>() +
               "), found " + std::to_string(found) + " (" + type + "), encodes to " + ids_text(encoded));
      } else {
        ++passed;
      }
    }
    std::printf("%zu passed, %zu failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenizer_reference_check: %s\n", e.what());
    return 2;
  }
}
