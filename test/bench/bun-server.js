// The uWebSockets peer of the wsev benchmark: Bun.serve's WebSocket server is
// uWebSockets with a thin JavaScript layer.
//   bun bun-server.js PORT echo     echo every message with its type
//   bun bun-server.js PORT echo CERT KEY   the same over wss (uWS's TLS: BoringSSL)
//   bun bun-server.js PORT pubsub   the wsev-pubsub protocol on native topics:
//                                   subscribe:CH -> ws.subscribe(CH), "OK";
//                                   publish:CH:BODY -> "OK", server.publish(CH, BODY)
//   --deflate (anywhere)            perMessageDeflate: true, and echoes and published
//                                   bodies ask for compression (send's second argument,
//                                   publish's third)
const args = process.argv.slice(2).filter((a) => a !== "--deflate");
const deflate = args.length < process.argv.length - 2;
const port = Number(args[0] || 9000);
const mode = args[1] || "echo";
const decoder = new TextDecoder();

const echo = {
  message(ws, message) {
    ws.send(message, deflate); // string stays text, Buffer stays binary
  },
};

const pubsub = {
  message(ws, message) {
    const binary = typeof message !== "string";
    const text = binary ? decoder.decode(message) : message;
    if (text.startsWith("subscribe:") && text.indexOf(":", 10) < 0 && text.length > 10) {
      ws.subscribe(text.slice(10));
      ws.send("OK");
    } else if (text.startsWith("publish:")) {
      const colon = text.indexOf(":", 8);
      if (colon <= 8) {
        ws.send("Invalid message");
        return;
      }
      ws.send("OK");
      const body = binary ? message.subarray(Buffer.byteLength(text.slice(0, colon + 1))) : text.slice(colon + 1);
      server.publish(text.slice(8, colon), body, deflate);
    } else {
      ws.send("Invalid message");
    }
  },
};

const [cert, key] = args.slice(2);
const server = Bun.serve({
  port,
  hostname: "127.0.0.1",
  ...(cert && key ? { tls: { cert: Bun.file(cert), key: Bun.file(key) } } : {}),
  fetch(req, server) {
    if (server.upgrade(req)) return;
    return new Response("WebSocket only", { status: 400 });
  },
  websocket: {
    ...(mode === "pubsub" ? pubsub : echo),
    perMessageDeflate: deflate,
    idleTimeout: 960,
    maxPayloadLength: 16 * 1024 * 1024,
    backpressureLimit: 64 * 1024 * 1024,
  },
});
console.log(`bun ${Bun.version} (${mode}${deflate ? ", deflate" : ""}) listening ${cert ? "for TLS " : ""}on port ${server.port}`);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => { server.stop(true); process.exit(0); });
