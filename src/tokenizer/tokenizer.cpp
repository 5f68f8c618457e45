#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <climits>
#include <queue>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/unicode.h"

namespace moeserve::tokenizer {
namespace {

// (left id, right id) -> (rank, merged id), open addressing; the hot lookup of byte-level BPE.
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    TokenId merged = kNoToken;
  };

  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Entry{});
    mask_ = cap - 1;
  }
  // Keeps the first (lowest-rank) entry for a pair listed twice.
  void insert(TokenId left, TokenId right, int32_t rank, TokenId merged) {
    const uint64_t key = make_key(left, right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return;
      if (slots_[i].key == kEmpty) {
        slots_[i] = {key, rank, merged};
        return;
      }
    }
  }
  const Entry* find(TokenId left, TokenId right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = make_key(left, right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i];
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t make_key(TokenId l, TokenId r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }
  static size_t hash(uint64_t k) {
    k ^= k >> 29;
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 32;
    return size_t(k);
  }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
};

struct AddedToken {
  std::string_view text;
  TokenId id;
  bool needs_parse_special;  // CONTROL / UNKNOWN: only with parse_special
};

// Texts of control tokens that end a turn in the chat formats llama.cpp knows.
constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>",
    "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<EOT>", "<|return|>", "<|call|>",
};

const std::string kEmptyPiece;
constexpr std::string_view kSpmSpace = "\xe2\x96\x81";  // U+2581 "▁"

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xNN>" -> NN, or -1.
int byte_token_value(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  const int hi = hex_digit(text[3]), lo = hex_digit(text[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

struct Symbol {
  TokenId id;
  int32_t prev, next;
};

}  // namespace

struct Tokenizer::Impl {
  Vocab vocab;
  bool byte_level = false;  // gpt2
  PreTokenizer pre = PreTokenizer::Qwen2;
  bool ignore_merges = false;  // whole pieces that are tokens skip merging (llama3)

  std::unordered_map<std::string_view, TokenId> token_ids;  // views into vocab.tokens
  std::vector<std::string> pieces;                          // decoded bytes per token
  std::vector<uint8_t> piece_needs_special;                 // control / unknown
  std::array<std::vector<AddedToken>, 256> added_by_first_byte;
  std::vector<TokenId> eog;

  // gpt2
  std::array<TokenId, 256> byte_tokens{};  // token of each byte's mapped character
  MergeTable merges;
  // llama
  std::array<TokenId, 256> byte_fallback{};  // <0xNN>

  void build(std::string_view source);
  void split_added(std::string_view text, bool parse_special, std::vector<TokenId>& out,
                   std::vector<std::pair<size_t, size_t>>& segments) const;
  void encode_byte_level(std::string_view text, std::vector<TokenId>& out) const;
  void bpe_piece(std::string_view piece, std::vector<TokenId>& out, std::vector<Symbol>& syms) const;
  void encode_spm(std::string_view text, bool prefix_space, std::vector<TokenId>& out) const;
};

void Tokenizer::Impl::build(std::string_view source) {
  vocab.validate(source);
  const size_t n = vocab.tokens.size();
  byte_level = vocab.model == "gpt2";
  if (byte_level) {
    pre = pre_tokenizer_from_name(vocab.pre, source);
    ignore_merges = pre == PreTokenizer::Llama3;
  }

  token_ids.reserve(n);
  for (size_t i = 0; i < n; ++i) token_ids.emplace(vocab.tokens[i], TokenId(i));

  pieces.resize(n);
  piece_needs_special.assign(n, 0);
  byte_fallback.fill(kNoToken);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = vocab.tokens[i];
    std::string& piece = pieces[i];
    switch (vocab.types[i]) {
      case TokenType::Control:
      case TokenType::Unknown:
        piece = text;
        piece_needs_special[i] = 1;
        break;
      case TokenType::UserDefined:
        piece = text;
        break;
      case TokenType::Unused:
        break;
      case TokenType::Byte:
        if (const int b = byte_token_value(text); b >= 0) {
          piece.assign(1, char(b));
          if (!byte_level && byte_fallback[b] == kNoToken) byte_fallback[b] = TokenId(i);
          break;
        }
        [[fallthrough]];
      case TokenType::Normal:
      case TokenType::Undefined:
        if (byte_level) {
          for (size_t pos = 0; pos < text.size();) {
            size_t len;
            const uint32_t cp = decode_utf8(text, pos, &len);
            const int b = unicode_to_byte(cp);
            if (b >= 0) piece += char(b);
            else piece.append(text, pos, len);  // not a mapped character: keep it as written
            pos += len;
          }
        } else {
          for (size_t pos = 0; pos < text.size();) {
            if (text.compare(pos, kSpmSpace.size(), kSpmSpace) == 0) {
              piece += ' ';
              pos += kSpmSpace.size();
            } else {
              piece += text[pos++];
            }
          }
        }
        break;
    }
    if ((vocab.types[i] == TokenType::Control || vocab.types[i] == TokenType::UserDefined ||
         vocab.types[i] == TokenType::Unknown) &&
        !text.empty()) {
      added_by_first_byte[uint8_t(text[0])].push_back(
          {text, TokenId(i), vocab.types[i] != TokenType::UserDefined});
    }
  }
  for (auto& list : added_by_first_byte)
    std::stable_sort(list.begin(), list.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.text.size() > b.text.size(); });

  for (TokenId id : {vocab.eos, vocab.eot, vocab.eom})
    if (id != kNoToken) eog.push_back(id);
  for (std::string_view text : kEndOfGenerationTexts) {
    auto it = token_ids.find(text);
    if (it != token_ids.end() && vocab.types[it->second] == TokenType::Control) eog.push_back(it->second);
  }
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());

  if (byte_level) {
    for (int b = 0; b < 256; ++b) {
      auto it = token_ids.find(byte_to_unicode(uint8_t(b)));
      byte_tokens[b] = it == token_ids.end() ? kNoToken : it->second;
    }
    merges.reserve(vocab.merges.size());
    std::string joined;
    for (size_t r = 0; r < vocab.merges.size(); ++r) {
      const std::string& m = vocab.merges[r];
      const size_t space = m.find(' ', 1);
      const std::string_view left(m.data(), space), right(m.data() + space + 1, m.size() - space - 1);
      joined.assign(left);
      joined.append(right);
      const auto l = token_ids.find(left), rt = token_ids.find(right), j = token_ids.find(joined);
      if (l == token_ids.end() || rt == token_ids.end() || j == token_ids.end())
        fail(source, ": merge ", r, " '", m, "' refers to '",
             l == token_ids.end() ? std::string(left) : rt == token_ids.end() ? std::string(right) : joined,
             "', which is not a token");
      merges.insert(l->second, rt->second, int32_t(r), j->second);
    }
  }
}

