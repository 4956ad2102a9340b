"""Shared helpers for the tests of wsev's client side (wsev_add_conn, wsev-client).

- Client: a running `wsev-client URL [options]` with a pipe on its stdin; its stdout
  lines (received messages) and stderr status lines are collected by threads, and
  every wait has a timeout.
- RawServer / Peer: a plain TCP listener and an accepted connection that plays the
  server's side of RFC 6455 by hand: reads the upgrade request, answers it (rightly
  or wrongly), sends unmasked (or deliberately wrong) frames and decodes the client's
  frames strictly (they must be masked).
- certs(): test certificates from scripts/make-cert.sh (openssl CLI as a fallback).

WSEV_SERVER_WRAP (e.g. valgrind) wraps wsev-client and every wsev program started
here, as test/python/wsevtest.py does for wsev-echo; timeouts then grow 6x.
"""

import atexit
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC_ROOT, "test", "python"))

import wsevtest  # noqa: E402
from wsevtest import (  # noqa: E402,F401
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Frame, Runner, Server,
    TestFailure, accept_for, build_frame, check, close_payload, short, xor_mask)

WRAP = shlex.split(os.environ.get("WSEV_SERVER_WRAP", ""))
SLOW = 6.0 if WRAP else 1.0
TIMEOUT = wsevtest.TIMEOUT  # 5 s, 30 s under a tool
QUIET = 0.3 * SLOW          # how long to wait to be sure that nothing more comes


def problem_lines(lines):
    """Sanitizer or valgrind reports among a process's stderr lines."""
    return [l for l in lines
            if "runtime error:" in l or "Sanitizer" in l or re.match(r"==\d+== ", l)]


# --------------------------------------------------------------------------- client

