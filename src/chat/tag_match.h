// Matching literal tags in a buffer that is still growing: a tag is either there, absent, or cut
// by the end of the buffer (partial), in which case the decision waits for more text.
#pragma once

#include <cstddef>
#include <string_view>

namespace moeserve::chat {

enum class TagMatch { none, partial, full };

inline TagMatch match_tag(std::string_view s, size_t pos, std::string_view tag) {
  const size_t avail = s.size() - pos;
  if (avail >= tag.size()) return s.compare(pos, tag.size(), tag) == 0 ? TagMatch::full : TagMatch::none;
  return s.compare(pos, avail, tag.substr(0, avail)) == 0 ? TagMatch::partial : TagMatch::none;
}

// Whitespace as the tool-call formats use it between tags (Python's str.strip / lstrip set).
inline bool is_tag_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

inline size_t skip_tag_space(std::string_view s, size_t pos) {
  while (pos < s.size() && is_tag_space(s[pos])) ++pos;
  return pos;
}

// The tags of the Qwen3 tool-call formats.
inline constexpr std::string_view kToolCallOpen = "<tool_call>";
inline constexpr std::string_view kToolCallClose = "</tool_call>";
inline constexpr std::string_view kFunctionOpen = "<function=";
inline constexpr std::string_view kFunctionClose = "</function>";
inline constexpr std::string_view kParameterOpen = "<parameter=";
inline constexpr std::string_view kParameterClose = "</parameter>";
inline constexpr std::string_view kThinkOpen = "<think>";
inline constexpr std::string_view kThinkClose = "</think>";

}  // namespace moeserve::chat
