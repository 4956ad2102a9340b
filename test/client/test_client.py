#!/usr/bin/python3
"""wsev's client side (wsev_add_conn through the wsev-client sample) against real
servers and against broken ones.

usage: test_client.py --client wsev-client --echo wsev-echo --pubsub wsev-pubsub
                      [--node NODE]

Peers: wsev-echo (ws and wss), wsev-pubsub, a Python websockets 10.4 server
(Debian's python3-websockets, in a thread of this process), a Node ws server
(ws-server.mjs, when --node is given), and raw sockets that answer the upgrade
wrongly or not at all. Every case asserts the exit status and the final status line
of wsev-client ("closed CODE[ REASON]" or "failed: ERRNAME: REASON").

With WSEV_SERVER_WRAP set (valgrind), wsev-client and the wsev servers run under it.
Prints PASS/FAIL per case and "N passed, N failed"; exits 1 if any failed.
"""
import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clienttest as ct  # noqa: E402
from clienttest import (OP_BINARY, OP_TEXT, QUIET, SLOW, TIMEOUT, Client,  # noqa: E402
                        RawServer, TestFailure, check, server_line, start_server)

import websockets  # noqa: E402

A = None  # the parsed arguments
ECHO = None  # a shared wsev-echo (ws and wss)
TLS_PORT = None
BADURL = "invalid WebSocket URL"  # wsev_strerror(WSEV_EBADURL)


def client(url, *args, **kw):
    return Client(A.client, url, *args, **kw)


@contextlib.contextmanager
def running(url, *args, **kw):
    """A wsev-client for the length of a `with` block, killed at its end if need be."""
    c = client(url, *args, **kw)
    try:
        yield c
    finally:
        c.kill()


def echo_url(path="/", host="127.0.0.1"):
    return "ws://%s:%d%s" % (host, ECHO.port, path)


def wss_url(path="/", host="localhost", port=None):
    return "wss://%s:%d%s" % (host, port or TLS_PORT, path)


def need_tls():
    check(TLS_PORT is not None, "wsev-echo has no TLS listener (--tls-port): %r"
          % (ECHO.lines[:5],))


def roundtrip(c, messages):
    for m in messages:
        c.send(m)
    for m in messages:
        c.expect(m)


# =========================================================================== wsev-echo

def echo_text():
    with running(echo_url("/some/path?x=1")) as c:
        msgs = ["hello", "", "caf\u00e9 \u2603 \U0001F600", "x" * 200, "y" * 70000]
        roundtrip(c, msgs)
        c.wait_connected()
        c.finish(0, "closed 1000")


def echo_binary():
    with running(echo_url(), "--binary") as c:
        roundtrip(c, [b"bin\x00\x01\xff", b"", b"\x80\x81 not utf-8 \xc3\x28"])
        c.finish(0, "closed 1000")


def echo_many_in_order():
    with running(echo_url()) as c:
        msgs = ["m%05d" % i for i in range(2000)]
        c.proc.stdin.write(("\n".join(msgs) + "\n").encode())
        c.proc.stdin.flush()
        for m in msgs:
            c.expect(m)
        c.finish(0, "closed 1000")


# 24 MiB: more than the default 16 MiB send limit (6 MiB under valgrind: still more
# than the 4 MiB at which wsev-client stops reading stdin).
FLOW_LINES, FLOW_LEN = (3000 if ct.WRAP else 12000), 2047


def flow_line(i):
    return (b"%06d:" % i) + b"f" * (FLOW_LEN - 7)


