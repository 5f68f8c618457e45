#include "core/utf8.h"

namespace moeserve {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

bool utf8_incomplete_tail(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t have = text.size() - pos;
  const unsigned char c0 = s[pos];
  size_t total;
  if ((c0 & 0xE0) == 0xC0) total = 2;
  else if ((c0 & 0xF0) == 0xE0) total = 3;
  else if ((c0 & 0xF8) == 0xF0) total = 4;
  else return false;
  if (have >= total) return false;
  for (size_t i = 1; i < have; ++i)
    if ((s[pos + i] & 0xC0) != 0x80) return false;
  // Reject prefixes no continuation can make valid: overlong leads, surrogates, > U+10FFFF.
  if (c0 == 0xC0 || c0 == 0xC1 || c0 > 0xF4) return false;
  if (have >= 2) {
    const unsigned char c1 = s[pos + 1];
    if (c0 == 0xE0 && c1 < 0xA0) return false;
    if (c0 == 0xED && c1 >= 0xA0) return false;
    if (c0 == 0xF0 && c1 < 0x90) return false;
    if (c0 == 0xF4 && c1 >= 0x90) return false;
  }
  return true;
}

size_t utf8_complete_prefix(std::string_view s) {
  // A cut character starts at most 3 bytes before the end: find its lead byte.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const unsigned char c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;
    return utf8_incomplete_tail(s, s.size() - back) ? s.size() - back : s.size();
  }
  return s.size();
}

}  // namespace moeserve
