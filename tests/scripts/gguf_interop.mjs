// Interoperability with an independent GGUF implementation, Hugging Face's @huggingface/gguf:
//  1. files written by our GgufWriter (every value type, every tensor type, alignment 64, a 3-part
//     split) are parsed by it, and metadata, tensor infos, data offsets and data bytes must match
//     what we wrote (samples.json);
//  2. a file written by its serializer (every value type) is read by `moeserve inspect --json
//     --all-metadata`, and the values must match what it wrote.
// usage: node gguf_interop.mjs GGUF_WRITE_SAMPLES MOESERVE
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

const clients = new URL("../clients/", import.meta.url);
if (!fs.existsSync(new URL("node_modules/@huggingface/gguf", clients))) {
  console.error("gguf_interop: tests/clients/node_modules is missing: run scripts/setup.sh (npm ci in tests/clients)");
  process.exit(1);
}
const require = createRequire(new URL("package.json", clients));
const { gguf, ggufAllShards, serializeGgufMetadata, GGUFValueType } = require("@huggingface/gguf");

const [writeSamples, moeserve] = process.argv.slice(2);
let passed = 0;
let failed = 0;
function check(ok, what) {
  if (ok) {
    passed++;
  } else {
    failed++;
    console.error(`FAIL: ${what}`);
  }
}

// Compares a value as the other parser returns it with our JSON description of it.
function sameValue(actual, expected, type) {
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length && expected.every((e, i) => sameValue(actual[i], e, type));
  }
  if (typeof actual === "bigint") return actual === BigInt(expected);
  if (expected === "nan") return Number.isNaN(actual);
  if (expected === "inf") return actual === Infinity;
  if (expected === "-inf") return actual === -Infinity;
  if (type === GGUFValueType.FLOAT32) return actual === Math.fround(expected);
  return actual === expected;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "moeserve-interop-"));
