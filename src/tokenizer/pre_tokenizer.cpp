#include "tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <cstdint>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace moeserve::tokenizer {
namespace {

// The text decoded once: code points, their class bits and byte offsets (offset[n] = size).
struct Chars {
  std::vector<uint32_t> cp;
  std::vector<uint16_t> cls;
  std::vector<uint32_t> offset;
  std::vector<uint32_t> space_end;  // per character: end of the whitespace run from it (on request)
  size_t n = 0;

  Chars(std::string_view text, bool with_space_runs) {
    cp.reserve(text.size());
    cls.reserve(text.size());
    offset.reserve(text.size() + 1);
    size_t pos = 0;
    while (pos < text.size()) {
      size_t len;
      const uint32_t c = decode_utf8(text, pos, &len);
      cp.push_back(c);
      cls.push_back(char_class(c));
      offset.push_back(uint32_t(pos));
      pos += len;
    }
    n = cp.size();
    offset.push_back(uint32_t(text.size()));
    if (with_space_runs) {
      space_end.resize(n);
      for (size_t i = n; i-- > 0;)
        space_end[i] = (cls[i] & kSpace) ? (i + 1 < n ? space_end[i + 1] : uint32_t(n)) : uint32_t(i);
    }
  }

  bool has(size_t i, size_t end, uint16_t mask) const { return i < end && (cls[i] & mask) != 0; }
  size_t run(size_t i, size_t end, uint16_t mask) const {  // end of the run of `mask` from i
    while (i < end && (cls[i] & mask)) ++i;
    return i;
  }
  size_t run_upto(size_t i, size_t end, uint16_t mask, size_t max) const {  // at most `max` long
    return run(i, std::min(end, i + max), mask);
  }
  size_t run_not(size_t i, size_t end, uint16_t mask) const {
    while (i < end && !(cls[i] & mask)) ++i;
    return i;
  }
};

struct Range {
  size_t begin, end;
};

// A matcher returns the length (in characters) of the pattern's match starting exactly at `pos`
// within [pos, end), or 0 when the pattern does not match there.
using Matcher = size_t (*)(const Chars& c, size_t pos, size_t end);

// Regex find-all with HF's "Isolated" split behaviour: every match is a piece, and so is every
// stretch of text between matches.
void split(const Chars& c, Matcher match, const std::vector<Range>& in, std::vector<Range>& out) {
  out.clear();
  for (const Range& r : in) {
    size_t gap = r.begin, pos = r.begin;
    while (pos < r.end) {
      const size_t len = match(c, pos, r.end);
      if (len == 0) {
        ++pos;
        continue;
      }
      if (gap < pos) out.push_back({gap, pos});
      out.push_back({pos, pos + len});
      pos += len;
      gap = pos;
    }
    if (gap < r.end) out.push_back({gap, r.end});
  }
}

bool is_char(uint32_t cp, char lower) { return cp == uint32_t(lower) || cp == uint32_t(lower - 'a' + 'A'); }

// (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]) at pos: its length, or 0.
size_t contraction(const Chars& c, size_t pos, size_t end) {
  if (pos + 1 >= end || c.cp[pos] != '\'') return 0;
  const uint32_t a = c.cp[pos + 1];
  if (is_char(a, 's') || is_char(a, 't') || is_char(a, 'm') || is_char(a, 'd')) return 2;
  if (pos + 2 >= end) return 0;
  const uint32_t b = c.cp[pos + 2];
  if ((is_char(a, 'r') && is_char(b, 'e')) || (is_char(a, 'v') && is_char(b, 'e')) ||
      (is_char(a, 'l') && is_char(b, 'l')))
    return 3;
  return 0;
}

// The whitespace tail shared by the qwen2 / llama3 / o200k / deepseek-v3 patterns, at a position
// holding whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
size_t whitespace_tail(const Chars& c, size_t pos, size_t end) {
  const size_t e = c.run(pos, end, kSpace);
  if (e == pos) return 0;
  // \s*[\r\n]+: the greedy \s* backs off to the last line break in the run.
  for (size_t k = e; k > pos; --k)
    if (c.cls[k - 1] & kCrLf) return k - pos;
  // \s+(?!\S): the whole run at the end, else all but the last whitespace character.
  if (e == end) return e - pos;
  if (e - pos >= 2) return e - 1 - pos;
  return e - pos;  // \s+
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
template <size_t kMaxDigits>
size_t match_qwen2_llama3(const Chars& c, size_t pos, size_t end) {
  if (const size_t n = contraction(c, pos, end)) return n;
  const uint16_t k0 = c.cls[pos];
  if (!(k0 & (kCrLf | kLetter | kNumber)) && c.has(pos + 1, end, kLetter)) return c.run(pos + 1, end, kLetter) - pos;
  if (k0 & kLetter) return c.run(pos, end, kLetter) - pos;
  if (k0 & kNumber) return c.run_upto(pos, end, kNumber, kMaxDigits) - pos;
  size_t p = pos;
  if (c.cp[pos] == ' ' && pos + 1 < end && !(c.cls[pos + 1] & (kSpace | kLetter | kNumber))) p = pos + 1;
  if (!(c.cls[p] & (kSpace | kLetter | kNumber))) {
    p = c.run_not(p, end, kSpace | kLetter | kNumber);
    return c.run(p, end, kCrLf) - pos;
  }
  return whitespace_tail(c, pos, end);
}

// o200k: [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?|
// [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)?|
// \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_gpt4o(const Chars& c, size_t pos, size_t end) {
  const bool prefix_ok = !(c.cls[pos] & (kCrLf | kLetter | kNumber));
  const size_t starts[2] = {pos + 1, pos};  // optional prefix taken first, then not
  const size_t first = prefix_ok ? 0 : 1;
  // First alternative: the greedy "upper" run backs off until a "lower" character can start.
  for (size_t i = first; i < 2; ++i) {
    const size_t s = starts[i];
    if (s >= end) continue;
    const size_t u_end = c.run(s, end, kUpperish);
    size_t k = u_end + 1;  // none
    if (c.has(u_end, end, kLowerish)) {
      k = u_end;
    } else {
      for (size_t j = u_end; j > s; --j)
        if (c.cls[j - 1] & kLowerish) { k = j - 1; break; }
    }
    if (k > u_end) continue;
    const size_t w_end = c.run(k, end, kLowerish);
    return w_end + contraction(c, w_end, end) - pos;
  }
  // Second alternative: a non-empty "upper" run, then any "lower" run.
  for (size_t i = first; i < 2; ++i) {
    const size_t s = starts[i];
    if (s >= end) continue;
    const size_t u_end = c.run(s, end, kUpperish);
    if (u_end == s) continue;
    const size_t w_end = c.run(u_end, end, kLowerish);
    return w_end + contraction(c, w_end, end) - pos;
  }
  if (c.cls[pos] & kNumber) return c.run_upto(pos, end, kNumber, 3) - pos;
  size_t p = pos;
  if (c.cp[pos] == ' ' && pos + 1 < end && !(c.cls[pos + 1] & (kSpace | kLetter | kNumber))) p = pos + 1;
  if (!(c.cls[p] & (kSpace | kLetter | kNumber))) {
    p = c.run_not(p, end, kSpace | kLetter | kNumber);
    while (p < end && ((c.cls[p] & kCrLf) || c.cp[p] == '/')) ++p;
    return p - pos;
  }
  return whitespace_tail(c, pos, end);
}

// \p{N}{1,3}
size_t match_digits_1_3(const Chars& c, size_t pos, size_t end) {
  return c.run_upto(pos, end, kNumber, 3) - pos;
}

// \p{N}+
size_t match_digits(const Chars& c, size_t pos, size_t end) { return c.run(pos, end, kNumber) - pos; }

struct CpRange {
  uint32_t first, last;
};

template <size_t N>
bool in_ranges(uint32_t cp, const CpRange (&ranges)[N]) {
  for (const CpRange& r : ranges)
    if (cp >= r.first && cp <= r.last) return true;
  return false;
}

template <size_t N>
size_t run_in(const Chars& c, size_t pos, size_t end, const CpRange (&ranges)[N]) {
  while (pos < end && in_ranges(c.cp[pos], ranges)) ++pos;
  return pos;
}

// [一-龥぀-ゟ゠-ヿ]+
constexpr CpRange kDeepseekV3Cjk[] = {{0x4E00, 0x9FA5}, {0x3040, 0x309F}, {0x30A0, 0x30FF}};
size_t match_deepseek_v3_cjk(const Chars& c, size_t pos, size_t end) {
  return run_in(c, pos, end, kDeepseekV3Cjk) - pos;
}

bool is_ascii_punct(uint32_t cp) {
  return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
         (cp >= 0x7B && cp <= 0x7E);
}
bool is_ascii_letter(uint32_t cp) { return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z'; }

// [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|
// ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_deepseek_v3_main(const Chars& c, size_t pos, size_t end) {
  const uint32_t c0 = c.cp[pos];
  if (is_ascii_punct(c0) && pos + 1 < end && is_ascii_letter(c.cp[pos + 1])) {
    size_t p = pos + 1;
    while (p < end && is_ascii_letter(c.cp[p])) ++p;
    return p - pos;
  }
  const uint16_t k0 = c.cls[pos];
  if (!(k0 & (kCrLf | kLetter | kPunct | kSymbol)) && c.has(pos + 1, end, kLetter | kMark))
    return c.run(pos + 1, end, kLetter | kMark) - pos;
  if (k0 & (kLetter | kMark)) return c.run(pos, end, kLetter | kMark) - pos;
  size_t p = pos;
  if (c0 == ' ' && c.has(pos + 1, end, kPunct | kSymbol)) p = pos + 1;
  if (c.cls[p] & (kPunct | kSymbol)) {
    p = c.run(p, end, kPunct | kSymbol);
    return c.run(p, end, kCrLf) - pos;
  }
  return (k0 & kSpace) ? whitespace_tail(c, pos, end) : 0;
}

// [\r\n]
size_t match_line_break(const Chars& c, size_t pos, size_t) { return (c.cls[pos] & kCrLf) ? 1 : 0; }

// \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+ : the cased letters of Unicode, as listed in deepseek-llm's tokenizer.json.
constexpr CpRange kDeepseekLlmLetters[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},       {0xD8, 0xF6},
    {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},     {0x295, 0x2AF},     {0x370, 0x373},
    {0x376, 0x377},     {0x37B, 0x37D},     {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},
    {0x38C, 0x38C},     {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},
    {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},   {0x1C90, 0x1CBA},
    {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},   {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},   {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B},   {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},   {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},   {0x2102, 0x2102},   {0x2107, 0x2107},
    {0x210A, 0x2113},   {0x2115, 0x2115},   {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},
    {0x2128, 0x2128},   {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},   {0x2C7E, 0x2CE4},
    {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},   {0xA680, 0xA69B},   {0xA722, 0xA76F},
    {0xA771, 0xA787},   {0xA78B, 0xA78E},   {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},
    {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
// \s?[!-/:-~！-／：-～‘-‟　-。]+
constexpr CpRange kDeepseekLlmPunct[] = {{0x21, 0x2F},     {0x3A, 0x7E},     {0xFF01, 0xFF0F},
                                         {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002}};
// [一-龥ࠀ-一가-퟿]+
constexpr CpRange kDeepseekLlmCjk[] = {{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}};

template <const auto& kRanges>
size_t match_optional_space_then(const Chars& c, size_t pos, size_t end) {
  size_t p = pos;
  if ((c.cls[pos] & kSpace) && pos + 1 < end && in_ranges(c.cp[pos + 1], kRanges)) p = pos + 1;
  const size_t e = run_in(c, p, end, kRanges);
  return e == p ? 0 : e - pos;
}

// \s+$ (the end of the piece being split). The precomputed run ends keep a long run of
// whitespace before other text linear rather than rescanned from every position.
size_t match_trailing_space(const Chars& c, size_t pos, size_t end) {
  return (c.cls[pos] & kSpace) && c.space_end[pos] >= end ? end - pos : 0;
}

size_t match_deepseek_llm_cjk(const Chars& c, size_t pos, size_t end) {
  return run_in(c, pos, end, kDeepseekLlmCjk) - pos;
}

std::vector<Matcher> patterns(PreTokenizer kind) {
  switch (kind) {
    case PreTokenizer::Qwen2: return {match_qwen2_llama3<1>};
    case PreTokenizer::Llama3: return {match_qwen2_llama3<3>};
    case PreTokenizer::Gpt4o: return {match_gpt4o};
    case PreTokenizer::DeepseekLlm:
      return {match_line_break, match_optional_space_then<kDeepseekLlmLetters>,
              match_optional_space_then<kDeepseekLlmPunct>, match_trailing_space, match_deepseek_llm_cjk,
              match_digits};
    case PreTokenizer::DeepseekV3: return {match_digits_1_3, match_deepseek_v3_cjk, match_deepseek_v3_main};
  }
  return {};
}

}  // namespace

PreTokenizer pre_tokenizer_from_name(std::string_view name, std::string_view source) {
  if (name == "qwen2") return PreTokenizer::Qwen2;
  if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") return PreTokenizer::Llama3;
  if (name == "gpt-4o") return PreTokenizer::Gpt4o;
  if (name == "deepseek-llm") return PreTokenizer::DeepseekLlm;
  if (name == "deepseek-v3") return PreTokenizer::DeepseekV3;
  fail(source, ": pre-tokenizer '", name,
       "' is not supported (supported: qwen2, llama-bpe, llama3, gpt-4o, deepseek-llm, deepseek-v3)");
}

const char* pre_tokenizer_name(PreTokenizer kind) {
  switch (kind) {
    case PreTokenizer::Qwen2: return "qwen2";
    case PreTokenizer::Llama3: return "llama-bpe";
    case PreTokenizer::Gpt4o: return "gpt-4o";
    case PreTokenizer::DeepseekLlm: return "deepseek-llm";
    case PreTokenizer::DeepseekV3: return "deepseek-v3";
  }
  return "?";
}

void pre_tokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>& pieces) {
  pieces.clear();
  if (text.empty()) return;
  const Chars c(text, kind == PreTokenizer::DeepseekLlm);
  std::vector<Range> ranges{{0, c.n}}, next;
  for (Matcher m : patterns(kind)) {
    split(c, m, ranges, next);
    ranges.swap(next);
  }
  pieces.reserve(ranges.size());
  for (const Range& r : ranges)
    pieces.push_back(text.substr(c.offset[r.begin], c.offset[r.end] - c.offset[r.begin]));
}

}  // namespace moeserve::tokenizer
