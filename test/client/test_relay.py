#!/usr/bin/python3
"""relay.c: one wsev context that accepts clients and dials an upstream server.

usage: test_relay.py PATH/TO/relay PATH/TO/wsev-echo [CASE-SUBSTRING ...]

Clients (raw sockets with wsevtest.Conn) talk to the relay; the relay forwards their
messages to an upstream wsev-echo through wsev_add_conn and sends what comes back to
every client. Checks wsev_get_conn_info's `client` (1 upstream, 0 accepted), writes
queued before the upstream connection opened, what the relay sees when the upstream
goes away or cannot be reached, and a wss upstream.

With WSEV_SERVER_WRAP set (valgrind), the relay and wsev-echo run under it.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clienttest as ct  # noqa: E402
from clienttest import (OP_BINARY, OP_TEXT, SLOW, TIMEOUT, RawServer, Runner,  # noqa: E402
                        TestFailure, check, server_line, start_server)
import wsevtest  # noqa: E402

RELAY = ECHO = None


def relay(url, *args):
    return start_server(RELAY, url, *args, name="relay")


def client(r, path="/"):
    c = wsevtest.Conn(r.port)
    c.handshake(path=path)
    return c


def wait_exit(srv, timeout=TIMEOUT * 2):
    """The server must exit by itself with status 0."""
    try:
        rc = srv.proc.wait(timeout)
    except Exception:  # noqa: BLE001
        srv.stop()
        raise TestFailure("%s did not exit by itself; stdout %r" % (srv.name, srv.lines[-10:]))
    srv._err_reader.join(5)
    check(rc == 0, "%s exited with %s (stdout %r)" % (srv.name, rc, srv.lines[-10:]))
    check(not srv.sanitizer_reports, "sanitizer reports: %r" % srv.sanitizer_reports)


def stop_ok(srv):
    problem = srv.stop()
    check(problem is None, problem)


def broadcast_through_echo():
    echo = start_server(ECHO, name="wsev-echo")
    r = relay("ws://127.0.0.1:%d/upstream-path?q=1" % echo.port)
    try:
        m = server_line(r, r"upstream open client=(\d+) path=(\S+) tls=(\d)")
        check(m.group(1) == "1", "upstream conn_info.client = %s, expected 1" % m.group(1))
        check(m.group(2) == "/upstream-path?q=1", "upstream conn_info.path = %r" % m.group(2))
        check(m.group(3) == "0", "upstream conn_info.tls = %s" % m.group(3))
        a = client(r, "/a")
        ma = server_line(r, r"accepted (\d+) client=(\d+) path=/a$")
        check(ma.group(2) == "0", "accepted conn_info.client = %s, expected 0" % ma.group(2))
        b = client(r, "/b")
        mb = server_line(r, r"accepted (\d+) client=(\d+) path=/b$")
        check(mb.group(2) == "0", "accepted conn_info.client = %s, expected 0" % mb.group(2))
        a.send_text("from a")
        a.expect_echo(OP_TEXT, "from a")
        b.expect_echo(OP_TEXT, "from a")
        b.send_binary(b"\x00from b\xff")
        a.expect_echo(OP_BINARY, b"\x00from b\xff")
        b.expect_echo(OP_BINARY, b"\x00from b\xff")
        for i in range(200):
            a.send_text("seq %d" % i)
        for c in (a, b):
            for i in range(200):
                c.expect_echo(OP_TEXT, "seq %d" % i)
        big = os.urandom(300000)
        a.send_binary(big)
        a.expect_echo(OP_BINARY, big)
        b.expect_echo(OP_BINARY, big)
        # One client leaves; the other still gets everything.
        a.send_close(1000)
        a.expect_close(1000, reply=False)
        a.close()
        server_line(r, r"closed %s code=1000 by_peer=1" % ma.group(1))
        b.send_text("alone")
        b.expect_echo(OP_TEXT, "alone")
        b.send_close(1000)
        b.expect_close(1000, reply=False)
        b.close()
        # The upstream stays up; our SIGTERM closes it (1001, by us).
        stop_ok(r)
        server_line(r, r"upstream closed error=0 code=1001 by_peer=0")
    finally:
        r.stop()
        stop_ok(echo)


def early_writes_queued():
    """A client's message arrives at the relay before the upstream is open: it is
    queued and sent right after the upstream's 101."""
    with RawServer() as up:
        r = relay(up.url("/up"))
        try:
            p = up.accept()
            p.read_request()
            c = client(r)
            c.send_text("early one")
            c.send_binary(b"early two")
            p.expect_silence()  # nothing before the 101
            p.send(p.response_101())
            p.expect_text("early one")
            p.expect_text(b"early two", opcode=OP_BINARY)
            m = server_line(r, r"upstream open client=(\d+)")
            check(m.group(1) == "1", "client=%s" % m.group(1))
            p.send_frame(OP_TEXT, b"down to the clients")
            c.expect_echo(OP_TEXT, "down to the clients")
            # The upstream closes with 4000: the relay shuts down (1001 to clients).
            p.send_close(4000, "upstream done")
            f = p.recv_frame()
            check(f.opcode == ct.OP_CLOSE and f.close_code == 4000, "close %r" % f)
            p.close()
            server_line(r, r"upstream closed error=0 code=4000 by_peer=1 reason=upstream done")
            c.expect_close(1001)
            c.close()
            wait_exit(r)
        finally:
            r.stop()


