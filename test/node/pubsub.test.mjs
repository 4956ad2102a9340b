// wsev-pubsub against Node's ws client.
// usage: node test/node/pubsub.test.mjs /path/to/wsev-pubsub
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { loadWs, Server, Client, closeAll, runCases } from './harness.mjs';

const exe = process.argv[2];
if (!exe) {
  console.error('usage: node pubsub.test.mjs /path/to/wsev-pubsub');
  process.exit(2);
}
const WebSocket = await loadWs();
const server = await Server.start(exe, ['--port', '0', '--quiet']);
const connect = () => Client.connect(WebSocket, server.port);
const connectMany = (n) => Promise.all(Array.from({ length: n }, () => connect()));

// Send a command (text unless it is a Buffer) and check the text reply.
async function cmd(c, msg, expect = 'OK') {
  await c.send(msg, { binary: Buffer.isBuffer(msg) });
  const got = await c.nextText();
  assert.equal(got, expect, `reply to ${JSON.stringify(msg.toString().slice(0, 40))}`);
}

const cases = [
  ['reply protocol', async () => {
    const c = await connect();
    try {
      await cmd(c, 'subscribe:a');
      await cmd(c, 'subscribe:b');
      await cmd(c, 'unsubscribe:a');
      await cmd(c, 'unsubscribe:not-subscribed');
      await cmd(c, 'publish:nobody:body');
      await cmd(c, 'publish:b:to myself');
      assert.equal(await c.nextText(), 'to myself');
      await cmd(c, 'unsubscribe-all');
      await cmd(c, 'publish:b:not any more');
      for (const bad of ['', 'hello', 'subscribe:', 'subscribe:a:b', 'unsubscribe:',
        'unsubscribe-all!', 'publish:x', 'publish::body', 'SUBSCRIBE:x']) {
        await cmd(c, bad, 'Invalid message');
      }
      await cmd(c, Buffer.from('nonsense'), 'Invalid message');
      await c.expectNothing();
    } finally {
      await closeAll([c]);
    }
  }],

  ['one publish reaches 100 subscribers exactly once', async () => {
    const subs = await connectMany(100);
    const [other, pub] = await connectMany(2);
    const all = [...subs, other, pub];
    try {
      await Promise.all(subs.map((c) => cmd(c, 'subscribe:fan')));
      await cmd(other, 'subscribe:elsewhere');
      await cmd(pub, 'publish:fan:hello:world');
      const got = await Promise.all(subs.map((c) => c.nextText()));
      assert.deepEqual(got, Array(100).fill('hello:world'));
      await Promise.all(all.map((c) => c.expectNothing()));
    } finally {
      await closeAll(all);
    }
  }],

  ['binary publish is forwarded as binary', async () => {
    const [sub, pub] = await connectMany(2);
    try {
      await cmd(sub, 'subscribe:bin');
      const body = Buffer.concat([randomBytes(1000), Buffer.from([0xff, 0x3a, 0x00])]);
      await cmd(pub, Buffer.concat([Buffer.from('publish:bin:'), body]));
      const m = await sub.next();
      assert.equal(m.isBinary, true, 'binary publish arrived as text');
      assert.ok(m.data.equals(body), 'binary body differs');
      await cmd(pub, 'publish:bin:text again');
      const t = await sub.next();
      assert.equal(t.isBinary, false, 'text publish arrived as binary');
      assert.equal(t.data.toString(), 'text again');
      await Promise.all([sub, pub].map((c) => c.expectNothing()));
    } finally {
      await closeAll([sub, pub]);
    }
  }],

  ['closed subscriber is dropped', async () => {
    const [keep, leave, pub] = await connectMany(3);
    try {
      await cmd(keep, 'subscribe:drop');
      await cmd(leave, 'subscribe:drop');
      leave.ws.terminate(); // no close frame
      await leave.closed;
      await cmd(pub, 'publish:drop:after');
      assert.equal(await keep.nextText(), 'after');
      await Promise.all([keep, pub].map((c) => c.expectNothing()));
    } finally {
      await closeAll([keep, pub]);
    }
  }],
];

await runCases(server, cases, { expectCleanExit: true });
