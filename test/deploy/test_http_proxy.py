#!/usr/bin/python3
"""Connections we open through an HTTP proxy (CONNECT tunnels), with wsev-client.

Usage: test_http_proxy.py PATH/TO/wsev-echo PATH/TO/wsev-client

tinyproxy (Debian's, 1.11) is started here on a free loopback port with a generated
configuration (foreground, its log in a temporary directory, ConnectPort for the echo
server's ports only), once open and once with BasicAuth; wsev-echo serves ws and wss
(scripts/make-cert.sh's certificates). Checked:
- ws and wss through tinyproxy echo lines, and tinyproxy's log shows each CONNECT;
- credentials: the right ones pass, wrong or missing ones give WSEV_EPROXYAUTH
  (tinyproxy answers 401 to wrong ones, 407 to none);
- a port tinyproxy refuses (403) gives WSEV_EPROXY with the status; a proxy that
  accepts and closes (a Python socket server) gives WSEV_EPROXY; no proxy there
  gives ECONNREFUSED naming the proxy; a URL that is not a proxy's is refused at once;
- fake proxies (Python) for what tinyproxy never does: an answer dribbled byte by
  byte, an interim 100 first, and the server's first bytes in the proxy's own packet
  (the bytes after the 200 reach the upgrade: a 403 there is reported at once);
- wsev-client's environment: https_proxy / HTTPS_PROXY for wss, http_proxy /
  HTTP_PROXY for ws, a value without a scheme, no_proxy / NO_PROXY (names, suffixes,
  ports, "*"), and --no-proxy. "Went direct" is told by a proxy variable naming a
  port nobody listens on: the connection works only if it was not used.
With WSEV_SERVER_WRAP (valgrind), wsev-client and wsev-echo run under it.
"""

import os
import shutil
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "client"))

from proxies import Program, free_port, make_certs, port_accepts  # noqa: E402
import clienttest  # noqa: E402
from wsevtest import Runner, Server, TestFailure, check  # noqa: E402

if len(sys.argv) != 3:
    sys.stderr.write("usage: %s wsev-echo wsev-client\n" % sys.argv[0])
    sys.exit(2)
ECHO, CLIENT = sys.argv[1], sys.argv[2]
TINYPROXY = "/usr/bin/tinyproxy"
SLOW = clienttest.SLOW
R = Runner("deploy-http-proxy")
TMP = tempfile.mkdtemp(prefix="wsev-deploy-http-proxy.")
CA, CRT, KEY = make_certs(os.path.join(TMP, "certs"))

# The proxy variables of the environment the tests run in must not leak into them.
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy",
              "NO_PROXY", "all_proxy", "ALL_PROXY")
for v in PROXY_VARS:
    os.environ.pop(v, None)


class Tinyproxy(Program):
    """tinyproxy in the foreground on a free port, allowing CONNECT to `ports`, with
    BasicAuth `auth` (user, password) if given."""

    name = "tinyproxy"
    exe = TINYPROXY

    def __init__(self, ports, auth=None):
        super().__init__()
        self.port = free_port()
        self.log = self.path("tinyproxy.log")
        conf = ["Port %d" % self.port, "Listen 127.0.0.1", "Timeout 30",
                'LogFile "%s"' % self.log, "LogLevel Info", "MaxClients 32",
                "Allow 127.0.0.1", "DisableViaHeader Yes"]
        conf += ["ConnectPort %d" % p for p in ports]
        if auth:
            conf.append("BasicAuth %s %s" % auth)
        with open(self.path("tinyproxy.conf"), "w") as f:
            f.write("\n".join(conf) + "\n")
        self._start([self.exe, "-d", "-c", self.path("tinyproxy.conf")],
                    lambda: port_accepts(self.port))

    def log_files(self):
        return [self.output, self.log]

    def connects(self):
        """The targets of the CONNECT requests logged so far."""
        try:
            with open(self.log, errors="replace") as f:
                return re.findall(r"Request \(file descriptor \d+\): CONNECT (\S+) HTTP/1",
                                  f.read())
        except OSError:
            return []

    def wait_connect(self, target, before):
        """Wait until a CONNECT to target is logged after the first `before` ones."""
        deadline = time.monotonic() + 5 * SLOW
        while time.monotonic() < deadline:
            if target in self.connects()[before:]:
                return
            time.sleep(0.05)
        raise TestFailure("tinyproxy logged no CONNECT %s (it logged %r)\n%s"
                          % (target, self.connects()[before:], self.logs()))