def echo_flow_control():
    """24 MiB through stdin and back: every line comes back in order. At most 6 MiB
    are in flight (so that wsev-echo's own send limit, 16 MiB towards a client that
    prints slowly, is not what is tested here)."""
    c = client(echo_url())
    errors = []
    echoed = threading.Semaphore(FLOW_LINES // 4)

    def feed():
        try:
            for i in range(FLOW_LINES):
                if not echoed.acquire(timeout=TIMEOUT * 2):
                    errors.append("no echo for a long time")
                    return
                c.proc.stdin.write(flow_line(i) + b"\n")
                if i % 64 == 63:
                    c.proc.stdin.flush()
            c.proc.stdin.flush()
        except OSError as e:
            errors.append(e)
    t = threading.Thread(target=feed, daemon=True)
    try:
        t.start()
        for i in range(FLOW_LINES):
            got = c.recv(TIMEOUT * 2)
            echoed.release()
            if got != flow_line(i):
                raise TestFailure("line %d came back as %s" % (i, ct.short(got)))
        t.join(TIMEOUT)
        check(not errors, "writing stdin failed: %r" % errors)
        c.finish(0, "closed 1000", timeout=TIMEOUT * 2)
    finally:
        c.kill()


def flow_before_open():
    """24 MiB in a stdin file, read before the server answers: reading pauses until
    the connection opens and drains, and nothing is lost."""
    with tempfile.TemporaryFile() as f:
        for i in range(FLOW_LINES):
            f.write(flow_line(i) + b"\n")
        f.seek(0)
        with RawServer() as srv:
            with running(srv.url(), stdin=f) as c:
                p = srv.accept()
                p.read_request()
                time.sleep(0.5 * SLOW)  # let it read (and queue) what it will
                check(c.proc.poll() is None, "wsev-client ended before the 101: %s"
                      % c.stderr_text())
                p.send(p.response_101())
                for i in range(FLOW_LINES):
                    try:
                        op, got = p.recv_message(TIMEOUT * 2)
                    except TestFailure as e:
                        raise TestFailure("message %d of %d: %s; stderr: %s"
                                          % (i, FLOW_LINES, e, c.stderr_text()))
                    if got != flow_line(i):
                        raise TestFailure("message %d is %s" % (i, ct.short(got)))
                p.expect_client_close(1000)
                c.finish(0, "closed 1000", close_stdin=False)
                check("cannot send" not in c.stderr_text(), c.stderr_text())


def echo_stdin_devnull():
    """stdin ends at once (before the connection is open): still a clean 1000."""
    with running(echo_url(), stdin=subprocess.DEVNULL) as c:
        c.finish(0, "closed 1000", close_stdin=False)
        check(re.search(r"^wsev-client: connected$", c.stderr_text(), re.M),
              "no 'connected' line: %s" % c.stderr_text())


def echo_localhost_name():
    with running(echo_url(host="localhost")) as c:
        roundtrip(c, ["by name"])
        c.finish(0, "closed 1000")


def echo_ipv6():
    with running(echo_url(host="[::1]")) as c:
        roundtrip(c, ["over ipv6"])
        c.finish(0, "closed 1000")


def echo_server_shutdown():
    """The server goes away (SIGTERM: wsev-echo closes with 1001)."""
    srv = start_server(A.echo, name="wsev-echo-2")
    with running("ws://127.0.0.1:%d/" % srv.port) as c:
        roundtrip(c, ["before shutdown"])
        srv.proc.send_signal(signal.SIGTERM)
        c.finish(1, "closed 1001( .*)?", close_stdin=False)
        srv.stop()


def echo_sigint_closes():
    with running(echo_url()) as c:
        roundtrip(c, ["then a signal"])
        c.signal(signal.SIGINT)
        c.finish(0, "closed 1000", close_stdin=False)


# =========================================================================== wss

def wss_with_ca():
    need_tls()
    ca = os.path.join(ct.certs(), "ca.crt")
    for host in ("localhost", "127.0.0.1"):
        with running(wss_url("/tls", host=host), "--ca", ca) as c:
            roundtrip(c, ["over tls via " + host, "z" * 100000])
            c.wait_connected()
            c.finish(0, "closed 1000")


# What wsev-client prints when certificate verification fails: the error code is the
# same with both TLS backends, the words are the backend's.
BACKEND = os.environ.get("WSEV_TLS_BACKEND", "mbedtls")
if BACKEND == "openssl":
    UNTRUSTED = "failed: WSEV_ETLSVERIFY: certificate: unable to get local issuer certificate"
    WRONG_NAME = "failed: WSEV_ETLSVERIFY: certificate: (hostname|IP address) mismatch"
else:
    UNTRUSTED = ("failed: WSEV_ETLSVERIFY: certificate: The certificate is not correctly "
                 "signed by the trusted CA")
    WRONG_NAME = ("failed: WSEV_ETLSVERIFY: certificate: The certificate Common Name \\(CN\\) "
                  "does not match with the expected CN")


def wss_system_bundle_rejects():
    need_tls()
    with running(wss_url()) as c:
        c.finish(1, UNTRUSTED)


def wss_insecure():
    need_tls()
    with running(wss_url(host="127.0.0.1"), "--insecure") as c:
        roundtrip(c, ["insecure but encrypted"])
        c.finish(0, "closed 1000")


def wss_host_not_on_certificate():
    """127.0.0.2 reaches the same listener but is not in the certificate's SAN."""
    need_tls()
    ca = os.path.join(ct.certs(), "ca.crt")
    with running(wss_url(host="127.0.0.2"), "--ca", ca) as c:
        c.finish(1, WRONG_NAME)


def wss_certificate_for_another_name():
    """A certificate from the trusted CA, but for other.example only."""
    need_tls()
    d = ct.certs()
    crt, key = ct.make_cert_openssl(d, name="other.example", san="DNS:other.example",
                                    leaf="other")
    srv = start_server(A.echo, "--tls-port", "0", "--cert", crt, "--key", key,
                       name="wsev-echo-other")
    try:
        port = int(server_line(srv, r"listening for TLS on port (\d+)").group(1))
        with running("wss://localhost:%d/" % port, "--ca", os.path.join(d, "ca.crt")) as c:
            c.finish(1, WRONG_NAME)
        # ... and with --insecure the same server is fine.
        with running("wss://localhost:%d/" % port, "--insecure") as c:
            roundtrip(c, ["name not checked"])
            c.finish(0, "closed 1000")
    finally:
        problem = srv.stop()
        check(problem is None, problem)


def wss_to_plain_port():
    """A TLS client against a plain ws listener: the TLS handshake fails."""
    with running("wss://127.0.0.1:%d/" % ECHO.port, "--insecure") as c:
        c.finish(1, "failed: WSEV_ETLS: .+")


def wss_bad_ca_file():
    with running(wss_url(port=1), "--ca", "/nonexistent/ca.pem") as c:
        c.finish(2)
        check("cannot load the CA certificates" in c.stderr_text(),
              "expected the WSEV_ETLSCA text, got %r" % c.stderr_text())


# =========================================================================== wsev-pubsub

def pubsub_two_clients():
    srv = start_server(A.pubsub, "--quiet", name="wsev-pubsub", port_args=("--port", "0"))
    url = "ws://127.0.0.1:%d/" % srv.port
    sub, pub = client(url), client(url)
    try:
        sub.send("subscribe:news")
        sub.expect("OK")
        pub.send("publish:news:hello subscribers")
        pub.expect("OK")
        sub.expect("hello subscribers")
        pub.send("publish:other:nobody")
        pub.expect("OK")
        pub.send("bogus")
        pub.expect("Invalid message")
        sub.expect_no_output()
        sub.send("unsubscribe:news")
        sub.expect("OK")
        pub.send("publish:news:gone")
        pub.expect("OK")
        sub.expect_no_output()
        sub.finish(0, "closed 1000")
        pub.finish(0, "closed 1000")
    finally:
        sub.kill()
        pub.kill()
        problem = srv.stop()
        check(problem is None, problem)


# =========================================================================== websockets

class PyServer:
    """A websockets 10.4 server in a thread with its own asyncio loop; with an
    ssl.SSLContext, a wss server (OpenSSL: a TLS stack other than ours)."""

    def __init__(self, tls=None):
        self.tls = tls
        self.requests = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise TestFailure("the websockets server did not start")
        if self.error:
            raise TestFailure("the websockets server did not start: %r" % self.error)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.error = None
        try:
            self.server = self.loop.run_until_complete(websockets.serve(
                self.handler, "127.0.0.1", 0, subprotocols=["chat", "superchat"],
                compression=None, max_size=None, ping_interval=None, close_timeout=2,
                ssl=self.tls))
            self.port = self.server.sockets[0].getsockname()[1]
        except Exception as e:  # noqa: BLE001
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    def url(self, path):
        if self.tls:
            return "wss://localhost:%d%s" % (self.port, path)
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    async def echo_loop(self, ws):
        try:
            async for m in ws:
                await ws.send(m)
        except websockets.ConnectionClosed:
            pass

    async def handler(self, ws, path=None):
        path = ws.path
        h = ws.request_headers
        tls = ws.transport.get_extra_info("ssl_object")
        self.requests.append({"path": path, "origin": h.get_all("Origin"),
                              "x-test": h.get_all("X-Test"),
                              "x-other": h.get_all("X-Other"),
                              "protocol": ws.subprotocol,
                              "tls": tls and [tls.version(), tls.cipher()[0]]})
        if path == "/headers":
            await ws.send(json.dumps(self.requests[-1]))
            await self.echo_loop(ws)
        elif path == "/close4001":
            try:
                m = await ws.recv()
                await ws.send(m)
            except websockets.ConnectionClosed:
                return
            await ws.close(4001, "server says bye")
        elif path == "/big":
            await ws.send("b" * (1 << 20))
            await self.echo_loop(ws)
        else:
            await self.echo_loop(ws)

    def stop(self):
        async def shut():
            self.server.close()
            await self.server.wait_closed()
        try:
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


PY = None
PY_TLS = None  # the same server over wss, with our test CA's localhost certificate
SNI_SEEN = []  # the server names PY_TLS's clients asked for


def py_echo():
    with running(PY.url("/echo")) as c:
        roundtrip(c, ["hello websockets", "\u00fcber", ""])
        c.wait_connected()
        c.finish(0, "closed 1000")
    with running(PY.url("/echo"), "--binary") as c:
        roundtrip(c, [b"\x00\xff binary"])
        c.finish(0, "closed 1000")


def py_subprotocol():
    with running(PY.url("/headers"), "--protocol", "chat") as c:
        c.wait_connected(protocol="chat")
        info = json.loads(c.recv())
        check(info["protocol"] == "chat", "server side selected %r" % info["protocol"])
        c.finish(0, "closed 1000")
    # Several offered: the server picks one of them, and we report it.
    with running(PY.url("/headers"), "--protocol", "other", "--protocol", "superchat") as c:
        c.wait_connected(protocol="superchat")
        c.finish(0, "closed 1000")
    # None the server knows: no protocol.
    with running(PY.url("/headers"), "--protocol", "nothing-known") as c:
        c.wait_connected()
        info = json.loads(c.recv())
        check(info["protocol"] is None, "server selected %r" % info["protocol"])
        c.finish(0, "closed 1000")


def py_origin_and_headers():
    c = client(PY.url("/headers"), "--origin", "https://example.com:8443",
               "--header", "X-Test: first value", "--header", "X-Other: 42")
    try:
        info = json.loads(c.recv())
        check(info["origin"] == ["https://example.com:8443"], "Origin %r" % info["origin"])
        check(info["x-test"] == ["first value"], "X-Test %r" % info["x-test"])
        check(info["x-other"] == ["42"], "X-Other %r" % info["x-other"])
        roundtrip(c, ["still an echo"])
        c.finish(0, "closed 1000")
    finally:
        c.kill()
    # Without --origin no Origin header is sent.
    with running(PY.url("/headers")) as c:
        info = json.loads(c.recv())
        check(info["origin"] == [], "Origin sent without --origin: %r" % info["origin"])
        c.finish(0, "closed 1000")


def py_big_messages():
    with running(PY.url("/big")) as c:
        c.expect("b" * (1 << 20), timeout=TIMEOUT * 2)
        big = "".join(chr(0x41 + i % 26) for i in range(1 << 20))
        roundtrip(c, [big])
        c.finish(0, "closed 1000")


def py_wss():
    """Our client against an OpenSSL wss server: verified with --ca, the best version
    our backend has (mbedTLS: TLS 1.2 with a forward-secret AEAD suite; OpenSSL: TLS
    1.3), SNI sent, 1 MiB both ways, clean close."""
    ca = os.path.join(ct.certs(), "ca.crt")
    with running(PY_TLS.url("/headers"), "--ca", ca) as c:
        info = json.loads(c.recv())
        version, cipher = info["tls"]
        if BACKEND == "openssl":
            check(version == "TLSv1.3", "negotiated %r" % version)
            check(cipher.startswith("TLS_") and ("GCM" in cipher or "CHACHA20" in cipher),
                  "cipher suite %r" % cipher)
        else:
            check(version == "TLSv1.2", "negotiated %r" % version)
            check(cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher),
                  "cipher suite %r" % cipher)
        check(SNI_SEEN[-1:] == ["localhost"], "the server saw SNI %r" % SNI_SEEN)
        roundtrip(c, ["over OpenSSL", "\u00fcber"])
        c.finish(0, "closed 1000")
    with running(PY_TLS.url("/big"), "--ca", ca) as c:
        c.expect("b" * (1 << 20), timeout=TIMEOUT * 2)
        big = "".join(chr(0x41 + i % 26) for i in range(1 << 20))
        roundtrip(c, [big])
        c.finish(0, "closed 1000")
    # Without our CA the system bundle does not trust it.
    with running(PY_TLS.url("/echo")) as c:
        c.finish(1, UNTRUSTED)