// Splits `text` at added tokens: their ids go to `out` directly at their place; the text between
// them is returned as (offset, length) segments, each marked by a kNoToken placeholder in `out`.
void Tokenizer::Impl::split_added(std::string_view text, bool parse_special, std::vector<TokenId>& out,
                                  std::vector<std::pair<size_t, size_t>>& segments) const {
  size_t start = 0, pos = 0;
  while (pos < text.size()) {
    const AddedToken* hit = nullptr;
    for (const AddedToken& a : added_by_first_byte[uint8_t(text[pos])]) {
      if (a.needs_parse_special && !parse_special) continue;
      if (text.compare(pos, a.text.size(), a.text) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    if (start < pos) {
      segments.emplace_back(start, pos - start);
      out.push_back(kNoToken);
    }
    out.push_back(hit->id);
    pos += hit->text.size();
    start = pos;
  }
  if (start < text.size()) {
    segments.emplace_back(start, text.size() - start);
    out.push_back(kNoToken);
  }
}

void Tokenizer::Impl::encode_byte_level(std::string_view text, std::vector<TokenId>& out) const {
  std::vector<std::string_view> words;
  pre_tokenize(pre, text, words);
  std::vector<Symbol> syms;
  std::string mapped;
  for (std::string_view w : words) {
    if (ignore_merges && w.size() > 1) {
      mapped.clear();
      for (char ch : w) mapped += byte_to_unicode(uint8_t(ch));
      auto it = token_ids.find(mapped);
      if (it != token_ids.end()) {
        out.push_back(it->second);
        continue;
      }
    }
    bpe_piece(w, out, syms);
  }
}

// Byte-level BPE of one pre-tokenized piece: start from one token per byte and apply the
// lowest-ranked merge (leftmost on ties) until none applies.
void Tokenizer::Impl::bpe_piece(std::string_view piece, std::vector<TokenId>& out,
                                std::vector<Symbol>& syms) const {
  const size_t n = piece.size();
  if (n == 1) {
    if (const TokenId id = byte_tokens[uint8_t(piece[0])]; id != kNoToken) out.push_back(id);
    return;
  }
  auto rank_of = [&](TokenId l, TokenId r) -> const MergeTable::Entry* {
    return (l == kNoToken || r == kNoToken) ? nullptr : merges.find(l, r);
  };

  constexpr size_t kLinearMax = 48;
  if (n <= kLinearMax) {
    // Short pieces (nearly all): a flat array with cached pair ranks; each step scans for the minimum.
    TokenId ids[kLinearMax];
    int32_t rank[kLinearMax];
    TokenId merged[kLinearMax];
    size_t m = n;
    for (size_t i = 0; i < n; ++i) ids[i] = byte_tokens[uint8_t(piece[i])];
    auto update = [&](size_t i) {
      const MergeTable::Entry* e = rank_of(ids[i], ids[i + 1]);
      rank[i] = e ? e->rank : INT32_MAX;
      merged[i] = e ? e->merged : kNoToken;
    };
    for (size_t i = 0; i + 1 < m; ++i) update(i);
    while (m > 1) {
      size_t best = 0;
      for (size_t i = 1; i + 1 < m; ++i)
        if (rank[i] < rank[best]) best = i;
      if (rank[best] == INT32_MAX) break;
      ids[best] = merged[best];
      for (size_t i = best + 1; i + 1 < m; ++i) {
        ids[i] = ids[i + 1];
        rank[i] = rank[i + 1];
        merged[i] = merged[i + 1];
      }
      --m;
      if (best > 0) update(best - 1);
      if (best + 1 < m) update(best);
    }
    for (size_t i = 0; i < m; ++i)
      if (ids[i] != kNoToken) out.push_back(ids[i]);
    return;
  }

  // Long pieces: a linked list of symbols and a heap of candidate merges ordered by (rank, position).
  syms.resize(n);
  for (size_t i = 0; i < n; ++i)
    syms[i] = {byte_tokens[uint8_t(piece[i])], int32_t(i) - 1, i + 1 < n ? int32_t(i + 1) : -1};
  struct Candidate {
    int32_t rank, left;
    TokenId left_id, right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int32_t left) {
    if (left < 0 || syms[left].next < 0) return;
    const Symbol& a = syms[left];
    const Symbol& b = syms[a.next];
    if (const MergeTable::Entry* e = rank_of(a.id, b.id)) heap.push({e->rank, left, a.id, b.id});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& a = syms[c.left];
    if (a.id != c.left_id || a.next < 0 || syms[a.next].id != c.right_id) continue;  // stale
    Symbol& b = syms[a.next];
    a.id = rank_of(a.id, b.id)->merged;
    b.id = kNoToken;
    a.next = b.next;
    if (b.next >= 0) syms[b.next].prev = c.left;
    push(a.prev);
    push(c.left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next)
    if (syms[i].id != kNoToken) out.push_back(syms[i].id);
}

// SentencePiece-style BPE over characters of the text with spaces escaped as "▁": repeatedly
// join the adjacent pair whose concatenation is the highest-scoring token (leftmost on ties);
// characters left that are no token fall back to <0xNN> byte tokens.
void Tokenizer::Impl::encode_spm(std::string_view raw, bool prefix_space, std::vector<TokenId>& out) const {
  std::string text;
  text.reserve(raw.size() + 8);
  if (prefix_space) text += kSpmSpace;
  for (char ch : raw) {
    if (ch == ' ') text += kSpmSpace;
    else text += ch;
  }
  struct Sym {
    uint32_t start, len;
    int32_t prev, next;
  };
  std::vector<Sym> syms;
  for (size_t pos = 0; pos < text.size();) {
    size_t len;
    decode_utf8(text, pos, &len);
    const int32_t i = int32_t(syms.size());
    syms.push_back({uint32_t(pos), uint32_t(len), i - 1, -1});
    if (i > 0) syms[i - 1].next = i;
    pos += len;
  }
  struct Bigram {
    float score;
    int32_t left;
    uint32_t len;
    bool operator<(const Bigram& o) const {  // max-heap: higher score, then smaller position
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Bigram> queue;
  auto lookup = [&](size_t start, size_t len) -> TokenId {
    auto it = token_ids.find(std::string_view(text).substr(start, len));
    return it != token_ids.end() && vocab.types[it->second] == TokenType::Normal ? it->second : kNoToken;
  };
  auto try_add = [&](int32_t left) {
    if (left < 0 || syms[left].next < 0) return;
    const Sym& a = syms[left];
    const Sym& b = syms[a.next];
    const TokenId id = lookup(a.start, a.len + b.len);
    if (id != kNoToken) queue.push({vocab.scores[id], left, a.len + b.len});
  };
  for (int32_t i = 0; i + 1 < int32_t(syms.size()); ++i) try_add(i);
  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Sym& a = syms[bg.left];
    if (a.len == 0 || a.next < 0) continue;
    Sym& b = syms[a.next];
    if (a.len + b.len != bg.len) continue;  // one side changed since this pair was queued
    a.len += b.len;
    b.len = 0;
    a.next = b.next;
    if (b.next >= 0) syms[b.next].prev = bg.left;
    try_add(a.prev);
    try_add(bg.left);
  }
  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) {
    const Sym& s = syms[i];
    if (const TokenId id = lookup(s.start, s.len); id != kNoToken) {
      out.push_back(id);
      continue;
    }
    for (uint32_t k = 0; k < s.len; ++k) {
      const TokenId b = byte_fallback[uint8_t(text[s.start + k])];
      if (b != kNoToken) out.push_back(b);
      else if (vocab.unk != kNoToken) out.push_back(vocab.unk);
    }
  }
}

Tokenizer::Tokenizer(Vocab vocab, std::string_view source) : impl_(std::make_unique<Impl>()) {
  impl_->vocab = std::move(vocab);
  impl_->build(source);
}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

const Vocab& Tokenizer::vocab() const { return impl_->vocab; }

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<TokenId> out;
  encode(text, options, out);
  return out;
}

void Tokenizer::encode(std::string_view text, const EncodeOptions& options, std::vector<TokenId>& out) const {
  const Impl& im = *impl_;
  out.clear();
  if (options.add_special && im.vocab.add_bos) out.push_back(im.vocab.bos);
  std::vector<TokenId> parts;
  std::vector<std::pair<size_t, size_t>> segments;
  im.split_added(text, options.parse_special, parts, segments);
  size_t seg = 0;
  bool after_special = true;  // SentencePiece prefixes a space at the start and after added tokens
  for (TokenId id : parts) {
    if (id != kNoToken) {
      out.push_back(id);
      after_special = true;
      continue;
    }
    const std::string_view piece = text.substr(segments[seg].first, segments[seg].second);
    ++seg;
    if (im.byte_level) im.encode_byte_level(piece, out);
    else im.encode_spm(piece, im.vocab.add_space_prefix && after_special, out);
    after_special = false;
  }
  if (options.add_special && im.vocab.add_eos) out.push_back(im.vocab.eos);
}

const std::string& Tokenizer::piece(TokenId id, bool special) const {
  if (id < 0 || size_t(id) >= impl_->pieces.size()) return kEmptyPiece;
  if (impl_->piece_needs_special[id] && !special) return kEmptyPiece;
  return impl_->pieces[id];
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool special) const {
  std::string out;
  bool at_start = !impl_->byte_level && impl_->vocab.add_space_prefix;
  for (TokenId id : ids) {
    const std::string& p = piece(id, special);
    if (p.empty()) continue;
    out.append(p, at_start && p[0] == ' ' ? 1 : 0);
    at_start = false;
  }
  return out;
}

TokenId Tokenizer::find(std::string_view token_text) const {
  auto it = impl_->token_ids.find(token_text);
  return it == impl_->token_ids.end() ? kNoToken : it->second;
}

bool Tokenizer::is_end_of_generation(TokenId id) const {
  return std::binary_search(impl_->eog.begin(), impl_->eog.end(), id);
}

const std::vector<TokenId>& Tokenizer::end_of_generation_ids() const { return impl_->eog; }

}  // namespace moeserve::tokenizer
