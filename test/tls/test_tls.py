#!/usr/bin/python3
"""wss:// (WebSocket over TLS, with the TLS backend the build chose: mbedTLS or OpenSSL)
against wsev-echo and wsev-pubsub.

usage: test_tls.py PATH/TO/wsev-echo PATH/TO/wsev-pubsub

Peers: Python's ssl module and Debian's websockets 10.4, raw sockets with our own
frame codec (test/python/wsevtest.py), TLS driven by hand through ssl.MemoryBIO so
that the server sees records split at every byte, and the openssl command line.
Certificates are made at run time by scripts/make-cert.sh into a temporary
directory (ECDSA P-256 and RSA 2048 leaves, each signed by its own test CA, and a
third CA that the server's certificates do not chain to).

Every read has a timeout (longer when WSEV_SERVER_WRAP runs the servers under
valgrind), so a hang is a failure, never a stuck test. Prints PASS/FAIL per case and
"N passed, N failed"; exits non-zero if anything failed or a server did not survive
(or, under valgrind/ASan, did not exit cleanly).
"""

import asyncio
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import websockets  # noqa: E402
from wsevtest import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                      TIMEOUT, Closed, Conn, Runner, Server, TestFailure, build_frame,
                      check, short)

MAKE_CERT = os.path.join(HERE, "..", "..", "scripts", "make-cert.sh")
WRAP = shlex.split(os.environ.get("WSEV_SERVER_WRAP", ""))
SLOW = 6.0 if WRAP else 1.0
CASE_TIMEOUT = 60.0 * SLOW
# The handshake timeout of the server used for stalled handshakes (longer under
# valgrind, where a TLS handshake itself takes a while).
STALL_MS = 2000 if WRAP else 500
R = Runner("tls")

ERR_CERT = "cannot load the TLS certificate chain (missing, unreadable or not PEM)"
ERR_KEY = "cannot load the TLS private key (missing, unreadable, encrypted or bad)"
ERR_MISMATCH = "the TLS private key does not match the certificate"

# The library's TLS backend (meson -Dtls=, given to every test by the test setup):
# mbedTLS 2.28 speaks TLS 1.2 at most, OpenSSL TLS 1.3 with a peer that has it.
BACKEND = os.environ.get("WSEV_TLS_BACKEND", "mbedtls")
TOP_VERSION = "TLSv1.3" if BACKEND == "openssl" else "TLSv1.2"
# What the server may negotiate: TLS 1.2 with ECDHE key exchange and AEAD only, or
# TLS 1.3 (whose suites are all AEAD, the key exchange always ephemeral).
AEAD_SUITE = re.compile(r"^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$")
TLS13_SUITE = re.compile(r"^TLS_(AES_128_GCM_SHA256|AES_256_GCM_SHA384|CHACHA20_POLY1305_SHA256)$")


def check_negotiated(version, suite, auth, what):
    """The version is the best the backend has, and the suite one we allow (for TLS 1.2
    with the key's signature algorithm `auth` in its name)."""
    check(version == TOP_VERSION, "%s: negotiated %r, expected %s" % (what, version, TOP_VERSION))
    if version == "TLSv1.3":
        check(suite and TLS13_SUITE.match(suite), "%s: TLS 1.3 suite %r" % (what, suite))
    else:
        check(suite and AEAD_SUITE.match(suite) and ("-%s-" % auth) in suite,
              "%s: cipher suite %r, expected ECDHE-%s with AES-GCM or ChaCha20-Poly1305"
              % (what, suite, auth))


class Env:
    """What main() sets up: certificate paths and the running servers."""
    dir = None
    ec = rsa = other = None  # certificate directories
    echo = None   # wsev-echo with the ECDSA certificate
    echo_rsa = None  # wsev-echo with the RSA certificate
    stall = None  # wsev-echo with --handshake-timeout 500
    limited = None  # wsev-echo with --max-connections 2


E = Env()


def path(kind, name):
    return os.path.join(getattr(E, kind), name)


# --------------------------------------------------------------------------- TLS peers

def client_ctx(kind="ec", alpn=True, tls12=False):
    """A client context trusting only the CA of `kind`, checking the host name (with
    tls12, one that has no TLS 1.3)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    ctx.load_verify_locations(path(kind, "ca.crt"))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class TlsConn(Conn):
    """wsevtest's raw frame connection, over a verified TLS connection made by the
    ssl module (the handshake happens here, bounded by the socket timeout)."""

    def __init__(self, port, ctx=None, server_hostname="localhost", timeout=None,
                 session=None):
        super().__init__(port, timeout=timeout or TIMEOUT)
        self.raw = self.sock
        try:
            self.sock = (ctx or client_ctx()).wrap_socket(
                self.raw, server_hostname=server_hostname, session=session)
        except BaseException:
            self.raw.close()
            raise


class BioSock:
    """A socket-like object for Conn that runs TLS through ssl.MemoryBIO over a plain
    TCP socket: every record we produce is cut by `chunker` into pieces sent one by
    one (with `pause` seconds between them), so the server sees them as separate
    reads. recv() returns b"" at close_notify (self.close_notify is set) or at a TCP
    EOF without one (self.ragged_eof is set)."""

    def __init__(self, port, ctx=None, hostname="localhost", chunker=None, pause=0.0):
        self.raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        ctx = ctx or client_ctx()
        # Python sets this by default; without it a TCP EOF with no close_notify
        # before it is an SSLEOFError, which is how we tell the two apart.
        ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=hostname)
        self.chunker = chunker or (lambda data: [data])
        self.pause = pause
        self.timeout = TIMEOUT
        self.close_notify = False
        self.ragged_eof = False
        self.sends = 0

    def flush(self):
        data = self.out.read()
        if data:
            self.send_raw(data)

    def send_raw(self, data):
        """Send bytes as they are (already TLS records), cut by the chunker."""
        for piece in self.chunker(data):
            self.raw.sendall(piece)
            self.sends += 1
            if self.pause:
                time.sleep(self.pause)

    def _pull(self, deadline, what):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for %s" % what)
        self.raw.settimeout(remaining)
        data = self.raw.recv(1 << 16)
        if data:
            self.inc.write(data)
        else:
            self.inc.write_eof()
        return data

    def handshake(self):
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                try:
                    got = self._pull(deadline, "the server's handshake messages")
                except socket.timeout:
                    raise TestFailure("TLS handshake: no answer from the server within "
                                      "%.0f s" % TIMEOUT)
                except ConnectionResetError:
                    raise TestFailure("TLS handshake: connection reset by the server")
                if not got:
                    raise TestFailure("TLS handshake: the server closed the connection")
        self.flush()

    # the socket interface Conn uses
    def settimeout(self, t):
        self.timeout = t if t is not None else TIMEOUT

    def setsockopt(self, *a):
        self.raw.setsockopt(*a)

    def sendall(self, data):
        self.obj.write(data)
        self.flush()

    def recv(self, n):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                data = self.obj.read(n)
                if not data:
                    self.close_notify = True
                return data
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                self.close_notify = True
                return b""
            except ssl.SSLError as e:  # SSLEOFError, or OpenSSL 3's reason for it
                if not (isinstance(e, ssl.SSLEOFError)
                        or getattr(e, "reason", "") == "UNEXPECTED_EOF_WHILE_READING"):
                    raise
                self.ragged_eof = True
                return b""
            self._pull(deadline, "data")  # socket.timeout / reset go to Conn

    def close(self):
        self.raw.close()


class BioConn(Conn):
    """A Conn whose TLS records reach the server cut by a chunker (see BioSock)."""

    def __init__(self, port, chunker=None, pause=0.0, ctx=None):  # noqa: super not called
        self.sock = BioSock(port, ctx=ctx, chunker=chunker, pause=pause)
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.port = port
        self.host = "127.0.0.1"
        self.sock.handshake()


def bytewise(data):
    return [data[i:i + 1] for i in range(len(data))]


def client_hello(ctx=None):
    """The bytes of a real ClientHello for localhost."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = (ctx or client_ctx()).wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    check(len(hello) > 100 and hello[0] == 0x16, "made a strange ClientHello %s"
          % short(hello))
    return hello