def py_server_closes_4001():
    with running(PY.url("/close4001")) as c:
        roundtrip(c, ["one"])
        c.finish(1, "closed 4001 server says bye", close_stdin=False)


# =========================================================================== node ws

def node_server():
    check(A.node, "node was not found")
    proc = subprocess.Popen([A.node, os.path.join(ct.HERE, "ws-server.mjs")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    lines = []

    def first_line():
        lines.append(proc.stdout.readline())
    t = threading.Thread(target=first_line, daemon=True)
    t.start()
    t.join(15)
    m = re.match(rb"ws-server listening on port (\d+)", lines[0] if lines else b"")
    if not m:
        proc.kill()
        err = proc.stderr.read().decode(errors="replace")
        raise TestFailure("ws-server.mjs did not start: %r %s" % (lines, err))
    return proc, int(m.group(1))


def node_stop(proc):
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def node_echo_and_close():
    proc, port = node_server()
    try:
        with running("ws://127.0.0.1:%d/echo" % port) as c:
            roundtrip(c, ["hello node", "\u2603" * 1000, "n" * 300000])
            c.finish(0, "closed 1000")
        with running("ws://127.0.0.1:%d/echo" % port, "--binary") as c:
            roundtrip(c, [b"\x01\x02\xfe"])
            c.finish(0, "closed 1000")
        with running("ws://127.0.0.1:%d/close" % port) as c:
            roundtrip(c, ["last"])
            c.finish(1, "closed 4002 node says bye", close_stdin=False)
        with running("ws://127.0.0.1:%d/refused" % port) as c:
            m = c.finish(1, "failed: WSEV_EHANDSHAKE: (.*)")
            check("401" in m.group(1), "reason should name the status 401: %r" % m.group(1))
    finally:
        node_stop(proc)


# =========================================================================== failures

def fail_dns():
    with running("ws://does-not-exist.invalid/") as c:
        c.finish(1, "failed: EAI_[A-Z]+: cannot resolve does-not-exist.invalid: .+",
                 timeout=TIMEOUT * 2)


def fail_refused():
    port = ct.free_port()
    with running("ws://127.0.0.1:%d/" % port) as c:
        c.finish(1, "failed: ECONNREFUSED: cannot connect to 127.0.0.1 port %d: connection "
                 "refused" % port)


def raw_answer(response, expect_final, status=1):
    """A raw server reads the request and answers `response`; the client must fail
    with the final status line `expect_final`. Returns the match."""
    with RawServer() as srv:
        with running(srv.url()) as c:
            p = srv.accept()
            p.read_request()
            if callable(response):
                response = response(p)
            p.send(response)
            m = c.finish(status, expect_final, close_stdin=False)
            p.expect_eof(what="after a refused upgrade: ")
            return m


def fail_http_200():
    m = raw_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
                   "failed: WSEV_EHANDSHAKE: (.*)")
    check("200" in m.group(1), "reason should name the status: %r" % m.group(1))


def fail_http_404():
    m = raw_answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                   "failed: WSEV_EHANDSHAKE: (.*)")
    check("404" in m.group(1), "reason should name the status: %r" % m.group(1))


