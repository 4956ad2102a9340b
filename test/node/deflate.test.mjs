// permessage-deflate (RFC 7692) between wsev and Node's ws, in both roles.
// usage: node test/node/deflate.test.mjs /path/to/wsev-echo /path/to/wsev-client
//
// Server role: ws clients with perMessageDeflate variants against wsev-echo in shared,
// dedicated and dedicated --deflate-window 10 modes. Each checks the parameters wsev
// answered (the raw response header and what ws made of it), byte-exact round trips,
// and, by parsing the frames wsev sends (a tap on the client socket), that they carry
// RSV1 exactly when they should and that context takeover and the window size agreed
// are the ones wsev's compressor really uses.
// Client role: wsev-client (stdin lines -> messages -> stdout lines) against a ws
// WebSocketServer with perMessageDeflate variants; its stderr "deflate ..." line must
// match what ws agreed, and the frames it sends are parsed the same way.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { checkRepeat, FrameTap } from '../common/frame-tap.mjs';
import {
  loadWs, Server, Client, withTimeout, STEP_MS, CASE_MS,
} from './harness.mjs';

const [echoExe, clientExe] = process.argv.slice(2);
if (!echoExe || !clientExe) {
  console.error('usage: node deflate.test.mjs /path/to/wsev-echo /path/to/wsev-client');
  process.exit(2);
}
const WebSocket = await loadWs();
const { WebSocketServer } = await import('ws');

const KiB = 1024;
const MiB = 1024 * 1024;
const BIG_MS = 60_000; // wait for an 8 MiB echo

// ---------------------------------------------------------------------------------
// Data. kind: 'random' (binary: incompressible; text: random printable UTF-8, somewhat
// compressible) or 'repeat' (a short pattern over and over: very compressible).

// Random UTF-8 text of exactly n bytes: mostly printable ASCII, some 2/3/4-byte characters.
function randomText(n) {
  const r = randomBytes(n);
  const out = Buffer.allocUnsafe(n);
  const multi = [Buffer.from('\u00e9'), Buffer.from('\u20ac'), Buffer.from('\u{1F600}')];
  let i = 0;
  while (i < n) {
    const x = r[i];
    const m = x >= 244 ? multi[x % 3] : null;
    if (m && i + m.length <= n) {
      m.copy(out, i);
      i += m.length;
    } else {
      out[i] = 0x20 + (x % 95);
      i++;
    }
  }
  return out;
}

function repeatData(n, isBinary) {
  const unit = isBinary ? Buffer.from([0, 1, 2, 3, 0xfe, 0xff, 7, 42])
    : Buffer.from('{"id":12345,"name":"caf\u00e9 \u2603","ok":true},'); // 44 bytes
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += unit.length) unit.copy(out, i, 0, Math.min(unit.length, n - i));
  if (!isBinary) {
    // a cut through a multibyte character would not be UTF-8: end on ASCII instead
    let k = n;
    while (k > 0 && (out[k - 1] & 0x80)) out[--k] = 0x2e;
  }
  return out;
}

function makeData(n, isBinary, kind) {
  if (kind === 'repeat') return repeatData(n, isBinary);
  return isBinary ? randomBytes(n) : randomText(n);
}

// ---------------------------------------------------------------------------------
// ws's WebSocket, keeping the 101's headers and tapping the socket from the start.
class TapWebSocket extends WebSocket {
  constructor(url, options) {
    super(url, options);
    this.on('upgrade', (res) => { this.upgradeHeaders = res.headers; });
    this.once('open', () => { this.tap = new FrameTap(this._socket); });
  }
}

