#!/usr/bin/python3
"""RFC 6455 conformance cases against wsev-echo, over raw sockets with our own frame
encoder/decoder, in the spirit of the Autobahn TestSuite sections 1-7, 9 and 10.

Usage: conformance.py PATH/TO/wsev-echo

Every case states what it sends and what must come back. A failed connection must
get a close frame whose first two payload bytes are the close code, then a TCP close.
"""

import os
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wsevtest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                      Conn, Runner, Server, TestFailure, build_frame, check,
                      close_payload, new_key, script_args, short)

EXE = script_args()
R = Runner("conformance")
OPEN = []  # connections opened by the current case, closed after it


def ascii_payload(n):
    pat = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ "
    return (pat * (n // len(pat) + 1))[:n]


class Ctx:
    def __init__(self, server):
        self.server = server

    def raw(self):
        c = Conn(self.server.port)
        OPEN.append(c)
        return c

    def ws(self):
        return self.raw().handshake()


def case(name, fn, *args):
    def wrapped():
        try:
            fn(*args)
        finally:
            while OPEN:
                OPEN.pop().close()
    R.run(name, wrapped)


# =========================================================================== handshake

def hs_valid(S):
    c = S.raw()
    key = new_key()
    c.send(c.request(key=key))
    status, hdrs = c.read_response()
    from wsevtest import check_upgrade_response
    check_upgrade_response(status, hdrs, key)
    c.echo(OP_TEXT, b"hello")


def hs_known_key(S):
    # RFC 6455 section 1.3 example.
    c = S.raw()
    c.send(c.request(key="dGhlIHNhbXBsZSBub25jZQ=="))
    status, hdrs = c.read_response()
    check(status.startswith("HTTP/1.1 101"), "status %r" % status)
    check(hdrs.get("sec-websocket-accept") == ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="],
          "Sec-WebSocket-Accept %r" % hdrs.get("sec-websocket-accept"))


def hs_bytewise(S):
    c = S.raw()
    c.handshake(bytewise=True)
    c.echo(OP_TEXT, b"after a bytewise handshake")


def hs_token_lists(S):
    # Case-insensitive tokens, comma lists.
    c = S.raw()
    key = new_key()
    hdrs = [("host", "127.0.0.1"), ("UPGRADE", "WebSocket"),
            ("connection", "keep-alive, Upgrade"), ("sec-websocket-key", key),
            ("SEC-WEBSOCKET-VERSION", "13"), ("User-Agent", "wsev-test"),
            ("Origin", "http://example.com")]
    c.handshake(key=key, headers=hdrs)
    c.echo(OP_BINARY, b"\x00\x01\x02")


def hs_first_frame_same_send(S):
    c = S.raw()
    frames = build_frame(OP_TEXT, b"first") + build_frame(OP_BINARY, b"second")
    c.handshake(data_after=frames)
    c.expect_echo(OP_TEXT, b"first")
    c.expect_echo(OP_BINARY, b"second")


def hs_split_request_and_frame(S):
    # The request minus its last byte; then that byte together with a frame and half
    # of another; then the rest.
    c = S.raw()
    req = c.request(path="/chat?room=1&x=%20y")
    f1 = build_frame(OP_TEXT, b"one")
    f2 = build_frame(OP_BINARY, os.urandom(300))
    c.send(req[:-1])
    time.sleep(0.05)
    c.send(req[-1:] + f1 + f2[:150])
    status, hdrs = c.read_response()
    from wsevtest import check_upgrade_response
    check_upgrade_response(status, hdrs, c.key)
    c.expect_echo(OP_TEXT, b"one")
    c.send(f2[150:])
    f = c.recv_frame()
    check(f.opcode == OP_BINARY and len(f.payload) == 300, "second frame: %r" % f)


def bad_request(S, req, status_prefix, extra_check=None):
    c = S.raw()
    if callable(req):
        req = req(c)
    c.send(req)
    data = c.read_all_until_eof()
    check(data.startswith(status_prefix.encode()),
          "expected a response starting with %r, got %s" % (status_prefix, short(data, 200)))
    if extra_check:
        extra_check(data)


def std_headers(c, drop=None, replace=None, key=None):
    key = key or new_key()
    hs = [("Host", "127.0.0.1:%d" % c.port), ("Upgrade", "websocket"),
          ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
          ("Sec-WebSocket-Version", "13")]
    out = []
    for n, v in hs:
        if drop and n == drop:
            continue
        if replace and n in replace:
            v = replace[n]
        out.append((n, v))
    return out


def req_with(drop=None, replace=None, method="GET", version="HTTP/1.1"):
    def make(c):
        hs = std_headers(c, drop=drop, replace=replace)
        r = "%s / %s\r\n" % (method, version)
        r += "".join("%s: %s\r\n" % hv for hv in hs) + "\r\n"
        return r.encode()
    return make


def check_426(data):
    head = data.split(b"\r\n\r\n")[0].decode("latin-1").lower()
    lines = [line.replace(" ", "") for line in head.split("\r\n")[1:]]
    check("sec-websocket-version:13" in lines,
          "426 response lacks 'Sec-WebSocket-Version: 13': %r" % head)


def hs_big_header(c):
    hs = std_headers(c)
    for i in range(12):
        hs.append(("X-Filler-%d" % i, "x" * 1000))   # ~12 KiB of headers
    r = "GET / HTTP/1.1\r\n" + "".join("%s: %s\r\n" % hv for hv in hs) + "\r\n"
    return r.encode()


def hs_still_serving(S, pre):
    c = S.ws()
    c.echo(OP_TEXT, b"fresh connection after bad requests")
    pre.echo(OP_TEXT, b"connection opened before the bad requests")
    pre.echo(OP_BINARY, os.urandom(300))


# =========================================================================== framing

def fr_echo_len(S, opcode, n):
    c = S.ws()
    payload = ascii_payload(n) if opcode == OP_TEXT else os.urandom(n)
    c.send_frame(opcode, payload)
    # Check the reply frame by frame: unmasked, minimal encoding (recv_frame checks).
    f = c.recv_frame(timeout=10)
    check(f.opcode == opcode, "reply opcode 0x%x" % f.opcode)
    parts = [f.payload]
    while not f.fin:
        f = c.recv_frame(timeout=10)
        check(f.opcode == OP_CONT, "expected continuation, got %r" % f)
        parts.append(f.payload)
    got = b"".join(parts)
    check(got == payload, "echo of %d bytes differs (got %d bytes)" % (n, len(got)))


def fr_nonminimal(S):
    c = S.ws()
    c.echo(OP_TEXT, b"hello", length_form=16)
    c.echo(OP_TEXT, b"hello", length_form=64)
    c.echo(OP_BINARY, b"", length_form=16)
    c.echo(OP_BINARY, b"", length_form=64)
    c.echo(OP_BINARY, os.urandom(125), length_form=64)
    c.echo(OP_TEXT, ascii_payload(200), length_form=64)
    c.send_frame(OP_PING, b"nm", length_form=16)
    f = c.recv_frame()
    check(f.opcode == OP_PONG and f.payload == b"nm", "expected pong 'nm', got %r" % f)


def fr_bytewise(S):
    c = S.ws()
    payload = ascii_payload(300)
    c.send_bytewise(build_frame(OP_TEXT, payload))
    c.expect_echo(OP_TEXT, payload)
    c.send_bytewise(build_frame(OP_BINARY, b"\xff\x00\xfe"))
    c.expect_echo(OP_BINARY, b"\xff\x00\xfe")


def fr_many_in_one_send(S):
    c = S.ws()
    msgs = []
    blob = b""
    for i in range(200):
        op = OP_TEXT if i % 2 == 0 else OP_BINARY
        p = (b"msg-%d-" % i) + ascii_payload(i * 7 % 300)
        msgs.append((op, p))
        blob += build_frame(op, p)
    c.send(blob)
    for op, p in msgs:
        c.expect_echo(op, p)


def fr_many_pings_one_send(S):
    c = S.ws()
    c.send(b"".join(build_frame(OP_PING, b"ping %d" % i) for i in range(50))
           + build_frame(OP_TEXT, b"after pings"))
    for i in range(50):
        f = c.recv_frame()
        check(f.opcode == OP_PONG and f.payload == b"ping %d" % i,
              "pong %d: got %r" % (i, f))
    c.expect_echo(OP_TEXT, b"after pings")


def fr_ping_bytewise(S):
    c = S.ws()
    p = os.urandom(125)
    c.send_bytewise(build_frame(OP_PING, p))
    f = c.recv_frame()
    check(f.opcode == OP_PONG and f.payload == p, "got %r" % f)


def fr_slow_reader(S):
    # The client writes ~10 MiB of messages without reading; the server must queue
    # what the kernel doesn't take and deliver everything, in order, byte-exact, while
    # another client keeps being served.
    c = S.ws()
    other = S.ws()
    msgs = [os.urandom(200000 + i) for i in range(50)]
    import threading
    err = []

    def writer():
        try:
            for m in msgs:
                c.send_frame(OP_BINARY, m)
        except Exception as e:  # noqa: BLE001
            err.append(e)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    time.sleep(0.5)
    for i in range(20):
        other.echo(OP_TEXT, b"other %d" % i)
    for i, m in enumerate(msgs):
        op, got = c.recv_message(timeout=15)
        check(op == OP_BINARY and got == m, "message %d differs (%d vs %d bytes)"
              % (i, len(got), len(m)))
    t.join(10)
    check(not err, "writer failed: %r" % err)


def fr_big_fragmented(S):
    c = S.ws()
    p = os.urandom(3 << 20)
    step = 1 << 20
    c.send_frame(OP_BINARY, p[:step], fin=False)
    c.send_frame(OP_CONT, p[step:2 * step], fin=False)
    c.send_frame(OP_CONT, p[2 * step:], fin=True)
    c.expect_echo(OP_BINARY, p, timeout=15)


def fr_ping(S, n):
    c = S.ws()
    payload = os.urandom(n)
    c.send_frame(OP_PING, payload)
    f = c.recv_frame()
    check(f.opcode == OP_PONG, "expected a pong, got %r" % f)
    check(f.payload == payload, "pong payload %s differs from ping payload %s"
          % (short(f.payload), short(payload)))
    c.echo(OP_TEXT, b"after ping")


def fr_ping_126(S):
    c = S.ws()
    c.send_frame(OP_PING, b"x" * 126)
    c.expect_close(1002)


def fr_unsolicited_pong(S):
    c = S.ws()
    c.send_frame(OP_PONG, b"unsolicited")
    c.send_frame(OP_PONG, b"")
    c.echo(OP_TEXT, b"still here")


def fr_control_too_long(S, opcode):
    c = S.ws()
    c.send_frame(opcode, b"y" * 126)
    c.expect_close(1002)


# =========================================================================== rsv / opcodes

def rsv_case(S, rsv, opcode, payload=b"rsv"):
    c = S.ws()
    c.send_frame(opcode, payload, rsv=rsv)
    c.expect_close(1002)


def rsv_after_valid(S):
    # Autobahn 3.2-ish: a valid text, then an RSV frame, then a ping. We get the echo,
    # then the close 1002, and no pong (frames after a failure are not processed).
    c = S.ws()
    c.send(build_frame(OP_TEXT, b"Hello, world!") + build_frame(OP_TEXT, b"bad", rsv=2)
           + build_frame(OP_PING, b"p"))
    c.expect_echo(OP_TEXT, b"Hello, world!")
    c.expect_close(1002)


def opcode_case(S, opcode, fin=True):
    c = S.ws()
    c.send_frame(opcode, b"reserved opcode", fin=fin)
    c.expect_close(1002)


def opcode_after_valid(S, opcode):
    c = S.ws()
    c.send(build_frame(OP_TEXT, b"valid") + build_frame(opcode, b"") +
           build_frame(OP_PING, b"p"))
    c.expect_echo(OP_TEXT, b"valid")
    c.expect_close(1002)


# =========================================================================== fragmentation

def frag_two(S, opcode):
    c = S.ws()
    c.send_frame(opcode, b"frag", fin=False)
    c.send_frame(OP_CONT, b"mented", fin=True)
    c.expect_echo(opcode, b"fragmented")


def frag_many(S):
    c = S.ws()
    parts = [b"", b"a", b"", b"bc", b"", ascii_payload(200), b"d", b""]
    c.send_frame(OP_TEXT, parts[0], fin=False)
    for p in parts[1:-1]:
        c.send_frame(OP_CONT, p, fin=False)
    c.send_frame(OP_CONT, parts[-1], fin=True)
    c.expect_echo(OP_TEXT, b"".join(parts))


def frag_bytewise_many(S):
    # 100 one-byte fragments, all sent in one send().
    c = S.ws()
    payload = ascii_payload(100)
    blob = build_frame(OP_BINARY, payload[:1], fin=False)
    for i in range(1, 99):
        blob += build_frame(OP_CONT, payload[i:i + 1], fin=False)
    blob += build_frame(OP_CONT, payload[99:], fin=True)
    c.send(blob)
    c.expect_echo(OP_BINARY, payload)


def frag_all_empty(S):
    c = S.ws()
    c.send(build_frame(OP_TEXT, b"", fin=False) + build_frame(OP_CONT, b"", fin=False)
           + build_frame(OP_CONT, b"", fin=True))
    c.expect_echo(OP_TEXT, b"")


def frag_ping_between(S, same_send):
    c = S.ws()
    frames = [build_frame(OP_TEXT, b"frag", fin=False), build_frame(OP_PING, b"pingme"),
              build_frame(OP_CONT, b"mented", fin=True)]
    if same_send:
        c.send(b"".join(frames))
    else:
        for f in frames:
            c.send(f)
            time.sleep(0.05)
    f = c.recv_frame()
    check(f.opcode == OP_PONG and f.payload == b"pingme",
          "expected the pong before the echo, got %r" % f)
    c.expect_echo(OP_TEXT, b"fragmented")


def frag_pong_between(S):
    c = S.ws()
    c.send(build_frame(OP_BINARY, b"ab", fin=False) + build_frame(OP_PONG, b"unsolicited")
           + build_frame(OP_CONT, b"cd", fin=True))
    c.expect_echo(OP_BINARY, b"abcd")


def frag_fragmented_control(S, opcode):
    c = S.ws()
    c.send_frame(opcode, b"frag", fin=False)
    c.send_frame(OP_CONT, b"ment", fin=True)
    c.expect_close(1002)


def frag_cont_without_start(S, fin):
    c = S.ws()
    c.send_frame(OP_CONT, b"orphan", fin=fin)
    c.expect_close(1002)


def frag_cont_after_complete(S):
    c = S.ws()
    c.send_frame(OP_TEXT, b"complete")
    c.expect_echo(OP_TEXT, b"complete")
    c.send_frame(OP_CONT, b"orphan", fin=True)
    c.expect_close(1002)


def frag_new_data_in_progress(S, second_op):
    c = S.ws()
    c.send_frame(OP_TEXT, b"start", fin=False)
    c.send_frame(second_op, b"interloper", fin=True)
    c.expect_close(1002)


def unmasked(S, opcode):
    c = S.ws()
    c.send_frame(opcode, b"not masked", mask=False)
    c.expect_close(1002)


# =========================================================================== utf-8

VALID_UTF8 = [
    "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!",
    "\u03ba\u1f79\u03c3\u03bc\u03b5",  # kosme
    "\u0000", "\u007f", "\u0080", "\u07ff", "\u0800", "\ud7ff".encode(), "\ue000",
    "\ufffd", "\ufffe", "\uffff", "\U00010000", "\U0010ffff",
    "\U0001F600 emoji", "mixed a\u00e9\u4e2d\U0001d11e z",
]

INVALID_UTF8 = [
    ("lone-continuation", b"\x80"),
    ("continuation-bf", b"ab\xbfcd"),
    ("c0-overlong", b"\xc0\x80"),
    ("c1-overlong", b"\xc1\xbf"),
    ("e0-overlong", b"\xe0\x80\x80"),
    ("e0-9f-overlong", b"\xe0\x9f\xbf"),
    ("f0-overlong", b"\xf0\x80\x80\x80"),
    ("f0-8f-overlong", b"\xf0\x8f\xbf\xbf"),
    ("surrogate-d800", b"\xed\xa0\x80"),
    ("surrogate-dfff", b"\xed\xbf\xbf"),
    ("surrogate-pair", b"\xed\xa0\x80\xed\xb0\x80"),
    ("above-10ffff", b"\xf4\x90\x80\x80"),
    ("f5", b"\xf5\x80\x80\x80"),
    ("f8-5byte", b"\xf8\x88\x80\x80\x80"),
    ("fc-6byte", b"\xfc\x84\x80\x80\x80\x80"),
    ("fe", b"\xfe"),
    ("ff", b"\xff"),
    ("2byte-missing-cont", b"\xc3 x"),
    ("3byte-bad-second", b"\xe2\x28\xa1"),
    ("3byte-bad-third", b"\xe2\x82\x28"),
    ("4byte-bad-fourth", b"\xf0\x90\x80\x28"),
    ("kosme-surrogate-edited", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
                               b"\xed\xa0\x80edited"),
    ("truncated-at-end-2", b"abc\xc3"),
    ("truncated-at-end-3", b"abc\xe2\x82"),
    ("truncated-at-end-4", b"abc\xf0\x9f\x98"),
]


def utf8_valid(S):
    c = S.ws()
    for s in VALID_UTF8:
        b = s if isinstance(s, bytes) else s.encode("utf-8")
        c.echo(OP_TEXT, b)
    # Every code point boundary (1-, 2-, 3-, 4-byte ranges and around surrogates).
    cps = [0x0, 0x7F, 0x80, 0x7FF, 0x800, 0xFFF, 0x1000, 0xCFFF, 0xD000, 0xD7FF, 0xE000,
           0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x3FFFF, 0x40000, 0xFFFFF, 0x100000, 0x10FFFF]
    for cp in cps:
        c.echo(OP_TEXT, chr(cp).encode("utf-8"))
    c.echo(OP_TEXT, "".join(chr(cp) for cp in cps).encode("utf-8"))


def utf8_all_bmp_and_more(S):
    # A large text with many different code points, sent in one frame.
    c = S.ws()
    s = "".join(chr(cp) for cp in range(0x20, 0xD800, 7))
    s += "".join(chr(cp) for cp in range(0xE000, 0x110000, 97))
    b = s.encode("utf-8")
    c.echo(OP_TEXT, b)


def utf8_invalid_single(S, payload):
    c = S.ws()
    c.send_frame(OP_TEXT, payload)
    c.expect_close(1007)


def utf8_invalid_first_fragment_fail_fast(S, payload):
    c = S.ws()
    c.send_frame(OP_TEXT, payload, fin=False)
    # The remaining fragments are NOT sent: the 1007 must come anyway.
    c.expect_close(1007)


def utf8_invalid_mid_frame_fail_fast(S):
    # Strict fail fast (Autobahn 6.4.3-like): the frame header announces 200 bytes, we
    # send only the first 20, which already contain an invalid sequence.
    c = S.ws()
    payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80" + b"x" * 185
    frame = build_frame(OP_TEXT, payload)
    header_len = len(frame) - len(payload)
    c.send(frame[:header_len + 20])
    c.expect_close(1007)


def utf8_split_valid(S):
    c = S.ws()
    euro = "\u20ac".encode()  # e2 82 ac
    emoji = "\U0001F600".encode()  # f0 9f 98 80
    c.send_frame(OP_TEXT, b"a" + euro[:1], fin=False)
    c.send_frame(OP_CONT, euro[1:2], fin=False)
    c.send_frame(OP_CONT, euro[2:] + emoji[:3], fin=False)
    c.send_frame(OP_CONT, emoji[3:] + b"z", fin=True)
    c.expect_echo(OP_TEXT, b"a" + euro + emoji + b"z")
    kappa = "\u03ba".encode()  # ce ba
    c.send_frame(OP_TEXT, kappa[:1], fin=False)
    c.send_frame(OP_CONT, kappa[1:], fin=True)
    c.expect_echo(OP_TEXT, kappa)


def utf8_split_invalid_second(S, final):
    # First fragment ends with a lead byte; the second fragment starts with a byte that
    # is not a continuation. When the second fragment is not final, the last one is
    # never sent (fail fast).
    c = S.ws()
    c.send_frame(OP_TEXT, b"ok\xce", fin=False)
    c.send_frame(OP_CONT, b"A rest", fin=final)
    c.expect_close(1007)


def utf8_split_surrogate(S):
    c = S.ws()
    c.send_frame(OP_TEXT, b"x\xed", fin=False)
    c.send_frame(OP_CONT, b"\xa0\x80", fin=False)
    c.expect_close(1007)


def utf8_ends_mid_codepoint_fragmented(S):
    c = S.ws()
    c.send_frame(OP_TEXT, b"abc", fin=False)
    c.send_frame(OP_CONT, b"def\xe2\x82", fin=True)
    c.expect_close(1007)


def utf8_ends_mid_codepoint_empty_last(S):
    c = S.ws()
    c.send_frame(OP_TEXT, b"abc\xf0\x9f", fin=False)
    c.send_frame(OP_CONT, b"", fin=True)
    c.expect_close(1007)


def utf8_binary_invalid_ok(S):
    c = S.ws()
    for _, p in INVALID_UTF8:
        c.echo(OP_BINARY, p)
    c.send_frame(OP_BINARY, b"\xce", fin=False)
    c.send_frame(OP_CONT, b"A", fin=True)
    c.expect_echo(OP_BINARY, b"\xceA")


def utf8_text_after_binary_split(S):
    # A binary message ending mid "code point" must not leak UTF-8 state into the next
    # text message.
    c = S.ws()
    c.echo(OP_BINARY, b"\xe2\x82")
    # Valid on its own; a validator still expecting a continuation byte would reject it.
    c.echo(OP_TEXT, b"plain text after a binary message")


# =========================================================================== close

def close_empty(S):
    c = S.ws()
    c.send_close()
    c.expect_close(None, reply=False)


def close_1000_reason(S):
    c = S.ws()
    c.send_close(1000, b"bye")
    f = c.expect_close(1000, reply=False)
    check(f.close_code == 1000, "code %r" % f.close_code)


def close_len1(S):
    c = S.ws()
    c.send_frame(OP_CLOSE, b"\x03")
    c.expect_close(1002, reply=False)


def close_code_invalid(S, code):
    c = S.ws()
    c.send_close(code, b"")
    c.expect_close(1002, reply=False)


def close_code_invalid_with_reason(S, code):
    c = S.ws()
    c.send_close(code, b"some reason")
    c.expect_close(1002, reply=False)


def close_code_valid(S, code):
    c = S.ws()
    c.send_close(code, b"reason")
    c.expect_close(code, reply=False)


def close_reason_max(S):
    c = S.ws()
    c.send_close(1000, ascii_payload(123))
    c.expect_close(1000, reply=False)


def close_reason_utf8_valid(S):
    c = S.ws()
    c.send_close(1000, "\u03ba\u1f79\u03c3\u03bc\u03b5".encode())
    c.expect_close(1000, reply=False)


def close_reason_invalid_utf8(S):
    c = S.ws()
    c.send_close(1000, b"bad \xce\xba\xe1\xbd\xb9\xed\xa0\x80")
    c.expect_close(1007, reply=False)


def close_reason_too_long(S):
    c = S.ws()
    c.send_frame(OP_CLOSE, close_payload(1000, ascii_payload(124)))  # 126 bytes
    c.expect_close(1002, reply=False)


def close_then_data_later(S):
    c = S.ws()
    c.echo(OP_TEXT, b"before close")
    c.send_close(1000)
    time.sleep(0.05)
    try:
        c.send_frame(OP_TEXT, b"after close")
        c.send_frame(OP_PING, b"after close")
    except OSError:
        pass  # the server already closed the TCP connection; fine
    c.expect_close(1000, reply=False)


def close_then_data_same_send(S):
    c = S.ws()
    c.send(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, b"x")
           + build_frame(OP_PING, b"y") + build_frame(OP_BINARY, b"z"))
    c.expect_close(1000, reply=False)


def close_in_fragmented(S):
    # A close between fragments is allowed (control frame) and ends the connection.
    c = S.ws()
    c.send_frame(OP_TEXT, b"frag", fin=False)
    c.send_close(1000)
    c.expect_close(1000, reply=False)


def close_bytewise(S):
    c = S.ws()
    c.send_bytewise(build_frame(OP_CLOSE, close_payload(1001, b"going")))
    c.expect_close(1001, reply=False)


# =========================================================================== limits

def lim_default_max(S):
    c = S.ws()
    c.echo(OP_BINARY, os.urandom(16 << 20))


def lim_echo_max(L):
    c = L.ws()
    c.echo(OP_BINARY, os.urandom(1000))
    c.echo(OP_TEXT, ascii_payload(1000))


def lim_frag_at_max(L):
    c = L.ws()
    p = ascii_payload(1000)
    c.send(build_frame(OP_TEXT, p[:400], fin=False) + build_frame(OP_CONT, p[400:800], fin=False)
           + build_frame(OP_CONT, p[800:], fin=True))
    c.expect_echo(OP_TEXT, p)


def lim_over(L, opcode):
    c = L.ws()
    c.send_frame(opcode, ascii_payload(1001))
    c.expect_close(1009)


def lim_frag_over(L):
    c = L.ws()
    p = ascii_payload(1200)
    c.send(build_frame(OP_BINARY, p[:400], fin=False)
           + build_frame(OP_CONT, p[400:800], fin=False)
           + build_frame(OP_CONT, p[800:], fin=True))
    c.expect_close(1009)


def lim_frag_over_fail_fast(L):
    # The second fragment brings the total to 1001 while the message is unfinished:
    # 1009 must come without the final fragment.
    c = L.ws()
    c.send_frame(OP_TEXT, ascii_payload(600), fin=False)
    c.send_frame(OP_CONT, ascii_payload(401), fin=False)
    c.expect_close(1009)


def lim_header_only(S, length, code):
    # A header announcing `length` bytes; the payload is never sent.
    c = S.ws()
    hdr = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", length) + os.urandom(4)
    c.send(hdr)
    c.expect_close(code)


def lim_header_only_fragment(L):
    # A continuation frame whose declared length pushes the message over the limit.
    c = L.ws()
    c.send_frame(OP_BINARY, b"x" * 500, fin=False)
    c.send(bytes([0x80, 0x80 | 126]) + struct.pack("!H", 600) + os.urandom(4))
    c.expect_close(1009)


# =========================================================================== robustness

def rob_abrupt_peers(S):
    good = S.ws()
    good.echo(OP_TEXT, b"start")
    scenarios = []

    def garbage():
        c = S.raw()
        c.handshake()
        c.send(os.urandom(3000))
        c.abort()

    def half_frame_rst():
        c = S.ws()
        frame = build_frame(OP_BINARY, os.urandom(1000))
        c.send(frame[:500])
        c.abort()

    def half_frame_fin():
        c = S.ws()
        frame = build_frame(OP_TEXT, ascii_payload(70000))
        c.send(frame[:30000])
        c.close()

    def half_header():
        c = S.ws()
        c.send(b"\x81\xfe\x01")
        c.close()

    def mid_handshake_fin():
        c = S.raw()
        c.send(c.request()[:30])
        c.close()

    def mid_handshake_rst():
        c = S.raw()
        c.send(c.request()[:-3])
        c.abort()

    def connect_and_leave():
        c = S.raw()
        c.close()

    def garbage_handshake():
        c = S.raw()
        c.send(os.urandom(5000))
        c.abort()

    def fragmented_then_leave():
        c = S.ws()
        c.send_frame(OP_TEXT, b"part", fin=False)
        c.abort()

    def big_echo_unread():
        # The server has ~4 MiB to write back to a peer that vanishes: no SIGPIPE crash.
        c = S.ws()
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            for _ in range(4):
                c.send_frame(OP_BINARY, os.urandom(1 << 20))
        except (socket.timeout, OSError):
            pass  # the server may apply back-pressure and stop reading; that's fine
        c.abort()

    def close_while_echo_pending():
        c = S.ws()
        c.send_frame(OP_BINARY, os.urandom(200000))
        c.close()

    scenarios = [garbage, half_frame_rst, half_frame_fin, half_header, mid_handshake_fin,
                 mid_handshake_rst, connect_and_leave, garbage_handshake,
                 fragmented_then_leave, big_echo_unread, close_while_echo_pending]
    for i, sc in enumerate(scenarios):
        sc()
        good.echo(OP_BINARY, b"alive after %s" % sc.__name__.encode())
        fresh = S.ws()
        fresh.echo(OP_TEXT, b"fresh after %d" % i)
        fresh.close()
    time.sleep(0.2)
    good.echo(OP_TEXT, b"end")
    check(S.server.alive_problem() is None, str(S.server.alive_problem()))


def rob_concurrent(S, nconn=200, nmsg=10):
    conns = []
    for _ in range(nconn):
        c = S.raw()
        c.key = new_key()
        c.send(c.request(key=c.key))
        conns.append(c)
    from wsevtest import check_upgrade_response
    for c in conns:
        status, hdrs = c.read_response()
        check_upgrade_response(status, hdrs, c.key)
    for m in range(nmsg):
        sent = []
        for i, c in enumerate(conns):
            op = OP_TEXT if (i + m) % 2 == 0 else OP_BINARY
            p = b"conn %d msg %d " % (i, m) + ascii_payload((i * 13 + m * 101) % 500)
            c.send_frame(op, p)
            sent.append((op, p))
        for c, (op, p) in zip(conns, sent):
            c.expect_echo(op, p)
    for c in conns:
        c.send_close(1000)
    for c in conns:
        c.expect_close(1000, reply=False)


# =========================================================================== main

def main():
    try:
        server = Server(EXE)
    except TestFailure as e:
        R.record("start wsev-echo", str(e))
        return R.finish()
    S = Ctx(server)
    limited = None

    # A connection opened before all the bad handshakes, used after them.
    pre = Conn(server.port)
    try:
        pre.handshake()
        pre.echo(OP_TEXT, b"pre")
    except Exception as e:  # noqa: BLE001
        R.record("open early connection", "%s" % e)

    # ---- handshake
    case("hs-valid-101-accept", hs_valid, S)
    case("hs-rfc-sample-key", hs_known_key, S)
    case("hs-request-1-byte-per-send", hs_bytewise, S)
    case("hs-case-insensitive-token-lists", hs_token_lists, S)
    case("hs-frames-in-same-send-as-request", hs_first_frame_same_send, S)
    case("hs-request-split-with-frames-behind-it", hs_split_request_and_frame, S)
    case("hs-bad-post-400", bad_request, S, req_with(method="POST"), "HTTP/1.1 400")
    case("hs-bad-http10-400", bad_request, S, req_with(version="HTTP/1.0"), "HTTP/1.1 400")
    # A GET without an Upgrade header is plain HTTP: 426 Upgrade Required by default.
    case("hs-plain-get-no-upgrade-426", bad_request, S, req_with(drop="Upgrade"), "HTTP/1.1 426")
    case("hs-bad-upgrade-not-websocket-400", bad_request, S,
         req_with(replace={"Upgrade": "h2c"}), "HTTP/1.1 400")
    case("hs-bad-missing-connection-400", bad_request, S, req_with(drop="Connection"),
         "HTTP/1.1 400")
    case("hs-bad-connection-keepalive-only-400", bad_request, S,
         req_with(replace={"Connection": "keep-alive"}), "HTTP/1.1 400")
    case("hs-bad-missing-host-400", bad_request, S, req_with(drop="Host"), "HTTP/1.1 400")
    case("hs-bad-missing-key-400", bad_request, S, req_with(drop="Sec-WebSocket-Key"),
         "HTTP/1.1 400")
    case("hs-bad-key-15-bytes-400", bad_request, S,
         req_with(replace={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA"}), "HTTP/1.1 400")
    case("hs-bad-key-17-bytes-400", bad_request, S,
         req_with(replace={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAA="}), "HTTP/1.1 400")
    case("hs-bad-key-not-base64-400", bad_request, S,
         req_with(replace={"Sec-WebSocket-Key": "!!!!not-base64-at-all!!="}), "HTTP/1.1 400")
    case("hs-bad-version-8-426", bad_request, S,
         req_with(replace={"Sec-WebSocket-Version": "8"}), "HTTP/1.1 426", check_426)
    case("hs-bad-missing-version-426-or-400", bad_request, S,
         req_with(drop="Sec-WebSocket-Version"), "HTTP/1.1 4",
         lambda d: check(d.startswith(b"HTTP/1.1 400") or d.startswith(b"HTTP/1.1 426"),
                         "expected 400 or 426, got %s" % short(d, 100)))
    case("hs-bad-header-over-8k-431", bad_request, S, hs_big_header, "HTTP/1.1 431")
    case("hs-bad-garbage-400", bad_request, S,
         b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n", "HTTP/1.1 400")
    case("hs-bad-garbage-text-400", bad_request, S,
         b"this is not http at all\r\n\r\n", "HTTP/1.1 400")
    case("hs-still-serving-after-bad-requests", hs_still_serving, S, pre)
    pre.close()

    # ---- framing (sections 1-2)
    for n in (0, 1, 125, 126, 127, 65535, 65536, 1 << 20):
        case("fr-text-echo-len-%d" % n, fr_echo_len, S, OP_TEXT, n)
        case("fr-binary-echo-len-%d" % n, fr_echo_len, S, OP_BINARY, n)
    case("fr-nonminimal-lengths-accepted", fr_nonminimal, S)
    case("fr-frame-1-byte-per-send", fr_bytewise, S)
    case("fr-200-frames-in-one-send", fr_many_in_one_send, S)
    case("fr-50-pings-one-send-pongs-in-order", fr_many_pings_one_send, S)
    case("fr-ping-1-byte-per-send", fr_ping_bytewise, S)
    case("fr-slow-reader-10MiB-queued-in-order", fr_slow_reader, S)
    case("fr-3MiB-in-1MiB-fragments", fr_big_fragmented, S)
    case("fr-ping-empty-pong", fr_ping, S, 0)
    case("fr-ping-125-pong", fr_ping, S, 125)
    case("fr-ping-126-1002", fr_ping_126, S)
    case("fr-pong-126-1002", fr_control_too_long, S, OP_PONG)
    case("fr-close-126-1002", fr_control_too_long, S, OP_CLOSE)
    case("fr-unsolicited-pong-ignored", fr_unsolicited_pong, S)

    # ---- reserved bits and opcodes (sections 3-4)
    for rsv in (1, 2, 3, 4, 5, 6, 7):
        case("rsv-%d-text-1002" % rsv, rsv_case, S, rsv, OP_TEXT)
    case("rsv-4-binary-1002", rsv_case, S, 4, OP_BINARY)
    case("rsv-2-ping-1002", rsv_case, S, 2, OP_PING)
    case("rsv-1-close-1002", rsv_case, S, 1, OP_CLOSE, close_payload(1000))
    case("rsv-after-valid-text-1002-no-pong", rsv_after_valid, S)
    for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        case("opcode-0x%x-1002" % op, opcode_case, S, op)
    case("opcode-0x3-fin0-1002", opcode_case, S, 3, False)
    case("opcode-0xb-after-valid-1002", opcode_after_valid, S, 0xB)

    # ---- fragmentation (section 5)
    case("frag-text-2-fragments", frag_two, S, OP_TEXT)
    case("frag-binary-2-fragments", frag_two, S, OP_BINARY)
    case("frag-many-with-empty-fragments", frag_many, S)
    case("frag-100-one-byte-fragments", frag_bytewise_many, S)
    case("frag-all-empty-fragments", frag_all_empty, S)
    case("frag-ping-between-pong-first", frag_ping_between, S, False)
    case("frag-ping-between-same-send-pong-first", frag_ping_between, S, True)
    case("frag-pong-between-ignored", frag_pong_between, S)
    case("frag-fragmented-ping-1002", frag_fragmented_control, S, OP_PING)
    case("frag-fragmented-pong-1002", frag_fragmented_control, S, OP_PONG)
    case("frag-fragmented-close-1002", frag_fragmented_control, S, OP_CLOSE)
    case("frag-continuation-no-message-fin1-1002", frag_cont_without_start, S, True)
    case("frag-continuation-no-message-fin0-1002", frag_cont_without_start, S, False)
    case("frag-continuation-after-complete-1002", frag_cont_after_complete, S)
    case("frag-new-text-while-in-progress-1002", frag_new_data_in_progress, S, OP_TEXT)
    case("frag-new-binary-while-in-progress-1002", frag_new_data_in_progress, S, OP_BINARY)
    case("unmasked-text-1002", unmasked, S, OP_TEXT)
    case("unmasked-binary-1002", unmasked, S, OP_BINARY)
    case("unmasked-ping-1002", unmasked, S, OP_PING)

    # ---- utf-8 (section 6)
    case("utf8-valid-texts-and-boundaries", utf8_valid, S)
    case("utf8-valid-large-mixed", utf8_all_bmp_and_more, S)
    for name, p in INVALID_UTF8:
        case("utf8-invalid-%s-1007" % name, utf8_invalid_single, S, p)
    case("utf8-invalid-first-fragment-fail-fast-1007",
         utf8_invalid_first_fragment_fail_fast, S, b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80")
    case("utf8-invalid-first-fragment-lone-ff-fail-fast-1007",
         utf8_invalid_first_fragment_fail_fast, S, b"abc\xff")
    case("utf8-invalid-mid-frame-fail-fast-1007", utf8_invalid_mid_frame_fail_fast, S)
    case("utf8-codepoints-split-across-fragments-ok", utf8_split_valid, S)
    case("utf8-split-invalid-second-half-final-1007", utf8_split_invalid_second, S, True)
    case("utf8-split-invalid-second-half-fail-fast-1007", utf8_split_invalid_second, S, False)
    case("utf8-split-surrogate-fail-fast-1007", utf8_split_surrogate, S)
    case("utf8-message-ends-mid-codepoint-1007", utf8_ends_mid_codepoint_fragmented, S)
    case("utf8-message-ends-mid-codepoint-empty-final-1007",
         utf8_ends_mid_codepoint_empty_last, S)
    case("utf8-binary-invalid-utf8-echoed", utf8_binary_invalid_ok, S)
    case("utf8-no-state-leak-from-binary", utf8_text_after_binary_split, S)

    # ---- close (section 7)
    case("close-empty-payload", close_empty, S)
    case("close-1000-bye", close_1000_reason, S)
    case("close-payload-len-1-1002", close_len1, S)
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
        case("close-code-%d-invalid-1002" % code, close_code_invalid, S, code)
    case("close-code-1006-with-reason-1002", close_code_invalid_with_reason, S, 1006)
    # 1012-1014 were registered with IANA after RFC 6455 (service restart, try again
    # later, bad gateway); ws and websockets accept them too.
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                 3000, 3999, 4000, 4999):
        case("close-code-%d-echoed" % code, close_code_valid, S, code)
    case("close-reason-123-bytes", close_reason_max, S)
    case("close-reason-utf8-ok", close_reason_utf8_valid, S)
    case("close-reason-invalid-utf8-1007", close_reason_invalid_utf8, S)
    case("close-payload-126-1002", close_reason_too_long, S)
    case("close-then-data-not-echoed", close_then_data_later, S)
    case("close-then-data-same-send-only-close-reply", close_then_data_same_send, S)
    case("close-inside-fragmented-message", close_in_fragmented, S)
    case("close-1-byte-per-send", close_bytewise, S)

    # ---- limits (sections 9/10)
    case("limit-default-16MiB-echoed", lim_default_max, S)
    case("limit-default-header-16MiB+1-1009", lim_header_only, S, (16 << 20) + 1, 1009)
    case("limit-default-header-2^62-1009", lim_header_only, S, 1 << 62, 1009)
    case("limit-default-header-msb-set-1002", lim_header_only, S, (1 << 63) | 5, 1002)
    try:
        limited = Server(EXE, "--max-message-size", "1000", name="wsev-echo --max-message-size 1000")
    except TestFailure as e:
        R.record("start wsev-echo --max-message-size 1000", str(e))
    if limited:
        L = Ctx(limited)
        case("limit-1000-echoed", lim_echo_max, L)
        case("limit-1000-fragmented-echoed", lim_frag_at_max, L)
        case("limit-1001-text-1009", lim_over, L, OP_TEXT)
        case("limit-1001-binary-1009", lim_over, L, OP_BINARY)
        case("limit-fragmented-1200-1009", lim_frag_over, L)
        case("limit-fragmented-over-fail-fast-1009", lim_frag_over_fail_fast, L)
        case("limit-continuation-header-over-1009", lim_header_only_fragment, L)
        case("limit-header-2^62-1009", lim_header_only, L, 1 << 62, 1009)
        case("limit-header-msb-set-1002", lim_header_only, L, (1 << 63) | 5, 1002)
        case("limit-header-2^16-no-payload-1009", lim_header_only, L, 1 << 16, 1009)

    # ---- robustness
    case("robust-abrupt-peers-others-served", rob_abrupt_peers, S)
    case("robust-200-concurrent-clients-x10", rob_concurrent, S)
    case("robust-final-echo", lambda: S.ws().echo(OP_TEXT, b"the end"))

    R.record("wsev-echo still running at the end", server.stop())
    if limited:
        R.record("wsev-echo --max-message-size still running at the end", limited.stop())
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
