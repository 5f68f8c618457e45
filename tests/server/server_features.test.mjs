// moeserve serve against the real client libraries (`openai`, `@anthropic-ai/sdk`), for the parts
// of the server that change what a reply may be or who may ask: constrained output (JSON schema,
// json_object, required tool calls), the RAM tier of the prompt cache, --api-key, and clients
// that hang up mid-stream. Each group runs its own server on the bundled demo model.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { startServer } from './server_harness.mjs';

const require = createRequire(path.join(process.env.MOESERVE_CLIENTS_DIR, 'package.json'));
const OpenAI = require('openai').default ?? require('openai');
const Anthropic = require('@anthropic-ai/sdk').default ?? require('@anthropic-ai/sdk');
const binary = process.env.MOESERVE_BINARY;

async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  assert.ok(m, `${name} missing from /metrics`);
  return Number(m[1]);
}

// A small JSON Schema validator for the keywords the schemas below use (written from the JSON
// Schema 2020-12 validation vocabulary).
function validate(schema, v, root = schema, where = '$') {
  const errors = [];
  const check = (ok, why) => { if (!ok) errors.push(`${where}: ${why}`); };
  if (schema.$ref) return validate(root.$defs[schema.$ref.split('/').pop()], v, root, where);
  if ('const' in schema) check(JSON.stringify(v) === JSON.stringify(schema.const), 'const');
  if (schema.enum) check(schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(v)), 'enum');
  if (schema.anyOf) {
    check(schema.anyOf.some((s) => validate(s, v, root, where).length === 0), 'anyOf');
  }
  const types = schema.type ? [].concat(schema.type) : [];
  const typeOf = (x) => (x === null ? 'null' : Array.isArray(x) ? 'array' : Number.isInteger(x) ? 'integer' : typeof x);
  if (types.length) {
    check(types.some((t) => t === typeOf(v) || (t === 'number' && typeOf(v) === 'integer')), `type ${types} vs ${typeOf(v)}`);
  }
  if (typeOf(v) === 'object' && (schema.properties || schema.required)) {
    for (const r of schema.required ?? []) check(r in v, `required ${r}`);
    for (const [k, x] of Object.entries(v)) {
      if (schema.properties?.[k]) errors.push(...validate(schema.properties[k], x, root, `${where}.${k}`));
      else check(schema.additionalProperties !== false, `additional property ${k}`);
    }
  }
  if (typeOf(v) === 'array') {
    check(v.length >= (schema.minItems ?? 0) && v.length <= (schema.maxItems ?? Infinity), 'item count');
    if (schema.items) v.forEach((x, i) => errors.push(...validate(schema.items, x, root, `${where}[${i}]`)));
  }
  if (typeof v === 'string') {
    const n = [...v].length;
    check(n >= (schema.minLength ?? 0) && n <= (schema.maxLength ?? Infinity), 'length');
  }
  return errors;
}

