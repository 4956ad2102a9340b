"""The real programs that stand in front of wsev in a deployment, run by the tests:
nginx (Debian's nginx-light) and HAProxy, each on free loopback ports with its whole
state (configuration, pid file, logs, temporary files) in a temporary directory of its
own, in the foreground, stopped and cleaned up by stop() (also on failure).

Also what the deployment tests share: free ports, raw wsevtest.Conn connections from a
chosen source address, over TLS or over a Unix socket, reading wsev-echo's
--log-connections lines, and the echo cases run through every path (raw frames in the
style of test/python/conformance.py, and Python websockets).
"""

import asyncio
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

from wsevtest import (OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                      TIMEOUT, Conn, TestFailure, build_frame, check, short)

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
INSTALL_HINT = "install the test dependencies with: scripts/deps.sh --test"


def free_port(host="127.0.0.1"):
    """A port nobody listens on right now (the kernel's pick for a bind to 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def make_certs(directory):
    """A test CA and a localhost leaf signed by it (scripts/make-cert.sh): returns
    (ca.crt, localhost.crt, localhost.key)."""
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "make-cert.sh"), directory],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "make-cert.sh failed: %s" % r.stderr.strip())
    return tuple(os.path.join(directory, f) for f in ("ca.crt", "localhost.crt",
                                                      "localhost.key"))


# --------------------------------------------------------------------------- programs

class Program:
    """One foreground server process with its own temporary directory. Subclasses
    write the configuration, then call _start(cmd, ready)."""

    name = "program"
    exe = None

    def __init__(self):
        if not os.path.exists(self.exe):
            raise TestFailure("%s is not installed (%s); %s" % (self.name, self.exe,
                                                               INSTALL_HINT))
        self.dir = tempfile.mkdtemp(prefix="wsev-%s." % self.name)
        self.proc = None
        self.output = os.path.join(self.dir, "output.log")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _start(self, cmd, ready, timeout=10.0):
        """Start cmd (in a session of its own: stop() can reach its workers) and wait
        until ready() is true; on failure show the program's logs and clean up."""
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if ready():
                return
            time.sleep(0.05)
        rc = self.proc.poll()
        logs = self.logs()
        self.stop()
        raise TestFailure("%s did not start (%s): %s\n%s" % (
            self.name, "exit status %d" % rc if rc is not None else "not ready in %.0f s"
            % timeout, " ".join(cmd), logs))

    def log_files(self):
        return [self.output]

    def logs(self, limit=6000):
        """The program's logs, for a failure message."""
        parts = []
        for f in self.log_files():
            try:
                with open(f, "rb") as fh:
                    text = fh.read().decode("utf-8", "replace")
            except OSError:
                continue
            if text.strip():
                parts.append("--- %s:\n%s" % (os.path.basename(f), text[-limit:]))
        return "\n".join(parts) or "(%s logged nothing)" % self.name

    def stop(self):
        """Stop the program (SIGTERM to its process group, SIGKILL if that hangs) and
        remove its directory. Returns a problem string if it had died on its own."""
        problem = None
        if self.proc is not None:
            rc = self.proc.poll()
            if rc is not None:
                problem = "%s exited on its own (status %d):\n%s" % (self.name, rc,
                                                                     self.logs())
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            # Workers may outlive a master killed hard: the whole group goes.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self.proc.poll() is None:
                self.proc.wait(5)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
        return problem

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# The part of the nginx configuration a deployment copies (the README shows it): the
# upgrade is passed on only when the client asked for one, and an idle WebSocket is not
# cut before wsev's keepalive pings (every 30 s by default) have had their say.
NGINX_MAP = """\
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    # Forwarded (RFC 7239): what the client sent, then our own element for it; wsev
    # believes only the last one. An IPv6 address is quoted and bracketed.
    map $remote_addr $forwarded_for {
        ~:      "for=\\"[$remote_addr]\\"";
        default "for=$remote_addr";
    }
    map $http_forwarded $proxy_add_forwarded {
        ''      "$forwarded_for";
        default "$http_forwarded, $forwarded_for";
    }
"""

