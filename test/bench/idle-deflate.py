#!/usr/bin/python3
"""What an idle permessage-deflate connection costs a server in resident memory.

usage: idle-deflate.py PORT PID COUNT [SIZE]

Opens COUNT ws connections to 127.0.0.1:PORT, one at a time, each offering
"permessage-deflate; client_max_window_bits" (what browsers offer), sends one compressed
text message of SIZE bytes (default 1024) of JSON on each and reads its echo, which
must come back compressed and equal, then leaves the connection idle. Prints
"bytes_per_conn=N extension=<the server's answer>" from the growth of process PID's
VmRSS, each reading taken once it stops moving. A few connections opened, used and
closed first warm up what all of them share (a shared compressor is made at the first
compressed message).
"""
import importlib
import os
import random
import socket
import struct
import sys
import zlib

# The upgrade and the measurement are idle-wss.py's (its name has a dash: no import
# statement can name it).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
idle_wss = importlib.import_module("idle-wss")

UPGRADE = (b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: every message's deflate ends with it


def message(rng, size):
    """size bytes of JSON: objects with the same keys and varying values."""
    items, n = [], 2
    while True:
        o = ('{"id":%d,"user":"user_%d","action":"%s","price":%d.%02d,"qty":%d,"ok":%s}'
             % (rng.randrange(10**5, 10**6), rng.randrange(1000),
                rng.choice(["buy", "sell", "cancel", "fill"]), rng.randrange(10, 1000),
                rng.randrange(100), rng.randrange(1, 500), rng.choice(["true", "false"])))
        if n + len(o) + 1 + 14 > size:
            break
        items.append(o)
        n += len(o) + 1
    text = "[" + ",".join(items + ['{"note":"%s"}']) + "]"
    return (text % ("x" * (size - len(text) + 2))).encode()


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise RuntimeError("the server closed the connection")
        data += chunk
    return data


def client_bits(answer):
    """The window the server allows our compressor (client_max_window_bits=N), or 15."""
    for param in answer.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name == "client_max_window_bits" and value:
            return int(value.strip('"'))
    return 15


def connect(port, payload):
    """A connection that sent `payload` compressed and got it back compressed; returns
    it and the server's Sec-WebSocket-Extensions answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = idle_wss.upgrade(s, UPGRADE)
    answer = ""
    for line in head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "sec-websocket-extensions":
            answer = value.strip()
    if not answer.startswith("permessage-deflate"):
        raise RuntimeError("permessage-deflate not agreed: %r" % answer)
    bits = max(9, client_bits(answer))  # zlib makes 8 into 9; nobody asks for 8 here
    c = zlib.compressobj(6, zlib.DEFLATED, -bits)
    body = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(TAIL)
    body = body[:-4]
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
    if len(body) < 126:
        header = struct.pack("!BB", 0xC1, 0x80 | len(body))
    else:
        header = struct.pack("!BBH", 0xC1, 0x80 | 126, len(body))
    s.sendall(header + mask + masked)
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    echo = recv_exact(s, n)
    if b0 != 0xC1:
        raise RuntimeError("the echo is not one compressed text frame: 0x%02x" % b0)
    if zlib.decompressobj(-15).decompress(echo + TAIL) != payload:
        raise RuntimeError("the echo differs from what was sent")
    return s, answer


def main():
    if len(sys.argv) not in (4, 5):
        sys.stderr.write(__doc__)
        return 2
    port, pid, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) == 5 else 1024
    rng = random.Random(7692)
    answers = []

    def opened():
        s, answer = connect(port, message(rng, size))
        answers.append(answer)
        return s

    per_conn = idle_wss.idle_cost(pid, count, opened)
    print("bytes_per_conn=%d extension=%s" % (per_conn, answers[-1].replace(" ", "")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
