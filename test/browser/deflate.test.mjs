// permessage-deflate between headless Chromium and wsev-echo / wsev-pubsub.
// usage: node test/browser/deflate.test.mjs /path/to/wsev-echo /path/to/wsev-pubsub
//
// Chromium (/usr/bin/chromium, driven through playwright-core: chromium.mjs)
// loads an empty page from a node http server on 127.0.0.1 (from about:blank or a data:
// URL it would block connections to 127.0.0.1: local network access checks) and
// offers "permessage-deflate; client_max_window_bits". Each server sits behind a small
// TCP relay in this process that parses the frame headers both ways, so besides the
// page's own checks (ws.extensions, byte-exact round trips compared in the page) the
// test sees which messages went compressed (RSV1) and how many bytes they took, and
// with that the context and window each side really uses.
// Prints PASS/FAIL per case and a final "N passed, N failed".
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { checkRepeat, FrameTap } from '../common/frame-tap.mjs';
import { launchChromium, loadChromium } from './chromium.mjs';

const STEP_MS = 10_000; // any single wait
const CASE_MS = 40_000; // a whole case
const RUN_MS = 100_000; // the whole run (meson's timeout is 120 s)
const MiB = 1024 * 1024;

const [echoExe, pubsubExe] = process.argv.slice(2);
if (!echoExe || !pubsubExe) {
  console.error('usage: node deflate.test.mjs /path/to/wsev-echo /path/to/wsev-pubsub');
  process.exit(2);
}
await loadChromium();

const t0 = Date.now();
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
function check(ok, msg) {
  if (!ok) throw new Error(msg);
}

// A wsev server process; start() resolves once it printed "listening on port N".
async function startServer(name, exe, args) {
  const s = { name, stderr: '' };
  s.proc = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  s.proc.stderr.on('data', (d) => { s.stderr += d; });
  s.exit = new Promise((resolve) => {
    s.proc.on('exit', (code, signal) => { s.exited = { code, signal }; resolve(s.exited); });
    s.proc.on('error', (err) => { s.exited = { error: String(err) }; resolve(s.exited); });
  });
  const lines = createInterface({ input: s.proc.stdout });
  s.port = await withTimeout(new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      const m = /listening on port (\d+)/.exec(line);
      if (m) resolve(Number(m[1]));
    });
    s.exit.then((e) => reject(new Error(`${name} exited ${JSON.stringify(e)} before listening: ${s.stderr}`)));
  }), STEP_MS, `${name} to print "listening on port N"`);
  return s;
}

async function stopServer(s) {
  if (!s.exited) s.proc.kill('SIGTERM');
  try {
    return await withTimeout(s.exit, STEP_MS, `${s.name} exit after SIGTERM`);
  } catch (err) {
    s.proc.kill('SIGKILL');
    await s.exit;
    throw err;
  }
}

// ---------------------------------------------------------------------------------
// A TCP relay in front of a server: every connection's two directions are tapped
// (after the HTTP handshake, which ends at the first CRLFCRLF each way) by a FrameTap.
async function startRelay(target) {
  const r = { conns: [] };
  r.server = net.createServer((down) => {
    const up = net.connect(target, '127.0.0.1');
    const conn = { toClient: new FrameTap(), toServer: new FrameTap() };
    r.conns.push(conn);
    const pipe = (from, to, tap) => {
      let head = Buffer.alloc(0);
      let inHttp = true;
      from.on('data', (d) => {
        to.write(d);
        if (inHttp) {
          head = Buffer.concat([head, d]);
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          inHttp = false;
          d = head.subarray(end + 4);
        }
        tap.feed(d);
      });
      from.on('end', () => to.end());
      from.on('error', () => to.destroy());
      from.on('close', () => to.destroy());
    };
    pipe(down, up, conn.toServer);
    pipe(up, down, conn.toClient);
  });
  await new Promise((resolve) => r.server.listen(0, '127.0.0.1', resolve));
  r.port = r.server.address().port;
  r.url = `ws://127.0.0.1:${r.port}/`;
  return r;
}

