// The corpus of hard strings the tokenizer is checked on against the reference tokenizers:
// hand-picked cases (code, whitespace, line endings, numbers, contractions, scripts, emoji,
// invisible characters, special tokens inside text) plus thousands of seeded random strings.
//
// Code points are never lone surrogates (UTF-8 cannot carry them), and never U+0085 or U+FEFF:
// the JavaScript reference's \s differs from Unicode's White_Space (which HF tokenizers and
// llama.cpp use) in exactly those two.

export function mulberry32(seed) {
  return function () {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const python = `import os, sys
from typing import Dict, List

class Cache(dict):
    """LRU-ish cache."""
    def __init__(self, size: int = 128) -> None:
        super().__init__()
        self.size = size  # max entries

    def get_or(self, key, default=None):
        if key in self:
            return self[key]
        return default


def main(argv: List[str]) -> int:
\tfor i, arg in enumerate(argv[1:], start=1):
\t\tprint(f"{i:>4}: {arg!r}")
    return 0 if argv else 1

if __name__ == "__main__":
    sys.exit(main(sys.argv))
`;

const cpp = `#include <vector>
#include <cstdint>

template <typename T>
static inline T clamp(T v, T lo, T hi) { return v < lo ? lo : (v > hi ? hi : v); }

int main(int argc, char** argv) {
    std::vector<uint32_t> xs{0xDEADBEEF, 42u, 1'000'000};
    for (auto& x : xs) x <<= 2;   // shift
    if (argc > 1 && argv[1][0] == '-') { return -1; }
    /* block
       comment */
    return static_cast<int>(xs.size());
}
`;

const rust = `use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Token<'a> { pub text: &'a str, pub id: u32 }

impl<'a> Token<'a> {
    pub fn new(text: &'a str, id: u32) -> Self { Self { text, id } }
}

fn count(words: &[&str]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for w in words { *m.entry(w.to_lowercase()).or_insert(0) += 1; }
    m
}
`;

const javascript = `'use strict';
const fetchJson = async (url, { retries = 3 } = {}) => {
  for (let i = 0; i < retries; ++i) {
    try { return await (await fetch(url)).json(); }
    catch (e) { console.error(\`attempt \${i}: \${e?.message ?? e}\`); }
  }
  throw new Error('gave up');
};
export default fetchJson;   
`;

const shell = `#!/usr/bin/env bash
set -euo pipefail
for f in "$@"; do
  if [[ -f "$f" ]]; then wc -l -- "$f" | awk '{print $1}' >> /tmp/out.txt 2>&1; fi
done
echo "done: $(date +%s)" && exit 0
`;

const json = `{
  "name": "moeserve",
  "version": "0.1.0",
  "nested": {"a": [1, 2.5, -3e10, true, false, null], "s": "tab\\tnew\\nline \\u00e9"},
  "empty": {}, "list": []
}
`;

const handPicked = [
  // code
  python, cpp, rust, javascript, shell, json,
  'def f(x):\n\treturn x  \n', 'x=1;y=2;z=x+y', 'a->b; c::d; e=>f; g!=h; i<=j; k>>=1; l&&m||n',
  '    if (x) {\n        return;\n    }\n', '\t\t\tindent\n\t\t\t\tmore', 'SELECT * FROM t WHERE id = 5;',
  '<div class="a">Hi &amp; bye</div>', '# Heading\n\n- item 1\n- item 2\n\n```python\nprint(1)\n```\n',
  // whitespace, line endings
  ' ', '  ', '   ', '\t', '\t\t', '\n', '\n\n', '\r\n', '\r', 'a  b', 'a   b', 'a\t\tb', 'trailing   ',
  '   leading', ' \t \t x', ' \n \n', 'x \n\n  y', '\r\n\r\n', 'a\r\nb\rc\nd', '\n\n\n', '   \n   ',
  'line1\r\nline2\nline3\rline4\r\n\r\nline5', 'end with newline\n', 'end with spaces and newline   \n',
  '\u00a0\u00a0x', '\u3000x', '\u2009 x', 'x\u2028y\u2029z', '\u000b\u000c', ' \t\r\n\u000b\u000c',
  // numbers
  '1234567890', '3.14159265358979', '1,000,000', '0x7fffffff', '1e-10', '-42', '+7', '2024-01-15T10:30:00Z',
  '12345678901234567890123456789012345678901234567890', '\u0663\u0664\u0665', '\u0967\u0968\u0969',
  '\u2460\u2461\u2462', '\u216b', '\u00b2\u00b3', '\uff11\uff12\uff13', 'v1.2.3-rc.4+build.5', '$1,234.56',
  // contractions
  "don't", "DON'T", "I'LL", "he's", "HE'S", "we'Re", "they'VE", "I'm", "she'D", "'s'", "''s", "'sS",
  "rock'n'roll", "It's'", "y'all", "'LL", "'Ll", "'lL", "'ve'", "can't won't shouldn't", "O'Neil's",
  "the dog's bone's", "'S", "' s", "'\u017f", "'\u212a",
  // scripts
  '你好，世界！', '日本語のテキストです。', '한국어 텍스트', '繁體中文測試', 'مرحبا بالعالم', 'שלום עולם',
  'नमस्ते दुनिया', 'สวัสดีชาวโลก', 'Привет, мир!', 'Γειά σου Κόσμε', 'ქართული', 'Ελληνικά123abc',
  'mixed中文and English混合', 'カタカナとひらがな', '\u0627\u0644\u0639\u0631\u0628\u064a\u0629 123',
  // emoji
  '😀', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '❤️', '🇺🇸🇯🇵', '👩🏿‍💻', '🧑‍🤝‍🧑', '1️⃣', 'hi 😀😀😀 there',
  '🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥', 'emoji🙂inside', '👋🏻👋🏼👋🏽👋🏾👋🏿',
  // fullwidth and halfwidth
  'ＡＢＣ　ｄｅｆ！？', 'ｶﾀｶﾅ', '（全角）［括弧］',
  // invisible characters
  'a\u200bb', 'a\u200cb\u200dc', '\u2060x', 'x\u200e\u200fy', 'co\u00adop', '\u034f', '\u200b\u200b\u200b',
  // combining marks
  'q\u0307', 'a\u0328\u0301', 'Z\u0324\u0354\u0367\u0311\u0313a\u0356\u032d\u0308\u0307l\u036e\u0312\u036b',
  '\u0301abc', 'x\u20dd', ' \u0301', '\u0915\u094d\u0937', 'e\u0301\u0301\u0301',
  // odd but valid
  '\u0000', '\u0001\u0002\u007f', '\ufffd', '\uffff', '\u{10ffff}', '\u{e0001}', '\ue000', '\u{f0000}',
  '\u{1d400}\u{1d401}\u{1d7ce}', '\u{20000}\u{2a6d6}', '\u{1f600}\u{e0020}',
  // long runs (the long-piece merge path)
  'a'.repeat(300), ' '.repeat(500), '\n'.repeat(100), '1'.repeat(200), '-'.repeat(120) + '\n',
  'abc'.repeat(80), 'aGVsbG8gd29ybGQ'.repeat(20), '=/+'.repeat(50), '😀'.repeat(40), '\t'.repeat(64) + 'x',
];

// Special tokens of each reference vocabulary, used inside text.
export const specialTokens = {
  qwen3: ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<tool_call>', '</tool_call>', '<think>', '</think>',
          '<|fim_prefix|>', '<|fim_suffix|>', '<|fim_middle|>', '<tool_response>', '<|vision_pad|>'],
  llama2: ['<s>', '</s>', '<unk>'],
};

function specialCases(tokens) {
  const [a, b, c] = tokens;
  const out = [
    `${a}`, `${a}${a}`, `x${a}y`, ` ${a} `, `${a}\n`, `\n${a}\n`, `${a.slice(0, -1)}`, `<${a}>`,
    `${a}${b}${c}`, `text${b}`, `${c}text`, `${a.slice(0, 2)} ${a.slice(2)}`,
  ];
  if (tokens.includes('<|im_start|>')) {
    out.push('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
    out.push('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>');
    out.push('<think>\nLet me think... 2+2=4.\n</think>\n\nThe answer is 4.');
    out.push('<think></think>', '<|im_start', '<|im_start|', '<<|im_end|>>', 'x<|fim_prefix|>y<|fim_suffix|>z<|fim_middle|>');
    out.push('<tool_response>\nok\n</tool_response>', '<|im_end|><|endoftext|>', '<|endoftext|>');
  }
  return out;
}

// Pools of code points for random strings; each draw picks a pool, then a member.
function ranges(...rs) {
  return { kind: 'ranges', rs };
}
const pools = [
  { w: 30, p: ranges([0x20, 0x7e]) },
  { w: 10, p: ranges([0x61, 0x7a], [0x41, 0x5a]) },
  { w: 5, p: ranges([0x30, 0x39]) },
  { w: 8, p: { kind: 'list', items: [' ', ' ', ' ', '\t', '\n', '\r', '\r\n', '\u000b', '\u000c', '\u00a0',
                                     '\u2003', '\u2009', '\u2028', '\u3000', '\u1680', '\u202f', '\u205f'] } },
  { w: 2, p: { kind: 'list', items: ["'s", "'LL", "'re", "'Ve", "'m", "'D", "'T", "'"] } },
  { w: 4, p: ranges([0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff]) },
  { w: 3, p: ranges([0x300, 0x36f], [0x1ab0, 0x1aff], [0x20d0, 0x20ff], [0xfe20, 0xfe2f]) },
  { w: 5, p: ranges([0x4e00, 0x9fff], [0x3040, 0x30ff], [0xac00, 0xd7a3], [0x1100, 0x11ff]) },
  { w: 3, p: ranges([0x600, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f], [0x590, 0x5ff]) },
  { w: 4, p: ranges([0x1f300, 0x1faff], [0x1f3fb, 0x1f3ff], [0x1f1e6, 0x1f1ff]) },
  { w: 2, p: { kind: 'list', items: ['\u200d', '\ufe0f', '\u20e3', '\u200b', '\u200c', '\u2060', '\u00ad', '\u034f'] } },
  { w: 2, p: ranges([0xff01, 0xff5e], [0xff61, 0xff9f]) },
  { w: 2, p: ranges([0x1d400, 0x1d7ff], [0x2460, 0x24ff], [0xb2, 0xb3], [0xbc, 0xbe], [0x2150, 0x218b]) },
  { w: 3, p: ranges([0x80, 0xd7ff], [0xe000, 0xfffd]) },
  { w: 2, p: ranges([0x10000, 0x10ffff]) },
];

function draw(rand, pool) {
  if (pool.kind === 'list') return pool.items[Math.floor(rand() * pool.items.length)];
  const total = pool.rs.reduce((s, [a, b]) => s + (b - a + 1), 0);
  let k = Math.floor(rand() * total);
  for (const [a, b] of pool.rs) {
    if (k <= b - a) {
      const cp = a + k;
      if (cp === 0x85 || cp === 0xfeff) return 'x';
      return String.fromCodePoint(cp);
    }
    k -= b - a + 1;
  }
  throw new Error('unreachable');
}

function randomString(rand, specials) {
  const totalW = pools.reduce((s, x) => s + x.w, 0);
  const len = 1 + Math.floor(rand() * (rand() < 0.9 ? 40 : 400));
  let s = '';
  for (let i = 0; i < len; ++i) {
    if (rand() < 0.01) {
      s += specials[Math.floor(rand() * specials.length)];
      continue;
    }
    let k = rand() * totalW;
    let pool = pools[0];
    for (const x of pools) {
      if (k < x.w) { pool = x; break; }
      k -= x.w;
    }
    s += draw(rand, pool.p);
  }
  return s;
}

// All cases for one reference vocabulary: hand-picked ones, special-token cases for it, and
// `count` random strings from `seed`.
export function makeCorpus(vocabName, { seed = 20250101, count = 3000 } = {}) {
  const specials = specialTokens[vocabName];
  const rand = mulberry32(seed);
  const out = [...handPicked, ...specialCases(specials)];
  for (let i = 0; i < count; ++i) out.push(randomString(rand, specials));
  return out;
}
