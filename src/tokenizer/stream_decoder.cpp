#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace moeserve::tokenizer {

namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool special) : tokenizer_(&tokenizer), special_(special) {}

std::string StreamDecoder::push(TokenId id) {
  pending_ += tokenizer_->piece(id, special_);
  return take_complete(false);
}

std::string StreamDecoder::finish() { return take_complete(true); }

std::string StreamDecoder::take_complete(bool at_end) {
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    size_t len;
    if (decode_utf8(pending_, pos, &len) != kInvalidByte) {
      out.append(pending_, pos, len);
      pos += len;
      continue;
    }
    if (utf8_incomplete_tail(pending_, pos)) {
      if (!at_end) break;  // the next token may complete this character
      out += kReplacement;
      pos = pending_.size();
      break;
    }
    out += kReplacement;
    pos += 1;
  }
  pending_.erase(0, pos);
  return out;
}

}  // namespace moeserve::tokenizer