// ---------------------------------------------------------------------------------
// Runs inside the page (through page.evaluate of its source): window.D.
function pageHelpers() {
  const STEP = 10000;
  function open(url) {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const s = { ws, queue: [], waiters: [], closed: null };
    ws.onmessage = (ev) => {
      const w = s.waiters.shift();
      if (w) w.resolve(ev.data);
      else s.queue.push(ev.data);
    };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`open ${url}: timed out`)), STEP);
      ws.onopen = () => { clearTimeout(timer); resolve(s); };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        s.closed = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
        for (const w of s.waiters.splice(0)) w.reject(new Error(`closed (${ev.code}) while waiting`));
        reject(new Error(`open ${url}: closed (${ev.code})`));
      };
    });
  }
  function next(s, ms = STEP) {
    if (s.queue.length) return Promise.resolve(s.queue.shift());
    if (s.closed) return Promise.reject(new Error(`closed (${s.closed.code})`));
    return new Promise((resolve, reject) => {
      const w = {};
      const timer = setTimeout(() => {
        s.waiters.splice(s.waiters.indexOf(w), 1);
        reject(new Error(`no message within ${ms} ms`));
      }, ms);
      w.resolve = (d) => { clearTimeout(timer); resolve(d); };
      w.reject = (e) => { clearTimeout(timer); reject(e); };
      s.waiters.push(w);
    });
  }
  function close(s) {
    if (s.closed) return Promise.resolve(s.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no close event')), STEP);
      s.ws.onclose = (ev) => { clearTimeout(timer); resolve({ code: ev.code, wasClean: ev.wasClean }); };
      s.ws.close(1000);
    });
  }
  function randomBytes(n) {
    const a = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(a.subarray(i, Math.min(n, i + 65536)));
    return a;
  }
  // Random text: printable ASCII with some 2/3/4-byte characters (UTF-16 length n).
  function randomText(n) {
    const r = randomBytes(n);
    const multi = ['\u00e9', '\u20ac', '\u{1F600}'];
    const parts = [];
    for (let i = 0; i < n;) {
      const chunk = [];
      for (const end = Math.min(n, i + 8192); i < end; i++) {
        const x = r[i];
        if (x >= 244 && i + 2 <= n) {
          const m = multi[x % 3];
          chunk.push(m);
          i += m.length - 1;
        } else {
          chunk.push(String.fromCharCode(0x20 + (x % 95)));
        }
      }
      parts.push(chunk.join(''));
    }
    return parts.join('').slice(0, n);
  }
  function repeatBytes(n) {
    const unit = [0, 1, 2, 3, 0xfe, 0xff, 7, 42];
    const a = new Uint8Array(n);
    for (let i = 0; i < n; i++) a[i] = unit[i & 7];
    return a;
  }
  function repeatText(n) {
    const unit = '{"id":12345,"name":"caf\u00e9 \u2603","ok":true},';
    return unit.repeat(Math.ceil(n / unit.length)).slice(0, n);
  }
  function make(n, isBinary, kind) {
    if (isBinary) return kind === 'random' ? randomBytes(n) : repeatBytes(n);
    return kind === 'random' ? randomText(n) : repeatText(n);
  }
  const utf8 = (t) => new TextEncoder().encode(t).length;
  // Send data and expect it back identical; returns its size in bytes.
  async function echo(s, data, what, ms = STEP) {
    s.ws.send(data);
    const got = await next(s, ms);
    if (typeof data === 'string') {
      if (got !== data) {
        throw new Error(`${what}: text differs (${typeof got === 'string' ? got.length : got.byteLength} `
          + `vs ${data.length} units)`);
      }
      return utf8(data);
    }
    if (!(got instanceof ArrayBuffer) || got.byteLength !== data.length) {
      throw new Error(`${what}: expected ${data.length} bytes, got ${got && (got.byteLength ?? got.length)}`);
    }
    const g = new Uint8Array(got);
    for (let i = 0; i < data.length; i++) {
      if (g[i] !== data[i]) throw new Error(`${what}: first difference at byte ${i}`);
    }
    return data.length;
  }
  window.D = { open, next, close, make, echo, randomBytes, repeatText, utf8 };
}

// ---------------------------------------------------------------------------------
let browser;
let httpServer;
let base;
const servers = [];
const relays = [];