NGINX_PROXY = """\
            proxy_pass http://wsev;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
"""

# Either header, never both from the client: a Forwarded header the client made up
# would otherwise pass through nginx untouched, and wsev prefers Forwarded.
NGINX_XFF = """\
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Forwarded "";
"""
NGINX_FORWARDED = """\
            proxy_set_header Forwarded $proxy_add_forwarded;
            proxy_set_header X-Forwarded-For "";
"""


class Nginx(Program):
    """nginx in front of one wsev listener, `upstream` ("127.0.0.1:PORT" or
    "unix:/path"), on three free ports: `port` (plain, X-Forwarded-For), `fwd_port`
    (plain, Forwarded) and, with tls=(cert, key), `tls_port` (TLS ended here,
    X-Forwarded-For). Its workers run as root when we are root, or as `user`."""

    name = "nginx"
    exe = NGINX

    def __init__(self, upstream, tls=None, user=None):
        super().__init__()
        self.port = free_port()
        self.fwd_port = free_port()
        self.tls_port = free_port() if tls else None
        d = self.dir
        if user:
            os.chmod(d, 0o711)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.mkdir(os.path.join(d, sub))
        servers = [
            "        listen 127.0.0.1:%d;\n        location / {\n%s%s        }\n"
            % (self.port, NGINX_PROXY, NGINX_XFF),
            "        listen 127.0.0.1:%d;\n        location / {\n%s%s        }\n"
            % (self.fwd_port, NGINX_PROXY, NGINX_FORWARDED),
        ]
        if tls:
            servers.append(
                "        listen 127.0.0.1:%d ssl;\n"
                "        ssl_certificate %s;\n        ssl_certificate_key %s;\n"
                "        location / {\n%s%s        }\n"
                % (self.tls_port, tls[0], tls[1], NGINX_PROXY, NGINX_XFF))
        conf = "\n".join([
            "worker_processes 1;",
            # As root the workers would run as nobody, who cannot enter our 0700
            # temporary directories (nor reach a Unix socket in one); a test that
            # wants them to asks for that user.
            ("user %s;" % (user or "root root")) if os.geteuid() == 0 else "",
            "pid %s/nginx.pid;" % d,
            "error_log %s/error.log info;" % d,
            "events { worker_connections 256; }",
            "http {",
            "    access_log %s/access.log;" % d,
            "    client_body_temp_path %s/body;" % d,
            "    proxy_temp_path %s/proxy;" % d,
            "    fastcgi_temp_path %s/fastcgi;" % d,
            "    uwsgi_temp_path %s/uwsgi;" % d,
            "    scgi_temp_path %s/scgi;" % d,
            NGINX_MAP,
            "    upstream wsev { server %s; }" % upstream,
        ] + ["    server {\n%s    }" % s for s in servers] + ["}", ""])
        self.conf = conf
        with open(self.path("nginx.conf"), "w") as f:
            f.write(conf)
        ports = [p for p in (self.port, self.fwd_port, self.tls_port) if p]
        self._start([self.exe, "-p", d + "/", "-c", self.path("nginx.conf"),
                     "-e", self.path("error.log"), "-g", "daemon off;"],
                    lambda: all(port_accepts(p) for p in ports))

    def log_files(self):
        return [self.output, self.path("error.log"), self.path("access.log")]