try {
  // 1. Our files, their parser.
  execFileSync(writeSamples, [dir]);
  const samples = JSON.parse(fs.readFileSync(path.join(dir, "samples.json"), "utf8"));
  for (const sample of samples) {
    const file = path.join(dir, sample.file);
    const parsed = await gguf(file, { allowLocalFile: true, typedMetadata: true, computeParametersCount: true });
    const where = sample.file;
    check(parsed.metadata.version === 3, `${where}: version ${parsed.metadata.version}`);
    check(parsed.metadata.kv_count === BigInt(sample.metadata.length), `${where}: kv_count ${parsed.metadata.kv_count}`);
    check(parsed.metadata.tensor_count === BigInt(sample.tensors.length), `${where}: tensor_count`);
    for (const m of sample.metadata) {
      const got = parsed.typedMetadata[m.key];
      check(got !== undefined, `${where}: key ${m.key} missing`);
      if (!got) continue;
      check(got.type === m.type, `${where}: key ${m.key} type ${got.type}, wrote ${m.type}`);
      if (m.subType !== undefined) check(got.subType === m.subType, `${where}: key ${m.key} subType ${got.subType}`);
      const elemType = m.type === GGUFValueType.ARRAY ? m.subType : m.type;
      check(sameValue(got.value, m.value, elemType),
            `${where}: key ${m.key} value ${String(got.value)}, wrote ${JSON.stringify(m.value)}`);
    }
    check(parsed.tensorDataOffset === BigInt(sample.data_offset),
          `${where}: data offset ${parsed.tensorDataOffset}, ours ${sample.data_offset}`);
    check(parsed.parameterCount === sample.params, `${where}: parameters ${parsed.parameterCount}, wrote ${sample.params}`);
    const bytes = fs.readFileSync(file);
    sample.tensors.forEach((t, i) => {
      const info = parsed.tensorInfos[i];
      check(info.name === t.name, `${where}: tensor ${i} name ${info.name}, wrote ${t.name}`);
      check(info.dtype === t.type, `${where}: ${t.name} type ${info.dtype}, wrote ${t.type}`);
      check(info.n_dims === t.shape.length, `${where}: ${t.name} n_dims ${info.n_dims}`);
      check(info.shape.length === t.shape.length && info.shape.every((d, k) => d === BigInt(t.shape[k])),
            `${where}: ${t.name} shape ${info.shape}, wrote ${t.shape}`);
      check(info.offset === BigInt(t.offset), `${where}: ${t.name} offset ${info.offset}, wrote ${t.offset}`);
      const start = Number(parsed.tensorDataOffset + info.offset);
      const data = bytes.subarray(start, start + t.hex.length / 2).toString("hex");
      check(data === t.hex, `${where}: ${t.name} data differs at the offset the other parser computes`);
    });
  }
  const first = samples.find((s) => s.split_first);
  const shards = await ggufAllShards(path.join(dir, first.file), { allowLocalFile: true });
  check(shards.shards.length === 3, `split: ${shards.shards.length} shards`);
  check(shards.shards.reduce((n, s) => n + s.tensorInfos.length, 0) === 6, "split: tensors across shards");

  // 2. Their file, our reader.
  const T = GGUFValueType;
  const theirs = {
    version: { value: 3, type: T.UINT32 },
    tensor_count: { value: 0n, type: T.UINT64 },
    kv_count: { value: 0n, type: T.UINT64 },
    "general.architecture": { value: "qwen3next", type: T.STRING },
    "x.u8": { value: 200, type: T.UINT8 },
    "x.i8": { value: -100, type: T.INT8 },
    "x.u16": { value: 60000, type: T.UINT16 },
    "x.i16": { value: -30000, type: T.INT16 },
    "x.u32": { value: 4000000000, type: T.UINT32 },
    "x.i32": { value: -2000000000, type: T.INT32 },
    "x.f32": { value: 3.14159, type: T.FLOAT32 },
    "x.bool": { value: true, type: T.BOOL },
    "x.string": { value: "tab\tnewline\n ünïcödé ✓", type: T.STRING },
    "x.u64": { value: 18446744073709551615n, type: T.UINT64 },
    "x.i64": { value: -9223372036854775808n, type: T.INT64 },
    "x.f64": { value: -1e-300, type: T.FLOAT64 },
    "x.arr.strings": { value: ["a", "Ġ Ġ", ""], type: T.ARRAY, subType: T.STRING },
    "x.arr.i32": { value: [1, -2, 3], type: T.ARRAY, subType: T.INT32 },
    "x.arr.f32": { value: [0.5, 0.1], type: T.ARRAY, subType: T.FLOAT32 },
    "x.arr.u64": { value: [9007199254740993n], type: T.ARRAY, subType: T.UINT64 },
    "x.arr.bool": { value: [true, false], type: T.ARRAY, subType: T.BOOL },
  };
  const theirFile = path.join(dir, "theirs.gguf");
  fs.writeFileSync(theirFile, serializeGgufMetadata(theirs, { alignment: 32 }));
  const out = execFileSync(moeserve, ["inspect", "--json", "--all-metadata", theirFile], { encoding: "utf8" });
  // 64-bit integers as strings before JSON.parse so none loses precision.
  const doc = JSON.parse(out.replace(/(?<=[\[\s:,])(-?\d{16,})(?=[\s,\]}])/g, '"$1"'));
  const typeNames = {
    [T.UINT8]: "u8", [T.INT8]: "i8", [T.UINT16]: "u16", [T.INT16]: "i16", [T.UINT32]: "u32", [T.INT32]: "i32",
    [T.FLOAT32]: "f32", [T.BOOL]: "bool", [T.STRING]: "string", [T.UINT64]: "u64", [T.INT64]: "i64", [T.FLOAT64]: "f64",
  };
  const keys = Object.keys(theirs).filter((k) => !["version", "tensor_count", "kv_count"].includes(k));
  check(doc.metadata.length === keys.length, `theirs.gguf: ${doc.metadata.length} keys, wrote ${keys.length}`);
  keys.forEach((key, i) => {
    const entry = doc.metadata[i];
    const w = theirs[key];
    check(entry.key === key, `theirs.gguf: key ${i} is ${entry.key}, wrote ${key}`);
    const typeName = w.type === T.ARRAY ? `array[${typeNames[w.subType]}]` : typeNames[w.type];
    check(entry.type === typeName, `theirs.gguf: ${key} type ${entry.type}, wrote ${typeName}`);
    const elemType = w.type === T.ARRAY ? w.subType : w.type;
    const norm = (v) => (typeof v === "string" && /^-?\d+$/.test(v) ? BigInt(v) : v);
    const ours = Array.isArray(entry.value) ? entry.value.map(norm) : norm(entry.value);
    const expected = (v) => (typeof v === "bigint" ? v : elemType === T.FLOAT32 ? Math.fround(v) : v);
    const want = Array.isArray(w.value) ? w.value.map(expected) : expected(w.value);
    const same = Array.isArray(want)
      ? Array.isArray(ours) && ours.length === want.length && want.every((v, k) => ours[k] === v)
      : ours === want;
    check(same, `theirs.gguf: ${key} = ${JSON.stringify(entry.value)}, wrote ${String(w.value)}`);
  });
  check(doc.tensors.length === 0 && doc.missing_data === null, "theirs.gguf: no tensors, nothing missing");
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