describe('constrained output', () => {
  let server;
  let openai;
  let anthropic;
  before(async () => {
    server = await startServer(binary, ['-np', '2', '-c', '8192', '-t', '2', '--metrics', '--alias', 'demo']);
    openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    anthropic = new Anthropic({ baseURL: server.url, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => assert.equal(await server.stop(), 0, server.log()));

  test('shares -c among the -np slots as llama-server does', async () => {
    const props = await (await fetch(`${server.url}/props`)).json();
    assert.equal(props.total_slots, 2);
    assert.equal(props.default_generation_settings.n_ctx, 4096);
  });

  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 16 },
      language: { enum: ['python', 'c', 'rust'] },
      stars: { type: 'integer' },
      archived: { type: 'boolean' },
      topics: { type: 'array', items: { $ref: '#/$defs/topic' }, minItems: 1, maxItems: 3 },
      license: { anyOf: [{ type: 'null' }, { const: 'MIT' }] },
    },
    required: ['name', 'language', 'stars', 'archived', 'topics', 'license'],
    additionalProperties: false,
    $defs: { topic: { type: 'string', maxLength: 8 } },
  };
  const messages = [{ role: 'user', content: 'Describe a GitHub repository as JSON.' }];

  for (const temperature of [0, 1]) {
    test(`openai: json_schema reply parses and validates (temperature ${temperature})`, async () => {
      const r = await openai.chat.completions.create({
        model: 'demo', messages, temperature, seed: 7, max_tokens: 400,
        response_format: { type: 'json_schema', json_schema: { name: 'repo', schema, strict: true } },
      });
      const content = r.choices[0].message.content;
      assert.equal(r.choices[0].finish_reason, 'stop', content);
      const value = JSON.parse(content);
      assert.deepEqual(validate(schema, value), [], content);
    });
  }

  test('openai: json_schema streamed, json_object', async () => {
    const stream = await openai.chat.completions.create({
      model: 'demo', messages, temperature: 0.7, seed: 3, max_tokens: 400, stream: true,
      response_format: { type: 'json_schema', json_schema: { name: 'repo', schema } },
    });
    let text = '';
    for await (const chunk of stream) for (const c of chunk.choices) text += c.delta.content ?? '';
    assert.deepEqual(validate(schema, JSON.parse(text)), [], text);

    // Any JSON object: the demo model rarely closes one by itself, so only the prefix is checked
    // when the token cap ends it: it opens an object.
    const r = await openai.chat.completions.create({
      model: 'demo', messages, temperature: 0, max_tokens: 48, response_format: { type: 'json_object' },
    });
    const content = r.choices[0].message.content;
    assert.match(content, /^\{/);
    if (r.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(content), 'object');
  });

  test('openai: a schema keyword the compiler cannot honour is a 400 naming it', async () => {
    await assert.rejects(
      openai.chat.completions.create({
        model: 'demo', messages, max_tokens: 4,
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '^a+$' } } },
      }),
      (e) => e.status === 400 && /pattern/.test(e.message) && e.error?.type === 'invalid_request_error');
    const ok = await openai.chat.completions.create({ model: 'demo', messages, max_tokens: 2 });
    assert.equal(ok.object, 'chat.completion');
  });

  const tools = [
    { type: 'function', function: { name: 'get_temperature', description: 'Temperature now',
      parameters: { type: 'object', properties: { unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } }, required: ['unit'] } } },
    { type: 'function', function: { name: 'get_humidity', description: 'Humidity now',
      parameters: { type: 'object', properties: { hours: { type: 'integer' }, exact: { type: 'boolean' } }, required: ['exact'] } } },
  ];

  test('openai: tool_choice required and named yield tool calls', async () => {
    const ask = [{ role: 'user', content: 'What is it like outside?' }];
    const r = await openai.chat.completions.create({
      model: 'demo', messages: ask, tools, tool_choice: 'required', parallel_tool_calls: false, temperature: 0, max_tokens: 200,
    });
    const choice = r.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice));
    assert.equal(choice.message.tool_calls.length, 1);
    const call = choice.message.tool_calls[0].function;
    assert.ok(['get_temperature', 'get_humidity'].includes(call.name));
    const args = JSON.parse(call.arguments);
    if (call.name === 'get_temperature') assert.ok(['celsius', 'fahrenheit'].includes(args.unit));
    else assert.equal(typeof args.exact, 'boolean');

    for (const name of ['get_temperature', 'get_humidity']) {
      const named = await openai.chat.completions.create({
        model: 'demo', messages: ask, tools, tool_choice: { type: 'function', function: { name } },
        parallel_tool_calls: false, temperature: 0.8, seed: 11, max_tokens: 200,
      });
      const calls = named.choices[0].message.tool_calls;
      assert.equal(calls?.length, 1, JSON.stringify(named.choices[0]));
      assert.equal(calls[0].function.name, name);
      assert.deepEqual(validate(tools.find((t) => t.function.name === name).function.parameters, JSON.parse(calls[0].function.arguments)), []);
    }
    await assert.rejects(
      openai.chat.completions.create({ model: 'demo', messages: ask, tools, tool_choice: { type: 'function', function: { name: 'nope' } } }),
      (e) => e.status === 400);
  });

  test('anthropic: tool_choice any and tool yield tool_use blocks', async () => {
    const atools = tools.map((t) => ({ name: t.function.name, description: t.function.description, input_schema: t.function.parameters }));
    const ask = [{ role: 'user', content: 'What is it like outside?' }];
    const any = await anthropic.messages.create({
      model: 'claude-sonnet-4-5', max_tokens: 200, temperature: 0, tools: atools, messages: ask,
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
    });
    assert.equal(any.stop_reason, 'tool_use', JSON.stringify(any));
    const uses = any.content.filter((b) => b.type === 'tool_use');
    assert.equal(uses.length, 1);
    assert.ok(['get_temperature', 'get_humidity'].includes(uses[0].name));

    const stream = anthropic.messages.stream({
      model: 'claude-sonnet-4-5', max_tokens: 200, temperature: 0, tools: atools, messages: ask,
      tool_choice: { type: 'tool', name: 'get_humidity', disable_parallel_tool_use: true },
    });
    const final = await stream.finalMessage();
    assert.equal(final.stop_reason, 'tool_use');
    const use = final.content.find((b) => b.type === 'tool_use');
    assert.equal(use.name, 'get_humidity');
    assert.deepEqual(validate(atools[1].input_schema, use.input), []);
  });
});

