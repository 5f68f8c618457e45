// UTF-8 helpers for the streaming parsers: detokenized chunks may end inside a multi-byte
// character, and an event must never carry half of one.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace moeserve::chat {

// Appends code point `cp` as UTF-8 (surrogates too, as their 3-byte form, as Python keeps them).
inline void append_utf8(std::string& out, unsigned cp) {
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

// Length of `s` without a trailing, still incomplete UTF-8 sequence (at most 3 bytes are held
// back; invalid bytes are not held, so garbage input cannot stall the stream).
inline size_t utf8_complete_prefix(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back for the lead
    size_t need = 0;
    if ((c & 0xE0) == 0xC0) need = 2;
    else if ((c & 0xF0) == 0xE0) need = 3;
    else if ((c & 0xF8) == 0xF0) need = 4;
    return (need > back) ? n - back : n;
  }
  return n;
}

}  // namespace moeserve::chat
