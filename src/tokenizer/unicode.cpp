#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <map>
#include <vector>

#include "tokenizer/unicode_data.h"

namespace moeserve::tokenizer {
namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;
constexpr uint32_t kBlockBits = 8;
constexpr uint32_t kBlockSize = 1u << kBlockBits;

// General categories in the generated table's order.
enum Category : uint8_t {
  Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No,
  Pc, Pd, Ps, Pe, Pi, Pf, Po, Sm, Sc, Sk, So,
  Zs, Zl, Zp, Cc, Cf, Cs, Co, Cn,
};

uint16_t class_of_category(uint8_t c) {
  switch (c) {
    case Lu: case Lt: return kLetter | kUpperish;
    case Ll: return kLetter | kLowerish;
    case Lm: case Lo: return kLetter | kUpperish | kLowerish;
    case Mn: case Mc: case Me: return kMark | kUpperish | kLowerish;
    case Nd: case Nl: case No: return kNumber;
    case Pc: case Pd: case Ps: case Pe: case Pi: case Pf: case Po: return kPunct;
    case Sm: case Sc: case Sk: case So: return kSymbol;
    default: return 0;
  }
}

// Two-level lookup (block index per 256 code points, deduplicated blocks) of class bits; built
// once from the generated range list.
struct Tables {
  std::vector<uint16_t> block_of;  // (kMaxCodePoint + 1) >> kBlockBits entries
  std::vector<uint16_t> classes;   // blocks of kBlockSize

  Tables() {
    std::vector<uint8_t> cat(kMaxCodePoint + 1);
    const size_t n = unicode_data::kCategoryRangeCount;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t first = unicode_data::kCategoryRanges[i] >> 5;
      const uint32_t end = i + 1 < n ? unicode_data::kCategoryRanges[i + 1] >> 5 : kMaxCodePoint + 1;
      std::fill(cat.begin() + first, cat.begin() + end, uint8_t(unicode_data::kCategoryRanges[i] & 31));
    }
    std::vector<bool> space(kMaxCodePoint + 1);
    for (size_t i = 0; i < unicode_data::kWhiteSpaceCount; ++i) space[unicode_data::kWhiteSpace[i]] = true;

    std::map<std::vector<uint8_t>, uint16_t> seen;
    block_of.resize((kMaxCodePoint + 1) >> kBlockBits);
    for (uint32_t b = 0; b < block_of.size(); ++b) {
      // Whitespace is folded into the key so that blocks differing only in it stay distinct.
      std::vector<uint8_t> key(kBlockSize);
      for (uint32_t j = 0; j < kBlockSize; ++j) {
        const uint32_t cp = (b << kBlockBits) | j;
        key[j] = uint8_t(cat[cp] | (space[cp] ? 0x80 : 0));
      }
      auto [it, inserted] = seen.emplace(key, uint16_t(seen.size()));
      if (inserted) {
        for (uint32_t j = 0; j < kBlockSize; ++j) {
          const uint32_t cp = (b << kBlockBits) | j;
          uint16_t cls = class_of_category(cat[cp]);
          if (space[cp]) cls |= kSpace;
          if (cp == '\r' || cp == '\n') cls |= kCrLf;
          classes.push_back(cls);
        }
      }
      block_of[b] = it->second;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

std::array<uint16_t, 128> make_ascii_classes() {
  std::array<uint16_t, 128> a{};
  const Tables& t = tables();
  for (uint32_t cp = 0; cp < 128; ++cp) a[cp] = t.classes[size_t(t.block_of[0]) * kBlockSize + cp];
  return a;
}

struct ByteMap {
  std::array<std::string, 256> to_unicode;
  std::array<int16_t, 512> to_byte;  // mapped characters all lie below U+0200

  ByteMap() {
    to_byte.fill(-1);
    uint32_t next_extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      // Printable Latin-1 stands for itself; the rest (controls, space, DEL, NBSP, soft hyphen)
      // moves to U+0100 onwards, in byte order.
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = printable ? b : next_extra++;
      append_utf8(to_unicode[b], cp);
      to_byte[cp] = int16_t(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

uint16_t char_class(uint32_t cp) {
  static const std::array<uint16_t, 128> ascii = make_ascii_classes();
  if (cp < 128) return ascii[cp];
  if (cp > kMaxCodePoint) return 0;
  const Tables& t = tables();
  return t.classes[size_t(t.block_of[cp >> kBlockBits]) * kBlockSize + (cp & (kBlockSize - 1))];
}

const char* unicode_version() { return unicode_data::kUnicodeVersion; }

uint32_t decode_utf8(std::string_view text, size_t pos, size_t* len) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const unsigned char c0 = s[pos];
  *len = 1;
  if (c0 < 0x80) return c0;
  size_t need;
  uint32_t cp, min;
  if ((c0 & 0xE0) == 0xC0) { need = 1; cp = c0 & 0x1F; min = 0x80; }
  else if ((c0 & 0xF0) == 0xE0) { need = 2; cp = c0 & 0x0F; min = 0x800; }
  else if ((c0 & 0xF8) == 0xF0) { need = 3; cp = c0 & 0x07; min = 0x10000; }
  else return kInvalidByte;
  if (pos + need >= n) return kInvalidByte;
  for (size_t i = 1; i <= need; ++i) {
    const unsigned char c = s[pos + i];
    if ((c & 0xC0) != 0x80) return kInvalidByte;
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min || cp > kMaxCodePoint || (cp >= 0xD800 && cp <= 0xDFFF)) return kInvalidByte;
  *len = need + 1;
  return cp;
}



const std::string& byte_to_unicode(uint8_t byte) { return byte_map().to_unicode[byte]; }

int unicode_to_byte(uint32_t cp) { return cp < 512 ? byte_map().to_byte[cp] : -1; }

}  // namespace moeserve::tokenizer