describe('--reasoning-budget 0', () => {
  // The Qwen3 template writes an empty <think></think> block into the prompt when thinking is off.
  const template = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'templates',
    'Qwen-Qwen3-0.6B.jinja');
  const countTokens = async (url, extra = {}) => {
    const body = { model: 'demo', messages: [{ role: 'user', content: 'def fibonacci(n):' }], ...extra };
    const r = await fetch(`${url}/v1/messages/count_tokens`, { method: 'POST', body: JSON.stringify(body) });
    assert.equal(r.status, 200);
    return (await r.json()).input_tokens;
  };
  test('turns thinking off unless the request turns it on', async () => {
    const args = ['-np', '1', '-c', '2048', '-t', '2', '--alias', 'demo', '--chat-template-file', template];
    const plain = await startServer(binary, args);
    let thinking, thinkingOnRequest;
    try {
      thinking = await countTokens(plain.url);
    } finally {
      assert.equal(await plain.stop(), 0, plain.log());
    }
    const off = await startServer(binary, [...args, '--reasoning-budget', '0']);
    let noThinking;
    try {
      noThinking = await countTokens(off.url);
      thinkingOnRequest = await countTokens(off.url, { thinking: { type: 'enabled', budget_tokens: 1024 } });
    } finally {
      assert.equal(await off.stop(), 0, off.log());
    }
    assert.ok(noThinking > thinking, `${noThinking} vs ${thinking}`);  // the empty think block
    assert.equal(thinkingOnRequest, thinking);
  });
});

describe('prompt cache RAM tier', () => {
  // One slot: every other conversation evicts the previous one's state from it.
  const conversation = [{ role: 'user', content: 'def fibonacci(n):' }];
  const others = ['import os\nimport sys', 'class Stack:', 'for i in range(10):'];

  async function run(extraArgs) {
    const server = await startServer(binary, ['-np', '1', '-c', '4096', '-t', '2', '--metrics', '--alias', 'demo', ...extraArgs]);
    try {
      const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const ask = (messages) => openai.chat.completions.create({ model: 'demo', messages, temperature: 0, max_tokens: 12 });
      const first = await ask(conversation);
      for (const o of others) await ask([{ role: 'user', content: o }]);
      const followUp = await ask([...conversation, { role: 'assistant', content: first.choices[0].message.content },
        { role: 'user', content: 'Now make it iterative.' }]);
      return {
        text: followUp.choices[0].message.content,
        cached: followUp.usage.prompt_tokens_details.cached_tokens,
        restores: await metric(server.url, 'moeserve_prompt_cache_ram_restores_total'),
        entries: await metric(server.url, 'moeserve_prompt_cache_ram_entries'),
        bytes: await metric(server.url, 'moeserve_prompt_cache_ram_bytes'),
      };
    } finally {
      assert.equal(await server.stop(), 0, server.log());
    }
  }

  test('an evicted conversation resumes from RAM with the output of a fresh run', async () => {
    const cached = await run([]);
    const fresh = await run(['--cache-ram', '0']);
    assert.ok(cached.cached > 0, JSON.stringify(cached));
    assert.equal(cached.restores, 1);
    assert.ok(cached.entries >= 1 && cached.bytes > 0, JSON.stringify(cached));
    assert.equal(fresh.cached, 0);
    assert.equal(fresh.restores, 0);
    assert.equal(fresh.entries, 0);
    assert.equal(cached.text, fresh.text);
  });
});