async function newPage(contextOptions = {}) {
  const ctx = await withTimeout(browser.newContext(contextOptions), STEP_MS, 'new browser context');
  const page = await withTimeout(ctx.newPage(), STEP_MS, 'new page');
  await withTimeout(page.goto(base), STEP_MS, `loading ${base}`);
  await page.evaluate(`(${pageHelpers.toString()})()`);
  return page;
}

async function onPage(fn, arg, ms = 35_000, contextOptions = {}) {
  const page = await newPage(contextOptions);
  try {
    return await withTimeout(page.evaluate(fn, arg), ms, 'page.evaluate');
  } finally {
    await withTimeout(page.context().close(), STEP_MS, 'closing a page').catch(() => {});
  }
}

function parseExtension(header) {
  const [name, ...rest] = header.split(';').map((s) => s.trim());
  const params = {};
  for (const p of rest) {
    const [k, v] = p.split('=').map((s) => s.trim());
    params[k] = v === undefined ? true : Number(v);
  }
  return { name, params };
}

function checkExtensions(got, want) {
  const e = parseExtension(got);
  check(e.name === 'permessage-deflate', `ws.extensions ${JSON.stringify(got)}`);
  const keys = new Set([...Object.keys(e.params), ...Object.keys(want)]);
  for (const k of keys) {
    check(e.params[k] === want[k], `ws.extensions ${JSON.stringify(got)}: ${k} should be ${want[k]}`);
  }
}

// The wsev-echo configurations and what each must answer to Chromium's offer
// ("permessage-deflate; client_max_window_bits").
const ECHOS = [
  { name: 'shared', args: ['--deflate=shared'], takeover: false, window: 15, big: true,
    answer: { server_no_context_takeover: true, client_no_context_takeover: true } },
  { name: 'dedicated', args: ['--deflate=dedicated'], takeover: true, window: 15, big: true,
    answer: {} },
  { name: 'dedicated window 10', args: ['--deflate=dedicated', '--deflate-window', '10'],
    takeover: true, window: 10, answer: { server_max_window_bits: 10, client_max_window_bits: 10 } },
];

// Round trips from the page; the relay's taps then say how each went on the wire.
async function echoCase(e, relay) {
  const sizes = [0, 1, 200, 16 * 1024, MiB];
  if (e.big) sizes.push(8 * MiB);
  const first = relay.conns.length;
  const res = await onPage(async ([url, sizesIn]) => {
    const D = window.D;
    const s = await D.open(url);
    const ran = [];
    for (const n of sizesIn) {
      for (const isBinary of [false, true]) {
        for (const kind of ['random', 'repeat']) {
          const bytes = await D.echo(s, D.make(n, isBinary, kind), `${kind} ${isBinary ? 'binary' : 'text'} ${n}`, 30000);
          ran.push({ n: bytes, isBinary, kind });
        }
      }
    }
    // context and window: the same 4 KiB of random bytes twice, each way
    const r = D.randomBytes(4096);
    await D.echo(s, r, 'random 4 KiB');
    await D.echo(s, r, 'random 4 KiB again');
    const extensions = s.ws.extensions;
    const closed = await D.close(s);
    return { ran, extensions, closed };
  }, [relay.url, sizes], 60_000);
  checkExtensions(res.extensions, e.answer);
  check(res.closed.wasClean, `close ${JSON.stringify(res.closed)}`);
  check(relay.conns.length === first + 1, `${relay.conns.length - first} connections through the relay`);
  const { toClient, toServer } = relay.conns[first];
  const n = res.ran.length;
  check(toClient.messages.length === n + 2 && toServer.messages.length === n + 2,
    `messages on the wire: ${toClient.messages.length} to the page, ${toServer.messages.length} `
    + `from it, ${n + 2} sent`);
  res.ran.forEach(({ n: len, isBinary, kind }, i) => {
    const what = `${kind} ${isBinary ? 'binary' : 'text'} ${len} B`;
    const out = toClient.messages[i];
    const inn = toServer.messages[i];
    for (const [f, masked] of [[out, false], [inn, true]]) {
      check(!f.contRsv1 && !f.rsv23 && f.masked === masked && f.opcode === (isBinary ? 2 : 1), `${what}: frame bits ${JSON.stringify(f)}`);
      if (!f.rsv1) check(f.wire === len, `${what}: uncompressed ${f.wire} B`);
    }
    // wsev (threshold 1): with context everything goes compressed; without, what pays
    let rsv1 = null;
    if (len === 0) rsv1 = false;
    else if (e.takeover) rsv1 = true;
    else if (kind === 'random' && isBinary) rsv1 = false;
    else if (kind === 'repeat' && len >= 200) rsv1 = true;
    if (rsv1 !== null) check(out.rsv1 === rsv1, `${what}: RSV1 ${out.rsv1} from wsev, expected ${rsv1}`);
    if (kind === 'repeat' && len >= 16384) {
      check(out.rsv1 && out.wire < len / 20, `${what}: ${out.wire} B from wsev`);
      check(inn.rsv1 && inn.wire < len / 20, `${what}: ${inn.wire} B from Chromium`);
    }
  });
  // The repeated 4 KiB: a back-reference only with context and a window over 4 KiB.
  for (const [dir, f] of [['wsev', toClient.messages[n + 1]], ['Chromium', toServer.messages[n + 1]]]) {
    checkRepeat(f, { takeover: e.takeover, bits: e.window, min: 4000, what: `repeat from ${dir}` });
  }
}

