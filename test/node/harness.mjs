// Shared pieces of the Node `ws` peer tests: loading ws, starting a wsev server
// process, connecting, collecting messages with timeouts, and running cases.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export const STEP_MS = 10_000; // timeout of any single wait
export const CASE_MS = 90_000; // timeout of a whole case
export const QUIET_MS = 300; // how long to wait to be sure nothing more arrives

// ws is loaded dynamically so that a missing install fails with a clear message.
export async function loadWs() {
  try {
    const mod = await import('ws');
    return mod.WebSocket;
  } catch (err) {
    console.error(`FAIL: cannot load the npm package "ws" (${err.code || err.message}).`);
    console.error('Install the Node test dependencies with:  npm ci --prefix test/node');
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A server process. start() resolves once it printed its "listening on port N" line.
export class Server {
  static async start(exe, args) {
    const s = new Server();
    s.proc = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    s.stderr = '';
    s.proc.stderr.on('data', (d) => { s.stderr += d; });
    s.exit = new Promise((resolve) => {
      s.proc.on('exit', (code, signal) => {
        s.exited = { code, signal };
        resolve(s.exited);
      });
    });
    s.proc.on('error', (err) => { s.spawnError = err; });
    const lines = createInterface({ input: s.proc.stdout });
    s.port = await withTimeout(new Promise((resolve, reject) => {
      lines.on('line', (line) => {
        const m = /listening on port (\d+)/.exec(line);
        if (m && !s.port) resolve(Number(m[1]));
      });
      s.exit.then(({ code, signal }) => reject(new Error(
        `${exe} exited (code ${code}, signal ${signal}) before listening: ${s.stderr}`)));
      s.proc.on('error', reject);
    }), STEP_MS, `${exe} to print "listening on port N"`);
    return s;
  }

  alive() {
    return !this.exited && !this.spawnError;
  }

  // SIGTERM, then SIGKILL if it does not exit. Resolves to { code, signal }.
  async stop() {
    if (this.alive()) this.proc.kill('SIGTERM');
    try {
      return await withTimeout(this.exit, STEP_MS, 'server exit after SIGTERM');
    } catch (err) {
      this.proc.kill('SIGKILL');
      await this.exit;
      throw err;
    }
  }
}

// A connected client that queues what it receives.
export class Client {
  static async connect(WebSocket, port, options = {}) {
    const c = new Client();
    c.ws = new WebSocket(`ws://127.0.0.1:${port}/`, options);
    c.queue = [];
    c.waiters = [];
    c.pongs = [];
    c.ws.on('message', (data, isBinary) => c._push({ data, isBinary }));
    c.ws.on('pong', (data) => c.pongs.push(data));
    c.ws.on('error', (err) => { c.error = err; });
    c.closed = new Promise((resolve) => {
      c.ws.on('close', (code, reason) => {
        c.closeInfo = { code, reason: reason.toString() };
        for (const w of c.waiters.splice(0)) w.reject(new Error(`connection closed (${code})`));
        resolve(c.closeInfo);
      });
    });
    await withTimeout(new Promise((resolve, reject) => {
      c.ws.once('open', resolve);
      c.ws.once('error', reject);
    }), STEP_MS, 'WebSocket open');
    return c;
  }

  _push(msg) {
    const w = this.waiters.shift();
    if (w) w.resolve(msg);
    else this.queue.push(msg);
  }

  // The next message, { data: Buffer, isBinary }.
  next(ms = STEP_MS) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closeInfo) return Promise.reject(new Error('connection closed'));
    let waiter;
    const p = new Promise((resolve, reject) => {
      waiter = { resolve, reject };
      this.waiters.push(waiter);
    });
    return withTimeout(p, ms, 'next message').catch((err) => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
      throw err;
    });
  }

  // The next message, which must be text; returns it as a string.
  async nextText(ms = STEP_MS) {
    const m = await this.next(ms);
    if (m.isBinary) throw new Error(`expected text, got binary ${m.data.toString('hex', 0, 40)}`);
    return m.data.toString('utf8');
  }

  // Resolve if nothing arrives within ms; throw if something does.
  async expectNothing(ms = QUIET_MS) {
    await sleep(ms);
    if (this.queue.length) {
      const m = this.queue[0];
      throw new Error(`unexpected message ${JSON.stringify(m.data.toString('utf8', 0, 60))}`);
    }
  }

  send(data, options = {}) {
    return withTimeout(new Promise((resolve, reject) => {
      this.ws.send(data, options, (err) => (err ? reject(err) : resolve()));
    }), STEP_MS, 'send');
  }

  async close(code, reason) {
    if (this.closeInfo) return this.closeInfo;
    this.ws.close(code, reason);
    try {
      return await withTimeout(this.closed, STEP_MS, 'close handshake');
    } catch (err) {
      this.ws.terminate();
      throw err;
    }
  }
}

export async function closeAll(clients) {
  await Promise.allSettled(clients.filter(Boolean).map((c) => c.close()));
}

// Run the cases one after another against `server`. Prints PASS/FAIL per case and a
// final "N passed, N failed"; exits non-zero if anything failed, the server died, or
// (if expectCleanExit) the server did not exit with code 0 on SIGTERM.
export async function runCases(server, cases, { expectCleanExit = false } = {}) {
  let passed = 0;
  let failed = 0;
  for (const [name, fn] of cases) {
    const t0 = Date.now();
    try {
      await withTimeout(fn(), CASE_MS, `case ${name}`);
      passed++;
      console.log(`PASS ${name} (${((Date.now() - t0) / 1000).toFixed(2)}s)`);
    } catch (err) {
      failed++;
      console.log(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
    }
    if (!server.alive()) {
      failed++;
      console.log(`FAIL server died during ${name}: ${JSON.stringify(server.exited)}`);
      break;
    }
  }
  try {
    const { code, signal } = await server.stop();
    if (expectCleanExit && code !== 0) {
      failed++;
      console.log(`FAIL server exit after SIGTERM: code ${code}, signal ${signal} (expected 0)`);
    }
  } catch (err) {
    failed++;
    console.log(`FAIL ${err.message}`);
  }
  if (server.stderr) console.log(`server stderr:\n${server.stderr}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
