// moeserve serve against the real client libraries: the `openai` and `@anthropic-ai/sdk` npm
// packages, talking to a server on loopback that serves the bundled demo model.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startServer } from './server_harness.mjs';

// The clients come from tests/clients (npm ci by scripts/setup.sh).
const require = createRequire(path.join(process.env.MOESERVE_CLIENTS_DIR, 'package.json'));
const OpenAI = require('openai').default ?? require('openai');
const Anthropic = require('@anthropic-ai/sdk').default ?? require('@anthropic-ai/sdk');

const binary = process.env.MOESERVE_BINARY;
let server;
let openai;
let anthropic;

before(async () => {
  // -n caps every reply: the demo model is a code model that seldom ends a chat turn by itself.
  server = await startServer(binary, ['-np', '4', '-c', '8192', '-n', '24', '-t', '2', '--metrics', '--alias', 'demo']);
  openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: server.url, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  const code = await server.stop();
  assert.equal(code, 0, `server did not exit cleanly:\n${server.log()}`);
});

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

test('openai: models list names the served model', async () => {
  const models = await openai.models.list();
  assert.equal(models.data[0].id, 'demo');
});

test('openai: chat completion, whole and streamed, agree under greedy decoding', async () => {
  const messages = [{ role: 'user', content: 'def fibonacci(n):' }];
  const whole = await openai.chat.completions.create({ model: 'demo', messages, temperature: 0, max_tokens: 16 });
  const choice = whole.choices[0];
  assert.equal(choice.message.role, 'assistant');
  assert.equal(typeof choice.message.content, 'string');
  assert.ok(['stop', 'length'].includes(choice.finish_reason));
  assert.ok(whole.usage.prompt_tokens > 5);
  assert.ok(whole.usage.completion_tokens > 0 && whole.usage.completion_tokens <= 16);

  const stream = await openai.chat.completions.create({
    model: 'demo', messages, temperature: 0, max_tokens: 16, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, choice.message.content);
  assert.equal(finish, choice.finish_reason);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
  // The same prompt again comes from the prompt cache.
  assert.ok(usage.prompt_tokens_details.cached_tokens > 0, JSON.stringify(usage));
});

test('openai: tools and a tool-result turn are accepted', async () => {
  const r = await openai.chat.completions.create({
    model: 'demo',
    temperature: 0,
    tools: [weatherTool],
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '18 C, sunny' },
    ],
  });
  assert.ok(['stop', 'length', 'tool_calls'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 50);  // the tool definitions are in the prompt
});

test('openai: client errors are 4xx in OpenAI error shape and the server keeps serving', async () => {
  await assert.rejects(
    openai.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }),
    (e) => e.status === 400 && /temperature/.test(e.message));
  await assert.rejects(
    openai.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 404);
  const raw = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: '{"messages": [', headers: { 'content-type': 'application/json' } });
  assert.equal(raw.status, 400);
  assert.match((await raw.json()).error.message, /invalid JSON/);
  const ok = await openai.chat.completions.create({ model: 'demo', messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
  assert.equal(ok.object, 'chat.completion');
});

test('openai: raw completions', async () => {
  const r = await openai.completions.create({ model: 'demo', prompt: 'import os\n', max_tokens: 8, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
});

test('anthropic: message, whole and streamed, with the SDK accumulating the events', async () => {
  const params = { model: 'claude-sonnet-4-5', max_tokens: 16, temperature: 0, system: 'You write Python.', messages: [{ role: 'user', content: 'def fibonacci(n):' }] };
  const whole = await anthropic.messages.create(params);
  assert.equal(whole.type, 'message');
  assert.equal(whole.role, 'assistant');
  assert.equal(whole.content[0].type, 'text');
  assert.ok(['end_turn', 'max_tokens'].includes(whole.stop_reason));
  const events = [];
  const stream = anthropic.messages.stream(params);
  stream.on('streamEvent', (e) => events.push(e.type));
  const final = await stream.finalMessage();
  assert.equal(final.content[0].text, whole.content[0].text);
  assert.equal(final.stop_reason, whole.stop_reason);
  // The SDK consumes pings itself; the raw stream shows the whole sequence of the real API.
  assert.deepEqual(events.slice(0, 2), ['message_start', 'content_block_start']);
  assert.deepEqual(events.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
  const raw = await fetch(`${server.url}/v1/messages`, { method: 'POST', body: JSON.stringify({ ...params, stream: true }) });
  assert.equal(raw.headers.get('content-type'), 'text/event-stream');
  const names = (await raw.text()).split('\n').filter((l) => l.startsWith('event: ')).map((l) => l.slice(7));
  assert.deepEqual(names.slice(0, 3), ['message_start', 'content_block_start', 'ping']);
  assert.deepEqual(names.slice(-3), ['content_block_stop', 'message_delta', 'message_stop']);
  assert.ok(final.usage.cache_read_input_tokens > 0, JSON.stringify(final.usage));
});

test('anthropic: tools with a tool result, count_tokens, errors', async () => {
  const tools = [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }];
  const messages = [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: [{ type: 'text', text: 'Checking.' }, { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '18 C' }] },
  ];
  const r = await anthropic.messages.create({ model: 'claude-haiku-4-5', max_tokens: 8, tools, messages });
  assert.ok(['end_turn', 'max_tokens', 'tool_use'].includes(r.stop_reason));
  const count = await anthropic.messages.countTokens({ model: 'claude-haiku-4-5', tools, messages });
  assert.ok(count.input_tokens > 20);
  assert.equal(count.input_tokens, r.usage.input_tokens + r.usage.cache_read_input_tokens);
  await assert.rejects(anthropic.messages.create({ model: 'claude-x', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 400 && e.error?.error?.type === 'invalid_request_error');
});

test('eight concurrent streams all complete', async () => {
  const runs = Array.from({ length: 8 }, (_, i) => (async () => {
    const stream = await openai.chat.completions.create({
      model: 'demo', stream: true, max_tokens: 12, seed: i, messages: [{ role: 'user', content: `class Stack${i}:` }],
    });
    let finish = null;
    for await (const chunk of stream) for (const c of chunk.choices) finish = c.finish_reason ?? finish;
    return finish;
  })());
  const finishes = await Promise.all(runs);
  for (const f of finishes) assert.ok(['stop', 'length'].includes(f));
});

test('metrics count the work', async () => {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const value = (name) => Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))[1]);
  assert.ok(value('moeserve_tokens_predicted_total') > 0);
  assert.ok(value('moeserve_prompt_cache_reused_tokens_total') > 0);
  assert.equal(value('moeserve_slots_total'), 4);
});
