// Untrusted text (keys, tensor names, string values read from a file) made safe for a one-line
// message or a terminal: control bytes escaped, long text cut at a UTF-8 boundary.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace moeserve::gguf {

// Escapes \n, \t, \r, \\, \" and other control bytes (\xNN); keeps other bytes as they are. When the
// text is longer than max_bytes it is cut there (never inside a UTF-8 sequence) and "..." appended.
std::string printable(std::string_view text, size_t max_bytes = 96);

}  // namespace moeserve::gguf
