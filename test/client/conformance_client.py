#!/usr/bin/python3
"""RFC 6455 conformance of wsev's client side: a raw-socket server plays frames at
wsev-client and checks every frame the client sends back.

usage: conformance_client.py PATH/TO/wsev-client [CASE-SUBSTRING ...]

The client must mask every frame with a fresh key, reassemble fragments, answer
pings (also between fragments) with masked pongs, echo the server's close code, and
fail the connection with the right close code on every protocol violation of the
server: 1007 for invalid UTF-8, 1002 for reserved bits or opcodes, bad control
frames, bad continuations, masked frames and invalid close payloads, 1009 for a
message over the maximum size. A TCP close without a close frame is "closed 1006".

With WSEV_SERVER_WRAP set (valgrind), wsev-client runs under it.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clienttest as ct  # noqa: E402
from clienttest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                        Client, RawServer, Runner, TestFailure, build_frame, check,
                        close_payload)

EXE = None


class Session:
    """A wsev-client connected to a raw server that accepted the upgrade."""

    def __init__(self, *args):
        self.srv = RawServer()
        self.c = Client(EXE, self.srv.url("/conformance"), *args)
        try:
            self.p = self.srv.accept().handshake()
            self.c.wait_connected()
        except BaseException:
            self.end()
            raise

    def frame(self, opcode, payload=b"", **kw):
        self.p.send(build_frame(opcode, payload, mask=kw.pop("mask", False), **kw))

    def fails_with(self, code, printed=None):
        """The client must send a close frame with `code`; we answer it and close
        TCP; the client then reports `closed CODE` and exits 1."""
        self.p.expect_client_close(code, what="client's reaction: ")
        self.c.finish(1, printed or "closed %d( .*)?" % code, close_stdin=False)

    def end(self):
        self.c.kill()
        self.srv.close()


def session(fn):
    def run(*args):
        s = Session(*getattr(run, "client_args", ()))
        try:
            fn(s, *args)
        finally:
            s.end()
    run.__name__ = fn.__name__
    return run


def client_args(*args):
    def deco(fn):
        fn.client_args = args
        return fn
    return deco


# =========================================================================== what we send

@session
def masking_fresh_keys(s):
    msgs = ["m%d" % i for i in range(8)] + ["", "x" * 300, "y" * 70000]
    for m in msgs:
        s.c.send(m)
    for m in msgs:
        s.p.expect_text(m)
    keys = list(s.p.mask_keys)
    check(len(set(keys)) == len(keys), "mask keys repeat: %r" % keys)
    check(b"\x00\x00\x00\x00" not in keys, "an all-zero mask key: %r" % keys)
    s.c.close_stdin()
    f = s.p.expect_client_close(1000)
    check(f.mask_key not in keys, "the close frame reuses a mask key")
    s.c.finish(0, "closed 1000")


@session
def length_encodings(s):
    """Messages of 125, 126, 65535 and 65536 bytes use the right length form."""
    for n, form in ((125, 7), (126, 16), (65535, 16), (65536, 64)):
        s.c.send("L" * n)
        f = s.p.recv_frame()
        check(f.opcode == OP_TEXT and f.fin and len(f.payload) == n,
              "expected one text frame of %d bytes, got %r" % (n, f))
        check(f.length_form == form, "%d bytes sent with a %d-bit length" % (n, f.length_form))


@client_args("--binary")
@session
def binary_opcode(s):
    s.c.send(b"\x00\x01\xfe")
    s.p.expect_text(b"\x00\x01\xfe", opcode=OP_BINARY)
    s.frame(OP_BINARY, b"\xff\x00bin")
    s.c.expect(b"\xff\x00bin")


# =========================================================================== what we accept

@session
def fragmented_text(s):
    s.frame(OP_TEXT, b"one ", fin=False)
    s.frame(OP_CONT, b"two ", fin=False)
    s.frame(OP_CONT, b"three", fin=True)
    s.c.expect("one two three")
    # UTF-8 sequences split across fragments are fine.
    snow = "\u2603".encode()
    s.frame(OP_TEXT, snow[:1], fin=False)
    s.frame(OP_CONT, snow[1:2], fin=False)
    s.frame(OP_CONT, snow[2:], fin=True)
    s.c.expect(snow)
    # Empty fragments too.
    s.frame(OP_BINARY, b"", fin=False)
    s.frame(OP_CONT, b"", fin=False)
    s.frame(OP_CONT, b"end", fin=True)
    s.c.expect("end")


@session
def ping_between_fragments(s):
    s.frame(OP_TEXT, b"frag-a ", fin=False)
    s.frame(OP_PING, b"ping payload")
    s.frame(OP_CONT, b"frag-b", fin=True)
    f = s.p.recv_frame()
    check(f.opcode == OP_PONG and f.payload == b"ping payload",
          "expected a pong with the ping's payload, got %r" % f)
    s.c.expect("frag-a frag-b")
    # An empty ping, and a 125-byte one.
    for payload in (b"", bytes(range(125))):
        s.frame(OP_PING, payload)
        f = s.p.recv_frame()
        check(f.opcode == OP_PONG and f.payload == payload, "pong %r" % f)
    # An unsolicited pong is ignored.
    s.frame(OP_PONG, b"nobody asked")
    s.frame(OP_TEXT, b"after the pong")
    s.c.expect("after the pong")


@session
def frames_byte_by_byte(s):
    data = build_frame(OP_TEXT, b"slowly " * 30, mask=False) + \
        build_frame(OP_PING, b"p", mask=False)
    s.p.send_bytewise(data)
    s.c.expect(("slowly " * 30).encode())
    f = s.p.recv_frame()
    check(f.opcode == OP_PONG and f.payload == b"p", "pong %r" % f)


@session
def many_frames_one_segment(s):
    s.p.send(b"".join(build_frame(OP_TEXT, b"burst %d" % i, mask=False) for i in range(100)))
    for i in range(100):
        s.c.expect("burst %d" % i)


@session
def empty_and_big_messages(s):
    s.frame(OP_TEXT, b"")
    s.c.expect(b"")
    big = b"B" * (3 << 20)
    s.frame(OP_TEXT, big)
    s.c.expect(big, timeout=ct.TIMEOUT * 2)


@session
def close_1000_echoed(s):
    s.p.send_close(1000)
    f = s.p.recv_frame()
    check(f.opcode == OP_CLOSE and f.close_code == 1000,
          "expected a close echoing 1000, got %r" % f)
    s.p.close()
    s.c.finish(0, "closed 1000", close_stdin=False)


@session
def close_empty_payload(s):
    s.p.send_close()
    f = s.p.recv_frame()
    check(f.opcode == OP_CLOSE and (len(f.payload) == 0 or f.close_code == 1000),
          "expected an empty close (or 1000), got %r" % f)
    s.p.close()
    s.c.finish(1, "closed 1005", close_stdin=False)


@session
def close_then_eof_without_tcp_close_from_us(s):
    """The server closes the handshake but waits for the client to drop TCP."""
    s.p.send_close(1000, b"done")
    f = s.p.recv_frame()
    check(f.opcode == OP_CLOSE and f.close_code == 1000, "close %r" % f)
    s.p.expect_eof(timeout=ct.TIMEOUT * 2, what="after the close handshake: ")
    s.c.finish(0, "closed 1000 done", close_stdin=False)


@session
def data_after_server_close_ignored(s):
    s.p.send(build_frame(OP_CLOSE, close_payload(1000), mask=False)
             + build_frame(OP_TEXT, b"after close", mask=False))
    f = s.p.recv_frame()
    check(f.opcode == OP_CLOSE and f.close_code == 1000, "close %r" % f)
    s.p.close()
    s.c.finish(0, "closed 1000", close_stdin=False)
    s.c.expect_no_output(0)


@session
def tcp_close_without_close_frame(s):
    s.frame(OP_TEXT, b"last words")
    s.c.expect("last words")
    s.p.close()
    s.c.finish(1, "closed 1006( .*)?", close_stdin=False)


@session
def tcp_reset(s):
    s.p.abort()
    s.c.finish(1, "closed 1006( .*)?", close_stdin=False)


# =========================================================================== violations

@session
def invalid_utf8(s):
    s.frame(OP_TEXT, b"bad \xc3\x28 utf-8")
    s.fails_with(1007)
    s.c.expect_no_output(0)


@session
def invalid_utf8_across_fragments(s):
    s.frame(OP_TEXT, b"ok \xe2\x98", fin=False)
    s.frame(OP_CONT, b"\x28 bad", fin=True)
    s.fails_with(1007)


@session
def reserved_opcode_3(s):
    s.frame(0x3, b"reserved")
    s.fails_with(1002)


@session
def reserved_control_opcode_b(s):
    s.frame(0xB, b"reserved")
    s.fails_with(1002)


@session
def rsv1_set(s):
    s.frame(OP_TEXT, b"compressed?", rsv=4)
    s.fails_with(1002)


@session
def rsv3_on_ping(s):
    s.frame(OP_PING, b"x", rsv=1)
    s.fails_with(1002)


@session
def control_frame_126_bytes(s):
    s.frame(OP_PING, b"p" * 126)
    s.fails_with(1002)


@session
def fragmented_control_frame(s):
    s.frame(OP_PING, b"half", fin=False)
    s.fails_with(1002)


@session
def continuation_without_start(s):
    s.frame(OP_CONT, b"orphan", fin=True)
    s.fails_with(1002)


@session
def new_message_inside_fragmented(s):
    s.frame(OP_TEXT, b"first", fin=False)
    s.frame(OP_TEXT, b"second", fin=True)
    s.fails_with(1002)


@session
def masked_server_frame(s):
    s.frame(OP_TEXT, b"masked", mask=True)
    s.fails_with(1002)


def close_invalid_code(code):
    @session
    def case(s):
        s.p.send_close(code)
        s.fails_with(1002)
    return case


@session
def close_one_byte(s):
    s.frame(OP_CLOSE, b"\x03")
    s.fails_with(1002)


@session
def close_reason_invalid_utf8(s):
    s.frame(OP_CLOSE, close_payload(1000, b"bad \xc3\x28"))
    s.fails_with(1007)


@session
def length_msb_set(s):
    s.p.send(bytes([0x82, 127]) + struct.pack("!Q", 1 << 63) + b"xxxx")
    f = s.p.recv_frame()
    check(f.opcode == OP_CLOSE and f.close_code in (1002, 1009),
          "expected a close 1002 (or 1009), got %r" % f)
    s.p.send_close(f.close_code)
    s.p.close()
    s.c.finish(1, "closed 10(02|09)( .*)?", close_stdin=False)


@client_args("--max-message-size", "1000")
@session
def message_too_big(s):
    s.frame(OP_TEXT, b"a" * 1000)
    s.c.expect(b"a" * 1000)
    s.frame(OP_TEXT, b"b" * 1001)
    s.fails_with(1009)
    s.c.expect_no_output(0)


@client_args("--max-message-size", "1000")
@session
def message_too_big_fragmented(s):
    s.frame(OP_BINARY, b"c" * 600, fin=False)
    s.frame(OP_CONT, b"c" * 600, fin=True)
    s.fails_with(1009)


CASES = [
    ("client frames masked, fresh keys", masking_fresh_keys),
    ("client length encodings", length_encodings),
    ("binary in and out", binary_opcode),
    ("fragmented text -> one message", fragmented_text),
    ("ping between fragments -> masked pong", ping_between_fragments),
    ("frames byte by byte", frames_byte_by_byte),
    ("100 frames in one segment", many_frames_one_segment),
    ("empty and 3 MiB messages", empty_and_big_messages),
    ("server close 1000 echoed", close_1000_echoed),
    ("server close without code -> 1005", close_empty_payload),
    ("server waits for the client to drop TCP", close_then_eof_without_tcp_close_from_us),
    ("data after the server's close ignored", data_after_server_close_ignored),
    ("TCP close without close frame -> 1006", tcp_close_without_close_frame),
    ("TCP reset -> 1006", tcp_reset),
    ("invalid UTF-8 -> 1007", invalid_utf8),
    ("invalid UTF-8 across fragments -> 1007", invalid_utf8_across_fragments),
    ("reserved opcode 0x3 -> 1002", reserved_opcode_3),
    ("reserved opcode 0xB -> 1002", reserved_control_opcode_b),
    ("RSV1 -> 1002", rsv1_set),
    ("RSV3 on a ping -> 1002", rsv3_on_ping),
    ("control frame of 126 bytes -> 1002", control_frame_126_bytes),
    ("fragmented control frame -> 1002", fragmented_control_frame),
    ("continuation without start -> 1002", continuation_without_start),
    ("new message inside a fragmented one -> 1002", new_message_inside_fragmented),
    ("masked frame from the server -> 1002", masked_server_frame),
    ("close code 1005 -> 1002", close_invalid_code(1005)),
    ("close code 999 -> 1002", close_invalid_code(999)),
    ("close code 1006 -> 1002", close_invalid_code(1006)),
    ("close code 1015 -> 1002", close_invalid_code(1015)),
    ("close code 5000 -> 1002", close_invalid_code(5000)),
    ("close payload of 1 byte -> 1002", close_one_byte),
    ("close reason not UTF-8 -> 1007", close_reason_invalid_utf8),
    ("64-bit length with the MSB set -> 1002", length_msb_set),
    ("message over --max-message-size -> 1009", message_too_big),
    ("fragmented message over the maximum -> 1009", message_too_big_fragmented),
]


def main():
    global EXE
    if len(sys.argv) < 2:
        sys.stderr.write("usage: %s PATH/TO/wsev-client [CASE ...]\n" % sys.argv[0])
        return 2
    EXE = sys.argv[1]
    only = sys.argv[2:]
    r = Runner("wsev client conformance")
    for name, fn in CASES:
        if only and not any(o in name for o in only):
            continue
        r.run(name, fn)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
