// wsev-echo against Node's ws client.
// usage: node test/node/echo.test.mjs /path/to/wsev-echo
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  loadWs, Server, Client, closeAll, runCases, withTimeout, sleep, STEP_MS,
} from './harness.mjs';

const exe = process.argv[2];
if (!exe) {
  console.error('usage: node echo.test.mjs /path/to/wsev-echo');
  process.exit(2);
}
const WebSocket = await loadWs();
const server = await Server.start(exe, ['0']);
const connect = (options) => Client.connect(WebSocket, server.port, options);

// Send `data` and expect it back byte-exact with the same type.
async function roundTrip(c, data, isBinary) {
  await c.send(data, { binary: isBinary });
  const m = await c.next();
  assert.equal(m.isBinary, isBinary, `echo type: sent ${isBinary ? 'binary' : 'text'}`);
  const want = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
  assert.equal(m.data.length, want.length, 'echo length');
  assert.ok(m.data.equals(want), 'echo bytes differ');
}

async function withClient(fn, options) {
  const c = await connect(options);
  try {
    await fn(c);
    await c.expectNothing();
  } finally {
    await closeAll([c]);
  }
}

const cases = [
  ['text', () => withClient(async (c) => {
    await roundTrip(c, 'hello', false);
    await roundTrip(c, 'h\u00e9llo w\u00f6rld \u2603 \u{1F600}', false);
  })],

  ['binary', () => withClient(async (c) => {
    await roundTrip(c, Buffer.from([0, 1, 2, 0xfe, 0xff]), true);
    await roundTrip(c, randomBytes(1000), true);
    // bytes that are not UTF-8 must pass untouched as binary
    await roundTrip(c, Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xed, 0xa0, 0x80]), true);
  })],

  ['empty messages', () => withClient(async (c) => {
    await roundTrip(c, '', false);
    await roundTrip(c, Buffer.alloc(0), true);
  })],

  ['length boundaries 125/126/65535/65536', () => withClient(async (c) => {
    for (const n of [0, 1, 124, 125, 126, 127, 65535, 65536, 65537]) {
      await roundTrip(c, randomBytes(n), true);
      await roundTrip(c, 'x'.repeat(n), false);
    }
  })],

  ['4 MiB binary byte-exact', () => withClient(async (c) => {
    await roundTrip(c, randomBytes(4 * 1024 * 1024), true);
  })],

  ['4 MiB text byte-exact', () => withClient(async (c) => {
    const unit = 'abc\u00e9\u2603\u{1F600}'; // 1+1+1+2+3+4 = 12 bytes
    await roundTrip(c, unit.repeat((4 * 1024 * 1024) / 12), false);
  })],

  ['fragmented message with a ping between fragments', () => withClient(async (c) => {
    c.ws.send('frag', { fin: false });
    c.ws.send('men', { fin: false });
    c.ws.ping(Buffer.from('mid'));
    c.ws.send('ted', { fin: true });
    const got = await c.nextText();
    assert.equal(got, 'fragmented');
    await withTimeout((async () => { while (c.pongs.length < 1) await sleep(10); })(),
      STEP_MS, 'pong');
    assert.equal(c.pongs[0].toString(), 'mid');
  })],

  ['ping -> pong with the same payload', () => withClient(async (c) => {
    const payloads = [Buffer.from('ping-payload'), Buffer.alloc(0), randomBytes(125)];
    for (const p of payloads) {
      const before = c.pongs.length;
      const pong = new Promise((resolve) => c.ws.once('pong', resolve));
      c.ws.ping(p);
      const data = await withTimeout(pong, STEP_MS, 'pong');
      assert.ok(Buffer.from(data).equals(p), `pong payload ${data.toString('hex')} != ${p.toString('hex')}`);
      assert.equal(c.pongs.length, before + 1);
    }
    // messages still flow after the pings
    await roundTrip(c, 'after pings', false);
  })],

  ['close 4001 with a reason is echoed', async () => {
    const c = await connect();
    await roundTrip(c, 'before close', false);
    const info = await c.close(4001, 'bye from node');
    assert.equal(info.code, 4001, `close code ${info.code}, reason ${JSON.stringify(info.reason)}`);
  }],

  ['close without a code', async () => {
    const c = await connect();
    const info = await c.close();
    // the peer echoes an empty close frame: ws reports 1005 (no status received)
    assert.ok(info.code === 1005 || info.code === 1000, `close code ${info.code}`);
  }],

  ['permessage-deflate offer is declined cleanly', () => withClient(async (c) => {
    assert.equal(c.ws.extensions, '', `server negotiated extensions ${c.ws.extensions}`);
    await roundTrip(c, 'plain'.repeat(100), false);
  }, { perMessageDeflate: true })],

  ['100 concurrent clients x 20 messages in order', async () => {
    const clients = await Promise.all(Array.from({ length: 100 }, () => connect()));
    try {
      await Promise.all(clients.map(async (c, i) => {
        for (let j = 0; j < 20; j++) {
          if (j % 2) c.ws.send(Buffer.from(`client ${i} message ${j}`));
          else c.ws.send(`client ${i} message ${j}`);
        }
        for (let j = 0; j < 20; j++) {
          const m = await c.next();
          assert.equal(m.isBinary, j % 2 === 1, `client ${i} message ${j} type`);
          assert.equal(m.data.toString(), `client ${i} message ${j}`);
        }
      }));
      await Promise.all(clients.map((c) => c.expectNothing()));
    } finally {
      await closeAll(clients);
    }
  }],

  ['server still answers', () => withClient(async (c) => {
    await roundTrip(c, 'still here', false);
  })],
];

await runCases(server, cases);
