"""Shared helpers for the wsev Python integration tests.

- Server: start `wsev-echo 0 [args]`, learn the port from its stdout, check at the
  end that it did not exit or crash on its own, then stop it.
- Conn: a raw TCP connection with our own RFC 6455 client-side frame encoder
  (masking, any length encoding, any bits) and a strict frame decoder.
- Runner: runs named cases, prints one PASS/FAIL line per case and a summary.

Every socket read has a timeout, so a hang is a failure, never a stuck test.
"""

import base64
import hashlib
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Every read waits this long at most; longer when the server runs under a tool.
TIMEOUT = 5.0 * (6 if os.environ.get("WSEV_SERVER_WRAP") else 1)

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def short(b, n=64):
    """A printable, bounded rendering of some bytes for failure messages."""
    if b is None:
        return "None"
    if len(b) <= n:
        return repr(bytes(b))
    return "%r...(%d bytes)" % (bytes(b[:n]), len(b))


def accept_for(key):
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


# --------------------------------------------------------------------------- server

class Server:
    """A running wsev-echo. stdout is drained by a thread so the pipe never fills."""

    def __init__(self, exe, *args, name="wsev-echo", port_args=("0",), wrap=(),
                 want_tls=False):
        self.name = name
        self.exe = exe
        self.args = list(args)
        self.lines = []
        self.sanitizer_reports = []
        self.port = None
        self.tls_port = None  # from a "listening for TLS on port N" line
        # WSEV_SERVER_WRAP runs the server under a tool, e.g. valgrind: the tool's
        # verdict comes back as the exit status checked in stop().
        self.wrap = list(wrap) + shlex.split(os.environ.get("WSEV_SERVER_WRAP", ""))
        self.slow = 6.0 if os.environ.get("WSEV_SERVER_WRAP") else 1.0
        cmd = self.wrap + [exe] + list(port_args) + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._port_event = threading.Event()
        self._tls_port_event = threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()
        if not self._port_event.wait(10.0 * self.slow) or self.port is None:
            rc = self.proc.poll()
            self._kill()
            raise TestFailure("%s %s: no 'listening on port N' line on stdout within 10 s "
                              "(exit status %r, stdout so far %r)"
                              % (name, " ".join(cmd), rc, self.lines[:10]))
        if want_tls and (not self._tls_port_event.wait(10.0 * self.slow)
                         or self.tls_port is None):
            rc = self.proc.poll()
            self._kill()
            raise TestFailure("%s %s: no 'listening for TLS on port N' line on stdout "
                              "within 10 s (exit status %r, stdout so far %r)"
                              % (name, " ".join(cmd), rc, self.lines[:10]))

    def _read_stdout(self):
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if len(self.lines) < 1000:
                self.lines.append(line)
            if self.port is None:
                m = re.search(r"listening on port (\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    self._port_event.set()
            if self.tls_port is None:
                m = re.search(r"listening for TLS on port (\d+)", line)
                if m:
                    self.tls_port = int(m.group(1))
                    self._tls_port_event.set()
        self._port_event.set()
        self._tls_port_event.set()

    def _read_stderr(self):
        # Pass the server's stderr through, and remember sanitizer reports (UBSan keeps
        # running after "runtime error:", so a live server can still have failed).
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sys.stderr.write("[%s] %s\n" % (self.name, line))
            sys.stderr.flush()
            if ("runtime error:" in line or "Sanitizer" in line) and \
                    len(self.sanitizer_reports) < 20:
                self.sanitizer_reports.append(line)

    def alive_problem(self):
        """None while the server runs, else a description of how it ended."""
        rc = self.proc.poll()
        if rc is None:
            return None
        if rc < 0:
            try:
                sig = signal.Signals(-rc).name
            except ValueError:
                sig = str(-rc)
            return "%s died from signal %s" % (self.name, sig)
        return "%s exited on its own with status %d" % (self.name, rc)

    def _kill(self):
        """SIGTERM (the server then frees everything and exits 0), SIGKILL if that
        hangs. Returns the exit status, or None if it was not running."""
        if self.proc.poll() is not None:
            return None
        self.proc.terminate()
        try:
            return self.proc.wait(5 * self.slow)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return "hung after SIGTERM"

    def stop(self):
        """Stop the server; returns a problem string if it had ended by itself, or
        did not exit cleanly when asked (a leak or memory error under ASan or
        valgrind makes the exit status non-zero)."""
        problem = self.alive_problem()
        rc = self._kill()
        if problem is None and rc != 0:
            problem = "%s %s after SIGTERM (expected exit status 0)" % (
                self.name, rc if isinstance(rc, str) else "exit status %s" % rc)
        self._err_reader.join(5)
        if self.sanitizer_reports:
            problem = (problem + "; " if problem else "") + "sanitizer reports on stderr: " \
                + " | ".join(self.sanitizer_reports)
        return problem

    def connect(self, **kw):
        return Conn(self.port, **kw)


# --------------------------------------------------------------------------- frames

def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None,
                length_form=None, length_override=None):
    """Encode one client frame.

    rsv: 3-bit value (RSV1=4, RSV2=2, RSV3=1). mask: whether to set the mask bit and
    mask the payload. length_form: None (minimal), 7, 16 or 64 to force an encoding.
    length_override: write this length in the header instead of len(payload)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    payload = bytes(payload)
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length_override is None else length_override
    mbit = 0x80 if mask else 0
    if length_form is None:
        length_form = 7 if n <= 125 else (16 if n <= 0xFFFF else 64)
    if length_form == 7:
        assert n <= 125
        hdr = bytes([b0, mbit | n])
    elif length_form == 16:
        assert n <= 0xFFFF
        hdr = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask:
        if mask_key is None:
            mask_key = os.urandom(4)
        hdr += mask_key
        payload = xor_mask(payload, mask_key)
    return hdr + payload


def xor_mask(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload, length_form, declared):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.payload = masked, payload
        self.length_form, self.declared = length_form, declared

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    def __repr__(self):
        extra = ""
        if self.opcode == OP_CLOSE and len(self.payload) >= 2:
            extra = " code=%d" % self.close_code
        return "Frame(fin=%d rsv=%d op=0x%x masked=%d len=%d%s payload=%s)" % (
            self.fin, self.rsv, self.opcode, self.masked, len(self.payload), extra,
            short(self.payload, 40))


class Closed(Exception):
    """The peer closed the TCP connection (EOF or reset)."""


# --------------------------------------------------------------------------- connection

class Conn:
    def __init__(self, port, host="127.0.0.1", timeout=TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.port = port
        self.host = host

    # ---- raw I/O
    def send(self, data):
        self.sock.sendall(data)

    def send_bytewise(self, data, delay=0.0):
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            if delay:
                time.sleep(delay)

    def _fill(self, deadline):
        """Read more into self.buf; raises Closed on EOF/reset, TestFailure on timeout."""
        if self.eof:
            raise Closed()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TestFailure("timed out waiting for data from the server")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TestFailure("timed out (%.1f s) waiting for data from the server" % TIMEOUT)
        except ConnectionResetError:
            self.eof = True
            self.reset = True
            raise Closed()
        if not chunk:
            self.eof = True
            raise Closed()
        self.buf += chunk

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, marker, deadline, limit=1 << 20):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return out
            check(len(self.buf) < limit, "no %r within %d bytes" % (marker, limit))
            self._fill(deadline)

    def read_all_until_eof(self, timeout=TIMEOUT):
        """Everything until the server closes; TestFailure if it doesn't in time."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except Closed:
                out = bytes(self.buf)
                self.buf.clear()
                return out
            except TestFailure:
                raise TestFailure("server did not close the TCP connection within %.1f s "
                                  "(received so far %s)" % (timeout, short(self.buf)))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close abruptly with a RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    # ---- handshake
    def request(self, key=None, path="/", extra_headers=None, headers=None):
        """Build an upgrade request. headers replaces the default header list."""
        self.key = key if key is not None else new_key()
        if headers is None:
            headers = [
                ("Host", "127.0.0.1:%d" % self.port),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", self.key),
                ("Sec-WebSocket-Version", "13"),
            ]
        headers = list(headers) + list(extra_headers or [])
        req = "GET %s HTTP/1.1\r\n" % path
        req += "".join("%s: %s\r\n" % hv for hv in headers)
        req += "\r\n"
        return req.encode("latin-1")

    def read_response(self, timeout=TIMEOUT):
        """Read an HTTP response head; returns (status_line, {lower-name: [values]})."""
        deadline = time.monotonic() + timeout
        try:
            head = self.read_until(b"\r\n\r\n", deadline, limit=65536)
        except Closed:
            raise TestFailure("connection closed before a complete HTTP response head "
                              "(got %s)" % short(self.buf, 200))
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0]
        hdrs = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            hdrs.setdefault(name.strip().lower(), []).append(value.strip())
        return status, hdrs

    def handshake(self, key=None, data_after=b"", bytewise=False, **kw):
        req = self.request(key=key, **kw)
        if bytewise:
            self.send_bytewise(req)
        else:
            self.send(req + data_after)
        status, hdrs = self.read_response()
        check_upgrade_response(status, hdrs, self.key)
        return self

    # ---- frames
    def send_frame(self, opcode, payload=b"", **kw):
        self.send(build_frame(opcode, payload, **kw))

    def send_text(self, payload, **kw):
        self.send_frame(OP_TEXT, payload, **kw)

    def send_binary(self, payload, **kw):
        self.send_frame(OP_BINARY, payload, **kw)

    def send_close(self, code=None, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def recv_frame(self, timeout=TIMEOUT):
        """One frame, checked to be a well-formed server frame: unmasked, minimal length
        encoding, no RSV bits, known opcode, control frames <=125 and unfragmented."""
        deadline = time.monotonic() + timeout
        h = self.read_exact(2, deadline)
        fin = h[0] >> 7
        rsv = (h[0] >> 4) & 7
        opcode = h[0] & 0xF
        masked = h[1] >> 7
        n = h[1] & 0x7F
        form = 7
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2, deadline))[0]
            form = 16
            check(n > 125, "server used a non-minimal 16-bit length for %d bytes" % n)
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8, deadline))[0]
            form = 64
            check(n >> 63 == 0, "server sent a 64-bit length with the MSB set")
            check(n > 0xFFFF, "server used a non-minimal 64-bit length for %d bytes" % n)
        check(not masked, "server frame has the mask bit set (header %s)" % short(h))
        check(rsv == 0, "server frame has RSV bits %d set" % rsv)
        check(opcode in (0, 1, 2, 8, 9, 10), "server sent unknown opcode 0x%x" % opcode)
        if opcode >= 8:
            check(fin == 1, "server sent a fragmented control frame")
            check(n <= 125, "server sent a control frame of %d bytes" % n)
        payload = self.read_exact(n, deadline)
        return Frame(fin, rsv, opcode, masked, payload, form, n)

    def recv_message(self, timeout=TIMEOUT, allow_pong=False):
        """A whole data message (reassembles continuation frames). Returns (opcode,
        payload). Any control frame received first is a failure (unless allow_pong and
        it's a pong, which is skipped)."""
        deadline = time.monotonic() + timeout
        opcode = None
        parts = []
        while True:
            try:
                f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            except Closed:
                raise TestFailure("connection closed while waiting for a message"
                                  + (" (reset)" if self.reset else ""))
            if f.opcode == OP_PONG and allow_pong:
                continue
            if f.opcode >= 8:
                raise TestFailure("expected a data message, got %r" % f)
            if opcode is None:
                check(f.opcode in (OP_TEXT, OP_BINARY),
                      "message starts with a continuation frame: %r" % f)
                opcode = f.opcode
            else:
                check(f.opcode == OP_CONT,
                      "expected a continuation frame, got %r" % f)
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def expect_echo(self, opcode, payload, timeout=TIMEOUT):
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        op, got = self.recv_message(timeout)
        check(op == opcode, "echo has opcode 0x%x, expected 0x%x" % (op, opcode))
        check(got == payload, "echo payload differs: sent %s, got %s"
              % (short(payload), short(got)))

    def echo(self, opcode, payload, **kw):
        self.send_frame(opcode, payload, **kw)
        self.expect_echo(opcode, payload)

    def expect_close(self, code, timeout=TIMEOUT, reply=True, what=""):
        """Next frame must be a close frame whose first two payload bytes are `code`
        (code None: an empty payload or 1000 is accepted), then the server must close
        the TCP connection. If reply, we answer with our own close frame first."""
        try:
            f = self.recv_frame(timeout)
        except Closed:
            raise TestFailure("%sexpected a close frame with %s, but the TCP connection "
                              "was closed without one%s" % (what, code,
                                                            " (reset)" if self.reset else ""))
        check(f.opcode == OP_CLOSE, "%sexpected a close frame with %s, got %r"
              % (what, code, f))
        if code is None:
            check(len(f.payload) == 0 or f.close_code == 1000,
                  "expected an empty close payload (or 1000), got %r" % f)
        else:
            check(len(f.payload) >= 2, "expected close code %d, got close payload %s"
                  % (code, short(f.payload)))
            check(f.close_code == code, "expected close code %d, got %d (payload %s)"
                  % (code, f.close_code, short(f.payload)))
            try:
                f.payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise TestFailure("close reason is not UTF-8: %s" % short(f.payload))
        if reply:
            try:
                self.send_close(f.close_code if f.close_code is not None else None)
            except OSError:
                pass  # the server may already have closed; that's fine
        self.expect_eof(what="after the close frame: ")
        return f

    def expect_eof(self, timeout=TIMEOUT, what=""):
        """The server must close the TCP connection, sending nothing more."""
        deadline = time.monotonic() + timeout
        if self.buf:
            raise TestFailure("%sunexpected bytes from the server: %s" % (what, short(self.buf)))
        while True:
            try:
                self._fill(deadline)
            except Closed:
                return
            except TestFailure:
                raise TestFailure("%sthe server did not close the TCP connection within "
                                  "%.1f s" % (what, timeout))
            raise TestFailure("%sunexpected bytes from the server instead of EOF: %s"
                              % (what, short(self.buf)))


