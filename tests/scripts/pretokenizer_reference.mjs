// Splits the corpus of tokenizer_corpus.mjs with each supported pre-tokenizer's patterns run by
// V8's regular-expression engine (HF's "Isolated" Split: every match and every stretch between
// matches is a piece; a sequence of patterns splits each previous piece), and has our hand-written
// pre-tokenizers check that they produce the same pieces.
//
//   node pretokenizer_reference.mjs --checker PATH --work DIR [--count N]
//
// The patterns are those of the models' tokenizer.json files, with the case-insensitive groups
// (?i:'s|...) spelled out as V8 lacks inline flags.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCorpus } from './tokenizer_corpus.mjs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));

const contractions = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`;
const cps = (ranges) => ranges.map(([a, b]) => (a === b ? `\\u{${a.toString(16)}}` : `\\u{${a.toString(16)}}-\\u{${b.toString(16)}}`)).join('');
// deepseek-llm's letter class: Unicode's cased letters as its tokenizer.json lists them.
const deepseekLetters = cps([
  [0x41, 0x5a], [0x61, 0x7a], [0xb5, 0xb5], [0xc0, 0xd6], [0xd8, 0xf6], [0xf8, 0x1ba], [0x1bc, 0x1bf],
  [0x1c4, 0x293], [0x295, 0x2af], [0x370, 0x373], [0x376, 0x377], [0x37b, 0x37d], [0x37f, 0x37f],
  [0x386, 0x386], [0x388, 0x38a], [0x38c, 0x38c], [0x38e, 0x3a1], [0x3a3, 0x3f5], [0x3f7, 0x481],
  [0x48a, 0x52f], [0x531, 0x556], [0x10a0, 0x10c5], [0x13a0, 0x13f5], [0x13f8, 0x13fd], [0x1c90, 0x1cba],
  [0x1cbd, 0x1cbf], [0x1d00, 0x1d2b], [0x1d6b, 0x1d77], [0x1d79, 0x1d9a], [0x1e00, 0x1f15], [0x1f18, 0x1f1d],
  [0x1f20, 0x1f45], [0x1f48, 0x1f4d], [0x1f50, 0x1f57], [0x1f59, 0x1f59], [0x1f5b, 0x1f5b], [0x1f5d, 0x1f5d],
  [0x1f5f, 0x1f7d], [0x1f80, 0x1fb4], [0x1fb6, 0x1fbc], [0x1fbe, 0x1fbe], [0x1fc2, 0x1fc4], [0x1fc6, 0x1fcc],
  [0x1fd0, 0x1fd3], [0x1fd6, 0x1fdb], [0x1fe0, 0x1fec], [0x1ff2, 0x1ff4], [0x1ff6, 0x1ffc], [0x2102, 0x2102],
  [0x2107, 0x2107], [0x210a, 0x2113], [0x2115, 0x2115], [0x2119, 0x211d], [0x2124, 0x2124], [0x2126, 0x2126],
  [0x2128, 0x2128], [0x212a, 0x212d], [0x212f, 0x2134], [0x2139, 0x2139], [0x213c, 0x213f], [0x2145, 0x2149],
  [0x214e, 0x214e], [0x2183, 0x2184], [0x2c00, 0x2c7b], [0x2c7e, 0x2ce4], [0x2ceb, 0x2cee], [0x2cf2, 0x2cf3],
  [0xa640, 0xa66d], [0xa680, 0xa69b], [0xa722, 0xa76f], [0xa771, 0xa787], [0xa78b, 0xa78e], [0xab70, 0xabbf],
  [0xfb00, 0xfb06], [0xfb13, 0xfb17], [0xff21, 0xff3a], [0xff41, 0xff5a], [0x10400, 0x1044f], [0x104b0, 0x104d3],
  [0x104d8, 0x104fb], [0x10c80, 0x10cb2], [0x10cc0, 0x10cf2], [0x118a0, 0x118df], [0x1e900, 0x1e943],
]);

const patterns = {
  'qwen2': [contractions + String.raw`|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`],
  'llama-bpe': [contractions + String.raw`|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`],
  'gpt-4o': [String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` + contractions +
             String.raw`?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` + contractions +
             String.raw`?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`],
  'deepseek-v3': [
    String.raw`\p{N}{1,3}`,
    '[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+',
    String.raw`[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` + '`' + String.raw`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
  ],
  'deepseek-llm': [
    String.raw`[\r\n]`,
    String.raw`\s?[` + deepseekLetters + ']+',
    String.raw`\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+`,
    String.raw`\s+$`,
    '[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+',
    String.raw`\p{N}+`,
  ],
};

function isolatedSplit(text, re) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[0].length > 0) out.push(m[0]);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

const corpus = makeCorpus('qwen3', { count: Number(args.count ?? 3000) });
const cases = [];
for (const [name, list] of Object.entries(patterns)) {
  const regexes = list.map((p) => new RegExp(p, 'gu'));
  for (const text of corpus) {
    let pieces = [text];
    for (const re of regexes) pieces = pieces.flatMap((p) => isolatedSplit(p, re));
    cases.push({ pre: name, text, pieces });
  }
}
const file = join(args.work, 'pretokenizer_reference.json');
writeFileSync(file, JSON.stringify({ pre_tokenizer_cases: cases }));
console.log(`${cases.length} splits by V8's regex engine; checking moeserve's pre-tokenizers`);
const r = spawnSync(args.checker, [file], { stdio: 'inherit' });
process.exit(r.status ?? 1);