// "permessage-deflate; a; b=9" -> { name, params: { a: true, b: 9 } } (one element).
function parseExtension(header) {
  if (header === undefined) return null;
  const elements = header.split(',').map((s) => s.trim()).filter(Boolean);
  assert.equal(elements.length, 1, `one extension expected in ${JSON.stringify(header)}`);
  const [name, ...rest] = elements[0].split(';').map((s) => s.trim());
  const params = {};
  for (const p of rest) {
    const [k, v] = p.split('=').map((s) => s.trim());
    assert.ok(!(k in params), `repeated ${k} in ${JSON.stringify(header)}`);
    params[k] = v === undefined ? true : Number(v.replace(/"/g, ''));
  }
  return { name, params };
}

// ---------------------------------------------------------------------------------
// Server role: what wsev-echo must answer to the offer ws makes from `opts`
// (RFC 7692 section 7 and wsev's negotiation rules in include/wsev.h).
// Returns null (offer declined) or { header params, out/in takeover and bits }.
function expectedAnswer(cfg, opts) {
  const o = typeof opts === 'object' ? opts : {};
  const snct = !!o.serverNoContextTakeover;
  const cnct = !!o.clientNoContextTakeover;
  const sb = typeof o.serverMaxWindowBits === 'number' ? o.serverMaxWindowBits : 0;
  const cb = typeof o.clientMaxWindowBits === 'number' ? o.clientMaxWindowBits
    : o.clientMaxWindowBits == null ? 16 : 0; // 16: offered without a value
  if (sb === 8) return null; // zlib cannot compress with a 256-byte window
  const w = cfg.window;
  const shared = cfg.mode === 'shared';
  const a = {
    outTake: !(snct || shared),
    inTake: !(cnct || shared),
    outBits: sb ? Math.min(sb, w) : w,
  };
  const askClient = !shared && cb && w < 15;
  const params = {};
  if (!a.outTake) params.server_no_context_takeover = true;
  if (!a.inTake) params.client_no_context_takeover = true;
  if (sb || a.outBits < 15) params.server_max_window_bits = a.outBits;
  if (askClient) params.client_max_window_bits = Math.min(w, cb);
  a.params = params;
  return a;
}

// Must wsev's echo of an n-byte message go out compressed? true, false, or null
// (either: whether compressing pays is up to zlib).
function expectRsv1(a, cfg, n, isBinary, kind) {
  if (!a || n < cfg.threshold) return false;
  if (a.outTake) return true; // with context every message must go compressed
  if (kind === 'random' && isBinary) return false; // does not pay: sent as it is
  if (kind === 'repeat' && n >= 200) return true;
  return null;
}

const SERVER_CONFIGS = [
  { name: 'shared', mode: 'shared', window: 15, threshold: 1, heavy: true,
    args: ['--deflate=shared', '--deflate-threshold', '1', '--max-message-size', '16777216'] },
  { name: 'dedicated', mode: 'dedicated', window: 15, threshold: 1, heavy: true,
    args: ['--deflate=dedicated', '--deflate-threshold', '1', '--max-message-size', '16777216'] },
  { name: 'dedicated window 10', mode: 'dedicated', window: 10, threshold: 1,
    args: ['--deflate=dedicated', '--deflate-window', '10', '--deflate-threshold', '1'] },
  // the default threshold (128 bytes): shorter messages go uncompressed
  { name: 'shared threshold 128', mode: 'shared', window: 15, threshold: 128, light: true,
    args: ['--deflate=shared'] },
  { name: 'dedicated threshold 128', mode: 'dedicated', window: 15, threshold: 128, light: true,
    args: ['--deflate=dedicated'] },
];

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const SERVER_VARIANTS = [
  ['default (true)', true, { heavy: true }],
  ['threshold 0', { threshold: 0 }, { heavy: true }],
  ['serverNoContextTakeover', { serverNoContextTakeover: true, threshold: 0 }],
  ['serverNoContextTakeover false', { serverNoContextTakeover: false, threshold: 0 }],
  ['clientNoContextTakeover', { clientNoContextTakeover: true, threshold: 0 }],
  // ws then refuses any client_no_context_takeover in the answer (shared mode sends one)
  ['clientNoContextTakeover false', { clientNoContextTakeover: false, threshold: 0 }],
  ['both no context takeover', { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0 }],
  ['client_max_window_bits not offered', { clientMaxWindowBits: false, threshold: 0 }],
  ...range(8, 15).map((n) => [`serverMaxWindowBits ${n}`, { serverMaxWindowBits: n, threshold: 0 }]),
  ...range(8, 15).map((n) => [`clientMaxWindowBits ${n}`, { clientMaxWindowBits: n, threshold: 0 }]),
  ['all four parameters', { serverNoContextTakeover: true, clientNoContextTakeover: true,
    serverMaxWindowBits: 11, clientMaxWindowBits: 12, threshold: 0 }],
];

// Send, expect the echo byte-exact, then check how wsev framed it.
async function echoCheck(c, st, data, isBinary, kind, ms = STEP_MS) {
  await c.send(data, { binary: isBinary });
  const m = await c.next(ms);
  const what = `${isBinary ? 'binary' : 'text'} ${kind} ${data.length} B`;
  assert.equal(m.isBinary, isBinary, `${what}: echo type`);
  assert.equal(m.data.length, data.length, `${what}: echo length`);
  assert.ok(m.data.equals(data), `${what}: echo bytes differ`);
  const f = await c.ws.tap.message(st.count++, STEP_MS);
  assert.equal(f.opcode, isBinary ? 2 : 1, `${what}: opcode on the wire`);
  assert.ok(!f.contRsv1 && !f.rsv23 && !f.masked, `${what}: RSV1 on a continuation, RSV2/3 or mask`);
  const want = expectRsv1(st.agreed, st.cfg, data.length, isBinary, kind);
  if (want !== null) assert.equal(f.rsv1, want, `${what}: RSV1 (compressed) on the echo`);
  if (!f.rsv1) assert.equal(f.wire, data.length, `${what}: uncompressed payload length`);
  if (f.rsv1 && kind === 'repeat' && data.length >= 16 * KiB) {
    assert.ok(f.wire < data.length / 20, `${what}: compressed to ${f.wire} B only`);
  }
  return f;
}

async function serverVariant(server, cfg, opts, flags) {
  const expect = expectedAnswer(cfg, opts);
  const refuse = cfg.mode === 'shared' && typeof opts === 'object'
    && opts.clientNoContextTakeover === false;
  if (refuse) {
    // ws fails the handshake itself, on wsev's (legal) answer; wsev-echo must not mind
    const ws = new TapWebSocket(`ws://127.0.0.1:${server.port}/`, { perMessageDeflate: opts });
    const closed = new Promise((resolve) => ws.once('close', resolve));
    const err = await withTimeout(new Promise((resolve) => ws.once('error', resolve)),
      STEP_MS, 'ws error');
    assert.match(err.message, /Invalid Sec-WebSocket-Extensions/);
    const got = parseExtension(ws.upgradeHeaders['sec-websocket-extensions']);
    assert.deepEqual(got.params, expect.params);
    await withTimeout(closed, STEP_MS, 'ws close');
    return;
  }
  const c = await Client.connect(TapWebSocket, server.port, { perMessageDeflate: opts });
  try {
    const header = c.ws.upgradeHeaders['sec-websocket-extensions'];
    const st = { cfg, agreed: expect, count: 0 };
    if (!expect) {
      assert.equal(header, undefined, 'the offer should have been declined');
      assert.equal(c.ws.extensions, '');
    } else {
      const got = parseExtension(header);
      assert.equal(got.name, 'permessage-deflate', `answer ${header}`);
      assert.deepEqual(got.params, expect.params, `answer ${header}`);
      assert.equal(c.ws.extensions, 'permessage-deflate');
      // ws's own reading of the answer (what its inflater and compressor use)
      const wp = c.ws._extensions['permessage-deflate'].params;
      for (const [k, v] of Object.entries(expect.params)) assert.equal(wp[k], v, `ws params ${k}`);
    }

    const sizes = [0, 1, 200, 16 * KiB, 256 * KiB];
    for (const n of sizes) {
      for (const isBinary of [false, true]) {
        for (const kind of ['random', 'repeat']) {
          await echoCheck(c, st, makeData(n, isBinary, kind), isBinary, kind);
        }
      }
    }

    // The window and context wsev's compressor uses: the same 4 KiB of random bytes
    // twice. With context and a window over 4 KiB (zlib reaches 2^bits - 262 back) the
    // second is a back-reference; otherwise it costs about 4 KiB again.
    const r = randomBytes(4 * KiB);
    const first = await echoCheck(c, st, r, true, 'random');
    const second = await echoCheck(c, st, r, true, 'random');
    checkRepeat(second, { takeover: !!(expect && expect.outTake), bits: expect && expect.outBits,
      min: 4000, what: `repeat (first ${first.wire} B)` });

    // 1 MiB repetitive: what the client socket read tells whether it came compressed.
    const before = c.ws._socket.bytesRead;
    await echoCheck(c, st, repeatData(MiB, true), true, 'repeat');
    const read = c.ws._socket.bytesRead - before;
    if (expect) assert.ok(read < 64 * KiB, `1 MiB repetitive echo took ${read} bytes on the wire`);
    else assert.ok(read > MiB, `1 MiB uncompressed echo took only ${read} bytes`);

    // A fragmented message (compressed as one by ws), a multibyte character split
    // across fragments and an empty fragment; then messages ws sends uncompressed
    // between compressed ones (the inflater's context must not see them).
    const pieces = [Buffer.from('{"frag":"\u00e9'), Buffer.from('\u{1F600}').subarray(0, 2),
      Buffer.from('\u{1F600}').subarray(2), Buffer.alloc(0), repeatData(100 * KiB, false),
      Buffer.from('"}')];
    for (let i = 0; i < pieces.length; i++) {
      c.ws.send(pieces[i], { binary: false, fin: i === pieces.length - 1, compress: i === 0 });
    }
    const whole = Buffer.concat(pieces);
    const fm = await c.next();
    assert.ok(!fm.isBinary && fm.data.equals(whole), 'fragmented message echo');
    st.count++;
    const msg = repeatData(3000, false);
    for (const compress of [false, true, false, true]) {
      await c.send(msg, { binary: false, compress });
      const e = await c.next();
      assert.ok(e.data.equals(msg), `echo of a message sent with compress ${compress}`);
      st.count++;
    }

    if (flags.heavy && cfg.heavy) {
      for (const n of [MiB, 8 * MiB]) {
        for (const isBinary of [false, true]) {
          for (const kind of ['random', 'repeat']) {
            await echoCheck(c, st, makeData(n, isBinary, kind), isBinary, kind, BIG_MS);
          }
        }
      }
    }
    await c.expectNothing(100);
    assert.equal(c.ws.tap.messages.length, st.count, 'messages on the wire');
    const info = await c.close(4000, 'done');
    assert.equal(info.code, 4000, `close ${JSON.stringify(info)}`);
  } finally {
    if (!c.closeInfo) c.ws.terminate();
  }
}

// The default threshold: under 128 bytes as is, from 128 compressed (if it pays).
async function thresholdCase(server, cfg) {
  const c = await Client.connect(TapWebSocket, server.port, { perMessageDeflate: { threshold: 0 } });
  try {
    const st = { cfg, agreed: expectedAnswer(cfg, { threshold: 0 }), count: 0 };
    for (const n of [1, 50, 127, 128, 129, 200, 5000]) {
      const f = await echoCheck(c, st, repeatData(n, false), false, 'repeat');
      if (n >= 128) assert.ok(f.rsv1, `${n} B at the 128 threshold should be compressed`);
    }
    await c.close();
  } finally {
    if (!c.closeInfo) c.ws.terminate();
  }
}

// ---------------------------------------------------------------------------------
// Client role: wsev-client against ws's WebSocketServer.

function spawnClient(url, args) {
  const p = { stdout: [], stdoutLen: 0, stderr: '' };
  p.proc = spawn(clientExe, [url, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  p.proc.stdout.on('data', (d) => {
    p.stdout.push(d);
    p.stdoutLen += d.length;
    if (p.onOut) p.onOut();
  });
  p.proc.stderr.on('data', (d) => { p.stderr += d; });
  p.proc.stdin.on('error', () => {}); // EPIPE if it died: reported by its exit status
  p.exit = new Promise((resolve) => {
    p.proc.on('exit', (code, signal) => { p.exited = { code, signal }; resolve(p.exited); });
    p.proc.on('error', (err) => { p.exited = { error: err }; resolve(p.exited); });
  });
  // Resolves once stdout holds n bytes (or rejects if the process exits first).
  p.waitOut = (n, ms) => withTimeout(new Promise((resolve, reject) => {
    p.onOut = () => { if (p.stdoutLen >= n) resolve(); };
    p.onOut();
    p.exit.then((e) => reject(new Error(`wsev-client exited ${JSON.stringify(e)} after `
      + `${p.stdoutLen} of ${n} bytes; stderr: ${p.stderr}`)));
  }), ms, `wsev-client stdout (${n} bytes)`);
  return p;
}

// A JSON-like line of exactly n bytes (no newline).
function jsonLine(n, seq) {
  let s = '';
  for (let i = 0; s.length < n + 64; i++) {
    s += `{"seq":${seq},"i":${i},"user":"u${(seq * 7919 + i) % 1000}","tags":["a","b"],`
      + `"text":"caf\u00e9 \u2603 hello","n":${(i * 31) % 97}},`;
  }
  const b = Buffer.from(s);
  let k = n;
  while (k > 0 && (b[k] & 0xc0) === 0x80) k--; // end on a character boundary
  const out = Buffer.alloc(n, 0x20);
  b.copy(out, 0, 0, k);
  return out;
}

const CLIENT_MODES = [
  { name: 'shared', mode: 'shared', window: 15, args: ['--deflate=shared'] },
  { name: 'dedicated', mode: 'dedicated', window: 15, args: ['--deflate=dedicated'] },
  { name: 'dedicated window 10', mode: 'dedicated', window: 10, windowOnly: true,
    args: ['--deflate=dedicated', '--deflate-window', '10'] },
];
const CLIENT_VARIANTS = [
  ['default (true)', true, { heavy: true }],
  ['threshold 0', { threshold: 0 }, { heavy: true }],
  ['serverNoContextTakeover', { serverNoContextTakeover: true, threshold: 0 }],
  ['clientNoContextTakeover', { clientNoContextTakeover: true, threshold: 0 }],
  // ws then refuses offers with server_no_context_takeover (400): shared mode fails
  ['serverNoContextTakeover false', { serverNoContextTakeover: false, threshold: 0 }],
  ...range(9, 15).map((n) => [`serverMaxWindowBits ${n}`, { serverMaxWindowBits: n, threshold: 0 }, { window: true }]),
  ...range(8, 15).map((n) => [`clientMaxWindowBits ${n}`, { clientMaxWindowBits: n, threshold: 0 }, { window: true }]),
];

// The offer wsev-client makes in this mode (RFC 7692 section 7).
function expectedOffer(mode) {
  if (mode.mode === 'shared') {
    return { client_no_context_takeover: true, server_no_context_takeover: true,
      client_max_window_bits: true };
  }
  const p = { client_max_window_bits: true };
  if (mode.window < 15) p.server_max_window_bits = mode.window;
  return p;
}

async function clientVariant(mode, opts, flags) {
  const offer = expectedOffer(mode);
  const o = typeof opts === 'object' ? opts : {};
  // ws's documented refusals: it will not drop its context, or not go below its window
  const refused = (o.serverNoContextTakeover === false && offer.server_no_context_takeover)
    || (typeof o.serverMaxWindowBits === 'number' && offer.server_max_window_bits
      && o.serverMaxWindowBits > offer.server_max_window_bits);

  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: opts });
  await withTimeout(new Promise((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  }), STEP_MS, 'ws server listening');
  const conns = [];
  let responseExt;
  let clientError;
  wss.on('headers', (headers) => {
    const line = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
    responseExt = line && line.slice(line.indexOf(':') + 1).trim();
  });
  wss.on('wsClientError', (err, socket) => { clientError = err; socket.destroy(); });
  wss.on('connection', (ws, req) => {
    const conn = { ws, req, received: [], tap: new FrameTap(ws._socket) };
    conns.push(conn);
    ws.on('message', (data, isBinary) => {
      conn.received.push(data);
      ws.send(data, { binary: isBinary });
    });
    ws.on('error', (err) => { conn.error = err; });
  });

  const url = `ws://127.0.0.1:${wss.address().port}/`;
  const p = spawnClient(url, [...mode.args, '--deflate-threshold', '1']);
  try {
    if (refused) {
      p.proc.stdin.end('never sent\n');
      const e = await withTimeout(p.exit, STEP_MS, 'wsev-client exit');
      assert.equal(e.code, 1, `exit ${JSON.stringify(e)}; stderr ${p.stderr}`);
      assert.match(p.stderr, /wsev-client: failed: WSEV_EHANDSHAKE/);
      assert.ok(clientError, 'ws should have refused the offer');
      assert.equal(conns.length, 0);
      return;
    }
    // A first line, to learn what was agreed before checking the rest.
    const lines = [jsonLine(1, 0)];
    p.proc.stdin.write(Buffer.concat([lines[0], Buffer.from('\n')]));
    await p.waitOut(2, STEP_MS);
    assert.equal(conns.length, 1);
    const conn = conns[0];
    const offered = parseExtension(conn.req.headers['sec-websocket-extensions']);
    assert.equal(offered.name, 'permessage-deflate');
    assert.deepEqual(offered.params, offer, 'wsev-client offer');
    const answer = parseExtension(responseExt);
    assert.ok(answer, 'ws should have accepted permessage-deflate');
    assert.equal(conn.ws.extensions, 'permessage-deflate');
    // ws's answer -> what wsev-client must have agreed (RFC 7692 section 7.1)
    const R = answer.params;
    const shared = mode.mode === 'shared';
    if (shared) assert.ok(R.server_no_context_takeover, `shared mode needs server_no_context_takeover: ${responseExt}`);
    const ag = {
      our_window: R.client_max_window_bits ? Math.min(R.client_max_window_bits, mode.window) : mode.window,
      peer_window: R.server_max_window_bits || 15,
      our_takeover: shared || R.client_no_context_takeover ? 0 : 1,
      peer_takeover: R.server_no_context_takeover ? 0 : 1,
    };
    const want = `wsev-client: deflate our_window=${ag.our_window} peer_window=${ag.peer_window} `
      + `our_takeover=${ag.our_takeover} peer_takeover=${ag.peer_takeover}`;
    const stderrLines = p.stderr.split('\n');
    assert.equal(stderrLines[0], 'wsev-client: connected', p.stderr);
    assert.equal(stderrLines[1], want, `ws answered ${JSON.stringify(responseExt)}`);

    // The rest: JSON-like lines, then the same 4 KiB random line twice (the window
    // and context of wsev-client's compressor, as in the server role).
    const sizes = [2, 64, 127, 128, 200, 3000, 20000, 100000];
    if (flags.heavy) sizes.push(MiB, MiB);
    sizes.forEach((n, i) => lines.push(jsonLine(n, i + 1)));
    const rnd = Buffer.from(randomBytes(3 * KiB).toString('base64')); // 4 KiB
    lines.push(rnd, rnd);
    const input = Buffer.concat(lines.slice(1).flatMap((l) => [l, Buffer.from('\n')]));
    p.proc.stdin.write(input);
    const total = lines.reduce((a, l) => a + l.length + 1, 0);
    await p.waitOut(total, 30_000);
    // keep stdin open until every echo is back: wsev-client drops what comes after its close
    p.proc.stdin.end();
    const e = await withTimeout(p.exit, STEP_MS, 'wsev-client exit');
    assert.deepEqual(e, { code: 0, signal: null }, `exit; stderr ${p.stderr}`);
    const out = Buffer.concat(p.stdout);
    const expected = Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')]));
    assert.equal(out.length, expected.length, 'stdout length');
    assert.ok(out.equals(expected), 'stdout differs from the lines sent');
    assert.equal(conn.received.length, lines.length, 'messages the ws server got');
    conn.received.forEach((d, i) => assert.ok(d.equals(lines[i]), `message ${i} at the ws server`));
    assert.match(p.stderr, /wsev-client: closed 1000/);

    // How wsev-client framed them (client frames are masked).
    assert.equal(conn.tap.messages.length, lines.length);
    conn.tap.messages.forEach((f, i) => {
      const n = lines[i].length;
      const what = `line ${i} (${n} B)`;
      assert.ok(f.masked && !f.contRsv1 && !f.rsv23 && f.opcode === 1, `${what}: frame bits`);
      const json = i < lines.length - 2;
      let rsv1 = null; // line 0 may go before the 101 (then uncompressed): either
      if (ag.our_window < 9) rsv1 = false; // zlib cannot keep to 256 bytes: sent as is
      else if (i === 0) rsv1 = null;
      else if (ag.our_takeover) rsv1 = true;
      else if (json && n >= 200) rsv1 = true;
      if (rsv1 !== null) assert.equal(f.rsv1, rsv1, `${what}: RSV1`);
      if (!f.rsv1) assert.equal(f.wire, n, `${what}: uncompressed length`);
      if (f.rsv1 && json && n >= 20000) assert.ok(f.wire < n / 10, `${what}: ${f.wire} B on the wire`);
    });
    checkRepeat(conn.tap.messages[lines.length - 1], { takeover: !!ag.our_takeover,
      bits: ag.our_window, min: 2000, what: 'repeated line' });
    assert.equal(conn.error, undefined);
  } finally {
    if (!p.exited) {
      p.proc.kill('SIGKILL');
      await p.exit;
    }
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
}

// ---------------------------------------------------------------------------------
const servers = [];
const cases = [];
for (const cfg of SERVER_CONFIGS) {
  const get = () => servers.find((s) => s.cfg === cfg);
  if (cfg.light) {
    cases.push([`server ${cfg.name}: threshold`, () => thresholdCase(get(), cfg)]);
    continue;
  }
  for (const [name, opts, flags = {}] of SERVER_VARIANTS) {
    cases.push([`server ${cfg.name}: ws ${name}`, () => serverVariant(get(), cfg, opts, flags)]);
  }
}
// A message inflating past --max-message-size: 1009, and the server carries on.
cases.push(['server shared: inflated size over the maximum -> 1009', async () => {
  const s = servers.find((x) => x.cfg.name === 'small max');
  const c = await Client.connect(WebSocket, s.port, { perMessageDeflate: { threshold: 0 } });
  const data = repeatData(64 * KiB, true);
  await c.send(data, { binary: true });
  assert.ok((await c.next()).data.equals(data));
  c.ws.send(repeatData(64 * KiB + 1, true), { binary: true }); // ~100 bytes on the wire
  const info = await withTimeout(c.closed, STEP_MS, 'close');
  assert.equal(info.code, 1009, `close ${JSON.stringify(info)}`);
  const c2 = await Client.connect(WebSocket, s.port, { perMessageDeflate: true });
  await c2.send(data, { binary: true });
  assert.ok((await c2.next()).data.equals(data));
  await c2.close();
}]);
for (const mode of CLIENT_MODES) {
  for (const [name, opts, flags = {}] of CLIENT_VARIANTS) {
    if (mode.windowOnly && !flags.window && name !== 'default (true)') continue;
    cases.push([`client ${mode.name}: ws server ${name}`, () => clientVariant(mode, opts, flags)]);
  }
}

let passed = 0;
let failed = 0;
const t0 = Date.now();
try {
  for (const cfg of [...SERVER_CONFIGS, { name: 'small max',
    args: ['--deflate=shared', '--deflate-threshold', '1', '--max-message-size', '65536'] }]) {
    const s = await Server.start(echoExe, ['0', ...cfg.args]);
    s.cfg = cfg;
    servers.push(s);
  }
} catch (err) {
  failed++;
  console.log(`FAIL setup: ${err && err.stack ? err.stack : err}`);
}
const only = process.env.DEFLATE_TEST_ONLY; // a substring of case names, for debugging
for (const [name, fn] of failed ? [] : cases) {
  if (only && !name.includes(only)) continue;
  const c0 = Date.now();
  try {
    await withTimeout(fn(), CASE_MS, `case ${name}`);
    passed++;
    console.log(`PASS ${name} (${((Date.now() - c0) / 1000).toFixed(2)}s)`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err && err.stack ? err.stack : err}`);
  }
  const dead = servers.filter((s) => !s.alive());
  if (dead.length) {
    for (const s of dead) console.log(`FAIL wsev-echo ${s.cfg.name} died: ${JSON.stringify(s.exited)}`);
    failed += dead.length;
    break;
  }
}
for (const s of servers) {
  try {
    const { code, signal } = await s.stop();
    if (code !== 0) {
      failed++;
      console.log(`FAIL wsev-echo ${s.cfg.name} after SIGTERM: code ${code}, signal ${signal}`);
    }
  } catch (err) {
    failed++;
    console.log(`FAIL ${err.message}`);
  }
  if (s.stderr) console.log(`# wsev-echo ${s.cfg.name} stderr:\n${s.stderr}`);
}
console.log(`# ${((Date.now() - t0) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
