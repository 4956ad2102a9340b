// A Socket.IO pub/sub server federated through Redis with @socket.io/redis-adapter: the
// same service as wsev-pubsub --redis. usage: node sio-server.mjs PORT REDIS_URL
// Events: 'subscribe' (room), 'publish' ({ch, body}) -> every socket in room `ch` on
// every server gets 'msg' (body).
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';

const [port, url] = process.argv.slice(2);
const pub = createClient({ url });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);
const http = createServer();
const io = new Server(http, { adapter: createAdapter(pub, sub), transports: ['websocket'] });
io.on('connection', (socket) => {
  socket.on('subscribe', (ch, ack) => { socket.join(ch); if (ack) ack('OK'); });
  socket.on('publish', (m) => { io.to(m.ch).emit('msg', m.body); });
});
http.listen(Number(port), '127.0.0.1', () => console.log(`listening on port ${port}`));
process.on('SIGTERM', () => process.exit(0));
