// wsev-echo's wss:// listener against Node's ws client (ws 8.23.0 from
// test/node/node_modules: npm ci --prefix test/node).
// usage: node test/tls/tls.test.mjs /path/to/wsev-echo
// Makes its certificates with scripts/make-cert.sh in a temporary directory. With
// WSEV_SERVER_WRAP set (e.g. to a valgrind command) the server runs under it.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  loadWs, runCases, withTimeout, sleep, STEP_MS,
} from '../node/harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const exe = process.argv[2];
if (!exe) {
  console.error('usage: node tls.test.mjs /path/to/wsev-echo');
  process.exit(2);
}
const wrap = (process.env.WSEV_SERVER_WRAP || '').split(/\s+/).filter(Boolean);
const slow = wrap.length ? 6 : 1;
const WebSocket = await loadWs(); // resolves ws from test/node/node_modules

const dir = mkdtempSync(join(tmpdir(), 'wsev-tls-node-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const makeCert = join(here, '..', '..', 'scripts', 'make-cert.sh');
execFileSync(makeCert, [join(dir, 'ec')], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 60_000 });
execFileSync(makeCert, [join(dir, 'other')], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 60_000 });
const ca = readFileSync(join(dir, 'ec', 'ca.crt'));
const otherCa = readFileSync(join(dir, 'other', 'ca.crt'));

// wsev-echo with a TLS port; resolves once both "listening" lines are out.
class TlsServer {
  static async start() {
    const s = new TlsServer();
    const args = ['0', '--tls-port', '0', '--cert', join(dir, 'ec', 'localhost.crt'),
      '--key', join(dir, 'ec', 'localhost.key')];
    const cmd = [...wrap, exe, ...args];
    s.proc = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
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
    await withTimeout(new Promise((resolve, reject) => {
      lines.on('line', (line) => {
        let m = /listening on port (\d+)/.exec(line);
        if (m && !s.port) s.port = Number(m[1]);
        m = /listening for TLS on port (\d+)/.exec(line);
        if (m && !s.tlsPort) s.tlsPort = Number(m[1]);
        if (s.port && s.tlsPort) resolve();
      });
      s.exit.then(({ code, signal }) => reject(new Error(
        `${exe} exited (code ${code}, signal ${signal}) before listening: ${s.stderr}`)));
      s.proc.on('error', reject);
    }), STEP_MS * slow, `${exe} to print both "listening" lines`);
    return s;
  }

  alive() {
    return !this.exited && !this.spawnError;
  }

  async stop() {
    if (this.alive()) this.proc.kill('SIGTERM');
    try {
      return await withTimeout(this.exit, STEP_MS * slow, 'server exit after SIGTERM');
    } catch (err) {
      this.proc.kill('SIGKILL');
      await this.exit;
      throw err;
    }
  }
}

// Open a wss:// connection; resolves to { ws, next() } or rejects with the error.
function connect(options) {
  const ws = new WebSocket(`wss://127.0.0.1:${server.tlsPort}/`, {
    servername: 'localhost', ALPNProtocols: ['http/1.1'], ...options,
  });
  const queue = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    const w = waiters.shift();
    if (w) w({ data, isBinary });
    else queue.push({ data, isBinary });
  });
  ws.on('error', () => {});
  const next = () => withTimeout(queue.length ? Promise.resolve(queue.shift())
    : new Promise((resolve) => waiters.push(resolve)), STEP_MS * slow, 'next message');
  return withTimeout(new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, next }));
    ws.once('error', reject);
  }), STEP_MS * slow, 'wss open');
}

async function roundTrip(c, data, isBinary) {
  await withTimeout(new Promise((resolve, reject) => {
    c.ws.send(data, { binary: isBinary }, (err) => (err ? reject(err) : resolve()));
  }), STEP_MS * slow, 'send');
  const m = await c.next();
  assert.equal(m.isBinary, isBinary, `echo type: sent ${isBinary ? 'binary' : 'text'}`);
  const want = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
  assert.equal(m.data.length, want.length, 'echo length');
  assert.ok(m.data.equals(want), 'echo bytes differ');
}

async function close(c, code = 1000) {
  const closed = new Promise((resolve) => c.ws.once('close', (c2) => resolve(c2)));
  c.ws.close(code);
  return withTimeout(closed, STEP_MS * slow, 'close handshake');
}

const server = await TlsServer.start();

const cases = [
  ['wss echo text, binary, 1 MiB with the test CA', async () => {
    const c = await connect({ ca });
    try {
      const sock = c.ws._socket;
      // mbedTLS 2.28 speaks TLS 1.2 at most; OpenSSL TLS 1.3 with a peer that has it.
      if (process.env.WSEV_TLS_BACKEND === 'openssl') {
        assert.equal(sock.getProtocol(), 'TLSv1.3');
        assert.match(sock.getCipher().standardName,
          /^TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256)$/);
      } else {
        assert.equal(sock.getProtocol(), 'TLSv1.2');
        assert.match(sock.getCipher().standardName,
          /^TLS_ECDHE_ECDSA_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$/);
      }
      assert.equal(sock.alpnProtocol, 'http/1.1');
      await roundTrip(c, 'hello over wss', false);
      await roundTrip(c, 'h\u00e9llo w\u00f6rld \u2603 \u{1F600}', false);
      await roundTrip(c, Buffer.from([0, 1, 2, 0xfe, 0xff]), true);
      await roundTrip(c, '', false);
      await roundTrip(c, randomBytes(1 << 20), true);
      await roundTrip(c, 'x'.repeat(1 << 20), false);
      assert.equal(await close(c, 4001), 4001);
    } finally {
      c.ws.terminate();
    }
  }],

  ['wss over TLS 1.2 (a client that has no TLS 1.3): ECDHE with an AEAD suite', async () => {
    const c = await connect({ ca, maxVersion: 'TLSv1.2' });
    try {
      const sock = c.ws._socket;
      assert.equal(sock.getProtocol(), 'TLSv1.2');
      assert.match(sock.getCipher().standardName,
        /^TLS_ECDHE_ECDSA_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$/);
      await roundTrip(c, 'hello over TLS 1.2', false);
      await roundTrip(c, randomBytes(100000), true);
      assert.equal(await close(c, 4001), 4001);
    } finally {
      c.ws.terminate();
    }
  }],
  ['wss with a wrong CA is rejected', async () => {
    let err;
    try {
      const c = await connect({ ca: otherCa });
      c.ws.terminate();
    } catch (e) {
      err = e;
    }
    assert.ok(err, 'a client trusting another CA connected');
    assert.match(String(err.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED|CERT_/,
      `unexpected error ${err.code}: ${err.message}`);
  }],

  ['wss without any CA (system roots) is rejected', async () => {
    await assert.rejects(connect({}), (e) => /CERT|SIGNATURE|ISSUER/.test(String(e.code)));
  }],

  ['10 concurrent wss clients after the rejections', async () => {
    const clients = await Promise.all(Array.from({ length: 10 }, () => connect({ ca })));
    try {
      await Promise.all(clients.map(async (c, i) => {
        for (let k = 0; k < 10; k++) await roundTrip(c, `c${i} m${k}`, false);
        await roundTrip(c, randomBytes(100000), true);
      }));
      await Promise.all(clients.map((c) => close(c)));
    } finally {
      for (const c of clients) c.ws.terminate();
    }
    await sleep(10);
  }],
];

await runCases(server, cases, { expectCleanExit: true });