def echo_through(url, *args, lines=("one", "two"), env=None):
    """wsev-client URL ARGS echoes `lines` and closes with 1000."""
    old = {}
    for k, v in (env or {}).items():
        old[k] = os.environ.get(k)
        os.environ[k] = v
    try:
        c = clienttest.Client(CLIENT, url, *args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        c.wait_connected()
        for line in lines:
            c.send(line)
            c.expect(line)
        c.finish(0, r"closed 1000")
    finally:
        if c.proc.poll() is None:
            c.proc.kill()


def fails_with(url, *args, pattern, env=None, within=None):
    """wsev-client URL ARGS fails: its final line matches "failed: PATTERN"."""
    old = {}
    for k, v in (env or {}).items():
        old[k] = os.environ.get(k)
        os.environ[k] = v
    try:
        c = clienttest.Client(CLIENT, url, *args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    t0 = time.monotonic()
    try:
        c.finish(1, "failed: " + pattern, close_stdin=False, timeout=10 * SLOW)
    finally:
        if c.proc.poll() is None:
            c.proc.kill()
    took = time.monotonic() - t0
    if within is not None:
        check(took < within * SLOW, "failing took %.2f s (expected under %.1f s)"
              % (took, within * SLOW))


# --------------------------------------------------------------------------- fake proxies

class FakeProxy:
    """A one-thread proxy on a free port. `behaviour(conn, request)` gets each client
    connection once its CONNECT head is in; the helpers below relay to the target."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.errors = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(10)
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.requests.append(head)
            self.behaviour(conn, head)
        except Exception as e:  # noqa: BLE001 - reported by the case
            self.errors.append(repr(e))
        finally:
            conn.close()

    def stop(self):
        self.stopping = True
        self.sock.close()


def target_of(head):
    m = re.match(rb"CONNECT (\S+):(\d+) HTTP/1\.1\r\nHost: \1:\2\r\n", head)
    if not m:
        raise TestFailure("not the CONNECT expected: %r" % head)
    host = m.group(1).decode()
    return host.strip("[]"), int(m.group(2))


def relay(client, upstream):
    """Copy both ways until either side ends."""
    def pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    t = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    t.start()
    pump(client, upstream)
    t.join(10)


def dribbling(conn, head):
    """Answer one byte at a time (an interim 100 first), then relay."""
    host, port = target_of(head)
    up = socket.create_connection((host, port), timeout=10)
    try:
        for b in b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection established\r\nX-A: 1\r\n\r\n":
            conn.sendall(bytes([b]))
            time.sleep(0.002)
        relay(conn, up)
    finally:
        up.close()


def coalescing(conn, head):
    """The 200 and a server's refusal in one packet."""
    target_of(head)
    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n"
                 b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    time.sleep(2)


def closing(conn, head):
    """Accept the CONNECT, then close without a word."""


# --------------------------------------------------------------------------- cases

def main():
    if not os.path.exists(TINYPROXY):
        print("tinyproxy is not installed: install the test dependencies with "
              "scripts/deps.sh --test")
        sys.exit(1)
    echo = Server(ECHO, "--tls-port", "0", "--cert", CRT, "--key", KEY, want_tls=True)
    running = [echo]
    try:
        ws_url = "ws://127.0.0.1:%d/through" % echo.port
        wss_url = "wss://localhost:%d/through" % echo.tls_port
        tp = Tinyproxy([echo.port, echo.tls_port])
        running.append(tp)
        auth = Tinyproxy([echo.port, echo.tls_port], auth=("alice", "s3cret-x.y"))
        running.append(auth)
        proxy = "http://127.0.0.1:%d" % tp.port

        def ws_via_tinyproxy():
            n = len(tp.connects())
            echo_through(ws_url, "--proxy", proxy)
            tp.wait_connect("127.0.0.1:%d" % echo.port, n)
        R.run("ws through tinyproxy", ws_via_tinyproxy)

        def wss_via_tinyproxy():
            n = len(tp.connects())
            echo_through(wss_url, "--proxy", proxy + "/", "--ca", CA)
            tp.wait_connect("localhost:%d" % echo.tls_port, n)
        R.run("wss through tinyproxy (SNI and verification for the server)", wss_via_tinyproxy)

        def wss_wrong_name():
            # The certificate (localhost, 127.0.0.1, ::1) is checked against the URL's
            # host, not the proxy's: 127.0.0.2 is not in it.
            fails_with("wss://127.0.0.2:%d/" % echo.tls_port, "--proxy", proxy, "--ca", CA,
                       pattern=r"WSEV_ETLSVERIFY: .*", within=3)
        R.run("wss through tinyproxy: the server's name is verified", wss_wrong_name)

        def with_auth():
            n = len(auth.connects())
            # Percent-encoded or not (tinyproxy takes [-a-z0-9._] in its configuration).
            echo_through(wss_url, "--proxy", "http://%%61lice:s3cret%%2Dx.y@127.0.0.1:%d"
                         % auth.port, "--ca", CA)
            echo_through(ws_url, "--proxy", "http://alice:s3cret-x.y@127.0.0.1:%d" % auth.port)
            auth.wait_connect("localhost:%d" % echo.tls_port, n)
        R.run("tinyproxy with BasicAuth: the right credentials", with_auth)

        def wrong_auth():
            # tinyproxy answers wrong credentials with 401, none with 407.
            fails_with(ws_url, "--proxy", "http://alice:wrong@127.0.0.1:%d" % auth.port,
                       pattern=r"WSEV_EPROXYAUTH: proxy authentication required \(401 .*\)",
                       within=3)
            fails_with(ws_url, "--proxy", "http://127.0.0.1:%d" % auth.port,
                       pattern=r"WSEV_EPROXYAUTH: proxy authentication required \(407 .*\)",
                       within=3)
        R.run("tinyproxy with BasicAuth: wrong (401) or no credentials (407)", wrong_auth)

        def refused_port():
            other = free_port()
            fails_with("ws://127.0.0.1:%d/" % other, "--proxy", proxy,
                       pattern=r"WSEV_EPROXY: proxy refused the tunnel: 403 .*", within=3)
        R.run("tinyproxy refuses a port (403)", refused_port)

        def accepts_and_closes():
            fake = FakeProxy(closing)
            try:
                fails_with(ws_url, "--proxy", "http://127.0.0.1:%d" % fake.port,
                           pattern=r"WSEV_EPROXY: the proxy closed the connection before "
                                   r"answering", within=3)
                check(len(fake.requests) == 1, "the fake proxy saw %r" % fake.requests)
            finally:
                fake.stop()
        R.run("a proxy that accepts and closes", accepts_and_closes)

        def not_there():
            dead = free_port()
            fails_with(ws_url, "--proxy", "http://127.0.0.1:%d" % dead,
                       pattern=r"ECONNREFUSED: cannot connect to proxy 127\.0\.0\.1 port %d: .*"
                       % dead, within=3)
        R.run("no proxy there (connection refused)", not_there)

        def bad_proxy_url():
            c = clienttest.Client(CLIENT, ws_url, "--proxy", "https://127.0.0.1:1",
                                  stdin=subprocess.DEVNULL)
            c.finish(2, None, close_stdin=False)
            check("invalid WebSocket URL" in c.stderr_text() or "URL" in c.stderr_text(),
                  "stderr: %s" % c.stderr_text())
        R.run("a proxy URL that does not parse is refused at once", bad_proxy_url)

        def dribbled():
            fake = FakeProxy(dribbling)
            try:
                echo_through(ws_url, "--proxy", "http://127.0.0.1:%d" % fake.port)
                echo_through(wss_url, "--proxy", "http://127.0.0.1:%d" % fake.port, "--ca", CA)
                check(not fake.errors, "fake proxy: %r" % fake.errors)
            finally:
                fake.stop()
        R.run("a proxy answering byte by byte, after an interim 100", dribbled)

        def coalesced():
            fake = FakeProxy(coalescing)
            try:
                fails_with(ws_url, "--proxy", "http://127.0.0.1:%d" % fake.port,
                           pattern=r"WSEV_EHANDSHAKE: HTTP 403.*", within=1.5)
            finally:
                fake.stop()
        R.run("the server's first bytes in the proxy's packet are not lost", coalesced)

        # ---- the environment (wsev-client)
        dead = "http://127.0.0.1:%d" % free_port()

        def env_https_proxy():
            for var in ("https_proxy", "HTTPS_PROXY"):
                n = len(tp.connects())
                echo_through(wss_url, "--ca", CA, env={var: proxy})
                tp.wait_connect("localhost:%d" % echo.tls_port, n)
            # The value without a scheme: http:// is assumed.
            n = len(tp.connects())
            echo_through(wss_url, "--ca", CA, env={"https_proxy": "127.0.0.1:%d" % tp.port})
            tp.wait_connect("localhost:%d" % echo.tls_port, n)
            # http_proxy is not for wss: it goes direct.
            echo_through(wss_url, "--ca", CA, env={"http_proxy": dead})
        R.run("wsev-client: https_proxy / HTTPS_PROXY for wss", env_https_proxy)

        def env_http_proxy():
            for var in ("http_proxy", "HTTP_PROXY"):
                n = len(tp.connects())
                echo_through(ws_url, env={var: proxy})
                tp.wait_connect("127.0.0.1:%d" % echo.port, n)
            echo_through(ws_url, env={"https_proxy": dead})
            fails_with(ws_url, env={"http_proxy": dead},
                       pattern=r"ECONNREFUSED: cannot connect to proxy .*", within=3)
        R.run("wsev-client: http_proxy / HTTP_PROXY for ws", env_http_proxy)

        def env_no_proxy():
            for value in ("localhost", ".localhost", "*.localhost", "example.com, LOCALHOST",
                          "localhost:%d" % echo.tls_port, "*", " x.test ,localhost "):
                for var in ("no_proxy", "NO_PROXY"):
                    echo_through(wss_url, "--ca", CA, lines=("x",),
                                 env={"https_proxy": dead, var: value})
            # Not matching: the proxy is used (and here it is dead).
            for value in ("localhost:1", "host", "calhost", "example.com"):
                fails_with(wss_url, "--ca", CA, env={"https_proxy": dead, "no_proxy": value},
                           pattern=r"ECONNREFUSED: cannot connect to proxy .*", within=3)
            # IP literals.
            echo_through(ws_url, lines=("x",), env={"http_proxy": dead, "no_proxy": "127.0.0.1"})
            fails_with(ws_url, env={"http_proxy": dead, "no_proxy": "127.0.0.2"},
                       pattern=r"ECONNREFUSED: cannot connect to proxy .*", within=3)
        R.run("wsev-client: no_proxy / NO_PROXY", env_no_proxy)

        def no_proxy_flag():
            echo_through(wss_url, "--ca", CA, "--no-proxy", lines=("x",),
                         env={"https_proxy": dead})
            # --proxy wins over the environment.
            n = len(tp.connects())
            echo_through(wss_url, "--ca", CA, "--proxy", proxy, lines=("x",),
                         env={"https_proxy": dead, "no_proxy": "*"})
            tp.wait_connect("localhost:%d" % echo.tls_port, n)
        R.run("wsev-client: --no-proxy, and --proxy over the environment", no_proxy_flag)
    finally:
        for thing in reversed(running):
            R.record("%s stopped cleanly" % getattr(thing, "name", "server"), thing.stop())
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(R.finish())


if __name__ == "__main__":
    main()
