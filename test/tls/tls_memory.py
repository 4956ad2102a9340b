#!/usr/bin/python3
"""What an idle connection costs wsev-echo in resident memory, ws:// and wss://.

usage: test/tls/tls_memory.py PATH/TO/wsev-echo [--count N]   (not a test: a figure)

Makes an ECDSA certificate with scripts/make-cert.sh, starts `wsev-echo 0 --tls-port 0`,
warms it up (a few connections of each kind opened, used and closed, so that buffers
shared by all connections exist), then opens N (default 1000) idle plain connections
(upgrade done, nothing sent after) and reads the server's VmRSS from /proc/PID/status
before and after; then N idle wss connections the same way; then sends one small
message on every wss connection and reads it again (a connection that has been used).
Prints bytes per connection for each. Raises RLIMIT_NOFILE as far as the hard limit
allows (the server inherits it).
"""

import os
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

from wsevtest import OP_TEXT, Conn, Server, settled_rss  # noqa: E402

MAKE_CERT = os.path.join(HERE, "..", "..", "scripts", "make-cert.sh")


class TlsConn(Conn):
    def __init__(self, port, ctx):
        super().__init__(port, timeout=30)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")


def main():
    args = sys.argv[1:]
    if not args:
        sys.stderr.write(__doc__)
        return 2
    exe = os.path.abspath(args[0])
    n = int(args[args.index("--count") + 1]) if "--count" in args else 1000

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * n + 200  # our sockets; the server needs n + a few
    if soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(hard, max(need, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < need:
            sys.stderr.write("RLIMIT_NOFILE hard limit %d is below the %d needed\n"
                             % (hard, need))
            return 1

    d = tempfile.mkdtemp(prefix="wsev-tls-memory-")
    server = None
    try:
        subprocess.run([MAKE_CERT, d], check=True, timeout=120)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(os.path.join(d, "ca.crt"))
        ctx.set_alpn_protocols(["http/1.1"])
        server = Server(exe, "--tls-port", "0", "--cert", os.path.join(d, "localhost.crt"),
                        "--key", os.path.join(d, "localhost.key"), want_tls=True)
        pid = server.proc.pid

        # warm-up: shared buffers, the TLS configuration, allocator arenas
        for _ in range(20):
            for c in (Conn(server.port), TlsConn(server.tls_port, ctx)):
                c.handshake()
                c.echo(OP_TEXT, "warm-up " * 100)
                c.send_close(1000)
                c.expect_close(1000, reply=False)
                c.close()

        base = settled_rss(pid)
        plain = []
        for _ in range(n):
            c = Conn(server.port)
            c.handshake()
            plain.append(c)
        after_plain = settled_rss(pid)

        secure = []
        t0 = time.monotonic()
        for _ in range(n):
            c = TlsConn(server.tls_port, ctx)
            c.handshake()
            secure.append(c)
        hs_time = time.monotonic() - t0
        after_tls = settled_rss(pid)

        for c in secure:
            c.send_text("x" * 32)
        for c in secure:
            c.expect_echo(OP_TEXT, "x" * 32)
        after_used = settled_rss(pid)

        per_plain = (after_plain - base) / n
        per_tls = (after_tls - after_plain) / n
        per_used = (after_used - after_plain) / n
        print("server RSS: %d KiB at start (after warm-up)" % (base // 1024))
        print("%d idle ws connections:  +%d KiB, %.0f bytes per connection"
              % (n, (after_plain - base) // 1024, per_plain))
        print("%d idle wss connections: +%d KiB, %.0f bytes per connection "
              "(handshakes: %.0f per second, one at a time)"
              % (n, (after_tls - after_plain) // 1024, per_tls, n / hs_time))
        print("the same wss connections after one 32-byte echo each: %.0f bytes per "
              "connection" % per_used)
        for c in plain + secure:
            c.close()
    finally:
        if server is not None:
            problem = server.stop()
            if problem:
                print("server: %s" % problem)
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