def check_upgrade_response(status, hdrs, key):
    check(re.match(r"HTTP/1\.1 101( |$)", status), "expected HTTP/1.1 101, got %r" % status)
    acc = hdrs.get("sec-websocket-accept", [])
    check(acc == [accept_for(key)], "Sec-WebSocket-Accept is %r, expected %r"
          % (acc, accept_for(key)))
    up = ",".join(hdrs.get("upgrade", [])).lower()
    check("websocket" in [t.strip() for t in up.split(",")],
          "response Upgrade header is %r" % hdrs.get("upgrade"))
    co = ",".join(hdrs.get("connection", [])).lower()
    check("upgrade" in [t.strip() for t in co.split(",")],
          "response Connection header is %r" % hdrs.get("connection"))


# --------------------------------------------------------------------------- runner

class Runner:
    def __init__(self, title):
        self.title = title
        self.passed = 0
        self.failed = 0
        self.failures = []
        self.t0 = time.monotonic()

    def run(self, name, fn, *args):
        t = time.monotonic()
        try:
            fn(*args)
        except TestFailure as e:
            self._fail(name, str(e))
        except Closed:
            self._fail(name, "the server closed the connection unexpectedly")
        except Exception as e:  # noqa: BLE001 - any error is a failed case
            self._fail(name, "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
        else:
            self.passed += 1
            print("PASS %s (%.2fs)" % (name, time.monotonic() - t), flush=True)

    def _fail(self, name, msg):
        self.failed += 1
        self.failures.append((name, msg))
        print("FAIL %s: %s" % (name, msg), flush=True)

    def record(self, name, problem):
        """Record a check done outside a case function (None means it passed)."""
        if problem is None:
            self.passed += 1
            print("PASS %s" % name, flush=True)
        else:
            self._fail(name, problem)

    def finish(self):
        print("%d passed, %d failed (%.1fs)" % (self.passed, self.failed,
                                               time.monotonic() - self.t0), flush=True)
        return 0 if self.failed == 0 else 1


def rss_bytes(pid):
    """Resident memory of process pid, in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS for pid %d" % pid)


def settled_rss(pid):
    """VmRSS once it stops moving (the server has handled everything sent to it)."""
    last = rss_bytes(pid)
    for _ in range(40):
        time.sleep(0.1)
        now = rss_bytes(pid)
        if now == last:
            return now
        last = now
    return last


def script_args():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: %s PATH/TO/wsev-echo\n" % sys.argv[0])
        sys.exit(2)
    return sys.argv[1]