class HAProxy(Program):
    """HAProxy with one frontend on a free port per backend in `backends`, a list of
    (name, mode, server[, extra backend lines]) where mode is "tcp" or "http" and server
    is the rest of the line after "server s1", e.g. "127.0.0.1:9000 send-proxy-v2".
    ports[name] is the frontend's port; stat() reads the stats socket."""

    name = "haproxy"
    exe = HAPROXY

    def __init__(self, backends):
        super().__init__()
        self.ports = {}
        self.sock = self.path("admin.sock")
        conf = [
            "global",
            "    log stdout format raw local0",
            "    maxconn 256",
            "    stats socket %s mode 600 level admin" % self.sock,
            "defaults",
            "    log global",
            "    timeout connect 5s",
            # A check waits for its answer this long (else only `inter`: too short for
            # a server under valgrind).
            "    timeout check 5s",
            # Above wsev's 30 s keepalive; "tunnel" is what an upgraded HTTP
            # connection gets in mode http.
            "    timeout client 300s",
            "    timeout server 300s",
            "    timeout tunnel 300s",
        ]
        for name, mode, server, *extra in backends:
            port = self.ports[name] = free_port()
            conf += [
                "frontend fe_%s" % name,
                "    mode %s" % mode,
                "    option %slog" % mode,
                "    bind 127.0.0.1:%d" % port,
                "    default_backend be_%s" % name,
                "backend be_%s" % name,
                "    mode %s" % mode,
            ] + ["    " + line for line in (extra[0] if extra else [])] + [
                "    server s1 %s" % server,
            ]
        self.conf = "\n".join(conf) + "\n"
        with open(self.path("haproxy.cfg"), "w") as f:
            f.write(self.conf)
        self._start([self.exe, "-db", "-f", self.path("haproxy.cfg")], self._ready)

    def _ready(self):
        try:
            return "Name: HAProxy" in self.command("show info")
        except OSError:
            return False

    def command(self, line):
        """One command on the stats socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.sock)
            s.sendall(line.encode() + b"\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode("utf-8", "replace")
                out += chunk

    def stat(self, name):
        """The "show stat" row of backend be_NAME's server s1, as a dict."""
        lines = self.command("show stat").splitlines()
        check(lines and lines[0].startswith("# "), "show stat answered %r" % lines[:3])
        cols = lines[0][2:].split(",")
        for line in lines[1:]:
            row = dict(zip(cols, line.split(",")))
            if row.get("pxname") == "be_" + name and row.get("svname") == "s1":
                return row
        raise TestFailure("no server be_%s/s1 in show stat" % name)


# --------------------------------------------------------------------------- connections

def _conn_on(sock, port, host="127.0.0.1", timeout=TIMEOUT):
    """A wsevtest.Conn over an already connected socket (TCP, TLS or Unix)."""
    c = Conn.__new__(Conn)
    sock.settimeout(timeout)
    c.sock, c.buf, c.eof, c.reset, c.port, c.host = sock, bytearray(), False, False, port, host
    return c