const cases = [];
for (const e of ECHOS) {
  cases.push([`echo ${e.name}: extensions, round trips 0 B..${e.big ? 8 : 1} MiB, RSV1 and window on the wire`,
    () => echoCase(e, e.relay)]);
}
cases.push(['echo shared, default threshold (128 B): under it as is, over it compressed', async () => {
  const relay = ECHOS.thresholdRelay;
  const first = relay.conns.length;
  const sizes = [1, 100, 127, 128, 129, 5000];
  const ext = await onPage(async ([url, sz]) => {
    const D = window.D;
    const s = await D.open(url);
    for (const n of sz) await D.echo(s, '{"k":"v"},'.repeat(n).slice(0, n), `${n} B`); // ASCII
    const x = s.ws.extensions;
    await D.close(s);
    return x;
  }, [relay.url, sizes]);
  checkExtensions(ext, ECHOS[0].answer);
  const { toClient } = relay.conns[first];
  sizes.forEach((n, i) => {
    const f = toClient.messages[i];
    check(f.rsv1 === (n >= 128), `${n} B: RSV1 ${f.rsv1} (wire ${f.wire})`);
  });
}]);
cases.push(['Safari 15.2 User-Agent is not given permessage-deflate; Safari 15.4 is', async () => {
  const ua = (v) => `Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 `
    + `(KHTML, like Gecko) Version/${v} Safari/605.1.15`;
  const probe = async (u) => {
    const s = await window.D.open(u);
    await window.D.echo(s, window.D.repeatText(1000), 'echo');
    const x = s.ws.extensions;
    await window.D.close(s);
    return x;
  };
  const url = ECHOS[0].relay.url;
  const old = await onPage(probe, url, undefined, { userAgent: ua('15.2') });
  check(old === '', `Safari 15.2: extensions ${JSON.stringify(old)}`);
  const newer = await onPage(probe, url, undefined, { userAgent: ua('15.4') });
  checkExtensions(newer, ECHOS[0].answer);
}]);
cases.push(['pubsub (compresses by default): 64 KiB published to two subscribers, compressed for both', async () => {
  const relay = relays.pubsub;
  const first = relay.conns.length;
  const res = await onPage(async (url) => {
    const D = window.D;
    const expectText = async (s, want, what) => {
      const got = await D.next(s);
      if (got !== want) throw new Error(`${what}: got ${typeof got === 'string' ? JSON.stringify(got.slice(0, 80)) : 'binary'}`);
    };
    const a = await D.open(url);
    const b = await D.open(url);
    for (const s of [a, b]) {
      s.ws.send('subscribe:dfl');
      await expectText(s, 'OK', 'subscribe');
    }
    const body = D.repeatText(64 * 1024);
    a.ws.send(`publish:dfl:${body}`);
    await expectText(a, 'OK', 'publish');
    await expectText(a, body, 'body at the publisher');
    await expectText(b, body, 'body at the other subscriber');
    // binary: a binary publish is forwarded as binary
    const bin = new Uint8Array(64 * 1024);
    bin.set(new TextEncoder().encode('publish:dfl:'));
    const rnd = D.randomBytes(1024);
    for (let i = 12; i < bin.length; i++) bin[i] = rnd[i % 1024];
    b.ws.send(bin);
    await expectText(b, 'OK', 'binary publish');
    for (const s of [a, b]) {
      const got = new Uint8Array(await D.next(s));
      if (got.length !== bin.length - 12 || got.some((x, i) => x !== bin[i + 12])) {
        throw new Error('binary body differs');
      }
    }
    const ext = [a.ws.extensions, b.ws.extensions];
    await D.close(a);
    await D.close(b);
    return ext;
  }, relay.url);
  for (const x of res) checkExtensions(x, ECHOS[0].answer);
  check(relay.conns.length === first + 2, 'two connections through the relay');
  for (const conn of relay.conns.slice(first)) {
    const big = conn.toClient.messages.filter((f) => f.wire > 1000 || f.rsv1);
    const bodies = conn.toClient.messages.filter((f) => f.rsv1 && f.wire < 64 * 1024 / 10);
    check(bodies.length >= 2, `compressed 64 KiB bodies: ${JSON.stringify(big)}`);
    check(conn.toServer.messages.some((f) => f.rsv1), 'Chromium compressed its publish');
  }
}]);

