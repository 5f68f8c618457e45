// UTF-8 byte-level helpers shared by the tokenizer (streaming detokenizer) and the chat parsers
// (streamed events): encoding a code point, and finding where a chunk ends inside a character.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moeserve {

// Appends code point `cp` as UTF-8 (surrogates too, as their 3-byte form, as Python keeps them).
void append_utf8(std::string& out, uint32_t cp);

// True when text[pos..] is the start of a valid UTF-8 sequence that the end of the text cuts short
// (more bytes could complete it).
bool utf8_incomplete_tail(std::string_view text, size_t pos);

// Length of `s` without a trailing, still incomplete UTF-8 sequence (at most 3 bytes are held
// back; bytes no continuation can make valid are not held, so garbage cannot stall a stream).
size_t utf8_complete_prefix(std::string_view s);

}  // namespace moeserve