def tcp_conn(port, source=None, host="127.0.0.1", timeout=TIMEOUT):
    """A raw connection to host:port, from source (e.g. "127.0.0.2") if given."""
    s = socket.create_connection((host, port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _conn_on(s, port, host, timeout)


def tls_conn(port, ca, source=None, timeout=TIMEOUT):
    """A raw connection over TLS to localhost:port, verified against ca."""
    ctx = ssl.create_default_context(cafile=ca)
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _conn_on(ctx.wrap_socket(s, server_hostname="localhost"), port, "localhost",
                    timeout)


def unix_conn(path, timeout=TIMEOUT):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return _conn_on(s, 0, "localhost", timeout)


# --------------------------------------------------------------------------- wsev-echo's log

OPEN_RE = re.compile(r"^open (\d+) client (\S+) peer (\S+)$")


def split_addr(addr):
    """"1.2.3.4:5678" / "[::1]:5678" / "unix:PATH" -> (host, port or None), an
    IPv4-mapped IPv6 host as plain IPv4."""
    if addr.startswith("unix:"):
        return addr, None
    m = re.match(r"^\[(.*)\]:(\d+)$", addr) or re.match(r"^([^:]*):(\d+)$", addr)
    check(m is not None, "address %r is not HOST:PORT, [HOST]:PORT nor unix:PATH" % addr)
    host = m.group(1)
    # wsev-echo listens on both families: an IPv4 peer comes as ::ffff:a.b.c.d.
    if re.match(r"^::ffff:\d+\.\d+\.\d+\.\d+$", host, re.I):
        host = host[7:]
    return host, int(m.group(2))


class OpenLog:
    """The "open ID client ADDR peer ADDR" lines of a wsev-echo --log-connections
    (a wsevtest.Server): mark() before connecting, then next_open() after."""

    def __init__(self, server):
        self.server = server
        self.seen = len(server.lines)

    def mark(self):
        self.seen = len(self.server.lines)

    def next_open(self, timeout=5.0):
        """(id, client, peer) of the first open line after the mark."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.server.lines
            while self.seen < len(lines):
                line = lines[self.seen]
                self.seen += 1
                m = OPEN_RE.match(line)
                if m:
                    return int(m.group(1)), m.group(2), m.group(3)
            if time.monotonic() > deadline:
                raise TestFailure("no 'open ID client ADDR peer ADDR' line from %s within "
                                  "%.0f s (last lines %r)" % (self.server.name, timeout,
                                                             lines[-5:]))
            time.sleep(0.02)

    def opens_since_mark(self):
        return [line for line in self.server.lines[self.seen:] if OPEN_RE.match(line)]


# --------------------------------------------------------------------------- echo cases

def ascii_payload(n):
    pat = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ "
    return (pat * (n // len(pat) + 1))[:n]


def raw_echo_cases(R, label, open_conn):
    """RFC 6455 echo cases over raw frames (wsevtest.Conn) through one path: open_conn()
    gives a fresh connected Conn, not yet upgraded. Each case is named "LABEL raw-...";
    every connection is closed after its case."""
    opened = []

    def ws():
        c = open_conn()
        opened.append(c)
        return c.handshake()

    def case(name, fn):
        def wrapped():
            try:
                fn()
            finally:
                while opened:
                    opened.pop().close()
        R.run("%s raw-%s" % (label, name), wrapped)

    def text_binary_empty():
        c = ws()
        c.echo(OP_TEXT, "hello through the proxy \u20ac")
        c.echo(OP_BINARY, b"\x00\x01\xfe\xff binary")
        c.echo(OP_TEXT, b"")
        c.echo(OP_BINARY, b"")

    def sizes():
        c = ws()
        for n in (125, 126, 65535, 65536, 1 << 20):
            c.send_text(ascii_payload(n))
            c.expect_echo(OP_TEXT, ascii_payload(n), timeout=15)
            b = os.urandom(n)
            c.send_binary(b)
            c.expect_echo(OP_BINARY, b, timeout=15)

    def fragmented():
        c = ws()
        c.send(build_frame(OP_TEXT, b"frag", fin=False) + build_frame(OP_CONT, b"", fin=False)
               + build_frame(OP_CONT, b"mented", fin=True))
        c.expect_echo(OP_TEXT, b"fragmented")
        # A ping between fragments is answered first; each frame in its own send.
        for f in (build_frame(OP_BINARY, b"\x01" * 70000, fin=False),
                  build_frame(OP_PING, b"mid"), build_frame(OP_CONT, b"\x02", fin=True)):
            c.send(f)
            time.sleep(0.02)
        f = c.recv_frame()
        check(f.opcode == OP_PONG and f.payload == b"mid",
              "expected the pong before the echo, got %r" % f)
        c.expect_echo(OP_BINARY, b"\x01" * 70000 + b"\x02")

    def ping_pong():
        c = ws()
        for payload in (b"", b"p", os.urandom(125)):
            c.send_frame(OP_PING, payload)
            f = c.recv_frame()
            check(f.opcode == OP_PONG and f.payload == payload,
                  "ping %s: expected a pong with its payload, got %r" % (short(payload), f))
        c.send_frame(OP_PONG, b"unsolicited")
        c.echo(OP_TEXT, b"after pings")

    def close_codes():
        for code in (1000, 1001, 3000, 4999):
            c = ws()
            c.send_close(code, b"reason")
            c.expect_close(code, reply=False, what="close %d: " % code)

    def protocol_errors():
        # Each failure must reach the client as a 1002 close frame and then a TCP
        # close, passed through by the proxy like any other bytes.
        c = ws()
        c.send_frame(0x3, b"reserved opcode")
        c.expect_close(1002, what="reserved opcode: ")
        c = ws()
        c.send_frame(OP_TEXT, b"unmasked", mask=False)
        c.expect_close(1002, what="unmasked frame: ")
        c = ws()
        c.send_frame(OP_PING, b"x" * 126)
        c.expect_close(1002, what="126-byte ping: ")

    case("text-binary-empty", text_binary_empty)
    case("sizes-125-126-64KiB-1MiB", sizes)
    case("fragmented-and-ping-between", fragmented)
    case("ping-pong", ping_pong)
    case("close-codes-echoed", close_codes)
    case("protocol-error-1002", protocol_errors)


def ws_echo_cases(R, label, connect):
    """The same through Python websockets: connect() returns what websockets.connect
    returns (awaitable, and an async context manager)."""

    async def recv(ws, timeout=15.0):
        try:
            return await asyncio.wait_for(ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise TestFailure("no message within %.0f s" % timeout)

    async def echo(ws, msg):
        await ws.send(msg)
        got = await recv(ws)
        check(type(got) is type(msg) and got == msg, "sent %s of %d, got %s of %d" % (
            type(msg).__name__, len(msg), type(got).__name__, len(got)))

    async def messages():
        async with connect() as ws:
            for msg in ("text \u20ac", b"\x00binary\xff", "", b""):
                await echo(ws, msg)
            for n in (125, 126, 65536, 1 << 20):
                await echo(ws, ascii_payload(n).decode())
                await echo(ws, os.urandom(n))

    async def fragmented_and_ping():
        async with connect() as ws:
            await ws.send(iter(["frag", "", "men", "ted"]))
            got = await recv(ws)
            check(got == "fragmented", "fragmented text came back as %r" % (got,))
            waiter = await ws.ping(b"ping through")
            try:
                await asyncio.wait_for(waiter, 5)
            except asyncio.TimeoutError:
                raise TestFailure("no pong within 5 s")
            await echo(ws, b"after ping")

    async def close_code():
        ws = await connect()
        await echo(ws, "before close")
        await asyncio.wait_for(ws.close(code=4321, reason="bye"), 10)
        check(ws.close_code == 4321, "close code from the server is %r, expected 4321"
              % (ws.close_code,))

    async def many():
        async def one(i):
            async with connect() as ws:
                for m in range(10):
                    await echo(ws, "client %d message %d" % (i, m))
        await asyncio.gather(*(one(i) for i in range(20)))

    for name, coro in (("messages-0B-to-1MiB", messages),
                       ("fragmented-and-ping", fragmented_and_ping),
                       ("close-code-echoed", close_code),
                       ("20-clients-at-once", many)):
        R.run("%s websockets-%s" % (label, name), run_async, coro, 40)


def run_async(coro_fn, timeout):
    """Run coro_fn() with a time limit (a hang is a failure)."""
    async def limited():
        try:
            return await asyncio.wait_for(coro_fn(), timeout)
        except asyncio.TimeoutError:
            raise TestFailure("did not finish within %.0f s" % timeout)
    return asyncio.run(limited())


def ws_options(**kw):
    """websockets.connect options for the tests: no size limit, no compression, no
    pings of its own, bounded waits."""
    opts = dict(max_size=None, compression=None, ping_interval=None, open_timeout=5,
                close_timeout=5)
    opts.update(kw)
    return opts