class Client:
    """A wsev-client process. stdin is a pipe unless `stdin` is given (a file object
    or subprocess.DEVNULL)."""

    def __init__(self, exe, url, *args, stdin=None, wrap=True):
        self.cmd = (WRAP if wrap else []) + [exe, url] + [str(a) for a in args]
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE if stdin is None else stdin,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = queue.Queue()
        self.out_count = 0
        self.err_lines = []
        self.err_cond = threading.Condition()
        self.t0 = time.monotonic()
        self._t_out = threading.Thread(target=self._read_out, daemon=True)
        self._t_err = threading.Thread(target=self._read_err, daemon=True)
        self._t_out.start()
        self._t_err.start()

    def _read_out(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self.out.put(raw[:-1] if raw.endswith(b"\n") else raw + b"<no newline>")
        self.out.put(None)

    def _read_err(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.err_cond:
                self.err_lines.append(line)
                self.err_cond.notify_all()
        with self.err_cond:
            self.err_lines.append(None)
            self.err_cond.notify_all()

    def stderr_text(self):
        with self.err_cond:
            return "\n".join(l for l in self.err_lines if l is not None)

    # ---- stdin
    def send(self, line):
        if isinstance(line, str):
            line = line.encode("utf-8")
        try:
            self.proc.stdin.write(line + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise TestFailure("cannot write to wsev-client's stdin (%s); stderr: %s"
                              % (e, self.stderr_text()))

    def close_stdin(self):
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    # ---- stdout
    def recv(self, timeout=TIMEOUT):
        try:
            line = self.out.get(timeout=timeout)
        except queue.Empty:
            raise TestFailure("no message from wsev-client within %.1f s; stderr: %s"
                              % (timeout, self.stderr_text()))
        if line is None:
            self.out.put(None)
            raise TestFailure("wsev-client closed stdout while a message was awaited "
                              "(exit status %r); stderr: %s"
                              % (self.proc.poll(), self.stderr_text()))
        return line

    def expect(self, payload, timeout=TIMEOUT):
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        got = self.recv(timeout)
        check(got == payload, "wsev-client printed %s, expected %s"
              % (short(got), short(payload)))

    def expect_no_output(self, wait=QUIET):
        try:
            line = self.out.get(timeout=wait)
        except queue.Empty:
            return
        if line is None:
            self.out.put(None)
            return
        raise TestFailure("unexpected message from wsev-client: %s" % short(line))

    # ---- stderr
    def wait_stderr(self, pattern, timeout=TIMEOUT):
        """Wait for a stderr line matching the regex; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.err_cond:
            i = 0
            while True:
                while i < len(self.err_lines):
                    line = self.err_lines[i]
                    i += 1
                    if line is None:
                        raise TestFailure("wsev-client ended without a stderr line matching "
                                          "%r; stderr: %s" % (pattern, self.stderr_text()))
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure("no stderr line matching %r within %.1f s; stderr: %s"
                                      % (pattern, timeout, self.stderr_text()))
                self.err_cond.wait(left)

    def wait_connected(self, protocol=None, timeout=TIMEOUT):
        m = self.wait_stderr(r"^wsev-client: (connected.*|closed.*|failed.*)$", timeout)
        want = "connected" + (" (protocol %s)" % protocol if protocol else "")
        check(m.group(1) == want, "expected %r, got %r" % (want, m.group(1)))

    # ---- end
    def wait(self, timeout=TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure("wsev-client did not exit within %.1f s; stderr: %s"
                              % (timeout, self.stderr_text()))

    def finish(self, status, final=None, close_stdin=True, timeout=TIMEOUT):
        """Close stdin (unless told not to), wait for the exit, and check the exit
        status and the last status line (`final`: a regex matched against the text
        after "wsev-client: "). Returns the last status line's match."""
        if close_stdin:
            self.close_stdin()
        rc = self.wait(timeout)
        self._t_err.join(timeout)
        self._t_out.join(timeout)
        err = self.stderr_text()
        bad = problem_lines(self.err_lines[:-1] if self.err_lines else [])
        check(not bad, "sanitizer/valgrind reports from wsev-client: %s" % " | ".join(bad[:20]))
        status_lines = [l for l in self.err_lines
                        if l and re.match(r"^wsev-client: (closed|failed)", l)]
        m = None
        if final is not None:
            check(status_lines, "no final 'closed'/'failed' line (exit status %s); stderr: %s"
                  % (rc, err))
            check(len(status_lines) == 1, "more than one final status line: %r" % status_lines)
            m = re.fullmatch("wsev-client: " + final, status_lines[-1])
            check(m, "final status line %r does not match %r; stderr: %s"
                  % (status_lines[-1], "wsev-client: " + final, err))
        check(rc == status, "wsev-client exited with %s, expected %d; stderr: %s"
              % (rc, status, err))
        return m

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.close_stdin()

    def signal(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def elapsed(self):
        return time.monotonic() - self.t0


# --------------------------------------------------------------------------- raw server

class RawServer:
    """A TCP listener on 127.0.0.1 (or `host`) with a free port."""

    def __init__(self, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.peers = []

    def url(self, path="/", scheme="ws"):
        h = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d%s" % (scheme, h, self.port, path)

    def accept(self, timeout=TIMEOUT):
        self.sock.settimeout(timeout)
        try:
            s, _ = self.sock.accept()
        except socket.timeout:
            raise TestFailure("the client did not connect within %.1f s" % timeout)
        p = Peer(s)
        self.peers.append(p)
        return p

    def close(self):
        for p in self.peers:
            p.close()
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Peer(wsevtest.Conn):
    """The server's end of one TCP connection from the client under test."""

    def __init__(self, sock, timeout=TIMEOUT):  # pylint: disable=super-init-not-called
        self.sock = sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.port = None
        self.host = None
        self.mask_keys = []
        self.key = None

    def read_request(self, timeout=TIMEOUT):
        """Read the upgrade request; returns (request line, {lower-name: [values]})."""
        deadline = time.monotonic() + timeout
        try:
            head = self.read_until(b"\r\n\r\n", deadline, limit=65536)
        except wsevtest.Closed:
            raise TestFailure("the client closed before a complete request (got %s)"
                              % short(self.buf, 200))
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            hdrs.setdefault(name.strip().lower(), []).append(value.strip())
        self.request_line = lines[0]
        self.headers = hdrs
        keys = hdrs.get("sec-websocket-key", [])
        self.key = keys[0] if len(keys) == 1 else None
        return lines[0], hdrs

    def response_101(self, accept=None, protocol=None, extra=""):
        acc = accept if accept is not None else accept_for(self.key or "")
        r = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n" % acc)
        if protocol:
            r += "Sec-WebSocket-Protocol: %s\r\n" % protocol
        r += extra + "\r\n"
        return r.encode("latin-1")

    def handshake(self, after=b"", **kw):  # pylint: disable=arguments-differ
        """Read the request and accept it (101); `after` goes in the same send."""
        self.read_request()
        check(self.key is not None, "request without exactly one Sec-WebSocket-Key: %r"
              % self.headers)
        self.send(self.response_101(**kw) + after)
        return self

    # ---- frames from the server (unmasked unless asked otherwise)
    def send_frame(self, opcode, payload=b"", mask=False, **kw):
        self.send(build_frame(opcode, payload, mask=mask, **kw))

    def send_close(self, code=None, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    # ---- frames from the client
    def recv_frame(self, timeout=TIMEOUT):
        """One client frame, checked strictly: masked, no RSV bits, a known opcode,
        control frames unfragmented and <= 125 bytes, 64-bit lengths without the MSB.
        Returns a Frame (payload unmasked) with .mask_key."""
        deadline = time.monotonic() + timeout
        h = self.read_exact(2, deadline)
        fin, rsv, opcode = h[0] >> 7, (h[0] >> 4) & 7, h[0] & 0xF
        masked, n = h[1] >> 7, h[1] & 0x7F
        form = 7
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2, deadline))[0]
            form = 16
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8, deadline))[0]
            form = 64
            check(n >> 63 == 0, "client sent a 64-bit length with the MSB set")
        check(masked, "client frame is not masked (header %s)" % short(h))
        check(rsv == 0, "client frame has RSV bits %d" % rsv)
        check(opcode in (0, 1, 2, 8, 9, 10), "client sent unknown opcode 0x%x" % opcode)
        if opcode >= 8:
            check(fin == 1, "client sent a fragmented control frame")
            check(n <= 125, "client sent a control frame of %d bytes" % n)
        key = self.read_exact(4, deadline)
        payload = xor_mask(self.read_exact(n, deadline), key)
        f = Frame(fin, rsv, opcode, masked, payload, form, n)
        f.mask_key = key
        self.mask_keys.append(key)
        return f

    def recv_message(self, timeout=TIMEOUT, allow_pong=False):
        """A whole data message from the client: (opcode, payload)."""
        deadline = time.monotonic() + timeout
        opcode, parts = None, []
        while True:
            try:
                f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            except wsevtest.Closed:
                raise TestFailure("the client closed the connection while a message "
                                  "was awaited")
            if f.opcode == OP_PONG and allow_pong:
                continue
            check(f.opcode < 8, "expected a data message from the client, got %r" % f)
            if opcode is None:
                check(f.opcode in (OP_TEXT, OP_BINARY), "message starts with %r" % f)
                opcode = f.opcode
            else:
                check(f.opcode == OP_CONT, "expected a continuation, got %r" % f)
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def expect_text(self, payload, opcode=OP_TEXT, timeout=TIMEOUT):
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        op, got = self.recv_message(timeout)
        check(op == opcode, "client message has opcode 0x%x, expected 0x%x" % (op, opcode))
        check(got == payload, "client sent %s, expected %s" % (short(got), short(payload)))

    def expect_client_close(self, code, timeout=TIMEOUT, reply=True, what=""):
        """The client's next frame must be a close with `code` (None: no code or
        1000). With reply, answer it with a close frame and close the TCP connection
        (the server closes first, as RFC 6455 says)."""
        try:
            f = self.recv_frame(timeout)
        except wsevtest.Closed:
            raise TestFailure("%sexpected a close frame with %s from the client, but it "
                              "closed the TCP connection without one" % (what, code))
        check(f.opcode == OP_CLOSE, "%sexpected a close frame with %s, got %r"
              % (what, code, f))
        if code is None:
            check(len(f.payload) == 0 or f.close_code == 1000,
                  "expected an empty close payload or 1000, got %r" % f)
        else:
            check(f.close_code == code, "%sexpected close code %d from the client, got %r"
                  % (what, code, f))
        if reply:
            try:
                self.send_close(f.close_code)
            except OSError:
                pass
            self.close()
        return f

    def expect_eof(self, timeout=TIMEOUT, what=""):
        deadline = time.monotonic() + timeout
        check(not self.buf, "%sunexpected bytes from the client: %s" % (what, short(self.buf)))
        while True:
            try:
                self._fill(deadline)
            except wsevtest.Closed:
                return
            except TestFailure:
                raise TestFailure("%sthe client did not close the TCP connection within "
                                  "%.1f s" % (what, timeout))
            raise TestFailure("%sunexpected bytes from the client instead of EOF: %s"
                              % (what, short(self.buf)))

    def expect_silence(self, wait=QUIET):
        """Nothing arrives from the client for `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return
        finally:
            self.sock.settimeout(TIMEOUT)
        check(False, "unexpected %s from the client" % (short(chunk) if chunk else "EOF"))


# --------------------------------------------------------------------------- servers

def start_server(exe, *args, name, port_args=("0",)):
    """A wsev program that prints 'listening on port N' (wsev-echo, wsev-pubsub, the
    relay), under WSEV_SERVER_WRAP if set."""
    return Server(exe, *args, name=name, port_args=port_args)


def server_line(server, pattern, timeout=TIMEOUT):
    """Wait for a stdout line of a wsevtest.Server matching pattern; returns the match."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        lines = list(server.lines)
        for line in lines[seen:]:
            m = rx.search(line)
            if m:
                return m
        seen = len(lines)
        if time.monotonic() > deadline:
            raise TestFailure("%s printed no line matching %r within %.1f s (stdout %r)"
                              % (server.name, pattern, timeout, lines[-10:]))
        if server.proc.poll() is not None and seen == len(server.lines):
            time.sleep(0.05)
            if seen == len(server.lines):
                raise TestFailure("%s exited (status %s) without a line matching %r"
                                  % (server.name, server.proc.returncode, pattern))
        time.sleep(0.02)


def free_port():
    """A local port that nothing listens on (bound once, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_CERT_DIR = None


def certs():
    """A directory with ca.crt, localhost.crt and localhost.key (CA-signed, for
    localhost, 127.0.0.1 and ::1), made once per run."""
    global _CERT_DIR
    if _CERT_DIR:
        return _CERT_DIR
    d = tempfile.mkdtemp(prefix="wsev-client-certs-")
    atexit.register(shutil.rmtree, d, True)  # made once per run, gone with it
    script = os.path.join(SRC_ROOT, "scripts", "make-cert.sh")
    if os.path.exists(script):
        r = subprocess.run(["bash", script, d], capture_output=True, timeout=60)
        check(r.returncode == 0, "make-cert.sh failed: %s" % r.stderr.decode(errors="replace"))
    else:
        make_cert_openssl(d)
    _CERT_DIR = d
    return d


def make_cert_openssl(d, name="localhost", san="DNS:localhost,IP:127.0.0.1,IP:::1",
                      leaf="localhost"):
    """The same kind of pair with the openssl CLI (and a CA if there is none)."""
    def run(*args):
        r = subprocess.run(["openssl"] + list(args), capture_output=True, timeout=60)
        check(r.returncode == 0, "openssl %s failed: %s"
              % (args[0], r.stderr.decode(errors="replace")))
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    if not os.path.exists(ca_crt):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", ca_key, "-out", ca_crt, "-days", "30", "-subj",
            "/CN=wsev client test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    key, csr = os.path.join(d, leaf + ".key"), os.path.join(d, leaf + ".csr")
    crt, ext = os.path.join(d, leaf + ".crt"), os.path.join(d, leaf + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
                "subjectAltName=%s\n" % san)
    run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    run("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
        "-CAserial", os.path.join(d, "ca.srl"), "-days", "30", "-extfile", ext, "-out", crt)
    return crt, key
