// UTF-8 and code-point helpers for the template interpreter. Template values are UTF-8 strings, but
// Python (whose jinja2 we reproduce) indexes, slices and measures strings by code point and uses
// its own notions of whitespace, printability and case; these helpers give those answers.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace moeserve::jinja::utf8 {

bool valid(std::string_view s);
bool is_ascii(std::string_view s);
// Decodes the code point starting at s[i] and advances i past it. `s` must be valid UTF-8.
char32_t decode(std::string_view s, size_t& i);
void append(std::string& out, char32_t cp);
std::u32string to_u32(std::string_view s);
std::string from_u32(std::u32string_view s);
size_t length(std::string_view s);  // in code points
// Byte offset of code point number `index` (index <= length(s)).
size_t byte_offset(std::string_view s, size_t index);
// Code-point index of a byte offset that starts a code point.
size_t cp_index(std::string_view s, size_t byte_offset);

// Python's str.isspace() / re `\s` for str patterns.
bool is_space(char32_t c);
// Python's str.isprintable() (used by repr); unassigned code points follow the C library's tables.
bool is_printable(char32_t c);
bool is_alpha(char32_t c);
bool is_digit(char32_t c);     // str.isdigit() for the common decimal digits
bool is_decimal(char32_t c);
bool is_alnum(char32_t c);
bool is_word(char32_t c);      // re `\w`: alphanumeric or underscore
bool is_upper(char32_t c);
bool is_lower(char32_t c);
// Full case mappings of str.upper()/lower() (ß -> SS and the few other one-to-many cases included).
void append_upper(std::u32string& out, char32_t c);
void append_lower(std::u32string& out, char32_t c);
char32_t to_upper_simple(char32_t c);
char32_t to_lower_simple(char32_t c);

}  // namespace moeserve::jinja::utf8
