#!/usr/bin/python3
"""permessage-deflate (RFC 7692) in both roles, against wsev-echo and wsev-client.

Usage: test_deflate.py PATH/TO/wsev-echo PATH/TO/wsev-client

1. negotiation (server role) over raw sockets: the exact Sec-WebSocket-Extensions
   answered to each offer by shared, dedicated and dedicated window-10 servers, then
   messages compressed by hand with Python's zlib and echoes inflated the same way;
2. what a server must refuse (bombs, bad data, misplaced RSV bits), each followed by
   a connection that still works;
3. Python websockets as the client, 4. as the server for wsev-client, and 5. a
   hand-written server whose illegal answers wsev-client must refuse.

With WSEV_SERVER_WRAP (valgrind) both wsev-echo and wsev-client run under it and the
8 MiB messages and the RSS check are skipped (too slow, and RSS is valgrind's).
"""

import asyncio
import os
import random
import re
import shlex
import struct
import sys
import time
import zlib

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import websockets  # noqa: E402
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory)
from websockets.frames import Opcode  # noqa: E402
from wsevtest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, TIMEOUT,  # noqa: E402
                      Closed, Conn, Runner, Server, TestFailure, accept_for, build_frame,
                      check, check_upgrade_response, settled_rss, short, xor_mask)

if len(sys.argv) < 3:
    sys.stderr.write("usage: %s PATH/TO/wsev-echo PATH/TO/wsev-client\n" % sys.argv[0])
    sys.exit(2)
ECHO, CLIENT = sys.argv[1], sys.argv[2]
# Servers started without --deflate must really be off, whatever the caller's env.
os.environ.pop("WSEV_DEFLATE", None)
WRAP = shlex.split(os.environ.get("WSEV_SERVER_WRAP", ""))
SLOW = 6.0 if WRAP else 1.0
R = Runner("deflate")
# Random content comes from one seed, printed, so a failure can be replayed.
SEED = int(os.environ.get("WSEV_TEST_SEED") or time.time_ns() % 1000000)
random.seed(SEED)
print("random seed %d (WSEV_TEST_SEED=%d replays it)" % (SEED, SEED), flush=True)
TAIL = b"\x00\x00\xff\xff"
PMD = "permessage-deflate"
SNCT, CNCT = "server_no_context_takeover", "client_no_context_takeover"


