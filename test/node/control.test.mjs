// Application control (the wsev-control sample, sample/control.c) against Node's ws client:
// origin policy, subprotocols, deferred upgrades, close codes and reasons both ways.
// usage: node test/node/control.test.mjs /path/to/wsev-control
import assert from 'node:assert/strict';
import { loadWs, Server, runCases, withTimeout, STEP_MS } from './harness.mjs';

const exe = process.argv[2];
if (!exe) {
  console.error('usage: node control.test.mjs /path/to/wsev-control');
  process.exit(2);
}
const WebSocket = await loadWs();
const server = await Server.start(exe, ['--port', '0', '--allow-origin', 'https://good.example',
  '--defer-timeout', '300']);
const url = (path = '/') => `ws://127.0.0.1:${server.port}${path}`;

// Opens a socket; resolves with it once open, rejects with the HTTP status if refused.
function open(path, protocols, options = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(url(path), protocols, options);
    ws.on('open', () => resolve(ws));
    ws.on('unexpected-response', (req, res) => {
      reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode }));
      req.destroy();
    });
    ws.on('error', reject);
  }), STEP_MS, `open ${path}`);
}

async function refusedWith(status, path, protocols, options) {
  await assert.rejects(open(path, protocols, options), (err) => err.status === status);
}

const closed = (ws) => withTimeout(new Promise((resolve) => {
  ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
}), STEP_MS, 'close');

const nextMessage = (ws) => withTimeout(new Promise((resolve) => {
  ws.once('message', (data) => resolve(data.toString()));
}), STEP_MS, 'message');

const cases = [
  ['origin-allowed-and-refused', async () => {
    const ws = await open('/', undefined, { origin: 'https://good.example' });
    ws.close();
    await closed(ws);
    await refusedWith(403, '/', undefined, { origin: 'https://evil.example' });
  }],
  ['subprotocol-server-preference', async () => {
    const ws = await open('/', ['chat.v1', 'chat.v2']);
    assert.equal(ws.protocol, 'chat.v2');
    ws.send('info');
    assert.equal(await nextMessage(ws), 'path=/ protocol=chat.v2');
    ws.close();
    await closed(ws);
  }],
  ['no-subprotocol-offered', async () => {
    const ws = await open('/');
    assert.equal(ws.protocol, '');
    ws.close();
    await closed(ws);
  }],
  ['deferred-accept-and-timeout', async () => {
    const ws = await open('/defer-accept', ['chat.v1']);
    assert.equal(ws.protocol, 'chat.v1');
    ws.close();
    await closed(ws);
    await refusedWith(401, '/defer-reject');
    await refusedWith(503, '/defer-never');
    await refusedWith(403, '/reject');
  }],
  ['close-code-and-reason-from-client', async () => {
    const ws = await open('/');
    const done = closed(ws);
    ws.close(4005, 'node says bye');
    const { code } = await done;
    assert.equal(code, 4005); // echoed by the server
  }],
  ['close-code-and-reason-from-server', async () => {
    const ws = await open('/');
    const done = closed(ws);
    ws.send('close:4006:server bye');
    const { code, reason } = await done;
    assert.equal(code, 4006);
    assert.equal(reason, 'server bye');
  }],
];

await runCases(server, cases, { expectCleanExit: true });
