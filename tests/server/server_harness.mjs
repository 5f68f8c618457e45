// Starts `moeserve serve` on a free loopback port for a test file and stops it afterwards.
import { spawn } from 'node:child_process';
import net from 'node:net';

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// Returns { url, port, stop(), log() }. Waits (bounded) until /health answers 200.
export async function startServer(binary, args, { timeoutMs = 120000 } = {}) {
  const port = await freePort();
  const proc = spawn(binary, ['serve', '--port', String(port), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  let exited = null;
  proc.on('exit', (code) => { exited = code; });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited !== null) throw new Error(`server exited with ${exited}:\n${log}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`server not healthy after ${timeoutMs} ms:\n${log}`);
    }
    try {
      const r = await fetch(`${url}/health`);
      if (r.status === 200) break;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    log: () => log,
    async stop() {
      if (exited !== null) return exited;
      proc.kill('SIGTERM');
      const code = await new Promise((resolve) => {
        const t = setTimeout(() => { proc.kill('SIGKILL'); resolve('killed'); }, 10000);
        proc.on('exit', (c) => { clearTimeout(t); resolve(c); });
      });
      return code;
    },
  };
}