describe('--api-key', () => {
  let server;
  before(async () => {
    server = await startServer(binary, ['-np', '1', '-c', '2048', '-t', '2', '-n', '4', '--alias', 'demo', '--api-key', 'sk-right']);
  });
  after(async () => assert.equal(await server.stop(), 0, server.log()));

  test('missing or wrong keys are 401 in each API\'s error shape; the right key works; /health stays open', async () => {
    const messages = [{ role: 'user', content: 'hi' }];
    const openaiWrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
    await assert.rejects(openaiWrong.chat.completions.create({ model: 'demo', messages }),
      (e) => e.status === 401 && typeof e.error?.message === 'string' && typeof e.error?.type === 'string');
    await assert.rejects(openaiWrong.models.list(), (e) => e.status === 401);
    const anthropicWrong = new Anthropic({ baseURL: server.url, apiKey: 'sk-wrong', maxRetries: 0 });
    await assert.rejects(anthropicWrong.messages.create({ model: 'claude-x', max_tokens: 4, messages }),
      (e) => e.status === 401 && e.error?.type === 'error' && e.error?.error?.type === 'authentication_error');
    // No key at all (the SDKs refuse to send a request without one).
    const bare = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages }) });
    assert.equal(bare.status, 401);
    assert.equal(typeof (await bare.json()).error.message, 'string');
    const bareAnthropic = await fetch(`${server.url}/v1/messages`, { method: 'POST', body: JSON.stringify({ max_tokens: 4, messages }) });
    assert.equal(bareAnthropic.status, 401);
    const body = await bareAnthropic.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'authentication_error');
    assert.equal((await fetch(`${server.url}/health`)).status, 200);

    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-right', maxRetries: 0 });
    assert.equal((await openai.chat.completions.create({ model: 'demo', messages })).object, 'chat.completion');
    const anthropic = new Anthropic({ baseURL: server.url, apiKey: 'sk-right', maxRetries: 0 });
    assert.equal((await anthropic.messages.create({ model: 'claude-x', max_tokens: 4, messages })).type, 'message');
  });
});

describe('client disconnects mid-stream', () => {
  let server;
  before(async () => {
    // The streams must outlast the hang-up: the tokens that end a turn are banned (-l ID-inf),
    // their ids read from the model's own tokenizer first.
    const probe = await startServer(binary, ['-c', '512', '-t', '2']);
    const bans = [];
    for (const text of ['<|im_end|>', '<|endoftext|>']) {
      const r = await (await fetch(`${probe.url}/tokenize`, { method: 'POST', body: JSON.stringify({ content: text }) })).json();
      if (r.tokens.length === 1) bans.push('-l', `${r.tokens[0]}-inf`);
    }
    assert.equal(await probe.stop(), 0, probe.log());
    assert.ok(bans.length > 0);
    server = await startServer(binary, ['-np', '1', '-c', '4096', '-t', '2', '--metrics', '--alias', 'demo', ...bans]);
  });
  after(async () => assert.equal(await server.stop(), 0, server.log()));

  async function hangUpAfterFirstChunk(url, body) {
    const abort = new AbortController();
    const r = await fetch(url, { method: 'POST', body: JSON.stringify(body), signal: abort.signal });
    assert.equal(r.status, 200);
    const reader = r.body.getReader();
    await reader.read();
    await reader.read();
    assert.equal(await metric(server.url, 'moeserve_requests_processing'), 1);
    abort.abort();
  }

  async function slotFreeWithin(ms) {
    const t0 = Date.now();
    while (await metric(server.url, 'moeserve_requests_processing') !== 0) {
      assert.ok(Date.now() - t0 < ms, `slot still busy ${ms} ms after the client left`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return Date.now() - t0;
  }

  test('generation stops at once, the slot is free and the server keeps serving', async () => {
    const messages = [{ role: 'user', content: 'def fibonacci(n):' }];
    // Long enough that only the hang-up can end it within the test.
    await hangUpAfterFirstChunk(`${server.url}/v1/chat/completions`,
      { messages, max_tokens: 3000, stream: true, temperature: 1 });
    await slotFreeWithin(1000);
    const generated = await metric(server.url, 'moeserve_tokens_predicted_total');
    assert.ok(generated < 3000, `generated ${generated}`);
    await hangUpAfterFirstChunk(`${server.url}/v1/messages`,
      { model: 'claude-x', max_tokens: 3000, stream: true, messages });
    await slotFreeWithin(1000);

    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const r = await openai.chat.completions.create({ model: 'demo', messages, max_tokens: 4 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(await metric(server.url, 'moeserve_requests_processing'), 0);
  });
});
