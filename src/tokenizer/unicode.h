// Unicode helpers for the tokenizers: UTF-8 decoding that never loses bytes, general categories
// and the class bits the pre-tokenizer patterns test, and GPT-2's byte <-> character mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/utf8.h"

namespace moeserve::tokenizer {

// Class bits of one code point, as the pre-tokenizer patterns use them.
enum CharClass : uint16_t {
  kLetter = 1 << 0,       // \p{L}
  kNumber = 1 << 1,       // \p{N}
  kMark = 1 << 2,         // \p{M}
  kPunct = 1 << 3,        // \p{P}
  kSymbol = 1 << 4,       // \p{S}
  kSpace = 1 << 5,        // \s: the White_Space property
  kUpperish = 1 << 6,     // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] (o200k's "upper" run)
  kLowerish = 1 << 7,     // [\p{Ll}\p{Lm}\p{Lo}\p{M}] (o200k's "lower" run)
  kCrLf = 1 << 8,         // \r or \n
};

// A code point that stands for one byte of invalid UTF-8: outside Unicode, so no class matches it.
constexpr uint32_t kInvalidByte = 0x110000;

uint16_t char_class(uint32_t cp);               // 0 for kInvalidByte
const char* unicode_version();                  // of the generated tables, e.g. "17.0"

// Decodes one code point at text[pos]; sets *len to its byte length. A byte that does not start
// a valid, shortest-form UTF-8 sequence (or a surrogate) decodes as kInvalidByte with *len = 1,
// so every byte of the input stays covered exactly once.
uint32_t decode_utf8(std::string_view text, size_t pos, size_t* len);

// GPT-2 byte-level mapping: every byte to a printable character (as UTF-8) and back.
const std::string& byte_to_unicode(uint8_t byte);
// The byte a mapped character stands for, or -1 when `cp` is not one of the 256 characters.
int unicode_to_byte(uint32_t cp);

}  // namespace moeserve::tokenizer