def raw_connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(sock, timeout, what):
    """Read until the server closes (EOF or reset); returns what came, or fails if the
    connection is still open after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TestFailure("%s: the server did not close the connection within %.1f s "
                              "(received %s)" % (what, timeout, short(got)))
        sock.settimeout(remaining)
        try:
            data = sock.recv(1 << 16)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return bytes(got)
        if not data:
            return bytes(got)
        got += data


def check_alert_or_nothing(got, what):
    """Whatever the server sent before closing must be TLS alert records (or nothing):
    never a plaintext HTTP answer or other data."""
    rest = got
    while rest:
        check(len(rest) >= 5 and rest[0] == 0x15 and rest[1] == 3,
              "%s: the server answered with something other than a TLS alert: %s"
              % (what, short(got)))
        n = struct.unpack("!H", rest[3:5])[0]
        rest = rest[5 + n:]


def check_encrypted_alert(sock, got, alert, what):
    """TLS 1.3 encrypts the alerts after the handshake (they travel as application data
    records): what came must decrypt, in the BioSock's session, to the alert `alert`
    (or be nothing), never to data."""
    if not got:
        return
    sock.inc.write(got)
    try:
        data = sock.obj.read(1 << 16)
    except ssl.SSLError as e:
        check(alert in str(e), "%s: the server sent %s, expected the alert %s"
              % (what, e, alert))
        return
    raise TestFailure("%s: the server answered with data, not an alert: %s"
                      % (what, short(data)))


def fd_count(server):
    try:
        return len(os.listdir("/proc/%d/fd" % server.proc.pid))
    except OSError:
        return -1


def settle(server, base, what):
    """Wait until the server holds no more descriptors than at `base` (the aborted
    connections are all gone)."""
    deadline = time.monotonic() + 5 * SLOW
    n = fd_count(server)
    while n > base and time.monotonic() < deadline:
        time.sleep(0.05)
        n = fd_count(server)
    check(n <= base, "%s: the server still holds %d descriptors %.0f s later, %d before "
          "(connections not released)" % (what, n, 5 * SLOW, base))


def still_serving(server=None, ctx=None):
    """A normal wss client and a plain ws client both still get their echoes."""
    s = server or E.echo
    t = TlsConn(s.tls_port, ctx=ctx)
    t.handshake()
    t.echo(OP_TEXT, "wss still works")
    t.echo(OP_BINARY, os.urandom(3000))
    t.send_close(1000)
    t.expect_close(1000, reply=False)
    c = s.connect()
    c.handshake()
    c.echo(OP_TEXT, "ws still works")
    c.send_close(1000)
    c.expect_close(1000, reply=False)
    check(s.alive_problem() is None, str(s.alive_problem()))


# --------------------------------------------------------------------------- websockets

def wss(port, kind="ec", ctx=None, **kw):
    opts = dict(max_size=None, compression=None, ping_interval=None,
                open_timeout=10 * SLOW, close_timeout=10 * SLOW,
                ssl=ctx or client_ctx(kind), server_hostname="localhost")
    opts.update(kw)
    return websockets.connect("wss://127.0.0.1:%d/" % port, **opts)


def ws_plain(port, **kw):
    opts = dict(max_size=None, compression=None, ping_interval=None,
                open_timeout=10 * SLOW, close_timeout=10 * SLOW)
    opts.update(kw)
    return websockets.connect("ws://127.0.0.1:%d/" % port, **opts)


async def recv(ws, timeout=10.0):
    try:
        return await asyncio.wait_for(ws.recv(), timeout * SLOW)
    except asyncio.TimeoutError:
        raise TestFailure("no message from the server within %.0f s" % (timeout * SLOW))


async def echo(ws, msg, timeout=10.0):
    await ws.send(msg)
    got = await recv(ws, timeout)
    check(type(got) is type(msg), "sent %s, got back %s" % (type(msg).__name__,
                                                             type(got).__name__))
    if got != msg:
        raise TestFailure("echo differs: sent %d %s (%s), got %d (%s)" % (
            len(msg), type(msg).__name__, short(msg if isinstance(msg, bytes) else msg.encode()),
            len(got), short(got if isinstance(got, bytes) else got.encode())))


def text_of(n):
    pat = "The quick brown fox jumps over the lazy dog. "
    return (pat * (n // len(pat) + 1))[:n]


def run_async(name, coro_fn, *args):
    async def limited():
        try:
            await asyncio.wait_for(coro_fn(*args), CASE_TIMEOUT)
        except asyncio.TimeoutError:
            raise TestFailure("case did not finish within %.0f s" % CASE_TIMEOUT)
        except websockets.exceptions.ConnectionClosed as e:
            raise TestFailure("connection closed unexpectedly: %r (code %r)" % (e, e.code))
        except websockets.exceptions.InvalidHandshake as e:
            raise TestFailure("handshake failed: %r" % (e,))

    R.run(name, lambda: asyncio.run(limited()))


def run(name, fn, *args):
    R.run(name, fn, *args)


# =========================================================================== 1. echo

async def c_wss_parameters(server, kind, auth):
    async with wss(server.tls_port, kind) as ws:
        obj = ws.transport.get_extra_info("ssl_object")
        check(obj is not None, "no TLS on a wss:// connection")
        suite = obj.cipher()[0]
        check_negotiated(obj.version(), suite, auth, "a client with TLS 1.3")
        check(obj.selected_alpn_protocol() == "http/1.1",
              "ALPN: %r, expected 'http/1.1'" % obj.selected_alpn_protocol())
        cert = obj.getpeercert()
        check(dict(x[0] for x in cert["subject"]).get("commonName") == "localhost",
              "server certificate subject %r" % (cert["subject"],))
        await echo(ws, "over %s with %s" % (obj.version(), suite))
        await echo(ws, os.urandom(100000))
    # A client that has no TLS 1.3 gets TLS 1.2 with ECDHE and an AEAD suite.
    async with wss(server.tls_port, kind, ctx=client_ctx(kind, tls12=True)) as ws:
        obj = ws.transport.get_extra_info("ssl_object")
        version, suite = obj.version(), obj.cipher()[0]
        check(version == "TLSv1.2", "a TLS 1.2 client negotiated %r" % version)
        check(AEAD_SUITE.match(suite) and ("-%s-" % auth) in suite,
              "TLS 1.2 cipher suite %r: expected ECDHE-%s with AES-GCM or ChaCha20-Poly1305"
              % (suite, auth))
        await echo(ws, os.urandom(100000))


async def c_text_binary_empty(port):
    async with wss(port) as ws:
        await echo(ws, "hello, wss")
        await echo(ws, b"\x00\x01\x02\xff binary")
        await echo(ws, "")
        await echo(ws, b"")
        await echo(ws, "\u03ba\u1f79\u03c3\u03bc\u03b5 \U0001F600 \u20ac \u0000 \U0010FFFF")


async def c_sizes(port):
    async with wss(port) as ws:
        for n in (0, 1, 124, 125, 126, 127, 65535, 65536, 65537, 16383, 16384, 16385):
            await echo(ws, text_of(n))
            await echo(ws, os.urandom(n))


async def c_8mib(port):
    async with wss(port) as ws:
        await echo(ws, os.urandom(8 << 20), timeout=30)
        s = ("\u00e9\u4e2d\U0001d11e" * 400000)[:1000000]  # ~3 MiB of UTF-8
        await echo(ws, s, timeout=30)


async def c_fragmented(port):
    async with wss(port) as ws:
        await ws.send(iter(["frag", "", "men", "ted \u20ac"]))
        got = await recv(ws)
        check(got == "fragmented \u20ac", "fragmented text came back as %r" % (got,))
        await ws.send(iter([b"\x00\x01", b"", b"\x02" * 70000, b"\x03"]))
        got = await recv(ws)
        check(got == b"\x00\x01" + b"\x02" * 70000 + b"\x03",
              "fragmented binary came back as %s" % short(got))

        parts = ["\u20ac" * (i * 997 % 5000) + str(i) for i in range(40)]

        async def agen():
            for p in parts:
                yield p
                await asyncio.sleep(0)
        await ws.send(agen())
        got = await recv(ws)
        check(got == "".join(parts), "async-fragmented text came back as %r" % (got[:80],))
        await echo(ws, "after fragments")


async def c_ping(port):
    async with wss(port) as ws:
        for payload in (b"x", b"", os.urandom(125)):
            waiter = await ws.ping(payload)
            try:
                await asyncio.wait_for(waiter, 5 * SLOW)
            except asyncio.TimeoutError:
                raise TestFailure("no pong for a ping of %d bytes" % len(payload))
        waiters = [await ws.ping(b"p%d" % i) for i in range(10)]
        await asyncio.wait_for(asyncio.gather(*waiters), 5 * SLOW)
        await ws.pong(b"unsolicited")
        await echo(ws, "after pings")


async def c_close_code(port):
    ws = await wss(port)
    await echo(ws, "before close")
    await asyncio.wait_for(ws.close(code=4001, reason="done with \u20ac"), 10 * SLOW)
    check(ws.close_code == 4001, "close code from the server is %r, expected 4001 "
          "(reason %r)" % (ws.close_code, ws.close_reason))


async def c_no_alpn(port):
    async with wss(port, ctx=client_ctx(alpn=False)) as ws:
        obj = ws.transport.get_extra_info("ssl_object")
        check(obj.selected_alpn_protocol() is None, "ALPN %r without an offer"
              % obj.selected_alpn_protocol())
        await echo(ws, "no ALPN offered")


def c_no_sni_ip(port):
    # Python sends no SNI for an IP address; the name checked is then the IP SAN.
    c = TlsConn(port, server_hostname="127.0.0.1")
    check(c.sock.version() == TOP_VERSION, "version %r" % c.sock.version())
    c.handshake()
    c.echo(OP_TEXT, "no SNI")
    c.send_close(1000)
    c.expect_close(1000, reply=False)


def c_raw_frames_over_tls(port):
    c = TlsConn(port)
    c.handshake(data_after=build_frame(OP_TEXT, "right behind the request"))
    c.expect_echo(OP_TEXT, "right behind the request")
    c.send_frame(OP_TEXT, "frag", fin=False)
    c.send_frame(OP_PING, b"mid")
    f = c.recv_frame()
    check(f.opcode == OP_PONG and f.payload == b"mid", "expected pong 'mid', got %r" % f)
    c.send_frame(0, "ment", fin=True)
    c.expect_echo(OP_TEXT, "fragment")
    # a protocol error fails the connection over TLS as over TCP
    c.send_frame(OP_BINARY, b"unmasked", mask=False)
    c.expect_close(1002)


def c_http_over_tls(port):
    c = TlsConn(port)
    c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, _ = c.read_response()
    check(status.startswith("HTTP/1.1 426"), "plain GET over TLS answered %r, expected "
          "426" % status)
    c.close()
    c = TlsConn(port)
    c.send(c.request(headers=[("Host", "x"), ("Upgrade", "websocket")]))
    status, _ = c.read_response()
    check(status.startswith("HTTP/1.1 400"), "a bad upgrade over TLS answered %r, expected "
          "400" % status)
    c.read_all_until_eof()


# =========================================================================== 2. RSA

async def c_rsa_echo():
    await c_wss_parameters(E.echo_rsa, "rsa", "RSA")
    async with wss(E.echo_rsa.tls_port, "rsa") as ws:
        await echo(ws, "rsa text")
        await echo(ws, os.urandom(70000))


async def c_wrong_ca_both_ways():
    # Each server's certificate is rejected by a client that trusts the other CA.
    for port, kind in ((E.echo.tls_port, "rsa"), (E.echo_rsa.tls_port, "ec")):
        try:
            ws = await wss(port, kind)
        except ssl.SSLCertVerificationError:
            continue
        await ws.close()
        raise TestFailure("a client trusting only the %s CA accepted the server on port %d"
                          % (kind, port))


# =========================================================================== 3. load

async def c_concurrent(nwss=50, nws=20, nmsg=20):
    async def client(i, tls):
        port = E.echo.tls_port if tls else E.echo.port
        async with (wss(port) if tls else ws_plain(port)) as ws:
            msgs = []
            for m in range(nmsg):
                if (i + m) % 2:
                    msgs.append(os.urandom((i * 31 + m * 17) % 20000))
                else:
                    msgs.append("client %d message %d %s" % (i, m, text_of((i + m * 7) % 300)))
            for msg in msgs:
                await ws.send(msg)
            for m, msg in enumerate(msgs):
                got = await recv(ws, 30)
                check(got == msg, "%s client %d message %d: out of order or corrupted "
                      "(%s vs %s)" % ("wss" if tls else "ws", i, m,
                                      short(got if isinstance(got, bytes) else got.encode()),
                                      short(msg if isinstance(msg, bytes) else msg.encode())))
    await asyncio.gather(*(client(i, True) for i in range(nwss)),
                         *(client(i, False) for i in range(nws)))


# =========================================================================== 4. openssl

def s_client(port, *args, stdin=b"", kind="ec"):
    # With stdin, -ign_eof: s_client reads the server's answer until it closes;
    # without, stdin's EOF ends the connection right after the handshake.
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
           "-CAfile", path(kind, "ca.crt")] + (["-ign_eof"] if stdin else []) + list(args)
    try:
        p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=15 * SLOW)
    except subprocess.TimeoutExpired as e:
        raise TestFailure("%s did not finish within %.0f s (stdout %s)"
                          % (" ".join(cmd), 15 * SLOW, short(e.stdout, 300)))
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"), " ".join(cmd)


# s_client's line after the handshake: "New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256".
# (Its "SSL-Session" block waits, with TLS 1.3, for a session ticket that may come
# after s_client has quit.)
NEGOTIATED = r"^New, (\S+), Cipher is"


def session_field(out, pattern):
    m = re.search(pattern, out.decode("latin-1"), re.M)
    return m.group(1).strip() if m else None


def c_s_client(server, kind, auth):
    # stdin: an upgrade request and a masked close frame; the server must answer 101,
    # echo the close and end with close_notify, so that s_client exits by itself.
    req = (b"GET /s_client HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    rc, out, err, cmd = s_client(server.tls_port, "-servername", "localhost",
                                 "-alpn", "http/1.1", "-verify_return_error",
                                 stdin=req + build_frame(OP_CLOSE, struct.pack("!H", 1000)),
                                 kind=kind)
    what = "%s\nstdout: %s\nstderr: %s" % (cmd, short(out, 3000), err[:2000])
    check(rc == 0, "s_client exit status %d: %s" % (rc, what))
    proto = session_field(out, NEGOTIATED)
    cipher = session_field(out, r"^New, \S+, Cipher is (\S+)")
    alpn = session_field(out, r"^ALPN protocol:\s*(\S+)")
    verify = session_field(out, r"^\s*Verify return code:\s*(.*)$")
    check_negotiated(proto, cipher, auth, what)
    check(alpn == "http/1.1", "ALPN %r, expected http/1.1: %s" % (alpn, what))
    check(verify == "0 (ok)", "verification %r: %s" % (verify, what))
    check(b"HTTP/1.1 101" in out, "no 101 answer in s_client's output: %s" % what)
    check(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in out, "wrong or no Sec-WebSocket-Accept: %s"
          % what)
    check(b"\x88\x02\x03\xe8" in out, "the close frame was not echoed: %s" % what)


def handshake_refused(server, *args, kind="ec"):
    rc, out, err, cmd = s_client(server.tls_port, "-servername", "localhost", *args,
                                 kind=kind)
    what = "%s\nstdout: %s\nstderr: %s" % (cmd, short(out, 1500), err[:1500])
    written = session_field(out, r"and written (\d+) bytes")
    check(written and int(written) > 0 and "no protocols available" not in err
          and "no ciphers available" not in err,
          "s_client did not even offer the handshake: %s" % what)
    check(rc != 0 and b"Cipher is (NONE)" in out,
          "the server accepted a handshake it should refuse: %s" % what)


def c_old_versions_refused():
    handshake_refused(E.echo, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    handshake_refused(E.echo, "-tls1", "-cipher", "DEFAULT@SECLEVEL=0")
    handshake_refused(E.echo_rsa, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", kind="rsa")
    still_serving()


def c_weak_suites_refused():
    # CBC with ECDHE, static RSA key exchange with GCM, finite-field DHE with GCM.
    handshake_refused(E.echo, "-tls1_2", "-cipher",
                      "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA")
    handshake_refused(E.echo_rsa, "-tls1_2", "-cipher",
                      "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA",
                      kind="rsa")
    handshake_refused(E.echo_rsa, "-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384",
                      kind="rsa")
    handshake_refused(E.echo_rsa, "-tls1_2", "-cipher",
                      "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384", kind="rsa")
    still_serving()
    still_serving(E.echo_rsa, ctx=client_ctx("rsa"))


def c_chacha(server, kind, auth):
    suite = "ECDHE-%s-CHACHA20-POLY1305" % auth
    rc, out, err, cmd = s_client(server.tls_port, "-servername", "localhost", "-tls1_2",
                                 "-cipher", suite, kind=kind)
    check(rc == 0 and session_field(out, r"^New, \S+, Cipher is (\S+)") == suite,
          "%s: not negotiated (exit %d)\nstdout: %s\nstderr: %s"
          % (suite, rc, short(out, 1500), err[:1500]))


def c_no_sni_s_client():
    # No SNI, and an SNI that is not the certificate's name (the client then does
    # not trust the certificate, but the server must not refuse the handshake).
    for args in (["-noservername", "-verify_return_error"],
                 ["-servername", "other.example"]):
        rc, out, err, cmd = s_client(E.echo.tls_port, *args)
        check(rc == 0 and session_field(out, NEGOTIATED) == TOP_VERSION,
              "%s: the handshake failed (exit %d)\nstdout: %s\nstderr: %s"
              % (cmd, rc, short(out, 1500), err[:1500]))


# =========================================================================== 5. splits

def exchange(c, big=False):
    c.handshake()
    c.echo(OP_TEXT, "split into records")
    c.echo(OP_BINARY, bytes(range(256)))
    if big:
        c.echo(OP_BINARY, os.urandom(40000))  # three TLS records
    c.send_close(4001, "bye")
    f = c.recv_frame()
    check(f.opcode == OP_CLOSE and f.close_code == 4001, "expected the close echoed with "
          "4001, got %r" % f)
    c.expect_eof(what="after the close handshake: ")
    check(c.sock.close_notify, "the server closed TCP without a TLS close_notify")
    c.close()


def c_bytewise():
    c = BioConn(E.echo.tls_port, chunker=bytewise, pause=0.001)
    exchange(c)
    check(c.sock.sends > 500, "only %d separate sends" % c.sock.sends)


def c_bytewise_rsa():
    c = BioConn(E.echo_rsa.tls_port, chunker=bytewise, pause=0.001, ctx=client_ctx("rsa"))
    exchange(c)


def c_random_splits():
    rnd = __import__("random").Random(6455)

    def chunker(data):
        out, i = [], 0
        while i < len(data):
            n = rnd.choice((1, 2, 3, 5, 7, 13, 64, 300, 1500))
            out.append(data[i:i + n])
            i += n
        return out
    c = BioConn(E.echo.tls_port, chunker=chunker, pause=0.0005)
    exchange(c, big=True)


def c_one_send():
    # Each flight of the handshake in one send; then several records in one send, and
    # one record holding the upgrade request and two frames.
    c = BioConn(E.echo.tls_port)
    s = c.sock
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    s.obj.write(c.request(key=key) + build_frame(OP_TEXT, "one") + build_frame(OP_BINARY, b"two"))
    s.flush()
    status, hdrs = c.read_response()
    check(status.startswith("HTTP/1.1 101"), "status %r" % status)
    c.expect_echo(OP_TEXT, "one")
    c.expect_echo(OP_BINARY, b"two")
    big = os.urandom(100000)
    for frame in (build_frame(OP_TEXT, "three"), build_frame(OP_TEXT, "four"),
                  build_frame(OP_BINARY, big), build_frame(OP_PING, b"five")):
        s.obj.write(frame)
    data = s.out.read()
    check(data.count(b"\x17\x03\x03") >= 4, "expected several records")
    s.send_raw(data)
    c.expect_echo(OP_TEXT, "three")
    c.expect_echo(OP_TEXT, "four")
    c.expect_echo(OP_BINARY, big)
    f = c.recv_frame()
    check(f.opcode == OP_PONG and f.payload == b"five", "expected pong 'five', got %r" % f)
    c.send_close(1000)
    c.expect_close(1000, reply=False)
    check(s.close_notify, "the server closed TCP without a TLS close_notify")


def c_server_close_notify_on_error():
    # The server fails the connection (1002): its close frame, then close_notify.
    c = BioConn(E.echo.tls_port)
    c.handshake()
    c.send_frame(OP_TEXT, "x", rsv=4)
    c.expect_close(1002)
    check(c.sock.close_notify, "the server closed TCP without a TLS close_notify")


# =========================================================================== 6. bad input

def c_http_to_tls_port():
    base = fd_count(E.echo)
    s = raw_connect(E.echo.tls_port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    t = time.monotonic()
    got = read_until_closed(s, 1.0 * SLOW, "plain HTTP to the TLS port")
    s.close()
    check_alert_or_nothing(got, "plain HTTP to the TLS port")
    check(time.monotonic() - t <= 1.0 * SLOW, "closed only after %.2f s"
          % (time.monotonic() - t))
    settle(E.echo, base, "plain HTTP to the TLS port")
    still_serving()


def c_random_bytes():
    base = fd_count(E.echo)
    for first in (b"", b"\x16\x03\x01"):
        s = raw_connect(E.echo.tls_port)
        try:
            s.sendall(first + os.urandom(65536 - len(first)))
        except OSError:
            pass  # the server may close while we are still sending
        got = read_until_closed(s, 2.0 * SLOW, "64 KiB of random bytes")
        s.close()
        check_alert_or_nothing(got, "64 KiB of random bytes")
    settle(E.echo, base, "64 KiB of random bytes")
    still_serving()


def c_bad_records():
    base = fd_count(E.echo)
    cases = [
        ("an oversized handshake record", b"\x16\x03\x01\xff\xff" + os.urandom(300)),
        ("an SSLv2-style hello", bytes.fromhex("802e0103010015000000100000390000380000350000"
                                               "160000130000") + os.urandom(16)),
        ("a zero-length handshake record", b"\x16\x03\x01\x00\x00" * 4),
        ("an application record before the handshake", b"\x17\x03\x03\x00\x10" + os.urandom(16)),
        ("an alert before the handshake", b"\x15\x03\x03\x00\x02\x02\x28"),
    ]
    for what, data in cases:
        s = raw_connect(E.echo.tls_port)
        try:
            s.sendall(data)
        except OSError:
            pass
        got = read_until_closed(s, 2.0 * SLOW, what)
        s.close()
        check_alert_or_nothing(got, what)
    settle(E.echo, base, "bad records")
    still_serving()


def c_truncated_hello():
    base = fd_count(E.echo)
    hello = client_hello()
    for cut in (1, 5, 6, len(hello) // 2, len(hello) - 1):
        s = raw_connect(E.echo.tls_port)
        s.sendall(hello[:cut])
        time.sleep(0.01)
        s.close()
    settle(E.echo, base, "truncated ClientHello")
    still_serving()


def c_close_mid_handshake():
    base = fd_count(E.echo)
    hello = client_hello()
    for abort in (False, True):
        # after the ClientHello, with the server's flight read or not
        for read_first in (False, True):
            s = raw_connect(E.echo.tls_port)
            s.sendall(hello)
            if read_first:
                s.settimeout(TIMEOUT)
                check(s.recv(100)[:1] == b"\x16", "no ServerHello")
            if abort:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        # after our second flight (key exchange, Finished), before the server's Finished
        b = BioSock(E.echo.tls_port)
        try:
            b.obj.do_handshake()
        except ssl.SSLWantReadError:
            b.flush()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                b.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if b.out.pending:
                    b.flush()  # the client's second flight is out: stop here
                    break
                b._pull(deadline, "the server's first flight")
        if abort:
            b.raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        b.close()
    # after the handshake, in the middle of the upgrade request or of a frame
    for cut in ("request", "frame"):
        c = BioConn(E.echo.tls_port)
        if cut == "request":
            c.send(c.request()[:40])
        else:
            c.handshake()
            c.send(build_frame(OP_BINARY, os.urandom(50000))[:20000])
        c.abort()
    settle(E.echo, base, "clients closing mid-handshake")
    still_serving()


def c_stalled_handshakes():
    s = E.stall
    base = fd_count(s)
    hello = client_hello()
    conns = []
    # From the first connection: each one's deadline runs from its own accept, and the
    # TLS handshake below takes a second by itself under valgrind.
    t0 = time.monotonic()
    silent = raw_connect(s.tls_port)
    conns.append(("connected, sent nothing", silent))
    half = raw_connect(s.tls_port)
    half.sendall(hello[:len(hello) // 2])
    conns.append(("half a ClientHello", half))
    full = raw_connect(s.tls_port)
    full.sendall(hello)
    conns.append(("a whole ClientHello, then nothing", full))
    b = BioSock(s.tls_port)
    b.handshake()
    conns.append(("TLS done, no upgrade request", b.raw))
    limit = 4 * STALL_MS / 1000.0
    for what, sock in conns:
        read_until_closed(sock, max(0.0, t0 + limit - time.monotonic()), what)
        sock.close()
    waited = time.monotonic() - t0
    check(waited >= 0.7 * STALL_MS / 1000.0, "dropped after %.2f s, before the %d ms "
          "handshake timeout" % (waited, STALL_MS))
    settle(s, base, "stalled handshakes")
    still_serving(s)


def c_client_rejects_certificate():
    base = fd_count(E.echo)
    for kind in ("rsa", "other"):
        try:
            TlsConn(E.echo.tls_port, ctx=client_ctx(kind))
        except ssl.SSLCertVerificationError:
            pass
        else:
            raise TestFailure("a client trusting only the %s CA accepted the certificate"
                              % kind)
    try:
        TlsConn(E.echo.tls_port, server_hostname="not-localhost.example")
    except ssl.SSLCertVerificationError:
        pass
    else:
        raise TestFailure("the certificate was accepted for not-localhost.example")
    settle(E.echo, base, "clients rejecting the certificate")
    still_serving()


def c_max_connections_over_tls():
    """At the connection limit a TLS client is closed before any handshake (no
    plaintext 503 on a TLS port), a plain client still gets its 503, the connections
    in place keep being served, and a closed one makes room for a new TLS client."""
    s = E.limited
    conns = [TlsConn(s.tls_port), TlsConn(s.tls_port)]
    for c in conns:
        c.handshake()
    extra = raw_connect(s.tls_port)
    extra.sendall(client_hello())
    got = read_until_closed(extra, 3 * SLOW, "a TLS client over the limit")
    extra.close()
    check(got == b"", "a TLS client over the limit got %s, expected a close" % short(got))
    plain = s.connect()
    plain.send(plain.request())
    status, _ = plain.read_response()
    check(str(status).startswith("HTTP/1.1 503"), "a ws client over the limit got %r, "
          "expected 503" % status)
    plain.close()
    for i, c in enumerate(conns):
        c.echo(OP_TEXT, "still served %d" % i)
    conns[0].send_close(1000)
    conns[0].expect_close(1000, reply=False)
    conns[0].close()
    deadline = time.monotonic() + 3 * SLOW
    while True:  # the server counts the closed one out once it has answered
        try:
            t = TlsConn(s.tls_port)
            t.handshake()
            break
        except (ssl.SSLError, OSError, TestFailure):
            check(time.monotonic() < deadline, "no room for a TLS client after a close")
            time.sleep(0.05)
    t.echo(OP_BINARY, os.urandom(20000))
    for c in (t, conns[1]):
        c.send_close(1000)
        c.expect_close(1000, reply=False)
        c.close()


def c_session_resumption(tls12=False):
    """A listener issues session tickets: a returning client resumes (no key exchange)
    and its WebSocket works as before; another listener, with its own ticket keys,
    ignores the ticket and does a full handshake. (tls12: a client without TLS 1.3, so
    the RFC 5077 tickets of TLS 1.2 with either backend.)"""
    ctx = client_ctx(tls12=tls12)
    first = TlsConn(E.echo.tls_port, ctx=ctx)
    first.handshake()
    first.echo(OP_TEXT, "first visit")
    session = first.sock.session
    check(not first.sock.session_reused, "the first connection claims a resumed session")
    check(session is not None and session.has_ticket, "the server issued no session ticket")
    first.send_close(1000)
    first.expect_close(1000, reply=False)
    first.close()
    # A ticket may be used again while it is valid; with I/O threads the returns land
    # on either thread.
    for i in range(5):
        again = TlsConn(E.echo.tls_port, ctx=ctx, session=session)
        check(again.sock.session_reused, "connection %d with the ticket was not resumed" % i)
        again.handshake()
        again.echo(OP_BINARY, os.urandom(70000))
        again.send_close(1000)
        again.expect_close(1000, reply=False)
        again.close()
    other = TlsConn(E.stall.tls_port, ctx=ctx, session=session)
    check(not other.sock.session_reused, "another listener resumed a session it never made")
    other.handshake()
    other.echo(OP_TEXT, "full handshake elsewhere")
    other.send_close(1000)
    other.expect_close(1000, reply=False)
    other.close()


def c_many_garbage_conns(n=200):
    base = fd_count(E.echo)
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    if old[0] < 4 * n and old[1] >= 4 * n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4 * n, old[1]))
    socks = []
    try:
        for _ in range(n):
            socks.append(raw_connect(E.echo.tls_port))
        for i, s in enumerate(socks):
            try:
                s.sendall(os.urandom(1 + i % 9) if i % 3 else b"\x16\x03\x01" + os.urandom(i % 5))
            except OSError:
                pass
    finally:
        for s in socks:
            s.close()
    settle(E.echo, base, "%d connections with random bytes" % n)
    still_serving()


def c_bad_mac_after_handshake():
    base = fd_count(E.echo)
    c = BioConn(E.echo.tls_port)
    c.handshake()
    c.echo(OP_TEXT, "before the forged record")
    c.sock.raw.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(64))
    got = read_until_closed(c.sock.raw, 2.0 * SLOW, "a record with a bad MAC")
    if c.sock.obj.version() == "TLSv1.3":
        check_encrypted_alert(c.sock, got, "BAD_RECORD_MAC", "a record with a bad MAC")
    else:
        check_alert_or_nothing(got, "a record with a bad MAC")
    c.close()
    settle(E.echo, base, "a record with a bad MAC")
    still_serving()


# =========================================================================== 7. startup

def c_startup_error(cert, key, expect):
    cmd = WRAP + [ECHO, "0", "--tls-port", "0", "--cert", cert, "--key", key]
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=10 * SLOW)
    except subprocess.TimeoutExpired:
        raise TestFailure("%s: still running after %.0f s" % (" ".join(cmd), 10 * SLOW))
    took = time.monotonic() - t
    err = p.stderr.decode("utf-8", "replace")
    line = "wsev-echo: cannot listen for TLS on port 0: " + expect
    check(p.returncode == 1, "%s: exit status %d, expected 1 (stderr %r)"
          % (" ".join(cmd), p.returncode, err[-2000:]))
    check(line in err, "%s: stderr %r, expected the line %r" % (" ".join(cmd), err[-2000:],
                                                               line))
    check(took < 2.0 * SLOW, "took %.2f s to fail" % took)


def startup_cases():
    d = E.dir
    not_pem = os.path.join(d, "not-pem.crt")
    with open(not_pem, "wb") as f:
        f.write(b"this is not a certificate\n" + os.urandom(200))
    empty = os.path.join(d, "empty.pem")
    open(empty, "wb").close()
    enc_key = os.path.join(d, "encrypted.key")
    p = subprocess.run(["openssl", "pkey", "-in", path("ec", "localhost.key"), "-aes256",
                        "-passout", "pass:secret", "-out", enc_key], capture_output=True)
    missing = os.path.join(d, "no-such-file.pem")
    crt, key = path("ec", "localhost.crt"), path("ec", "localhost.key")
    run("startup-missing-cert", c_startup_error, missing, key, ERR_CERT)
    run("startup-cert-not-pem", c_startup_error, not_pem, key, ERR_CERT)
    run("startup-cert-empty", c_startup_error, empty, key, ERR_CERT)
    run("startup-cert-is-a-key", c_startup_error, key, key, ERR_CERT)
    run("startup-missing-key", c_startup_error, crt, missing, ERR_KEY)
    run("startup-key-not-pem", c_startup_error, crt, not_pem, ERR_KEY)
    if p.returncode == 0:
        run("startup-key-encrypted", c_startup_error, crt, enc_key, ERR_KEY)
    run("startup-key-mismatch-ec", c_startup_error, crt, path("other", "localhost.key"),
        ERR_MISMATCH)
    run("startup-key-mismatch-rsa-cert-ec-key", c_startup_error, path("rsa", "localhost.crt"),
        key, ERR_MISMATCH)


# =========================================================================== 9. pubsub

async def pubsub_cmd(ws, msg, expect="OK"):
    await ws.send(msg)
    got = await recv(ws)
    check(got == expect, "%r: expected reply %r, got %r" % (msg, expect, got))


async def c_pubsub(server):
    async with wss(server.tls_port) as tsub, ws_plain(server.port) as psub, \
            wss(server.tls_port) as tpub, ws_plain(server.port) as ppub:
        await pubsub_cmd(tsub, "subscribe:secure")
        await pubsub_cmd(psub, "subscribe:plain")
        # ws publisher -> wss subscriber
        await pubsub_cmd(ppub, "publish:secure:from plain \u20ac")
        got = await recv(tsub)
        check(got == "from plain \u20ac", "the wss subscriber got %r" % (got,))
        # wss publisher -> ws subscriber
        await pubsub_cmd(tpub, "publish:plain:from tls")
        got = await recv(psub)
        check(got == "from tls", "the ws subscriber got %r" % (got,))
        # both kinds on one channel, a big body
        await pubsub_cmd(psub, "subscribe:secure")
        body = text_of(200000)
        await pubsub_cmd(tpub, "publish:secure:" + body)
        for who, ws in (("wss", tsub), ("ws", psub)):
            got = await recv(ws)
            check(got == body, "the %s subscriber got %d chars, expected %d"
                  % (who, len(got), len(body)))


class Proc:
    """A sample run in a directory of our choice, its stdout and stderr kept."""

    def __init__(self, cmd, cwd):
        self.proc = subprocess.Popen(WRAP + cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self.cond = threading.Condition()
        self.readers = []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            t = threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            t.start()
            self.readers.append(t)

    def _read(self, stream, lines):
        for raw in iter(stream.readline, b""):
            with self.cond:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()

    def wait_line(self, pattern, timeout, lines=None):
        lines = self.out if lines is None else lines
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            if exited:  # everything it wrote is read once the pipes are at EOF
                for t in self.readers:
                    t.join(5)
            with self.cond:
                for line in lines:
                    m = re.search(pattern, line)
                    if m:
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or exited:
                    return None
                self.cond.wait(min(remaining, 0.1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(10 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return "hung after SIGTERM"
        return None if rc == 0 else "exit status %d after SIGTERM (stderr %r)" % (
            rc, self.err[-20:])


def c_pubsub_default_files():
    cwd = tempfile.mkdtemp(dir=E.dir, prefix="pubsub-")
    shutil.copy(path("ec", "localhost.crt"), cwd)
    shutil.copy(path("ec", "localhost.key"), cwd)
    p = Proc([PUBSUB, "--port", "0", "--tls-port", "0", "--quiet"], cwd)
    try:
        m = p.wait_line(r"wsev-pubsub listening for TLS on port (\d+)", 10 * SLOW)
        check(m, "no 'listening for TLS' line with ./localhost.crt and ./localhost.key "
              "(stdout %r, stderr %r)" % (p.out, p.err))
        t = TlsConn(int(m.group(1)))
        t.handshake()
        t.send_text("subscribe:x")
        t.expect_echo(OP_TEXT, "OK")
        t.send_close(1000)
        t.expect_close(1000, reply=False)
    finally:
        problem = p.stop()
    check(problem is None, "wsev-pubsub: %s" % problem)


def c_pubsub_no_files():
    # No TLS option and no ./localhost.crt: a hint, and ws only (9001 is not bound).
    cwd = tempfile.mkdtemp(dir=E.dir, prefix="pubsub-")
    p = Proc([PUBSUB, "--port", "0", "--quiet"], cwd)
    try:
        m = p.wait_line(r"wsev-pubsub listening on port (\d+)", 10 * SLOW)
        check(m, "no 'listening on port' line (stdout %r, stderr %r)" % (p.out, p.err))
        hint = p.wait_line(r"\S", 5 * SLOW, p.err)
        check(hint, "no hint on stderr about the missing certificate (stdout %r)" % p.out)
        check(not p.wait_line(r"listening for TLS", 0.3), "a TLS listener without "
              "certificate files: %r" % p.out)
        c = Conn(int(m.group(1)))
        c.handshake()
        c.send_text("subscribe:x")
        c.expect_echo(OP_TEXT, "OK")
        c.send_close(1000)
        c.expect_close(1000, reply=False)
        check(p.proc.poll() is None, "wsev-pubsub exited (stderr %r)" % p.err)
    finally:
        problem = p.stop()
    check(problem is None, "wsev-pubsub: %s" % problem)


def c_pubsub_tls_asked_no_files():
    # --tls-port given explicitly but the certificate is missing: a startup error.
    cwd = tempfile.mkdtemp(dir=E.dir, prefix="pubsub-")
    p = Proc([PUBSUB, "--port", "0", "--tls-port", "0", "--quiet"], cwd)
    try:
        rc = p.proc.wait(10 * SLOW)
    except subprocess.TimeoutExpired:
        p.stop()
        raise TestFailure("wsev-pubsub --tls-port 0 without certificate files is still "
                          "running (stdout %r)" % p.out)
    check(p.wait_line(re.escape("wsev-pubsub: cannot listen for TLS on port 0: " + ERR_CERT),
                      5 * SLOW, p.err), "stderr %r" % p.err)
    check(rc == 1, "exit status %d, expected 1 (stderr %r)" % (rc, p.err))


# =========================================================================== main

def make_certs():
    E.dir = tempfile.mkdtemp(prefix="wsev-tls-test-")
    for kind, extra in (("ec", []), ("rsa", ["--rsa"]), ("other", [])):
        d = os.path.join(E.dir, kind)
        p = subprocess.run([MAKE_CERT, d] + extra, capture_output=True, timeout=120)
        if p.returncode != 0:
            raise TestFailure("%s %s failed (%d): %s" % (MAKE_CERT, d, p.returncode,
                                                         p.stderr.decode()[-2000:]))
        setattr(E, kind, d)


def echo_server(kind, *extra, name):
    return Server(ECHO, "--tls-port", "0", "--cert", path(kind, "localhost.crt"),
                  "--key", path(kind, "localhost.key"), *extra, name=name, want_tls=True)


def main():
    global ECHO, PUBSUB
    if len(sys.argv) < 3:
        sys.stderr.write("usage: %s PATH/TO/wsev-echo PATH/TO/wsev-pubsub\n" % sys.argv[0])
        return 2
    ECHO, PUBSUB = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    try:
        make_certs()
    except Exception as e:  # noqa: BLE001
        R.record("make certificates with scripts/make-cert.sh", str(e))
        return R.finish()
    servers = []
    try:
        try:
            E.echo = echo_server("ec", name="wsev-echo (ECDSA)")
            servers.append(E.echo)
            E.echo_rsa = echo_server("rsa", name="wsev-echo (RSA)")
            servers.append(E.echo_rsa)
            E.stall = echo_server("ec", "--handshake-timeout", str(STALL_MS),
                                  name="wsev-echo (handshake timeout %d ms)" % STALL_MS)
            servers.append(E.stall)
            E.limited = echo_server("ec", "--max-connections", "2",
                                    name="wsev-echo (max 2 connections)")
            servers.append(E.limited)
        except TestFailure as e:
            R.record("start wsev-echo with TLS", str(e))
            return R.finish()
        port = E.echo.tls_port

        # 1. echo through Python websockets with a verifying context
        run_async("wss-tls12-ecdhe-ecdsa-aead-alpn", c_wss_parameters, E.echo, "ec", "ECDSA")
        run_async("wss-text-binary-empty", c_text_binary_empty, port)
        run_async("wss-sizes-0-125-126-65535-65536-16384", c_sizes, port)
        run_async("wss-binary-8MiB-and-text-3MiB-byte-exact", c_8mib, port)
        run_async("wss-fragmented-send", c_fragmented, port)
        run_async("wss-ping-pong", c_ping, port)
        run_async("wss-close-4001-echoed", c_close_code, port)
        run_async("wss-without-alpn", c_no_alpn, port)
        run("wss-without-sni-ip-san", c_no_sni_ip, port)
        run("wss-raw-frames-and-protocol-error", c_raw_frames_over_tls, port)
        run("wss-http-426-and-400-over-tls", c_http_over_tls, port)
        # 2. RSA and ECDSA
        run_async("wss-rsa-certificate", c_rsa_echo)
        run_async("wss-each-ca-rejects-the-other-server", c_wrong_ca_both_ways)
        # 3. concurrency
        if WRAP:
            # A TLS handshake costs the server ~0.35 s of CPU under valgrind: 50 at
            # once would outlast its 10 s handshake timeout.
            run_async("wss-10-clients-x20-with-10-plain-ws", c_concurrent, 10, 10)
        else:
            run_async("wss-50-clients-x20-with-20-plain-ws", c_concurrent)
        # 4. openssl s_client
        run("s_client-ecdsa-tls12-aead-alpn-verify-upgrade", c_s_client, E.echo, "ec", "ECDSA")
        run("s_client-rsa-tls12-aead-alpn-verify-upgrade", c_s_client, E.echo_rsa, "rsa",
            "RSA")
        run("s_client-chacha20-ecdsa", c_chacha, E.echo, "ec", "ECDSA")
        run("s_client-chacha20-rsa", c_chacha, E.echo_rsa, "rsa", "RSA")
        run("s_client-no-sni-and-other-sni", c_no_sni_s_client)
        run("s_client-tls1.1-and-1.0-refused", c_old_versions_refused)
        run("s_client-cbc-static-rsa-dhe-refused", c_weak_suites_refused)
        # 5. records split at every byte
        run("bio-bytewise-handshake-upgrade-frames-close-notify", c_bytewise)
        run("bio-bytewise-rsa", c_bytewise_rsa)
        run("bio-random-splits", c_random_splits)
        run("bio-one-send-many-records", c_one_send)
        run("bio-close-notify-after-protocol-error", c_server_close_notify_on_error)
        # 6. bad input
        run("bad-plain-http-to-tls-port", c_http_to_tls_port)
        run("bad-64KiB-random-bytes", c_random_bytes)
        run("bad-malformed-records", c_bad_records)
        run("bad-truncated-client-hello", c_truncated_hello)
        run("bad-close-mid-handshake", c_close_mid_handshake)
        run("bad-stalled-handshakes-dropped-after-timeout", c_stalled_handshakes)
        run("bad-client-rejects-certificate", c_client_rejects_certificate)
        run("bad-200-garbage-connections-at-once", c_many_garbage_conns)
        run("bad-forged-record-after-handshake", c_bad_mac_after_handshake)
        run("limit-max-connections-closes-tls-before-handshake", c_max_connections_over_tls)
        run("session-ticket-resumption", c_session_resumption)
        run("session-ticket-resumption-tls12", c_session_resumption, True)
        # 7. startup errors
        startup_cases()
        # 9. pubsub
        try:
            ps = Server(PUBSUB, "--tls-port", "0", "--cert", path("ec", "localhost.crt"),
                        "--key", path("ec", "localhost.key"), "--quiet",
                        name="wsev-pubsub", port_args=("--port", "0"), want_tls=True)
            servers.append(ps)
            run_async("pubsub-wss-and-ws-see-each-other", c_pubsub, ps)
        except TestFailure as e:
            R.record("start wsev-pubsub with TLS", str(e))
        run("pubsub-default-cert-files-in-cwd", c_pubsub_default_files)
        run("pubsub-no-cert-files-serves-ws-only", c_pubsub_no_files)
        run("pubsub-tls-port-without-cert-files-fails", c_pubsub_tls_asked_no_files)
    finally:
        for s in servers:
            R.record("%s still running, clean exit" % s.name, s.stop())
        if E.dir:
            shutil.rmtree(E.dir, ignore_errors=True)
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