def upstream_refused():
    r = relay("ws://127.0.0.1:%d/" % ct.free_port())
    try:
        server_line(r, r"upstream closed error=ECONNREFUSED code=1006 by_peer=\d reason=")
        wait_exit(r)
    finally:
        r.stop()


def upstream_shutdown():
    echo = start_server(ECHO, name="wsev-echo")
    r = relay("ws://127.0.0.1:%d/" % echo.port)
    try:
        server_line(r, r"upstream open client=1")
        c = client(r)
        c.send_text("ping")
        c.expect_echo(OP_TEXT, "ping")
        echo.proc.send_signal(signal.SIGTERM)
        server_line(r, r"upstream closed error=0 code=1001 by_peer=1")
        c.expect_close(1001)
        c.close()
        wait_exit(r)
    finally:
        r.stop()
        echo.stop()


def wss_upstream():
    d = ct.certs()
    echo = start_server(ECHO, "--tls-port", "0", "--cert", os.path.join(d, "localhost.crt"),
                        "--key", os.path.join(d, "localhost.key"), name="wsev-echo-tls")
    try:
        port = int(server_line(echo, r"listening for TLS on port (\d+)", 3 * SLOW).group(1))
        r = relay("wss://localhost:%d/secure" % port, "--ca", os.path.join(d, "ca.crt"))
        try:
            m = server_line(r, r"upstream open client=(\d+) path=(\S+) tls=(\d)")
            check(m.groups() == ("1", "/secure", "1"), "upstream info %r" % (m.groups(),))
            c = client(r)
            c.send_text("through tls")
            c.expect_echo(OP_TEXT, "through tls")
            c.send_close(1000)
            c.expect_close(1000, reply=False)
            c.close()
            stop_ok(r)
        finally:
            r.stop()
    finally:
        stop_ok(echo)


CASES = [
    ("relay: broadcast through an upstream wsev-echo, conn_info.client", broadcast_through_echo),
    ("relay: writes before the upstream opened", early_writes_queued),
    ("relay: upstream refused", upstream_refused),
    ("relay: upstream shuts down", upstream_shutdown),
    ("relay: wss upstream", wss_upstream),
]


def main():
    global RELAY, ECHO
    if len(sys.argv) < 3:
        sys.stderr.write("usage: %s relay wsev-echo [CASE ...]\n" % sys.argv[0])
        return 2
    RELAY, ECHO = sys.argv[1], sys.argv[2]
    only = sys.argv[3:]
    r = Runner("relay")
    for name, fn in CASES:
        if only and not any(o in name for o in only):
            continue
        r.run(name, fn)
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
