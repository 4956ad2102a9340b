// The Node `ws` peer of the wsev benchmark.
//   node ws-server.mjs PORT echo     echo every message with its type
//   node ws-server.mjs PORT echo CERT KEY   the same over wss (Node's https, OpenSSL)
//   node ws-server.mjs PORT pubsub   the wsev-pubsub protocol: subscribe:CH -> "OK";
//                                    publish:CH:BODY -> "OK" + BODY to every subscriber
//   --deflate (anywhere)             accept permessage-deflate with ws's defaults (context
//                                    takeover, window 15, level 6), except the threshold:
//                                    128 B as wsev's, so 1 KiB messages are compressed
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import { WebSocketServer } from "ws";

const args = process.argv.slice(2).filter((a) => a !== "--deflate");
const deflate = args.length < process.argv.length - 2;
const port = Number(args[0] || 9000);
const mode = args[1] || "echo";
const channels = new Map(); // name -> Set of sockets

const [cert, key] = args.slice(2);
const options = {
  perMessageDeflate: deflate ? { threshold: 128 } : false,
  clientTracking: false,
  maxPayload: 16 * 1024 * 1024,
};
let https = null;
let wss;
if (cert && key) {
  https = createServer({ cert: readFileSync(cert), key: readFileSync(key) });
  wss = new WebSocketServer({ server: https, ...options });
} else {
  wss = new WebSocketServer({ host: "127.0.0.1", port, ...options });
}
wss.on("connection", (ws) => {
  if (mode !== "pubsub") {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    return;
  }
  const mine = new Set();
  ws.on("message", (data, isBinary) => {
    const text = data.toString("latin1"); // byte offsets == string offsets
    if (text.startsWith("subscribe:") && text.length > 10 && text.indexOf(":", 10) < 0) {
      const ch = text.slice(10);
      let set = channels.get(ch);
      if (!set) channels.set(ch, (set = new Set()));
      set.add(ws);
      mine.add(ch);
      ws.send("OK");
    } else if (text.startsWith("publish:")) {
      const colon = text.indexOf(":", 8);
      if (colon <= 8) return ws.send("Invalid message");
      ws.send("OK");
      const set = channels.get(text.slice(8, colon));
      if (!set) return;
      const body = data.subarray(colon + 1);
      for (const s of set) s.send(body, { binary: isBinary });
    } else {
      ws.send("Invalid message");
    }
  });
  ws.on("close", () => {
    for (const ch of mine) channels.get(ch)?.delete(ws);
  });
});
if (https) {
  https.listen(port, "127.0.0.1", () =>
    console.log(`ws (${mode}${deflate ? ", deflate" : ""}) listening for TLS on port ${https.address().port}`));
} else {
  wss.on("listening", () => console.log(`ws (${mode}${deflate ? ", deflate" : ""}) listening on port ${wss.address().port}`));
}
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
