// A Node `ws` server as the peer of wsev's client side (test_client.py starts it).
//   node ws-server.mjs            listens on 127.0.0.1, a free port; prints
//                                 "ws-server listening on port N"
// Paths:
//   /echo    echo every message with its type
//   /close   echo the first message, then close with 4002 "node says bye"
// Anything else is refused with 404. ws comes from test/node/node_modules (pinned
// there: `npm ci --prefix test/node`). Exits on SIGTERM or when stdin closes.
import { createRequire } from 'node:module';

let WebSocketServer;
try {
  const require = createRequire(new URL('../node/package.json', import.meta.url));
  ({ WebSocketServer } = require('ws'));
} catch (err) {
  console.error(`cannot load the npm package "ws" (${err.code || err.message}); `
    + 'install it with:  npm ci --prefix test/node');
  process.exit(3);
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: false,
  maxPayload: 64 * 1024 * 1024,
  verifyClient: ({ req }) => req.url === '/echo' || req.url === '/close',
});

wss.on('connection', (ws, req) => {
  ws.on('error', () => {});
  if (req.url === '/close') {
    ws.once('message', (data, isBinary) => {
      ws.send(data, { binary: isBinary });
      ws.close(4002, 'node says bye');
    });
    return;
  }
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

wss.on('listening', () => {
  console.log(`ws-server listening on port ${wss.address().port}`);
});

const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
