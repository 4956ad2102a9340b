// WebSocket frame parsing for the permessage-deflate tests (test/node/deflate.test.mjs,
// test/browser/deflate.test.mjs): which data messages went compressed (RSV1) and how
// many bytes they took on the wire, which tells the context and window a compressor
// really uses. Plain Node, no npm packages.

// The frame headers of one direction of a connection (payloads are skipped), as data
// messages { rsv1, opcode, wire (payload bytes), frames, contRsv1 (an RSV1 on a
// continuation frame, or a continuation with no message to continue), rsv23, masked }
// and control frames { fin, rsv1, rsv23, opcode, masked, len }. Fed by feed(bytes), or
// by the socket given to the constructor (from its next 'data' event on).
export class FrameTap {
  constructor(socket = null) {
    this.messages = [];
    this.control = [];
    this.hdr = [];
    this.skip = 0;
    this.cur = null;
    if (socket) socket.on('data', (d) => this.feed(d));
  }

  feed(d) {
    let off = 0;
    while (off < d.length) {
      if (this.skip) {
        const n = Math.min(this.skip, d.length - off);
        this.skip -= n;
        off += n;
        continue;
      }
      const h = this.hdr;
      h.push(d[off++]);
      if (h.length < 2) continue;
      const len7 = h[1] & 0x7f;
      const masked = (h[1] & 0x80) !== 0;
      const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
      if (h.length < need) continue;
      let len = len7;
      if (len7 === 126) len = h[2] * 256 + h[3];
      if (len7 === 127) len = h.slice(2, 10).reduce((a, b) => a * 256 + b, 0);
      this.hdr = [];
      this.skip = len;
      this.frame({
        fin: (h[0] & 0x80) !== 0, rsv1: (h[0] & 0x40) !== 0, rsv23: (h[0] & 0x30) !== 0,
        opcode: h[0] & 0x0f, masked, len,
      });
    }
  }

  frame(f) {
    if (f.opcode >= 8) {
      this.control.push(f);
      return;
    }
    if (f.opcode !== 0) {
      this.cur = { rsv1: f.rsv1, opcode: f.opcode, wire: 0, frames: 0, contRsv1: false,
        rsv23: false, masked: f.masked };
    } else if (!this.cur) {
      this.cur = { rsv1: false, opcode: 0, wire: 0, frames: 0, contRsv1: true, rsv23: false,
        masked: f.masked }; // a stray continuation: recorded as an error
    } else if (f.rsv1) {
      this.cur.contRsv1 = true;
    }
    this.cur.wire += f.len;
    this.cur.frames++;
    this.cur.rsv23 ||= f.rsv23;
    if (f.fin) {
      this.messages.push(this.cur);
      this.cur = null;
    }
  }

  // The index-th complete data message, waiting up to ms for it (a peer library may
  // deliver a message before the tap has seen the bytes of its last frame).
  async message(index, ms = 10_000) {
    const t0 = Date.now();
    while (this.messages.length <= index) {
      if (Date.now() - t0 > ms) throw new Error(`tap: no message #${index} on the wire`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return this.messages[index];
  }
}

// The "same 4 KiB twice" check of a compressor's context and window, on the tapped
// second copy: with context takeover and a window over 4 KiB (zlib reaches
// 2^bits - 262 bytes back) it is a compressed back-reference of a few bytes; otherwise
// it costs about as much as the first (over `min` bytes). Throws an Error naming `what`.
export function checkRepeat(second, { takeover, bits, min, what }) {
  if (takeover && bits >= 13) {
    if (!(second.rsv1 && second.wire < 200)) {
      throw new Error(`${what} within the window: ${second.wire} B on the wire (RSV1 ${second.rsv1})`);
    }
  } else if (!(second.wire > min)) {
    throw new Error(`${what} without context or beyond a ${bits}-bit window: ${second.wire} B on the wire`);
  }
}