def fail_bad_accept():
    m = raw_answer(lambda p: p.response_101(accept=ct.accept_for("not the key")),
                   "failed: WSEV_EHANDSHAKE: (.*)")
    check(m.group(1) == "bad Sec-WebSocket-Accept", "reason: %r" % m.group(1))


def fail_missing_upgrade():
    def resp(p):
        return ("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: %s\r\n\r\n" % ct.accept_for(p.key)).encode()
    raw_answer(resp, "failed: WSEV_EHANDSHAKE: no Upgrade: websocket")


def fail_missing_connection():
    def resp(p):
        return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Sec-WebSocket-Accept: %s\r\n\r\n" % ct.accept_for(p.key)).encode()
    raw_answer(resp, "failed: WSEV_EHANDSHAKE: no Connection: Upgrade")


def fail_protocol_not_offered():
    raw_answer(lambda p: p.response_101(protocol="never-offered"),
               "failed: WSEV_EHANDSHAKE: unrequested subprotocol")


def fail_extension_not_offered():
    raw_answer(lambda p: p.response_101(extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"),
               "failed: WSEV_EHANDSHAKE: unrequested extension")


def fail_closed_before_response():
    """The server reads the request and closes: the upgrade failed."""
    with RawServer() as srv:
        with running(srv.url()) as c:
            p = srv.accept()
            p.read_request()
            p.close()
            c.finish(1, "failed: WSEV_EHANDSHAKE: connection closed by the server during the "
                     "upgrade response", close_stdin=False)


def fail_reset_before_response():
    """The server reads the request and resets the connection."""
    with RawServer() as srv:
        with running(srv.url()) as c:
            p = srv.accept()
            p.read_request()
            p.abort()
            # A reset reads as ECONNRESET, or as a plain EOF if it came in with the FIN.
            c.finish(1, "failed: (ECONNRESET: connection reset by peer|WSEV_EHANDSHAKE: "
                     "connection closed by the server) during the upgrade response",
                     close_stdin=False)


# The limit counts from wsev_add_conn and covers the lookup (on libuv's thread pool) and,
# for wss, the TLS setup: under valgrind those alone could take 500 ms, and the client then
# timed out before it connected (the test waited 30 s for the connection).
CONNECT_TIMEOUT_MS = str(int(500 * SLOW))


def fail_connect_timeout():
    """TCP is accepted but nothing is ever answered: --connect-timeout ends it."""
    with RawServer() as srv:
        with running(srv.url(), "--connect-timeout", CONNECT_TIMEOUT_MS) as c:
            p = srv.accept()
            p.read_request()
            c.finish(1, "failed: ETIMEDOUT: timed out waiting for the 101", close_stdin=False,
                     timeout=2.0 * SLOW + 1)
            check(c.elapsed() < 2.0 * SLOW + 1, "took %.1f s" % c.elapsed())
            p.expect_eof()


def fail_wss_connect_timeout():
    """wss: TCP is accepted but no TLS answer ever comes: ETIMEDOUT as well."""
    with RawServer() as srv:
        with running(srv.url(scheme="wss"), "--insecure", "--connect-timeout",
                     CONNECT_TIMEOUT_MS) as c:
            p = srv.accept()
            c.finish(1, "failed: ETIMEDOUT: timed out in the TLS handshake", close_stdin=False,
                     timeout=2.0 * SLOW + 1)
            check(c.elapsed() < 2.0 * SLOW + 1, "took %.1f s" % c.elapsed())
            p.buf.clear()
            try:
                p.read_all_until_eof(TIMEOUT)
            except TestFailure:
                raise TestFailure("the client did not close the TCP connection")


def fail_tls_garbage():
    """wss: the server answers the ClientHello with something that is not TLS."""
    with RawServer() as srv:
        with running(srv.url(scheme="wss"), "--insecure") as c:
            p = srv.accept()
            p.read_exact(5, time.monotonic() + TIMEOUT)  # a TLS record header
            p.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            c.finish(1, "failed: WSEV_ETLS: .*", close_stdin=False)


def fail_cancelled_before_open():
    """SIGINT before the 101 (wsev_close before open): failed with ECANCELED."""
    with RawServer() as srv:
        with running(srv.url()) as c:
            p = srv.accept()
            p.read_request()
            c.signal(signal.SIGINT)
            c.finish(1, "failed: ECANCELED: closed by the application before it opened",
                     close_stdin=False)
            p.expect_eof()


def fail_masked_frame():
    """A masked frame from the server: we fail the connection with 1002."""
    with RawServer() as srv:
        with running(srv.url()) as c:
            p = srv.accept().handshake()
            c.wait_connected()
            p.send_frame(OP_TEXT, b"masked!", mask=True)
            p.expect_client_close(1002)
            c.expect_no_output(0)
            c.finish(1, "closed 1002( .*)?", close_stdin=False)


def bad_urls():
    for url in ["http://x", "ws://", "ws://host:99999", "ws://host/#frag", "wss://",
                "ws://[::1/", "ws://host:port/", "ws:/host/", "x"]:
        with running(url) as c:
            c.finish(2)
            check(BADURL in c.stderr_text(), "URL %r: expected the EBADURL text, got %r"
                  % (url, c.stderr_text()))
            check(url in c.stderr_text(), "URL %r not named in %r" % (url, c.stderr_text()))


def bad_options():
    for args in (["--protocol", "not a token"], ["--header", "no colon here"],
                 ["--header", "X-A: b\nX-Injected: c"], ["--header", ": no name"]):
        with running("ws://127.0.0.1:1/", *args) as c:
            c.finish(2)
            check("invalid argument" in c.stderr_text(),
                  "%r: expected UV_EINVAL's text, got %r" % (args, c.stderr_text()))
    for args in (["ws://a/", "--connect-timeout", "soon"], ["ws://a/", "--bogus"],
                 ["ws://a/", "ws://second/"], []):
        c = Client(A.client, *args) if args else Client(A.client, "--binary")
        try:
            c.finish(2)
            check("usage:" in c.stderr_text(), "%r: no usage text: %r" % (args, c.stderr_text()))
        finally:
            c.kill()


# =========================================================================== raw servers

def request_format():
    """What the client sends: a proper upgrade request for the URL, with our options."""
    with RawServer() as srv:
        c = client(srv.url("/chat?room=1"), "--protocol", "chat", "--protocol", "v2.x",
                   "--origin", "http://origin.test", "--header", "X-Extra: yes")
        try:
            p = srv.accept()
            line, h = p.read_request()
            check(line == "GET /chat?room=1 HTTP/1.1", "request line %r" % line)
            check(h.get("host") == ["127.0.0.1:%d" % srv.port], "Host %r" % h.get("host"))
            check([t.strip().lower() for t in ",".join(h.get("upgrade", [])).split(",")]
                  == ["websocket"], "Upgrade %r" % h.get("upgrade"))
            check("upgrade" in [t.strip().lower()
                                for t in ",".join(h.get("connection", [])).split(",")],
                  "Connection %r" % h.get("connection"))
            check(h.get("sec-websocket-version") == ["13"], "Version %r"
                  % h.get("sec-websocket-version"))
            import base64
            check(p.key is not None and len(base64.b64decode(p.key, validate=True)) == 16,
                  "Sec-WebSocket-Key %r" % h.get("sec-websocket-key"))
            protos = [t.strip() for t in ",".join(h.get("sec-websocket-protocol", [])).split(",")]
            check(protos == ["chat", "v2.x"], "Sec-WebSocket-Protocol %r"
                  % h.get("sec-websocket-protocol"))
            check(h.get("origin") == ["http://origin.test"], "Origin %r" % h.get("origin"))
            check(h.get("x-extra") == ["yes"], "X-Extra %r" % h.get("x-extra"))
            check("sec-websocket-extensions" not in h, "extensions offered: %r"
                  % h.get("sec-websocket-extensions"))
            p.send(p.response_101(protocol="v2.x"))
            c.wait_connected(protocol="v2.x")
            c.close_stdin()
            p.expect_client_close(1000)
            c.finish(0, "closed 1000")
        finally:
            c.kill()
    # The default port is in Host only when given; IPv6 literals keep brackets.
    with RawServer("::1") as srv:
        with running(srv.url("/")) as c:
            p = srv.accept()
            _, h = p.read_request()
            check(h.get("host") == ["[::1]:%d" % srv.port], "Host %r" % h.get("host"))


def write_before_open():
    """Lines typed before the 101 are queued, and sent after it, in order."""
    with RawServer() as srv:
        with running(srv.url()) as c:
            p = srv.accept()
            p.read_request()
            c.send("early 1")
            c.send("early 2")
            p.expect_silence()  # nothing may be sent before the 101
            p.send(p.response_101())
            p.expect_text("early 1")
            p.expect_text("early 2")
            c.send("after open")
            p.expect_text("after open")
            c.close_stdin()
            p.expect_client_close(1000)
            c.finish(0, "closed 1000")


def stdin_is_a_file():
    """stdin a regular file that ends before the connection opens: the lines are
    sent after the 101, then the close."""
    with tempfile.TemporaryFile() as f:
        f.write(b"line one\nline two\nno newline at the end")
        f.seek(0)
        with RawServer() as srv:
            with running(srv.url(), stdin=f) as c:
                p = srv.accept()
                p.read_request()
                p.expect_silence()
                p.send(p.response_101())
                for m in ("line one", "line two", "no newline at the end"):
                    p.expect_text(m)
                p.expect_client_close(1000)
                c.finish(0, "closed 1000", close_stdin=False)


def frame_in_101_segment():
    """Bytes right behind the 101, in the same TCP segment, are frames."""
    with RawServer() as srv:
        with running(srv.url()) as c:
            p = srv.accept()
            p.read_request()
            p.send(p.response_101() + ct.build_frame(OP_TEXT, b"right behind", mask=False)
                   + ct.build_frame(OP_BINARY, b"and another", mask=False))
            c.expect("right behind")
            c.expect("and another")
            c.close_stdin()
            p.expect_client_close(1000)
            c.finish(0, "closed 1000")


def response_bytewise_odd_case():
    """A 101 sent one byte at a time, with odd header case, token lists and extra
    headers, is fine."""
    with RawServer() as srv:
        with running(srv.url()) as c:
            p = srv.accept()
            p.read_request()
            resp = ("HTTP/1.1 101 Web Socket Protocol Handshake\r\nserver: raw\r\n"
                    "UPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
                    "sec-websocket-accept: %s\r\nX-Whatever: 1\r\n\r\n"
                    % ct.accept_for(p.key)).encode()
            p.send_bytewise(resp + ct.build_frame(OP_TEXT, b"bytewise", mask=False))
            c.wait_connected()
            c.expect("bytewise")
            c.close_stdin()
            p.expect_client_close(1000)
            c.finish(0, "closed 1000")


def server_close_then_client_reply():
    """The server closes with a code and reason: the client echoes the code, and
    reports the server's code and reason."""
    with RawServer() as srv:
        with running(srv.url()) as c:
            p = srv.accept().handshake()
            p.send_close(4321, "see you")
            f = p.recv_frame()
            check(f.opcode == ct.OP_CLOSE and f.close_code == 4321,
                  "expected the client's close echoing 4321, got %r" % f)
            p.close()
            c.finish(1, "closed 4321 see you", close_stdin=False)


CASES = [
    ("echo: text, empty, UTF-8, 70 KB", echo_text),
    ("echo: binary (--binary)", echo_binary),
    ("echo: 2000 messages in order", echo_many_in_order),
    ("echo: stdin /dev/null closes cleanly", echo_stdin_devnull),
    ("echo: 24 MiB through stdin", echo_flow_control),
    ("raw: 24 MiB stdin file before the 101 (flow control)", flow_before_open),
    ("echo: ws://localhost (name lookup)", echo_localhost_name),
    ("echo: ws://[::1]", echo_ipv6),
    ("echo: server shutdown -> closed 1001", echo_server_shutdown),
    ("echo: SIGINT closes with 1000", echo_sigint_closes),
    ("wss: --ca, localhost and 127.0.0.1", wss_with_ca),
    ("wss: system CA bundle -> WSEV_ETLSVERIFY", wss_system_bundle_rejects),
    ("wss: --insecure", wss_insecure),
    ("wss: 127.0.0.2 not in SAN -> WSEV_ETLSVERIFY", wss_host_not_on_certificate),
    ("wss: certificate for another name -> WSEV_ETLSVERIFY", wss_certificate_for_another_name),
    ("wss: to a plain port -> WSEV_ETLS", wss_to_plain_port),
    ("wss: unreadable --ca -> exit 2", wss_bad_ca_file),
    ("pubsub: subscribe/publish between two clients", pubsub_two_clients),
    ("websockets: echo", py_echo),
    ("websockets: subprotocol negotiation", py_subprotocol),
    ("websockets: Origin and extra headers", py_origin_and_headers),
    ("websockets: 1 MiB both ways", py_big_messages),
    ("websockets: server closes with 4001", py_server_closes_4001),
    ("websockets over wss (OpenSSL): verified, TLS 1.2 AEAD, SNI, 1 MiB", py_wss),
    ("node ws: echo, close, refused", node_echo_and_close),
    ("fail: DNS", fail_dns),
    ("fail: connection refused", fail_refused),
    ("fail: HTTP 200", fail_http_200),
    ("fail: HTTP 404", fail_http_404),
    ("fail: wrong Sec-WebSocket-Accept", fail_bad_accept),
    ("fail: no Upgrade header", fail_missing_upgrade),
    ("fail: no Connection header", fail_missing_connection),
    ("fail: subprotocol not offered", fail_protocol_not_offered),
    ("fail: extension not offered", fail_extension_not_offered),
    ("fail: closed before the response", fail_closed_before_response),
    ("fail: reset before the response", fail_reset_before_response),
    ("fail: no answer -> ETIMEDOUT", fail_connect_timeout),
    ("fail: wss, no TLS answer -> ETIMEDOUT", fail_wss_connect_timeout),
    ("fail: wss, garbage instead of TLS -> WSEV_ETLS", fail_tls_garbage),
    ("fail: close before open -> ECANCELED", fail_cancelled_before_open),
    ("fail: masked frame from the server -> 1002", fail_masked_frame),
    ("usage: bad URLs -> exit 2 EBADURL", bad_urls),
    ("usage: bad options -> exit 2", bad_options),
    ("raw: the upgrade request", request_format),
    ("raw: writes before open are sent after the 101", write_before_open),
    ("raw: stdin is a file", stdin_is_a_file),
    ("raw: frames in the 101's segment", frame_in_101_segment),
    ("raw: 101 byte by byte, odd header case", response_bytewise_odd_case),
    ("raw: server closes 4321 with a reason", server_close_then_client_reply),
]


def main():
    global A, ECHO, TLS_PORT, PY, PY_TLS
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", required=True)
    ap.add_argument("--echo", required=True)
    ap.add_argument("--pubsub", required=True)
    ap.add_argument("--node", default="")
    ap.add_argument("only", nargs="*", help="run only cases whose name contains one of these")
    A = ap.parse_args()
    r = Runner("wsev client")
    d = ct.certs()
    try:
        ECHO = start_server(A.echo, "--tls-port", "0", "--cert",
                            os.path.join(d, "localhost.crt"), "--key",
                            os.path.join(d, "localhost.key"), name="wsev-echo")
        TLS_PORT = int(server_line(ECHO, r"listening for TLS on port (\d+)", 3 * SLOW).group(1))
    except TestFailure as e:
        # The wss cases fail (need_tls) rather than being skipped.
        print("note: wsev-echo without TLS: %s" % e, flush=True)
        if ECHO:
            ECHO.stop()
        ECHO = start_server(A.echo, name="wsev-echo")
    PY = PyServer()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.path.join(d, "localhost.crt"), os.path.join(d, "localhost.key"))
    tls.sni_callback = lambda ssl_object, name, context: SNI_SEEN.append(name)
    PY_TLS = PyServer(tls)
    try:
        for name, fn in CASES:
            if A.only and not any(o in name for o in A.only):
                continue
            if name.startswith("node") and not A.node:
                print("SKIP %s (node not found)" % name, flush=True)
                continue
            r.run(name, fn)
    finally:
        PY.stop()
        PY_TLS.stop()
        r.record("wsev-echo survived and exited cleanly", ECHO.stop())
    return r.finish()


Runner = ct.Runner

if __name__ == "__main__":
    sys.exit(main())