// ---------------------------------------------------------------------------------
let passed = 0;
let failed = 0;
const watchdog = setTimeout(() => {
  console.log(`FAIL the whole run took more than ${RUN_MS / 1000} s`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  for (const s of servers) if (!s.exited) s.proc.kill('SIGKILL');
  process.exit(1);
}, RUN_MS);
watchdog.unref();

try {
  const common = ['--deflate-threshold', '1', '--max-message-size', '16777216'];
  for (const e of ECHOS) {
    const s = await startServer(`wsev-echo ${e.name}`, echoExe, ['0', ...e.args, ...common]);
    servers.push(s);
    e.relay = await startRelay(s.port);
    relays.push(e.relay);
  }
  const th = await startServer('wsev-echo shared threshold 128', echoExe, ['0', '--deflate=shared']);
  servers.push(th);
  ECHOS.thresholdRelay = await startRelay(th.port);
  relays.push(ECHOS.thresholdRelay);
  const ps = await startServer('wsev-pubsub', pubsubExe, ['--port', '0', '--no-tls', '--quiet']);
  servers.push(ps);
  relays.pubsub = await startRelay(ps.port);
  relays.push(relays.pubsub);
  httpServer = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end('<!doctype html><html><head><meta charset="utf-8"><title>wsev deflate</title></head></html>');
  });
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${httpServer.address().port}/`;
  browser = await launchChromium(withTimeout);
  console.log(`# ${browser.version()}; ${servers.map((s) => `${s.name} on ${s.port}`).join(', ')}`);
} catch (err) {
  failed++;
  console.log(`FAIL setup: ${err && err.stack ? err.stack : err}`);
}

const only = process.env.BROWSER_TEST_ONLY;
for (const [name, fn] of failed ? [] : cases) {
  if (only && !name.includes(only)) continue;
  const c0 = Date.now();
  try {
    await withTimeout(fn(), CASE_MS + 30_000, `case ${name}`);
    passed++;
    console.log(`PASS ${name} (${((Date.now() - c0) / 1000).toFixed(2)}s)`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
  }
  const dead = servers.filter((s) => s.exited);
  if (dead.length) {
    for (const s of dead) console.log(`FAIL ${s.name} died: ${JSON.stringify(s.exited)}`);
    failed += dead.length;
    break;
  }
}

if (browser) await withTimeout(browser.close(), STEP_MS, 'closing Chromium').catch((err) => console.log(`# ${err.message}`));
if (httpServer) {
  httpServer.closeAllConnections();
  httpServer.close();
}
for (const r of relays) {
  for (const c of r.server.listeners('connection')) r.server.off('connection', c);
  r.server.close();
}
for (const s of servers) {
  try {
    const { code, signal } = await stopServer(s);
    if (code !== 0) {
      failed++;
      console.log(`FAIL ${s.name} after SIGTERM: code ${code}, signal ${signal} (expected 0)`);
    }
  } catch (err) {
    failed++;
    console.log(`FAIL ${err.message}`);
  }
  if (s.stderr) console.log(`# ${s.name} stderr:\n${s.stderr}`);
}
console.log(`# ${((Date.now() - t0) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
