#!/usr/bin/python3
"""What an idle wss connection costs a server in resident memory.

usage: idle-wss.py PORT PID COUNT CA_FILE

Opens COUNT wss connections to 127.0.0.1:PORT (TLS verified against CA_FILE for
"localhost", the WebSocket upgrade done, nothing sent after), one at a time, and prints
"bytes_per_conn=N" from the growth of process PID's VmRSS, each reading taken once it
stops moving. A few connections opened and closed first warm up what all of them share.

idle-deflate.py measures with the same upgrade() and idle_cost().
"""
import os
import resource
import socket
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from wsevtest import settled_rss  # noqa: E402

UPGRADE = (b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def upgrade(s, request):
    """Sends the upgrade request on socket s; returns the response's head (up to the
    blank line), which must be a 101."""
    s.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(4096)
        if not data:
            raise RuntimeError("the server closed during the upgrade")
        head += data
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("upgrade refused: %r" % head[:80])
    return head


def idle_cost(pid, count, connect):
    """Growth of process pid's VmRSS per connection while count connections from
    connect() (which returns a socket) stand idle, after 20 opened and closed; each
    reading taken once it settles. Closes them all before it returns."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 100), hard))
    for _ in range(20):
        connect().close()
    base = settled_rss(pid)
    conns = [connect() for _ in range(count)]
    grown = settled_rss(pid) - base
    for c in conns:
        c.close()
    return grown / count


def connect(port, ctx):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30),
                        server_hostname="localhost")
    upgrade(s, UPGRADE)
    return s


def main():
    if len(sys.argv) != 5:
        sys.stderr.write(__doc__)
        return 2
    port, pid, count, ca = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.set_alpn_protocols(["http/1.1"])
    print("bytes_per_conn=%d" % idle_cost(pid, count, lambda: connect(port, ctx)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
