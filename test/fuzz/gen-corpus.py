#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets into test/fuzz/corpus/<target>/.

Deterministic: running it again rewrites the same files (and removes stale ones that
it owns, i.e. every file in those directories). Run from anywhere:

    python3 test/fuzz/gen-corpus.py
"""
import struct

from corpuslib import frame, write_corpus

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def request(path=b"/chat", host=b"Host: server.example.com\r\n", upgrade=b"Upgrade: websocket\r\n",
            connection=b"Connection: Upgrade\r\n", key=b"Sec-WebSocket-Key: " + KEY + b"\r\n",
            version=b"Sec-WebSocket-Version: 13\r\n", method=b"GET", proto=b"HTTP/1.1",
            extra=b"", eol=b"\r\n"):
    head = method + b" " + path + b" " + proto + b"\r\n" + host + upgrade + connection + key + version + extra
    return (head + b"\r\n").replace(b"\r\n", eol)


def close(code=None, reason=b"", **kw):
    payload = b"" if code is None else struct.pack(">H", code) + reason
    return frame(0x8, payload, **kw)


def utf8_seeds():
    s = {
        "empty": b"",
        "ascii": b"Hello, WebSocket!",
        "ascii-long": b"abcdefgh" * 20 + b"xyz",
        "two-byte": "caf\u00e9 \u00fc\u00f1\u00ee".encode(),
        "three-byte": "\u20ac\u4e2d\u6587\uffee".encode(),
        "four-byte": "\U0001f600\U0001f4a9\U00010000".encode(),
        "boundaries": "\x7f\x80\u07ff\u0800\ud7ff\ue000\uffff\U00010000\U0010ffff".encode(),
        "mixed-aligned": b"1234567" + "\u00e9".encode() + b"abcdefg" + "\U0001f600".encode() + b"x" * 9,
        "overlong-2": b"\xc0\x80",
        "overlong-c1": b"\xc1\xbf",
        "overlong-3": b"\xe0\x80\x80",
        "overlong-3b": b"\xe0\x9f\xbf",
        "overlong-4": b"\xf0\x80\x80\x80",
        "overlong-4b": b"\xf0\x8f\xbf\xbf",
        "surrogate-lo": b"\xed\xa0\x80",
        "surrogate-hi": b"\xed\xbf\xbf",
        "above-max": b"\xf4\x90\x80\x80",
        "f5": b"\xf5\x80\x80\x80",
        "ff": b"abc\xff",
        "lone-continuation": b"a\x80b",
        "truncated-2": b"abc\xc3",
        "truncated-3": b"abc\xe2\x82",
        "truncated-4": b"abc\xf0\x9f\x98",
        "bad-continuation": b"\xe2\x28\xa1",
        "autobahn-6.4.1": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64",
        "long-then-bad": b"a" * 63 + b"\xf8",
    }
    return s


def frame_seeds():
    s = {
        "text-masked": frame(0x1, b"Hello"),
        "text-unmasked": frame(0x1, b"Hello", mask=None),
        "binary-16": frame(0x2, bytes(range(256)) * 1 + b"xyz"),
        "binary-64-header": frame(0x2, b"abc", length=0x10000, form=64),
        "len-64-msb": frame(0x2, b"", length=1 << 63, form=64),
        "len-64-nonminimal": frame(0x2, b"abc", form=64),
        "len-16-nonminimal": frame(0x2, b"abc", form=16),
        "cont": frame(0x0, b"more", fin=False),
        "ping": frame(0x9, b"ping!"),
        "ping-125": frame(0x9, b"p" * 125),
        "ping-126": frame(0x9, b"p" * 126),
        "ping-nofin": frame(0x9, b"x", fin=False),
        "pong-empty": frame(0xA),
        "close-empty": close(),
        "close-1000": close(1000, b"bye"),
        "close-1005": close(1005),
        "close-999": close(999),
        "close-1012": close(1012),
        "close-3000": close(3000, "\u00e9t\u00e9".encode()),
        "close-5000": close(5000),
        "close-one-byte": frame(0x8, b"\x03"),
        "close-bad-utf8": close(1000, b"\xc0\xaf"),
        "close-unmasked": close(1001, b"going", mask=None),
        "rsv1": frame(0x1, b"x", rsv=4),
        "rsv3": frame(0x2, b"x", rsv=7),
        "opcode-3": frame(0x3, b"x"),
        "opcode-b": frame(0xB, b"x"),
        "short-1": b"\x81",
        "short-16": b"\x82\xfe\x01",
        "short-64": b"\x82\xff\x00\x00\x00",
        "short-mask": b"\x81\x85\x01\x02",
        "mask-aligned": frame(0x2, bytes(range(64)), mask=b"\xff\x00\xff\x00"),
    }
    return s


def handshake_seeds():
    def hs(req, max_header=8192, seed=0):
        return struct.pack(">H", max_header) + bytes([seed]) + req

    s = {
        "valid": hs(request()),
        "valid-seed7": hs(request(), seed=7),
        "valid-then-frame": hs(request() + frame(0x1, b"Hi")),
        "lowercase": hs(request(host=b"host: a\r\n", upgrade=b"upgrade: WebSocket\r\n",
                                connection=b"connection: keep-alive, Upgrade\r\n",
                                key=b"sec-websocket-key: " + KEY + b"\r\n",
                                version=b"sec-websocket-version: 13\r\n")),
        "ows": hs(request(upgrade=b"Upgrade:   websocket  \r\n", connection=b"Connection:\tfoo ,upgrade\t\r\n")),
        "query": hs(request(path=b"/a/b?c=d&e=%20f#frag")),
        "absolute-uri": hs(request(path=b"http://example.com/x")),
        "lf-only": hs(request(eol=b"\n")),
        "no-host": hs(request(host=b"")),
        "two-hosts": hs(request(host=b"Host: a\r\nHost: b\r\n")),
        "no-upgrade": hs(request(upgrade=b"")),
        "no-connection": hs(request(connection=b"Connection: keep-alive\r\n")),
        "no-key": hs(request(key=b"")),
        "two-keys": hs(request(key=b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Key: " + KEY + b"\r\n")),
        "short-key": hs(request(key=b"Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n")),
        "bad-key": hs(request(key=b"Sec-WebSocket-Key: !GhlIHNhbXBsZSBub25jZQ==\r\n")),
        "version-8": hs(request(version=b"Sec-WebSocket-Version: 8\r\n")),
        "no-version": hs(request(version=b"")),
        "two-versions": hs(request(version=b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n")),
        "post": hs(request(method=b"POST")),
        "http10": hs(request(proto=b"HTTP/1.0")),
        "http2": hs(request(proto=b"HTTP/2.0")),
        "content-length": hs(request(extra=b"Content-Length: 5\r\n") + b"hello"),
        "chunked": hs(request(extra=b"Transfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n0\r\n\r\n"),
        "long-name": hs(request(extra=b"X-" + b"N" * 40 + b": v\r\n")),
        "long-value": hs(request(extra=b"X-Long: " + b"v" * 600 + b"\r\n")),
        "small-max": hs(request(), max_header=64),
        "max-exact": hs(request(), max_header=len(request())),
        "max-minus-one": hs(request(), max_header=len(request()) - 1),
        "max-zero": hs(request(), max_header=0),
        "incomplete": hs(request()[:60]),
        "garbage": hs(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        "nul-in-path": hs(request(path=b"/a\x00b")),
        "obs-fold": hs(request(extra=b"X-Fold: a\r\n b\r\n")),
        "pipelined": hs(request() + request()),
        "protocols": hs(request(extra=b"Sec-WebSocket-Protocol: chat, superchat\r\n"
                                      b"Sec-WebSocket-Protocol: v2.json\r\n")),
        "origin": hs(request(extra=b"Origin: https://example.com\r\n")),
        "plain-get": hs(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n"),
        "plain-get-close": hs(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        "plain-post-body": hs(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"),
        "plain-http10": hs(b"GET / HTTP/1.0\r\n\r\n"),
    }
    return s


def server_seeds():
    UP, CLOSE1, GREET, EMPTY, HTTP, REFUSE = 1, 2, 4, 8, 16, 32

    def sv(flags, payload, seed=0):
        return bytes([flags, seed]) + payload

    fragmented = frame(0x1, "h\u00e9".encode()[:2], fin=False) + frame(0x9, b"p") + \
        frame(0x0, "h\u00e9".encode()[2:] + b"llo", fin=True)
    s = {
        "text": sv(UP, frame(0x1, b"Hello") + close(1000)),
        "text-split": sv(UP, frame(0x1, b"Hello, world, in pieces") + close(1000), seed=3),
        "binary-16": sv(UP, frame(0x2, bytes(range(256)) * 2) + close(1000)),
        "binary-64-nonminimal": sv(UP, frame(0x2, b"abc", form=64) + close(1000)),
        "two-messages": sv(UP | GREET | EMPTY, frame(0x1, b"one") + frame(0x2, b"two") + close(1001)),
        "fragmented": sv(UP, fragmented + close(1000)),
        "fragmented-split": sv(UP, fragmented + close(1000), seed=11),
        "ping-pong": sv(UP, frame(0x9, b"ping") + frame(0xA, b"pong") + close(1000)),
        "ping-125": sv(UP, frame(0x9, b"p" * 125) + close(1000), seed=5),
        "ping-126": sv(UP, frame(0x9, b"p" * 126)),
        "close-empty": sv(UP, close()),
        "close-reason": sv(UP, close(3000, "adi\u00f3s".encode())),
        "close-bad-code": sv(UP, close(1005)),
        "close-one-byte": sv(UP, frame(0x8, b"\x03")),
        "close-bad-utf8": sv(UP, close(1000, b"\xed\xa0\x80")),
        "no-close": sv(UP, frame(0x1, b"abrupt")),
        "server-closes": sv(UP | CLOSE1, frame(0x1, b"first") + frame(0x1, b"second") + close(1000)),
        "server-closes-noreply": sv(UP | CLOSE1 | GREET, frame(0x2, b"x")),
        "bad-utf8": sv(UP, frame(0x1, b"ab\xc0\xafcd")),
        "utf8-split-frames": sv(UP, frame(0x1, b"\xf0\x9f", fin=False) + frame(0x0, b"\x98\x80") + close(1000)),
        "utf8-truncated": sv(UP, frame(0x1, b"ab\xe2\x82") + close(1000)),
        "unmasked": sv(UP, frame(0x1, b"x", mask=None)),
        "rsv": sv(UP, frame(0x1, b"x", rsv=4)),
        "opcode-3": sv(UP, frame(0x3, b"x")),
        "cont-first": sv(UP, frame(0x0, b"x")),
        "text-in-fragment": sv(UP, frame(0x1, b"a", fin=False) + frame(0x1, b"b")),
        "too-big": sv(UP, frame(0x2, b"abc", length=70000)),
        "too-big-fragments": sv(UP, frame(0x2, b"a" * 200, fin=False, length=40000)[:220]),
        "len-msb": sv(UP, frame(0x2, b"", length=1 << 63, form=64)),
        "handshake-only": sv(0, request()),
        "handshake-and-frames": sv(GREET, request() + frame(0x1, b"hi") + close(1000), seed=9),
        "handshake-bad": sv(0, request(key=b"")),
        "handshake-426": sv(0, request(version=b"Sec-WebSocket-Version: 8\r\n")),
        "handshake-431": sv(0, request(extra=b"X-Big: " + b"b" * 2100 + b"\r\n")),
        "handshake-incomplete": sv(0, request()[:50]),
        "handshake-garbage": sv(0, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
        "empty": sv(UP, b""),
        "http-answered": sv(HTTP, b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n"),
        "http-unanswered": sv(0, b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n"),
        "http-body": sv(HTTP, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"),
        "http-then-upgrade": sv(HTTP, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + request() + frame(0x1, b"hi") + close(1000)),
        "http-close": sv(HTTP, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + request()),
        "upgrade-protocol": sv(0, request(extra=b"Sec-WebSocket-Protocol: chat, superchat\r\n") + frame(0x1, b"x") + close(1000)),
        "upgrade-refused": sv(REFUSE, request() + frame(0x1, b"x")),
        "upgrade-origin": sv(0, request(extra=b"Origin: http://127.0.0.1\r\n") + close(1000)),
    }
    return s


def main():
    for target, seeds in (("utf8", utf8_seeds()), ("frame", frame_seeds()),
                          ("handshake", handshake_seeds()), ("server", server_seeds())):
        write_corpus(target, seeds)
        print(f"{target}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
