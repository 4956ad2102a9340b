// Cross-instance delivery through Redis: S subscribers on instance B, P publishers on
// instance A (each keeps K publishes in flight; a publish is done when all S
// deliveries arrived), for D seconds after a 1 s warm-up. Prints one RESULT line:
// deliveries/s and publish-to-delivery p50/p99 in microseconds.
// usage: node cross.mjs wsev|sio PORT_A PORT_B [S P K D]
import WebSocket from 'ws';
import { io } from 'socket.io-client';

const [mode, portA, portB, S = '100', P = '1', K = '10', D = '5'] = process.argv.slice(2);
const subs = Number(S), pubs = Number(P), window = Number(K), secs = Number(D);
const now = () => Number(process.hrtime.bigint() / 1000n);
const lat = [];
let delivered = 0, measuring = false, stopping = false;
const pending = new Map(); // seq -> deliveries still due
let seq = 0;

function onBody(body) {
  const [s, t] = body.split(':');
  if (measuring) { delivered++; lat.push(now() - Number(t)); }
  const left = pending.get(s) - 1;
  if (left > 0) pending.set(s, left);
  else { pending.delete(s); if (!stopping) publishers[Number(s.split('.')[0])].next(); }
}

function wsevClient(port) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
}
function sioClient(port) {
  return new Promise((resolve, reject) => {
    const s = io(`http://127.0.0.1:${port}`, { transports: ['websocket'] });
    s.on('connect', () => resolve(s));
    s.on('connect_error', reject);
  });
}

const publishers = [];
for (let i = 0; i < subs; i++) {
  if (mode === 'wsev') {
    const ws = await wsevClient(portB);
    await new Promise((r) => { ws.once('message', r); ws.send('subscribe:ch0'); });
    ws.on('message', (d) => onBody(d.toString()));
  } else {
    const s = await sioClient(portB);
    await new Promise((r) => s.emit('subscribe', 'ch0', r));
    s.on('msg', onBody);
  }
}
for (let p = 0; p < pubs; p++) {
  let send;
  if (mode === 'wsev') {
    const ws = await wsevClient(portA);
    ws.on('message', () => {}); // the OKs
    send = (body) => ws.send(`publish:ch0:${body}`);
  } else {
    const s = await sioClient(portA);
    send = (body) => s.emit('publish', { ch: 'ch0', body });
  }
  publishers.push({
    next() {
      const s = `${p}.${seq++}`;
      pending.set(s, subs);
      send(`${s}:${now()}`);
    },
  });
}
// Let Redis confirm the subscriptions before the first publish.
await new Promise((r) => setTimeout(r, 500));
for (const pub of publishers) for (let k = 0; k < window; k++) pub.next();
await new Promise((r) => setTimeout(r, 1000));
measuring = true;
const t0 = now();
await new Promise((r) => setTimeout(r, secs * 1000));
measuring = false;
stopping = true;
const elapsed = (now() - t0) / 1e6;
lat.sort((a, b) => a - b);
const q = (f) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * f))] : 0);
console.log(`RESULT mode=${mode} rate=${(delivered / elapsed).toFixed(1)} p50_us=${q(0.5)} p99_us=${q(0.99)} deliveries=${delivered}`);
process.exit(0);
