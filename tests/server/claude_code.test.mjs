// Claude Code itself, headless (`claude -p`), pointed at moeserve with ANTHROPIC_BASE_URL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startServer } from './server_harness.mjs';

const require = createRequire(path.join(process.env.MOESERVE_CLIENTS_DIR, 'package.json'));
const claude = path.join(path.dirname(require.resolve('@anthropic-ai/claude-code-linux-x64/package.json')), 'claude');
let server;

before(async () => {
  // Claude Code sends a ~20K-token system prompt with its tools: a context that holds it. The demo
  // model ends its chat turns by itself (it was tuned on ChatML turns, tools/demo_model); -n is
  // a backstop so a runaway reply cannot hold the test for long.
  server = await startServer(process.env.MOESERVE_BINARY, ['-c', '32768', '-n', '400', '-t', '2', '-ub', '512',
    '--temp', '0']);
});

after(async () => { await server.stop(); });

test('claude -p completes against moeserve', { timeout: 900000 }, async () => {
  const home = mkdtempSync(path.join(tmpdir(), 'moeserve-claude-'));
  const env = {
    PATH: process.env.PATH,
    HOME: home,
    ANTHROPIC_BASE_URL: server.url,
    ANTHROPIC_API_KEY: 'sk-local-test',
    DISABLE_TELEMETRY: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
  };
  const child = spawn(claude, ['-p', 'Write a Python function that adds two numbers.'], { env, cwd: home, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, `claude exited with ${code}:\n${out}\n--- server log ---\n${server.log()}`);
  assert.match(server.log(), /POST \/v1\/messages 200/);
});