def text_of(n):
    pat = "The quick brown fox jumps over the lazy dog; sphinx of black quartz. "
    return (pat * (n // len(pat) + 1))[:n]


def random_text(n):
    # Code points of 1 to 4 UTF-8 bytes, so inflated text is checked as UTF-8 for real.
    pool = [chr(c) for c in list(range(0x20, 0x7f)) + [0xe9, 0x3ba, 0x4e2d, 0x20ac, 0x1f600]]
    return "".join(random.choices(pool, k=n))


def random_ascii_line(n):
    # Printable, no newline: one wsev-client line; poorly compressible.
    return bytes(random.choices(range(0x21, 0x7f), k=n))


# =========================================================================== raw side

def deflate_raw(data, bits=15, comp=None):
    """One message compressed as RFC 7692 wants: sync flush, 00 00 ff ff stripped.
    `comp` (a zlib compressor) keeps its context across calls."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if comp is None:
        comp = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


class Inflater:
    """Inflates the server's messages with the window it agreed to (zlib fails on a
    reference further back, into an earlier message), keeping context only where the
    server may."""

    def __init__(self, bits=15, takeover=False):
        self.bits, self.takeover, self.d = bits, takeover, None

    def inflate(self, data):
        if self.d is None or not self.takeover:
            self.d = zlib.decompressobj(-self.bits)
        try:
            out = self.d.decompress(data + TAIL)
        except zlib.error as e:
            raise TestFailure("the server's compressed message does not inflate with "
                              "window %d: %s" % (self.bits, e))
        # A message compressed without context may end with a final block and one 0x00
        # (RFC 7692 section 7.2.3.3): with the tail, an empty stored block after the end.
        check(not self.d.unused_data or (not self.takeover and self.d.eof and
                                         self.d.unused_data == b"\x00" + TAIL),
              "bytes after the end of a deflate stream: %r" % self.d.unused_data[:16])
        return out


def parse_ext(value):
    """An answered header's params: {name: value or True}, for one element."""
    elems = [e.strip() for e in value.split(",")]
    check(len(elems) == 1, "more than one extension answered: %r" % value)
    parts = [p.strip() for p in elems[0].split(";")]
    check(parts[0] == PMD, "answered extension is %r" % parts[0])
    out = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        out[k.strip()] = int(v) if v else True
    return out


def read_frame(c, deadline):
    """One server frame, RSV bits allowed (they are checked by the caller)."""
    h = c.read_exact(2, deadline)
    fin, rsv, op = h[0] >> 7, (h[0] >> 4) & 7, h[0] & 0xF
    check(not h[1] & 0x80, "server frame is masked")
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", c.read_exact(2, deadline))[0]
    elif n == 127:
        n = struct.unpack("!Q", c.read_exact(8, deadline))[0]
    return fin, rsv, op, c.read_exact(n, deadline)


def recv_dmsg(c, inflater, timeout=None):
    """A whole data message from the server: (opcode, inflated payload, was it
    compressed). RSV1 may only be on its first frame; RSV2/3 never."""
    deadline = time.monotonic() + (timeout or TIMEOUT)
    opcode, rsv1, parts = None, False, []
    while True:
        try:
            fin, rsv, op, payload = read_frame(c, deadline)
        except Closed:
            raise TestFailure("connection closed while waiting for a message")
        check(rsv & 3 == 0, "server frame with RSV2/RSV3 (rsv=%d)" % rsv)
        check(op not in (OP_CLOSE,), "expected a message, got a close frame %s"
              % short(payload))
        if op >= 8:
            check(rsv == 0, "server control frame with RSV1")
            continue  # a pong
        if opcode is None:
            check(op in (OP_TEXT, OP_BINARY), "message starts with opcode %d" % op)
            opcode, rsv1 = op, bool(rsv & 4)
        else:
            check(op == OP_CONT, "expected a continuation, got opcode %d" % op)
            check(rsv == 0, "RSV1 on a continuation frame from the server")
        parts.append(payload)
        if fin:
            break
    data = b"".join(parts)
    if rsv1:
        check(inflater is not None, "compressed message although deflate was not agreed")
        data = inflater.inflate(data)
    return opcode, data, rsv1


class DConn:
    """A raw connection that offered `offers` (one header line each)."""

    def __init__(self, port, offers=(), headers=()):
        self.c = Conn(port)
        extra = [("Sec-WebSocket-Extensions", o) for o in offers] + list(headers)
        self.c.send(self.c.request(extra_headers=extra))
        self.status, self.hdrs = self.c.read_response()

    def opened(self):
        check_upgrade_response(self.status, self.hdrs, self.c.key)
        ext = self.hdrs.get("sec-websocket-extensions")
        check(ext is None or len(ext) == 1, "several extension header lines: %r" % ext)
        self.answer = ext[0] if ext else None
        if self.answer is None:
            self.params, self.inflater = None, None
        else:
            self.params = parse_ext(self.answer)
            self.inflater = Inflater(self.params.get("server_max_window_bits", 15),
                                     SNCT not in self.params)
        return self

    def send_compressed(self, opcode, data, bits=15, comp=None):
        self.c.send(build_frame(opcode, deflate_raw(data, bits, comp), rsv=4))

    def recv(self, timeout=None):
        return recv_dmsg(self.c, self.inflater, timeout)

    def expect(self, opcode, data, compressed=None, what=""):
        if isinstance(data, str):
            data = data.encode("utf-8")
        op, got, rsv1 = self.recv()
        check(op == opcode, "%secho opcode %d, expected %d" % (what, op, opcode))
        check(got == data, "%secho differs: sent %s, got %s" % (what, short(data), short(got)))
        if compressed is not None:
            check(rsv1 == compressed, "%secho of %d bytes has RSV1=%d, expected %d"
                  % (what, len(data), rsv1, compressed))
        return rsv1

    def close(self):
        self.c.close()


def open_ws(server, offers=(), answer="any"):
    d = DConn(server.port, offers).opened()
    if answer != "any":
        check(d.answer == answer, "offer %r: answered %r, expected %r"
              % (list(offers), d.answer, answer))
    return d


def still_serves(server, offers=(PMD,)):
    """A new connection after a failed one: a compressed echo still works."""
    d = open_ws(server, offers)
    try:
        msg = text_of(3000)
        if d.answer:
            d.send_compressed(OP_TEXT, msg)
        else:
            d.c.send_text(msg)
        d.expect(OP_TEXT, msg, what="next connection: ")
    finally:
        d.close()


# =========================================================================== 1. negotiation

SERVERS = {}  # name -> Server
CONFIGS = {
    "shared": ["--deflate=shared"],
    "dedicated": ["--deflate=dedicated"],
    "dedicated-w10": ["--deflate=dedicated", "--deflate-window", "10"],
    "shared-t1": ["--deflate=shared", "--deflate-threshold", "1"],
    "dedicated-t1": ["--deflate=dedicated", "--deflate-threshold", "1"],
    "off": [],
    "limited": ["--deflate=dedicated", "--max-message-size", "1048576"],
    "limited-shared": ["--deflate=shared", "--max-message-size", "1048576"],
    "big": ["--deflate=shared", "--max-message-size", "16777216"],
    "big-dedicated": ["--deflate=dedicated", "--max-message-size", "16777216"],
}

S_ANS = PMD + "; " + SNCT + "; " + CNCT
# offer (one header line each) -> the answer of each server (None: no extension).
MATRIX = [
    ("plain", [PMD],
     {"shared": S_ANS, "dedicated": PMD,
      "dedicated-w10": PMD + "; server_max_window_bits=10"}),
    ("client_max_window_bits", [PMD + "; client_max_window_bits"],
     {"shared": S_ANS, "dedicated": PMD,
      "dedicated-w10": PMD + "; server_max_window_bits=10; client_max_window_bits=10"}),
    ("client_max_window_bits=12", [PMD + "; client_max_window_bits=12"],
     {"shared": S_ANS, "dedicated": PMD,
      "dedicated-w10": PMD + "; server_max_window_bits=10; client_max_window_bits=10"}),
    ("client_max_window_bits=9", [PMD + "; client_max_window_bits=9"],
     {"shared": S_ANS, "dedicated": PMD,
      "dedicated-w10": PMD + "; server_max_window_bits=10; client_max_window_bits=9"}),
    ("server_max_window_bits=10", [PMD + "; server_max_window_bits=10"],
     {"shared": S_ANS + "; server_max_window_bits=10",
      "dedicated": PMD + "; server_max_window_bits=10",
      "dedicated-w10": PMD + "; server_max_window_bits=10"}),
    ("server_max_window_bits=12", [PMD + "; server_max_window_bits=12"],
     {"shared": S_ANS + "; server_max_window_bits=12",
      "dedicated": PMD + "; server_max_window_bits=12",
      "dedicated-w10": PMD + "; server_max_window_bits=10"}),
    ("server_max_window_bits=9", [PMD + "; server_max_window_bits=9"],
     {"shared": S_ANS + "; server_max_window_bits=9",
      "dedicated": PMD + "; server_max_window_bits=9",
      "dedicated-w10": PMD + "; server_max_window_bits=9"}),
    ("server_max_window_bits=8-declined", [PMD + "; server_max_window_bits=8"],
     {"shared": None, "dedicated": None, "dedicated-w10": None}),
    ("both-no-context-takeover", [PMD + "; " + SNCT + "; " + CNCT],
     {"shared": S_ANS, "dedicated": S_ANS,
      "dedicated-w10": S_ANS + "; server_max_window_bits=10"}),
    ("server_no_context_takeover", [PMD + "; " + SNCT],
     {"shared": S_ANS, "dedicated": PMD + "; " + SNCT,
      "dedicated-w10": PMD + "; " + SNCT + "; server_max_window_bits=10"}),
    ("case-insensitive-names", ["Permessage-Deflate; Server_Max_Window_Bits=11"],
     {"shared": S_ANS + "; server_max_window_bits=11",
      "dedicated": PMD + "; server_max_window_bits=11",
      "dedicated-w10": PMD + "; server_max_window_bits=10"}),
    ("unknown-extension-only", ["x-webkit-deflate-frame"],
     {"shared": None, "dedicated": None, "dedicated-w10": None}),
    ("unknown-extension-then-pmd", ["x-foo; bar=1, " + PMD + "; server_max_window_bits=11"],
     {"shared": S_ANS + "; server_max_window_bits=11",
      "dedicated": PMD + "; server_max_window_bits=11",
      "dedicated-w10": PMD + "; server_max_window_bits=10"}),
    ("split-over-two-lines", ["x-foo", PMD + "; server_max_window_bits=11"],
     {"shared": S_ANS + "; server_max_window_bits=11",
      "dedicated": PMD + "; server_max_window_bits=11",
      "dedicated-w10": PMD + "; server_max_window_bits=10"}),
    ("split-invalid-then-valid-lines", [PMD + "; foo", PMD + "; server_max_window_bits=11"],
     {"shared": S_ANS + "; server_max_window_bits=11",
      "dedicated": PMD + "; server_max_window_bits=11",
      "dedicated-w10": PMD + "; server_max_window_bits=10"}),
    ("empty-elements-skipped", [", ," + PMD + " ,"],
     {"shared": S_ANS, "dedicated": PMD,
      "dedicated-w10": PMD + "; server_max_window_bits=10"}),
    # RFC 6455 section 9.1: a quoted value is read after unescaping, so "10" is 10.
    ("quoted-value-10", [PMD + '; server_max_window_bits="10"'],
     {"shared": S_ANS + "; server_max_window_bits=10",
      "dedicated": PMD + "; server_max_window_bits=10",
      "dedicated-w10": PMD + "; server_max_window_bits=10"}),
]

# First offer invalid (declined), second valid: the second must be the one answered.
INVALID_FIRST = [
    ("unknown-param", PMD + "; foo"),
    ("unknown-param-with-value", PMD + "; foo=1"),
    ("duplicate-param", PMD + "; " + SNCT + "; " + SNCT),
    ("duplicate-window", PMD + "; server_max_window_bits=10; server_max_window_bits=10"),
    ("value-on-server_no_context_takeover", PMD + "; " + SNCT + "=1"),
    ("value-on-client_no_context_takeover", PMD + "; " + CNCT + "=true"),
    ("server_max_window_bits-without-value", PMD + "; server_max_window_bits"),
    ("window-16", PMD + "; client_max_window_bits=16"),
    ("window-7", PMD + "; server_max_window_bits=7"),
    ("window-08", PMD + "; server_max_window_bits=08"),
    ("window-010", PMD + "; server_max_window_bits=010"),
    ("window-quoted-16", PMD + '; server_max_window_bits="16"'),
    ("window-letters", PMD + "; client_max_window_bits=ten"),
    ("too-many-params", PMD + "".join("; p%d" % i for i in range(12))),
]
SECOND = PMD + "; server_max_window_bits=11"
SECOND_ANS = {"shared": S_ANS + "; server_max_window_bits=11",
              "dedicated": PMD + "; server_max_window_bits=11",
              "dedicated-w10": PMD + "; server_max_window_bits=10"}

BROKEN = [
    PMD + ";;",
    PMD + "; a=\"unterminated",
    PMD + "; =1",
    PMD + "; x=",
    PMD + " server_no_context_takeover",
    PMD + "; server_max_window_bits=\"\"",
    PMD + "; client_max_window_bits=\"1 0\"",
    ";" + PMD,
]


def c_answer(server, offers, want):
    d = open_ws(server, offers, answer=want)
    d.close()


def c_answer_then_invalid_first(server, first, want):
    c_answer(server, [first + ", " + SECOND], want)


def c_broken(server, header, second_line=None):
    offers = [header] if second_line is None else [PMD, header]
    d = DConn(server.port, offers)
    check(re.match(r"HTTP/1\.1 400( |$)", d.status),
          "header %r: expected HTTP/1.1 400, got %r" % (offers, d.status))
    check("sec-websocket-extensions" not in d.hdrs, "400 with an extension header")
    d.close()


def c_off_server(server):
    for offers in ([PMD], [PMD + "; client_max_window_bits", PMD],
                   [PMD + "; " + SNCT + "; " + CNCT]):
        d = open_ws(server, offers, answer=None)
        # An uncompressed echo works, and RSV1 from us is an error (next case).
        msg = text_of(1000)
        d.c.send_text(msg)
        d.expect(OP_TEXT, msg, compressed=False)
        d.close()


def c_safari_15_2_not_offered(server):
    ua = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/15.2 Safari/605.1.15")
    d = DConn(server.port, [PMD], headers=[("User-Agent", ua)]).opened()
    check(d.answer is None, "Safari 15.2 was answered %r" % d.answer)
    d.close()
    ua = ua.replace("Version/15.2", "Version/15.4")
    d = DConn(server.port, [PMD], headers=[("User-Agent", ua)]).opened()
    check(d.answer is not None, "Safari 15.4 was not answered")
    d.close()


def c_exchange(server, mode, offers):
    """Compressed messages both ways on the agreed terms, and the threshold (128)."""
    d = open_ws(server, offers)
    try:
        check(d.answer is not None, "no extension agreed")
        p = d.params
        # Our window: what the server asked for, else what we offered, else 15.
        bits = p.get("client_max_window_bits", 15)
        takeover = CNCT not in p
        comp = zlib.compressobj(6, zlib.DEFLATED, -bits) if takeover else None
        for n in (0, 1, 127, 128, 129, 1000, 70000, 300000):
            for opcode, msg in ((OP_TEXT, text_of(n)), (OP_BINARY, text_of(n).encode())):
                d.send_compressed(opcode, msg, bits, comp)
                # Compressible, so compressed exactly from the threshold up.
                d.expect(opcode, msg, compressed=n >= 128, what="%d bytes: " % n)
        # Not compressed by us (a client may choose so per message): same echo.
        msg = text_of(5000)
        d.c.send_text(msg)
        d.expect(OP_TEXT, msg, compressed=True)
        # Random bytes: the echo may be sent either way, and must inflate.
        for n in (200, 5000, 100000):
            msg = random.randbytes(n)
            d.send_compressed(OP_BINARY, msg, bits, comp)
            rsv1 = d.expect(OP_BINARY, msg)
            if mode == "shared":
                # Without context, a message that does not shrink goes as it is.
                check(not rsv1, "random %d bytes were sent compressed by a shared server" % n)
        # A random multibyte text, inflated and checked as UTF-8 by the server.
        msg = random_text(20000)
        d.send_compressed(OP_TEXT, msg, bits, comp)
        d.expect(OP_TEXT, msg)
        d.c.send_close(1000)
        d.c.expect_close(1000, reply=False)
    finally:
        d.close()


def c_empty_compressed(server):
    # An empty message compressed is the byte 00 (an empty stored block's header;
    # RFC 7692 7.2.3.6). A payload of nothing with RSV1 inflates to nothing too, but
    # leaves a kept context inside a block header: so it comes last here.
    d = open_ws(server, [PMD])
    try:
        for payload in (b"\x00", deflate_raw(b""), b"\x00", b""):
            d.c.send(build_frame(OP_TEXT, payload, rsv=4))
            d.expect(OP_TEXT, b"", compressed=False)
    finally:
        d.close()


def c_threshold_1(server, mode):
    """--deflate-threshold 1: short messages go compressed too; without context only
    when that pays, with context always (the peer's window must follow ours). Without
    context, below 32 bytes either is right: libdeflate, where the build has it, stores
    such messages (so they go as they are) where zlib would shrink them."""
    d = open_ws(server, [PMD])
    try:
        for msg in (b"a", b"ab", b"a" * 20, text_of(127).encode()):
            d.send_compressed(OP_BINARY, msg)
            pays = len(deflate_raw(msg)) < len(msg)
            d.expect(OP_BINARY, msg, compressed=True if mode == "dedicated" else
                     pays if len(msg) >= 32 else None)
    finally:
        d.close()


def hello_vectors():
    """RFC 7692 section 7.2.3's ways to send "Hello", checked with Python's zlib
    first: (name, the frames' payloads)."""
    vecs = [("one-block", ["f248cdc9c90700"]),
            ("fragmented", ["f248cd", "c9c90700"]),
            ("stored", ["000500faff48656c6c6f00"]),
            ("two-blocks", ["f24805000000ffffcac9c90700"]),
            ("bfinal", ["f348cdc9c90700"]),
            ("bfinal-then-00", ["f348cdc9c9070000"])]
    out = []
    for name, parts in vecs:
        parts = [bytes.fromhex(p) for p in parts]
        check(zlib.decompressobj(-15).decompress(b"".join(parts) + TAIL) == b"Hello",
              "vector %s does not inflate to Hello" % name)
        out.append((name, parts))
    return out


def c_rfc_examples(server, mode):
    for name, parts in hello_vectors():
        # One connection each: a final block ends the stream, and what follows it
        # (the appended 00 00 ff ff) starts another that a kept context would carry.
        d = open_ws(server, [PMD])
        try:
            frames = [build_frame(OP_TEXT if i == 0 else OP_CONT, p, rsv=4 if i == 0 else 0,
                                  fin=i == len(parts) - 1) for i, p in enumerate(parts)]
            d.c.send(b"".join(frames))
            d.expect(OP_TEXT, b"Hello", compressed=False, what=name + ": ")
        finally:
            d.close()
    if mode == "dedicated":
        # 7.2.3.2: the second "Hello" refers to the first through the kept window.
        d = open_ws(server, [PMD])
        try:
            for p in ("f248cdc9c90700", "f200110000"):
                d.c.send(build_frame(OP_TEXT, bytes.fromhex(p), rsv=4))
                d.expect(OP_TEXT, b"Hello", compressed=False, what="shared window: ")
        finally:
            d.close()


# =========================================================================== 2. negatives

def fail_case(server, frames, code, offers=(PMD,)):
    d = open_ws(server, offers)
    try:
        d.c.send(b"".join(frames))
        d.c.expect_close(code)
    finally:
        d.close()
    still_serves(server)


_BOMB = []


def bomb_payload():
    """100 MiB of zeros compressed (about 100 KB), made once."""
    if not _BOMB:
        _BOMB.append(deflate_raw(bytes(100 << 20), comp=zlib.compressobj(9, zlib.DEFLATED, -15)))
    return _BOMB[0]


def c_bomb(server):
    bomb = bomb_payload()
    check(len(bomb) < 200000, "the bomb compressed to %d bytes" % len(bomb))
    pid = server.proc.pid
    before = settled_rss(pid) if not WRAP else 0
    d = open_ws(server, [PMD])
    try:
        t = time.monotonic()
        try:
            d.c.send(build_frame(OP_BINARY, bomb, rsv=4))
        except OSError:
            pass  # the server may fail the connection before reading all of it
        d.c.expect_close(1009)
        took = time.monotonic() - t
        check(took < 2.0 * SLOW, "1009 took %.1f s" % took)
    finally:
        d.close()
    if not WRAP:
        after = settled_rss(pid)
        print("  %s: RSS %d KiB before the bomb, %d KiB after" % (
            server.name, before >> 10, after >> 10), flush=True)
        check(after < 48 << 20 and after - before < 24 << 20,
              "server RSS %d KiB after the bomb (%d KiB before)" % (after >> 10, before >> 10))
    still_serves(server)


def c_bomb_fragmented(server):
    # The same bomb cut in three frames: the total inflated size is what counts.
    bomb = bomb_payload()
    k = len(bomb) // 3
    frames = [build_frame(OP_BINARY, bomb[:k], fin=False, rsv=4),
              build_frame(OP_CONT, bomb[k:2 * k], fin=False),
              build_frame(OP_CONT, bomb[2 * k:])]
    d = open_ws(server, [PMD])
    try:
        try:
            d.c.send(b"".join(frames))
        except OSError:
            pass
        d.c.expect_close(1009)
    finally:
        d.close()
    still_serves(server)


def c_at_limit(server):
    # Exactly the maximum (1 MiB) inflated is fine; one byte more is 1009.
    d = open_ws(server, [PMD])
    try:
        msg = bytes(1 << 20)
        d.send_compressed(OP_BINARY, msg)
        d.expect(OP_BINARY, msg)
        d.send_compressed(OP_BINARY, bytes((1 << 20) + 1))
        d.c.expect_close(1009)
    finally:
        d.close()


def c_takeover(server, bits=15):
    """Dedicated: our second message references the first (same compressor); the
    server's second echo must reference its first too (it is much smaller)."""
    d = open_ws(server, [PMD + ("; client_max_window_bits" if bits < 15 else "")])
    try:
        p = d.params
        check(CNCT not in p and SNCT not in p, "no context takeover agreed: %r" % d.answer)
        our_bits = p.get("client_max_window_bits", 15)
        comp = zlib.compressobj(6, zlib.DEFLATED, -our_bits)
        msg = random_ascii_line(400) * 2  # compressible, but only from itself
        sizes = []
        for i in range(3):
            wire = deflate_raw(msg, comp=comp)
            sizes.append(len(wire))
            d.c.send(build_frame(OP_TEXT, wire, rsv=4))
            deadline = time.monotonic() + TIMEOUT
            fin, rsv, op, payload = read_frame(d.c, deadline)
            check(fin and rsv == 4 and op == OP_TEXT, "echo %d: fin=%d rsv=%d op=%d"
                  % (i, fin, rsv, op))
            got = d.inflater.inflate(payload)
            check(got == msg, "echo %d differs: %s" % (i, short(got)))
            if i:
                check(len(payload) < 40, "echo %d is %d bytes compressed: the server did "
                      "not use its context" % (i, len(payload)))
        check(sizes[1] < 40 and sizes[0] > 250, "our own takeover did not pay: %r" % sizes)
    finally:
        d.close()


def c_takeover_violation(server):
    """A shared server agreed client_no_context_takeover: a message that references
    the previous one cannot be inflated -> 1007."""
    d = open_ws(server, [PMD])
    try:
        check(CNCT in d.params, "shared server did not say client_no_context_takeover")
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        msg = random_ascii_line(2000)
        d.c.send(build_frame(OP_TEXT, deflate_raw(msg, comp=comp), rsv=4))
        d.expect(OP_TEXT, msg)
        d.c.send(build_frame(OP_TEXT, deflate_raw(msg, comp=comp), rsv=4))
        d.c.expect_close(1007)
    finally:
        d.close()
    still_serves(server)


def c_fragmented_3(server, first_empty=False):
    d = open_ws(server, [PMD])
    try:
        for opcode, msg in ((OP_TEXT, text_of(50000)), (OP_BINARY, random.randbytes(30000)),
                            (OP_TEXT, random_text(5000))):
            wire = deflate_raw(msg)
            k = 0 if first_empty else len(wire) // 3
            frames = [build_frame(opcode, wire[:k], fin=False, rsv=4),
                      build_frame(OP_CONT, wire[k:2 * len(wire) // 3], fin=False),
                      build_frame(OP_CONT, wire[2 * len(wire) // 3:])]
            d.c.send(b"".join(frames))
            d.expect(opcode, msg)
        # A ping between compressed fragments is answered, the message still echoed.
        wire = deflate_raw(text_of(4000))
        d.c.send(build_frame(OP_TEXT, wire[:10], fin=False, rsv=4)
                 + build_frame(OP_PING, b"mid")
                 + build_frame(OP_CONT, wire[10:]))
        fin, rsv, op, payload = read_frame(d.c, time.monotonic() + TIMEOUT)
        check(op == 0xA and payload == b"mid" and rsv == 0, "expected the pong first, "
              "got op=%d rsv=%d %s" % (op, rsv, short(payload)))
        d.expect(OP_TEXT, text_of(4000))
    finally:
        d.close()


def c_rsv1_uncompressed_message_then_compressed(server):
    # Uncompressed fragmented message (no RSV1), then a compressed one: both fine.
    d = open_ws(server, [PMD])
    try:
        d.c.send(build_frame(OP_TEXT, b"plain ", fin=False) + build_frame(OP_CONT, b"text"))
        d.expect(OP_TEXT, b"plain text")
        d.send_compressed(OP_TEXT, text_of(300))
        d.expect(OP_TEXT, text_of(300))
    finally:
        d.close()


CORRUPT = [
    ("invalid-block-type", b"\xff\xff\xff\xff\xff"),
    ("bad-stored-length", b"\x00\x05\x00\x00\x00hello"),
    ("distance-too-far", None),  # a back reference before the message's start
    ("data-after-final-block-garbage", None),
]


def corrupt_payload(name):
    if name == "distance-too-far":
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        msg = random_ascii_line(1000)
        deflate_raw(msg, comp=comp)
        return deflate_raw(msg, comp=comp)  # refers to a message the server never saw
    if name == "data-after-final-block-garbage":
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(b"x" * 300) + c.flush(zlib.Z_FINISH) + b"\xff\xff\xff"
    return dict(CORRUPT)[name]


# =========================================================================== 3. websockets client

CASE_TIMEOUT = 60.0 * (3 if WRAP else 1)


def ws_connect(port, **kw):
    opts = dict(max_size=None, ping_interval=None, open_timeout=5 * SLOW,
                close_timeout=5 * SLOW)
    opts.update(kw)
    return websockets.connect("ws://127.0.0.1:%d/" % port, **opts)


async def ws_echo(ws, msg, timeout=20.0):
    await ws.send(msg)
    try:
        got = await asyncio.wait_for(ws.recv(), timeout * SLOW)
    except asyncio.TimeoutError:
        raise TestFailure("no echo of %d items within %.0f s" % (len(msg), timeout * SLOW))
    check(type(got) is type(msg), "sent %s, got %s" % (type(msg).__name__, type(got).__name__))
    if got != msg:
        enc = (lambda m: m if isinstance(m, bytes) else m.encode())
        raise TestFailure("echo differs: sent %d %s, got %d: %s vs %s" % (
            len(msg), type(msg).__name__, len(got), short(enc(msg)), short(enc(got))))


def ext_of(ws):
    exts = ws.extensions
    check(len(exts) == 1 and exts[0].name == PMD, "extensions agreed: %r" % (exts,))
    return exts[0]


def model_answer(mode, w, snct=False, cnct=False, smwb=None, cmwb=None):
    """What the brief's server rules answer to one offer (None: declined)."""
    if smwb is not None and smwb < 9:
        return None
    shared = mode == "shared"
    out_bits = min(smwb, w) if smwb else w
    parts = [PMD]
    if snct or shared:
        parts.append(SNCT)
    if cnct or shared:
        parts.append(CNCT)
    if smwb or out_bits < 15:
        parts.append("server_max_window_bits=%d" % out_bits)
    if cmwb and not shared and w < 15:
        parts.append("client_max_window_bits=%d" % min(w, 15 if cmwb is True else cmwb))
    return "; ".join(parts)


SIZES = [0, 1, 127, 128, 1000, 65536, 1 << 20] + ([] if WRAP else [8 << 20])


async def c_ws_default(port, mode):
    async with ws_connect(port, compression="deflate") as ws:
        ans = ws.response_headers.get("Sec-WebSocket-Extensions")
        want = S_ANS if mode == "shared" else PMD
        check(ans == want, "answered %r, expected %r" % (ans, want))
        e = ext_of(ws)
        shared = mode == "shared"
        check(e.remote_no_context_takeover == shared and e.local_no_context_takeover == shared
              and e.remote_max_window_bits == 15 and e.local_max_window_bits == 15,
              "websockets agreed %r" % e)
        for n in SIZES:
            for msg in (text_of(n), random_text(n), text_of(n).encode(), random.randbytes(n)):
                await ws_echo(ws, msg, timeout=60)


async def c_ws_fragmented(port):
    async with ws_connect(port, compression="deflate") as ws:
        ext_of(ws)

        async def frags(parts):
            for p in parts:
                yield p
                await asyncio.sleep(0)
        parts = [text_of(20000), "", random_text(3000), "\u20ac end"]
        await ws.send(frags(parts))
        got = await asyncio.wait_for(ws.recv(), 10 * SLOW)
        check(got == "".join(parts), "fragmented text came back as %s"
              % short(got.encode()))
        parts = [random.randbytes(10), b"\x00" * 100000, b"", random.randbytes(70000)]
        await ws.send(frags(parts))
        got = await asyncio.wait_for(ws.recv(), 10 * SLOW)
        check(got == b"".join(parts), "fragmented binary came back as %s" % short(got))
        await ws.send(iter(["a", "b", "c" * 500]))
        got = await asyncio.wait_for(ws.recv(), 10 * SLOW)
        check(got == "ab" + "c" * 500, "sync-fragmented text came back as %s"
              % short(got.encode()))
        await ws_echo(ws, "after fragments " + text_of(500))


async def c_ws_windows(port, mode, w, cmwb, smwb, snct, cnct):
    fac = ClientPerMessageDeflateFactory(
        client_max_window_bits=cmwb, server_max_window_bits=smwb,
        server_no_context_takeover=snct, client_no_context_takeover=cnct)
    async with ws_connect(port, compression=None, extensions=[fac]) as ws:
        ans = ws.response_headers.get("Sec-WebSocket-Extensions")
        want = model_answer(mode, w, snct, cnct, smwb, cmwb)
        check(ans == want, "answered %r, expected %r" % (ans, want))
        e = ext_of(ws)
        p = parse_ext(ans)
        check(e.remote_max_window_bits == p.get("server_max_window_bits", 15)
              and e.remote_no_context_takeover == (SNCT in p)
              and e.local_no_context_takeover == (CNCT in p), "websockets agreed %r" % e)
        # Similar messages in a row: context takeover (where agreed) gets exercised,
        # and 100 KB messages exceed every window.
        base = random_ascii_line(3000).decode()
        for i in range(4):
            await ws_echo(ws, base + str(i) + text_of(100000))
            await ws_echo(ws, random.randbytes(2000) + base.encode())
            await ws_echo(ws, "small %d" % i)


# =========================================================================== 4. wsev-client

def client_cmd(*args):
    return WRAP + [CLIENT] + list(args)


async def run_client(url, args, lines, wait_open=True, timeout=60.0):
    """Run wsev-client, feed it `lines` (once it is connected, with wait_open: lines
    sent before the 101 go uncompressed, since the answer is not known yet), read as
    many echoed lines, then end stdin. Returns (echoed lines, stderr text, status)."""
    proc = await asyncio.create_subprocess_exec(
        *client_cmd(url, *args), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=8 << 20)
    got, err_lines = [], []
    connected = asyncio.Event()

    async def read_err():
        async for line in proc.stderr:
            line = line.decode("utf-8", "replace")
            err_lines.append(line)
            if line.startswith("wsev-client: connected"):
                connected.set()
        connected.set()  # it ended: let the feeder go on and fail

    async def feed():
        if wait_open:
            await connected.wait()
        for line in lines:
            proc.stdin.write(line + b"\n")
            await proc.stdin.drain()

    async def read():
        while len(got) < len(lines):
            line = await proc.stdout.readline()
            if not line:
                break
            got.append(line[:-1] if line.endswith(b"\n") else line)

    err_task = asyncio.ensure_future(read_err())
    try:
        await asyncio.wait_for(asyncio.gather(feed(), read()), timeout * SLOW)
        proc.stdin.close()
        rc = await asyncio.wait_for(proc.wait(), 10 * SLOW)
        await asyncio.wait_for(err_task, 5 * SLOW)
    except (asyncio.TimeoutError, BrokenPipeError, ConnectionResetError) as e:
        raise TestFailure("wsev-client %s: %r after %d of %d echoes; stderr: %s"
                          % (" ".join(args), e, len(got), len(lines), "".join(err_lines)[-1500:]))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        err_task.cancel()
    return got, "".join(err_lines), rc


def deflate_line(err):
    m = re.search(r"wsev-client: deflate our_window=(\d+) peer_window=(\d+) "
                  r"our_takeover=([01]) peer_takeover=([01])", err)
    return tuple(int(x) for x in m.groups()) if m else None


class EchoServer:
    """A websockets server that echoes and records, per connection, the extension it
    agreed and whether each frame from the client had RSV1."""

    def __init__(self, **kw):
        self.kw = kw
        self.agreed = []
        self.rsv1 = []  # (rsv1, payload length on the wire) per data frame

    async def handler(self, ws, path=None):
        e = ws.extensions[0] if ws.extensions else None
        self.agreed.append(e)
        if e is not None:
            decode = e.decode

            def spy(frame, **kw):
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                    self.rsv1.append((frame.rsv1, len(frame.data)))
                return decode(frame, **kw)
            e.decode = spy
        try:
            async for msg in ws:
                await ws.send(msg)
        except websockets.exceptions.ConnectionClosed:
            pass

    async def __aenter__(self):
        opts = dict(max_size=None, ping_interval=None, compression=None)
        opts.update(self.kw)
        self.server = await websockets.serve(self.handler, "127.0.0.1", 0, **opts)
        self.url = "ws://127.0.0.1:%d/" % self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


LINE_SIZES = [1, 100, 1024, 4096, 65536, 300000, 1 << 20]


def client_lines():
    lines = []
    for n in LINE_SIZES:
        lines.append(text_of(n).encode())
        lines.append(random_ascii_line(n))
    return lines


async def c_client_vs_websockets(server_kw, client_args, want_line, compressed_lines=None,
                                 wait_open=True):
    """wsev-client against a websockets server: byte-exact echoes, the agreed terms on
    both sides, and (threshold 1) every line of 2+ bytes compressed by the client."""
    async with EchoServer(**server_kw) as srv:
        lines = client_lines()
        got, err, rc = await run_client(srv.url, client_args, lines, wait_open)
        check(len(got) == len(lines), "%d of %d echoes; stderr: %s"
              % (len(got), len(lines), err[-800:]))
        for i, (a, b) in enumerate(zip(lines, got)):
            check(a == b, "line %d (%d bytes) came back as %s" % (i, len(a), short(b)))
        check(rc == 0, "wsev-client exit status %s; stderr: %s" % (rc, err[-800:]))
        dl = deflate_line(err)
        check(dl == want_line, "wsev-client said %r, expected deflate line %r (stderr %s)"
              % (dl, want_line, err[-400:]))
        check(len(srv.agreed) == 1 and srv.agreed[0] is not None,
              "websockets server agreed %r" % srv.agreed)
        e = srv.agreed[0]
        our_w, peer_w, our_t, peer_t = dl
        # The client's view must match the server's: its window no larger than the
        # server expects, the server's window and takeover as the server will use them.
        check(our_w <= e.remote_max_window_bits and peer_w == e.local_max_window_bits
              and peer_t == (not e.local_no_context_takeover)
              and (not our_t or not e.remote_no_context_takeover),
              "wsev-client %r vs websockets %r" % (dl, e))
        if compressed_lines is not None:
            flags = [r for r, _ in srv.rsv1]
            check(len(flags) == len(lines), "server saw %d data frames for %d lines"
                  % (len(flags), len(lines)))
            for i, line in enumerate(lines):
                want = compressed_lines(line)
                if want is not None:
                    check(flags[i] == want, "line %d (%d bytes, %s): RSV1=%d, expected %d"
                          % (i, len(line), short(line, 16), flags[i], want))


# =========================================================================== 5. illegal answers

class RawServer:
    """Answers a client's upgrade with a hand-written 101 carrying `answer` as its
    Sec-WebSocket-Extensions (None: no header), then sends `frames` and reads until
    the client closes. Records the client's offer and close frame."""

    def __init__(self, answer, frames=b""):
        self.answer, self.frames = answer, frames
        self.offers, self.close_codes, self.messages = [], [], []

    async def handle(self, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10 * SLOW)
            lines = head.decode("latin-1").split("\r\n")
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs.setdefault(k.strip().lower(), []).append(v.strip())
            self.offers.append(hdrs.get("sec-websocket-extensions"))
            key = hdrs["sec-websocket-key"][0]
            resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n" % accept_for(key))
            if self.answer is not None:
                resp += "Sec-WebSocket-Extensions: %s\r\n" % self.answer
            writer.write((resp + "\r\n").encode("latin-1") + self.frames)
            await writer.drain()
            # Read the client's frames (masked) until its close or EOF.
            while True:
                h = await asyncio.wait_for(reader.readexactly(2), 10 * SLOW)
                n = h[1] & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await reader.readexactly(8))[0]
                key = await reader.readexactly(4) if h[1] & 0x80 else b"\0\0\0\0"
                payload = xor_mask(await reader.readexactly(n), key)
                op = h[0] & 0xF
                if op == OP_CLOSE:
                    self.close_codes.append(struct.unpack("!H", payload[:2])[0]
                                            if len(payload) >= 2 else None)
                    writer.write(bytes([0x88, len(payload)]) + payload)
                    await writer.drain()
                    break
                if op in (OP_TEXT, OP_BINARY, OP_CONT):
                    self.messages.append((h[0], payload))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = "ws://127.0.0.1:%d/" % self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


def offer_params(offer_lines):
    check(offer_lines and len(offer_lines) == 1, "client offer lines: %r" % (offer_lines,))
    parts = [p.strip() for p in offer_lines[0].split(";")]
    check(parts[0] == PMD, "client offered %r" % offer_lines[0])
    return {p.partition("=")[0]: p.partition("=")[2] or True for p in parts[1:]}


CLIENT_ARGS = {
    "shared": ["--deflate"],
    "dedicated": ["--deflate=dedicated"],
    "dedicated-w10": ["--deflate=dedicated", "--deflate-window", "10"],
    "off": [],
}


def check_offer(mode, offers):
    if mode == "off":
        check(offers == [None], "wsev-client without --deflate offered %r" % offers)
        return
    p = offer_params(offers[0])
    check(p.get("client_max_window_bits") is True, "offer %r lacks client_max_window_bits"
          % offers[0])
    if mode == "shared":
        check(p.get(SNCT) is True and p.get(CNCT) is True,
              "shared offer %r lacks the no_context_takeover params" % offers[0])
    else:
        check(SNCT not in p and CNCT not in p, "dedicated offer %r" % offers[0])
    if mode == "dedicated-w10":
        check(p.get("server_max_window_bits") == "10", "w10 offer %r" % offers[0])


async def client_until_exit(url, args, timeout=20.0):
    """wsev-client with its stdin held open (so it never closes by itself) until it
    exits: (stdout, stderr text, exit status)."""
    proc = await asyncio.create_subprocess_exec(
        *client_cmd(url, *args), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(
            asyncio.gather(proc.stdout.read(), proc.stderr.read()), timeout * SLOW)
        rc = await asyncio.wait_for(proc.wait(), 10 * SLOW)
    except asyncio.TimeoutError:
        raise TestFailure("wsev-client %s did not end by itself" % " ".join(args))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        proc.stdin.close()
    return out, err.decode("utf-8", "replace"), rc


async def c_illegal_answer(mode, answer, reason):
    async with RawServer(answer) as srv:
        _, err, rc = await client_until_exit(srv.url, CLIENT_ARGS[mode])
        check_offer(mode, srv.offers)
        want = "wsev-client: failed: WSEV_EHANDSHAKE: " + reason
        check(want in err.splitlines(), "answer %r: expected %r on stderr, got %r"
              % (answer, want, err[-600:]))
        check(rc == 1, "exit status %s (expected 1)" % rc)
        check("wsev-client: connected" not in err, "connected despite %r" % answer)


async def c_client_frame_error(mode, answer, frames, code, lines_out=()):
    """The server agreed (or not) and sends `frames`: wsev-client must print the
    lines it inflated, then close with `code` (its own, or the server's 1000)."""
    async with RawServer(answer, frames) as srv:
        out, err, rc = await client_until_exit(srv.url, CLIENT_ARGS[mode])
        got = out.split(b"\n")[:-1]
        check(got == list(lines_out), "stdout %s, expected %d lines" % (short(out),
                                                                       len(lines_out)))
        check(srv.close_codes == [code], "client close frame codes %r, expected [%d]; "
              "stderr %s" % (srv.close_codes, code, err[-400:]))
        closed = [ln for ln in err.splitlines() if ln.startswith("wsev-client: closed")]
        check(closed and closed[0].split()[2] == str(code),
              "expected 'wsev-client: closed %d' on stderr, got %r" % (code, err[-600:]))
        check(rc == (0 if code == 1000 else 1), "exit status %s" % rc)


def srv_frame(op, payload, fin=True, rsv=0):
    return build_frame(op, payload, fin=fin, rsv=rsv, mask=False)


# =========================================================================== main

DEAD = set()


def check_servers(after):
    """A server that ended during a case fails that case's neighbour check at once,
    naming the case (instead of only at the end)."""
    for name, server in SERVERS.items():
        problem = server.alive_problem()
        if problem and name not in DEAD:
            DEAD.add(name)
            R.record("wsev-echo %s alive after %s" % (name, after), problem)


def case(name, fn, *args):
    R.run(name, fn, *args)
    check_servers(name)


def run_async(name, coro_fn, *args, limit=None):
    async def limited():
        t = limit or CASE_TIMEOUT
        try:
            await asyncio.wait_for(coro_fn(*args), t)
        except asyncio.TimeoutError:
            raise TestFailure("case did not finish within %.0f s" % t)
        except websockets.exceptions.ConnectionClosed as e:
            raise TestFailure("connection closed unexpectedly: %r" % (e,))
        except websockets.exceptions.InvalidHandshake as e:
            raise TestFailure("handshake failed: %r" % (e,))
    case(name, lambda: asyncio.run(limited()))


def start_servers():
    for name, args in CONFIGS.items():
        try:
            SERVERS[name] = Server(ECHO, *args, name="wsev-echo %s" % name)
        except TestFailure as e:
            R.record("start wsev-echo %s" % name, str(e))


def part1():
    for key, offers, answers in MATRIX:
        for mode, want in answers.items():
            if mode in SERVERS:
                case("nego-%s-%s" % (mode, key), c_answer, SERVERS[mode], offers, want)
    for key, first in INVALID_FIRST:
        for mode in ("shared", "dedicated", "dedicated-w10"):
            if mode in SERVERS:
                case("nego-%s-invalid-first-%s" % (mode, key), c_answer_then_invalid_first,
                     SERVERS[mode], first, SECOND_ANS[mode])
                # Alone, the invalid offer leaves the 101 without the extension.
                case("nego-%s-invalid-only-%s" % (mode, key), c_answer, SERVERS[mode],
                     [first], None)
    for i, header in enumerate(BROKEN):
        for mode in ("shared", "dedicated"):
            if mode in SERVERS:
                case("nego-%s-broken-%d-400 %r" % (mode, i, header), c_broken,
                     SERVERS[mode], header)
    if "shared" in SERVERS:
        # Broken in a second header line, after a valid first: still a 400.
        case("nego-shared-broken-second-line-400", c_broken, SERVERS["shared"],
             PMD + ";;", True)
        case("nego-shared-safari-15.2-not-answered", c_safari_15_2_not_offered,
             SERVERS["shared"])
    if "off" in SERVERS:
        case("nego-off-no-extension", c_off_server, SERVERS["off"])
    offers_for = {
        "shared": [[PMD], [PMD + "; client_max_window_bits"], [PMD + "; server_max_window_bits=9"]],
        "dedicated": [[PMD], [PMD + "; client_max_window_bits"],
                      [PMD + "; " + SNCT + "; " + CNCT], [PMD + "; server_max_window_bits=9"]],
        "dedicated-w10": [[PMD], [PMD + "; client_max_window_bits"],
                          [PMD + "; client_max_window_bits=9"], [PMD + "; " + CNCT]],
    }
    for mode, offer_list in offers_for.items():
        if mode in SERVERS:
            for offers in offer_list:
                case("msg-%s-%s" % (mode, offers[0].replace(" ", "")), c_exchange,
                     SERVERS[mode], mode, offers)
    for mode in ("shared", "dedicated"):
        if mode in SERVERS:
            case("msg-%s-empty-compressed-message" % mode, c_empty_compressed, SERVERS[mode])
            case("msg-%s-rfc7692-hello-examples" % mode, c_rfc_examples, SERVERS[mode], mode)
            case("msg-%s-rsv1-after-plain-fragmented" % mode,
                 c_rsv1_uncompressed_message_then_compressed, SERVERS[mode])


    for mode in ("shared", "dedicated"):
        if mode + "-t1" in SERVERS:
            case("msg-%s-threshold-1" % mode, c_threshold_1, SERVERS[mode + "-t1"], mode)


def part2():
    for mode in ("limited", "limited-shared"):
        if mode in SERVERS:
            case("neg-%s-bomb-100MiB-1009" % mode, c_bomb, SERVERS[mode])
            case("neg-%s-bomb-fragmented-1009" % mode, c_bomb_fragmented, SERVERS[mode])
            case("neg-%s-1MiB-ok-1MiB+1-1009" % mode, c_at_limit, SERVERS[mode])
    for mode in ("shared", "dedicated"):
        if mode not in SERVERS:
            continue
        S = SERVERS[mode]
        for name, _ in CORRUPT:
            case("neg-%s-corrupt-%s-1007" % (mode, name), fail_case, S,
                 [build_frame(OP_BINARY, corrupt_payload(name), rsv=4)], 1007)
        case("neg-%s-rsv1-on-continuation-1002" % mode, fail_case, S,
             [build_frame(OP_TEXT, deflate_raw(text_of(300))[:20], fin=False, rsv=4),
              build_frame(OP_CONT, deflate_raw(text_of(300))[20:], rsv=4)], 1002)
        case("neg-%s-rsv1-on-continuation-of-plain-1002" % mode, fail_case, S,
             [build_frame(OP_TEXT, b"abc", fin=False), build_frame(OP_CONT, b"", rsv=4)], 1002)
        case("neg-%s-rsv1-on-ping-1002" % mode, fail_case, S,
             [build_frame(OP_PING, b"p", rsv=4)], 1002)
        case("neg-%s-rsv1-on-close-1002" % mode, fail_case, S,
             [build_frame(OP_CLOSE, b"\x03\xe8", rsv=4)], 1002)
        case("neg-%s-rsv1-not-offered-1002" % mode, fail_case, S,
             [build_frame(OP_TEXT, deflate_raw(text_of(300)), rsv=4)], 1002, ())
        for rsv in (1, 2, 3, 5, 6):
            case("neg-%s-rsv%d-1002" % (mode, rsv), fail_case, S,
                 [build_frame(OP_TEXT, deflate_raw(text_of(300)), rsv=rsv)], 1002)
        case("neg-%s-compressed-invalid-utf8-1007" % mode, fail_case, S,
             [build_frame(OP_TEXT, deflate_raw(b"valid \xce\xba then \xff\xfe" * 20), rsv=4)],
             1007)
        case("neg-%s-compressed-utf8-cut-mid-codepoint-1007" % mode, fail_case, S,
             [build_frame(OP_TEXT, deflate_raw(text_of(200).encode() + b"\xe2\x82"), rsv=4)],
             1007)
        # A surrogate (not UTF-8) at the start of a message compressed over 3 frames.
        wire = deflate_raw(b"\xed\xa0\x80" + text_of(500).encode())
        case("neg-%s-compressed-fragmented-invalid-utf8-1007" % mode, fail_case, S,
             [build_frame(OP_TEXT, wire[:3], fin=False, rsv=4),
              build_frame(OP_CONT, wire[3:], fin=False), build_frame(OP_CONT, b"")], 1007)
        case("neg-%s-fragmented-3-frames" % mode, c_fragmented_3, S)
        case("neg-%s-fragmented-3-frames-first-empty" % mode, c_fragmented_3, S, True)
    if "off" in SERVERS:
        case("neg-off-rsv1-1002", fail_case, SERVERS["off"],
             [build_frame(OP_TEXT, deflate_raw(text_of(300)), rsv=4)], 1002)
    if "shared" in SERVERS:
        case("neg-shared-client-context-takeover-1007", c_takeover_violation, SERVERS["shared"])
    if "dedicated" in SERVERS:
        case("msg-dedicated-context-takeover-both-ways", c_takeover, SERVERS["dedicated"])
    if "dedicated-w10" in SERVERS:
        case("msg-dedicated-w10-context-takeover-both-ways", c_takeover, SERVERS["dedicated-w10"], 10)


def part3():
    for mode, name in (("shared", "big"), ("dedicated", "big-dedicated")):
        if name in SERVERS:
            port = SERVERS[name].port
            run_async("ws-%s-default-client-sizes" % mode, c_ws_default, port, mode,
                      limit=(600 if WRAP else 120))
            run_async("ws-%s-fragmented" % mode, c_ws_fragmented, port)
    combos = [(15, 15, False, False), (9, 9, False, False), (12, 9, False, False),
              (9, 15, False, False), (12, 12, True, False), (15, 9, False, True),
              (9, 12, True, True), (True, 12, False, False), (True, None, False, False),
              (None, None, False, False), (None, 10, True, True)]
    if WRAP:
        combos = combos[::2]
    for mode, w in (("shared", 15), ("dedicated", 15), ("dedicated-w10", 10)):
        if mode not in SERVERS:
            continue
        for cmwb, smwb, snct, cnct in combos:
            run_async("ws-%s-client_max=%s-server_max=%s%s%s" % (
                mode, cmwb, smwb, "-snct" if snct else "", "-cnct" if cnct else ""),
                c_ws_windows, SERVERS[mode].port, mode, w, cmwb, smwb, snct, cnct)


def compressible_from(n, below=None):
    """Which lines the client must send compressed: the compressible ones of n bytes
    and more (random ones may go either way when compressing does not pay), and
    shorter ones `below` (None: either way)."""
    text = text_of(20).encode()
    return lambda line: below if len(line) < n else (True if line[:20] == text else None)


def part4():
    t1 = ["--deflate-threshold", "1"]
    # (name, websockets server options, wsev-client args, expected deflate line)
    variants = [
        # websockets' default: server_max_window_bits=12, client_max_window_bits=12.
        ("ws-default", dict(compression="deflate"), ["--deflate"], (12, 12, 0, 0)),
        ("ws-default", dict(compression="deflate"), ["--deflate=dedicated"], (12, 12, 1, 1)),
        ("ws-default", dict(compression="deflate"),
         ["--deflate=dedicated", "--deflate-window", "10"], (10, 10, 1, 1)),
        ("plain-factory", dict(extensions=[ServerPerMessageDeflateFactory()]),
         ["--deflate=dedicated"], (15, 15, 1, 1)),
        ("plain-factory", dict(extensions=[ServerPerMessageDeflateFactory()]),
         ["--deflate"], (15, 15, 0, 0)),
        ("server_no_context_takeover",
         dict(extensions=[ServerPerMessageDeflateFactory(server_no_context_takeover=True)]),
         ["--deflate=dedicated"], (15, 15, 1, 0)),
        ("client_no_context_takeover",
         dict(extensions=[ServerPerMessageDeflateFactory(client_no_context_takeover=True)]),
         ["--deflate=dedicated"], (15, 15, 0, 1)),
        ("server_max_window_bits=10",
         dict(extensions=[ServerPerMessageDeflateFactory(server_max_window_bits=10)]),
         ["--deflate=dedicated"], (15, 10, 1, 1)),
        ("server_max_window_bits=10",
         dict(extensions=[ServerPerMessageDeflateFactory(server_max_window_bits=10)]),
         ["--deflate"], (15, 10, 0, 0)),
        ("client_max_window_bits=9",
         dict(extensions=[ServerPerMessageDeflateFactory(client_max_window_bits=9,
                                                         server_max_window_bits=9)]),
         ["--deflate=dedicated", "--deflate-window", "10"], (9, 9, 1, 1)),
    ]
    for name, kw, args, want in variants:
        run_async("client-%s %s" % (name, " ".join(args)), c_client_vs_websockets,
                  kw, args + t1, want, compressible_from(64),
                  limit=(300 if WRAP else 60))
    # Lines written before the 101 are queued uncompressed; they still come back.
    run_async("client-lines-before-open --deflate=dedicated", c_client_vs_websockets,
              dict(compression="deflate"), ["--deflate=dedicated"] + t1, (12, 12, 1, 1),
              None, False, limit=(300 if WRAP else 60))
    # The default threshold (128): shorter lines go uncompressed, longer compressible
    # ones compressed.
    for args in (["--deflate"], ["--deflate=dedicated"]):
        run_async("client-threshold-128 %s" % " ".join(args), c_client_vs_websockets,
                  dict(compression="deflate"), args,
                  (12, 12, 0, 0) if args == ["--deflate"] else (12, 12, 1, 1),
                  compressible_from(128, below=False),
                  limit=(300 if WRAP else 60))


def part5():
    cases = [
        ("dedicated", PMD + "; foo", "unknown parameter in the permessage-deflate response"),
        ("shared", PMD + "; " + SNCT + "; foo=1",
         "unknown parameter in the permessage-deflate response"),
        ("dedicated", PMD + "; client_max_window_bits",
         "invalid parameter value in the permessage-deflate response"),
        ("dedicated", PMD + "; server_max_window_bits=16",
         "invalid parameter value in the permessage-deflate response"),
        ("dedicated", PMD + "; server_max_window_bits=08",
         "invalid parameter value in the permessage-deflate response"),
        ("dedicated", PMD + "; " + SNCT + "=1",
         "invalid parameter value in the permessage-deflate response"),
        ("dedicated", PMD + "; " + SNCT + "; " + SNCT,
         "repeated parameter in the permessage-deflate response"),
        ("dedicated", "x-foo", "unrequested extension"),
        ("dedicated", PMD + ", x-foo", "unrequested extension"),
        ("shared", "x-foo; " + SNCT, "unrequested extension"),
        ("off", PMD, "unrequested extension"),
        ("off", "", "unrequested extension"),
        ("dedicated", PMD + ", " + PMD, "permessage-deflate accepted twice"),
        ("shared", PMD + "; " + SNCT + ", " + PMD + "; " + SNCT,
         "permessage-deflate accepted twice"),
        ("shared", PMD, "server_no_context_takeover not accepted"),
        ("shared", PMD + "; " + CNCT, "server_no_context_takeover not accepted"),
        ("dedicated-w10", PMD, "server_max_window_bits not accepted"),
        ("dedicated-w10", PMD + "; server_max_window_bits=12",
         "server_max_window_bits not accepted"),
        ("dedicated", PMD + ";;", "malformed Sec-WebSocket-Extensions"),
        ("dedicated", PMD + "; a=\"unterminated", "malformed Sec-WebSocket-Extensions"),
        ("dedicated", "", "malformed Sec-WebSocket-Extensions"),
    ]
    for mode, answer, reason in cases:
        run_async("client-illegal-%s %r" % (mode, answer), c_illegal_answer, mode, answer,
                  reason)
    msg = text_of(500).encode()
    good = srv_frame(OP_TEXT, deflate_raw(msg), rsv=4)
    agreed = PMD + "; " + SNCT
    cases = [
        ("rsv1-not-agreed", "dedicated", None, srv_frame(OP_TEXT, deflate_raw(msg), rsv=4),
         1002, []),
        ("rsv1-not-offered", "off", None, srv_frame(OP_TEXT, deflate_raw(msg), rsv=4),
         1002, []),
        ("inflates-then-rsv1-continuation", "shared", agreed,
         good + srv_frame(OP_TEXT, b"ab", fin=False) + srv_frame(OP_CONT, b"c", rsv=4),
         1002, [msg]),
        ("rsv1-on-ping", "dedicated", agreed, good + srv_frame(OP_PING, b"", rsv=4),
         1002, [msg]),
        ("rsv2", "dedicated", agreed, srv_frame(OP_TEXT, deflate_raw(msg), rsv=6), 1002, []),
        ("corrupt-1007", "shared", agreed, good + srv_frame(OP_TEXT, b"\xff\xff\xff", rsv=4),
         1007, [msg]),
        ("inflated-invalid-utf8-1007", "dedicated", agreed,
         srv_frame(OP_TEXT, deflate_raw(b"ok \xff"), rsv=4), 1007, []),
        ("fragmented-compressed-then-close", "dedicated", agreed,
         srv_frame(OP_TEXT, deflate_raw(msg)[:5], fin=False, rsv=4)
         + srv_frame(OP_CONT, deflate_raw(msg)[5:], fin=False) + srv_frame(OP_CONT, b"")
         + srv_frame(OP_CLOSE, struct.pack("!H", 1000)), 1000, [msg]),
    ]
    for name, mode, answer, frames, code, out in cases:
        run_async("client-frames-%s-%s" % (mode, name), c_client_frame_error, mode, answer,
                  frames, code, out)


def main():
    start_servers()
    part1()
    part2()
    part3()
    part4()
    part5()
    for name, server in SERVERS.items():
        R.record("wsev-echo %s still running at the end" % name, server.stop())
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
