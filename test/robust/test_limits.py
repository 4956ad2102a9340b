"""Never stall, never crash, never leak: keepalive, deadlines, connection limits,
graceful shutdown, a slow consumer, descriptor exhaustion and connection churn,
against the wsev-echo and wsev-pubsub samples.

usage: test_limits.py WSEV_ECHO WSEV_PUBSUB CHURN
Prints PASS/FAIL per case and "N passed, N failed"; exits non-zero on failure.
"""

import concurrent.futures
import os
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from wsevtest import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Closed,  # noqa: E402
                      Runner, Server, TestFailure, build_frame, check)

ECHO, PUBSUB, CHURN = sys.argv[1], sys.argv[2], sys.argv[3]


def instrumented(exe):
    """True for an AddressSanitizer build, whose allocator keeps freed memory in a
    quarantine: its RSS says nothing about ours, so memory bounds are checked on the
    normal build only (leaks are LeakSanitizer's job there)."""
    out = subprocess.run(["ldd", exe], capture_output=True, text=True).stdout
    return "libasan" in out


SANITIZED = instrumented(ECHO)


def proc_status(pid, field):
    """A /proc/PID/status field in kB (VmRSS, VmHWM)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise TestFailure("no %s for pid %d" % (field, pid))


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def settled_fd_count(pid, limit=3.0):
    """The descriptor count once the last connections have finished closing (the same
    for 0.3 s; on I/O threads the last closes of a burst may still be under way)."""
    deadline = time.monotonic() + limit
    last, since = fd_count(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 0.3:
        time.sleep(0.05)
        n = fd_count(pid)
        if n != last:
            last, since = n, time.monotonic()
    return last


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(server):
    """The pid of the sample itself (the Popen may be a wrapper such as prlimit)."""
    return server.proc.pid


# ---------------------------------------------------------------- keepalive

def keepalive_silent_peer_dropped(s):
    c = s.connect()
    c.handshake()
    f = c.recv_frame(timeout=3)
    check(f.opcode == OP_PING, "expected a keepalive ping, got %r" % f)
    t = time.monotonic()
    c.expect_eof(timeout=3, what="a peer that does not answer the ping: ")
    waited = time.monotonic() - t
    check(waited >= 0.25, "dropped %.3f s after the ping, before the 0.3 s timeout" % waited)


def keepalive_answering_peer_kept(s):
    c = s.connect()
    c.handshake()
    pings = 0
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        try:
            f = c.recv_frame(timeout=max(0.05, end - time.monotonic()))
        except TestFailure:
            break  # the read timed out: nothing more came
        check(f.opcode == OP_PING, "expected only pings, got %r" % f)
        pings += 1
        c.send_frame(OP_PONG, f.payload)
    check(pings >= 2, "expected several pings in 1.5 s, got %d" % pings)
    c.echo(OP_TEXT, "still here")
    c.send_close(1000)
    c.expect_close(1000, reply=False)


def keepalive_busy_peer_not_pinged(_):
    # A 1 s interval, so that a loaded test machine cannot stall this client's
    # sends long enough to look silent.
    s = Server(ECHO, "--ping-interval", "1000", "--ping-timeout", "1000",
               name="wsev-echo (keepalive 1 s)")
    c = s.connect()
    c.handshake()
    end = time.monotonic() + 2.5
    n = 0
    while time.monotonic() < end:
        c.send_text("m%d" % n)
        op, payload = c.recv_message()  # a ping here fails the case
        check(payload == b"m%d" % n, "echo out of order")
        n += 1
        time.sleep(0.05)
    c.send_close(1000)
    c.expect_close(1000, reply=False)
    problem = s.stop()
    if problem:
        raise TestFailure(problem)


# ---------------------------------------------------------------- deadlines and limits

def handshake_deadline(s):
    c = s.connect()
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the rest (slowloris)
    t = time.monotonic()
    c.read_all_until_eof(timeout=3)
    waited = time.monotonic() - t
    check(waited >= 0.25, "dropped after %.3f s, before the 0.3 s deadline" % waited)
    silent = s.connect()
    silent.read_all_until_eof(timeout=3)
    c2 = s.connect()
    c2.handshake()
    c2.echo(OP_TEXT, "after the slow ones")


def max_connections(s):
    conns = []
    for i in range(3):
        c = s.connect()
        c.handshake()
        conns.append(c)
    extra = s.connect()
    extra.send(extra.request())
    status, _ = extra.read_response()
    check(str(status).startswith("HTTP/1.1 503"), "the 4th connection got %r, expected 503"
          % status)
    extra.read_all_until_eof(timeout=3)
    conns[0].send_close(1000)
    conns[0].expect_close(1000, reply=False)
    deadline = time.monotonic() + 3
    while True:  # the server counts the closed one out as soon as it answered
        c = s.connect()
        c.send(c.request())
        status, _ = c.read_response()
        if str(status).startswith("HTTP/1.1 101"):
            break
        check(time.monotonic() < deadline, "still 503 after a connection closed")
        c.close()
        time.sleep(0.05)
    c.echo(OP_TEXT, "room again")
    for other in conns[1:]:
        other.echo(OP_BINARY, b"still served")
    # Leave the server with room for the next case: closed with the handshake (counted
    # out once the server answered), not by the sockets' garbage collection, whose FIN
    # an I/O thread may see after the next case's upgrade request on another thread.
    for done in conns[1:] + [c]:
        done.send_close(1000)
        done.expect_close(1000, reply=False)


def graceful_shutdown(_):
    s = Server(PUBSUB, name="wsev-pubsub", port_args=("--port", "0"))
    answering = [s.connect(), s.connect()]
    silent = s.connect()
    for c in answering + [silent]:
        c.handshake()
        c.send_text("subscribe:news")
        op, payload = c.recv_message()
        check(payload == b"OK", "subscribe answered %r" % payload)
    s.proc.send_signal(signal.SIGTERM)
    t = time.monotonic()
    for c in answering:
        c.expect_close(1001, what="on shutdown: ")  # answers, then expects EOF
    f = silent.recv_frame()
    check(f.opcode == OP_CLOSE and f.close_code == 1001, "silent client got %r" % f)
    try:
        rc = s.proc.wait(6)
    except subprocess.TimeoutExpired:
        raise TestFailure("wsev-pubsub still running 6 s after SIGTERM")
    took = time.monotonic() - t
    check(rc == 0, "exit status %d after SIGTERM" % rc)
    check(took < 4, "shutdown took %.1f s (bounded by 2 s)" % took)
    s._err_reader.join(5)
    s._reader.join(5)
    closed = [l for l in s.lines if re.match(r"Closed connection \d+", l)]
    check(len(closed) == 3, "conn_closed lines: %r" % closed)
    try:
        socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
        raise TestFailure("the listener still accepts after shutdown")
    except ConnectionRefusedError:
        pass


def half_closed_peer(s):
    """A peer that sends a message and shuts down its sending side still gets the
    echo, then the server's FIN."""
    c = s.connect()
    c.handshake()
    c.send(build_frame(OP_TEXT, b"last words"))
    c.sock.shutdown(socket.SHUT_WR)
    c.expect_echo(OP_TEXT, b"last words")
    c.expect_eof(what="after the half-close: ")
    c2 = s.connect()
    c2.handshake()
    c2.echo(OP_TEXT, "others are fine")


def close_deadline(_):
    """A peer that never answers our close frame is dropped after the close
    timeout (300 ms here), not after the 10 s shutdown bound."""
    s = Server(ECHO, "--close-timeout", "300", "--shutdown-timeout", "10000",
               name="wsev-echo (close 300 ms)")
    silent = s.connect()
    silent.handshake()
    s.proc.send_signal(signal.SIGTERM)
    f = silent.recv_frame()
    check(f.opcode == OP_CLOSE and f.close_code == 1001, "got %r" % f)
    t = time.monotonic()
    try:
        rc = s.proc.wait(5)
    except subprocess.TimeoutExpired:
        s.stop()
        raise TestFailure("the server waited more than 5 s for a peer that never answers")
    took = time.monotonic() - t
    check(rc == 0, "exit status %d" % rc)
    check(0.25 <= took < 3, "dropped the silent peer after %.2f s (close timeout 0.3 s)" % took)
    silent.read_all_until_eof(timeout=2)


# ---------------------------------------------------------------- slow consumer

class Reader(threading.Thread):
    """Reads every message of a subscriber and checks the sequence numbers."""

    def __init__(self, conn, expected):
        super().__init__(daemon=True)
        self.conn, self.expected, self.got, self.error = conn, expected, 0, None

    def run(self):
        try:
            while self.got < self.expected:
                op, payload = self.conn.recv_message(timeout=20)
                seq = int(payload[:8])
                if seq != self.got:
                    raise TestFailure("message %d arrived as number %d" % (seq, self.got))
                self.got += 1
        except Exception as e:  # noqa: BLE001
            self.error = e


def slow_consumer(_):
    limit = 1 << 20
    s = Server(PUBSUB, "--quiet", "--max-buffered", str(limit), name="wsev-pubsub",
               port_args=("--port", "0"))
    try:
        pid = server_pid(s)
        n, size = 1500, 64 * 1024
        slow = s.connect()  # and then it stops reading until the end
        slow.handshake()
        slow.send_text("subscribe:ch")
        check(slow.recv_message()[1] == b"OK", "slow subscribe")
        fast = []
        for i in range(3):
            c = s.connect()
            c.handshake()
            c.send_text("subscribe:ch")
            check(c.recv_message()[1] == b"OK", "fast subscribe")
            fast.append(c)
        publisher = s.connect()
        publisher.handshake()
        rss_before = proc_status(pid, "VmRSS")
        readers = [Reader(c, n) for c in fast]
        for r in readers:
            r.start()
        oks = [0]

        def read_oks():
            while oks[0] < n:
                if publisher.recv_message(timeout=20)[1] == b"OK":
                    oks[0] += 1
        ok_reader = threading.Thread(target=read_oks, daemon=True)
        ok_reader.start()
        body = b"x" * (size - 8)
        t = time.monotonic()
        for i in range(n):
            # Paced by the fast subscribers (at most 8 messages, 512 KiB, ahead of the
            # slowest of them): only the stalled one goes over the 1 MiB limit.
            while min(r.got for r in readers) < i - 8:
                check(all(r.is_alive() for r in readers), "a fast subscriber stopped")
                time.sleep(0.0005)
            publisher.send(build_frame(OP_BINARY, b"publish:ch:" + b"%08d" % i + body))
        for r in readers:
            r.join(60)
            if r.error:
                raise TestFailure("a fast subscriber: %s" % r.error)
            check(r.got == n, "a fast subscriber got %d of %d" % (r.got, n))
        took = time.monotonic() - t
        ok_reader.join(20)
        check(oks[0] == n, "publisher got %d OKs of %d" % (oks[0], n))
        hwm = proc_status(pid, "VmHWM")
        growth_mb = (hwm - rss_before) / 1024
        print("  slow consumer: %d x %d KiB to 3 fast subscribers in %.2f s (%.0f MB/s each); "
              "server peak RSS %.1f MB over its %.1f MB before; limit %d KiB per connection"
              % (n, size // 1024, took, n * size / took / 1e6, growth_mb, rss_before / 1024,
                 limit // 1024), flush=True)
        check(SANITIZED or growth_mb < 40, "server memory grew by %.1f MB for %.0f MB sent "
              "per subscriber" % (growth_mb, n * size / 1e6))
        # Now the slow one reads: what was on its way, then the 1008 close frame.
        slow.sock.settimeout(10)
        seen = 0
        while True:
            f = slow.recv_frame(timeout=10)
            if f.opcode == OP_CLOSE:
                check(f.close_code == 1008, "slow consumer closed with %r" % f.close_code)
                break
            seen += 1
        check(seen < n, "the slow consumer got all %d messages: the limit never applied" % n)
        publisher.send_text("publish:ch:after")
        for c in fast:
            check(c.recv_message()[1] == b"after", "fast subscriber after the slow one left")
    finally:
        problem = s.stop()
        if problem:
            raise TestFailure(problem)


# ---------------------------------------------------------------- descriptors

def fd_exhaustion(_):
    s = Server(ECHO, wrap=("prlimit", "--nofile=40:40"), name="wsev-echo (nofile 40)")
    try:
        pid = server_pid(s)
        time.sleep(0.2)
        socks = []
        for i in range(80):
            try:
                socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=2))
            except OSError:
                pass
        time.sleep(0.5)
        cpu0 = cpu_seconds(pid)
        time.sleep(1.0)
        spent = cpu_seconds(pid) - cpu0
        check(spent < 0.5, "server used %.2f s of CPU in 1 s while out of descriptors "
              "(spinning)" % spent)
        for sock in socks:
            sock.close()
        deadline = time.monotonic() + 5
        while True:
            try:
                c = s.connect()
                c.handshake()
                c.echo(OP_TEXT, "descriptors are back")
                break
            except (TestFailure, Closed, OSError):
                check(time.monotonic() < deadline, "no service 5 s after descriptors freed")
                time.sleep(0.1)
    finally:
        problem = s.stop()
        if problem:
            raise TestFailure(problem)


# ---------------------------------------------------------------- churn

def churn(_):
    s = Server(ECHO, name="wsev-echo (churn)")
    try:
        pid = server_pid(s)
        warm = subprocess.run([CHURN, str(s.port), "2000"], capture_output=True, text=True,
                              timeout=120)
        check(warm.returncode == 0, "warm-up churn failed: %s%s" % (warm.stdout, warm.stderr))
        fds0 = settled_fd_count(pid)
        rss0 = proc_status(pid, "VmRSS")
        run = subprocess.run([CHURN, str(s.port), "100000", "64"], capture_output=True,
                             text=True, timeout=600)
        fds1 = settled_fd_count(pid)
        rss1 = proc_status(pid, "VmRSS")
        print("  %s  server RSS %d kB -> %d kB, fds %d -> %d"
              % (run.stdout.strip(), rss0, rss1, fds0, fds1), flush=True)
        check(run.returncode == 0, "churn failed: %s%s" % (run.stdout, run.stderr))
        check(fds1 == fds0, "descriptors leaked: %d -> %d" % (fds0, fds1))
        check(SANITIZED or rss1 - rss0 < 2048, "memory not back: %d kB -> %d kB" % (rss0, rss1))
        c = s.connect()
        c.handshake()
        c.echo(OP_TEXT, "after the churn")
    finally:
        problem = s.stop()
        if problem:
            raise TestFailure(problem)


# ---------------------------------------------------------------- TLS churn

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def tls_cycle(port, ctx, kind, rng):
    """One connection to the TLS port. kind 0: reset after a random prefix of a real
    ClientHello; 1: reset in the middle of the handshake (after our second flight
    started); 2: reset after the handshake, in the middle of the upgrade request;
    3: a whole session (upgrade, echo, close). Returns True if a session's echo came."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # SO_LINGER 0: close() sends an RST instead of a FIN.
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")

    def pump():
        data = outgoing.read()
        if data:
            raw.sendall(data)
        return data

    try:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
        if kind == 0:
            raw.sendall(hello[:rng.randrange(1, len(hello))])
            return False
        raw.sendall(hello)
        done = False
        while not done:
            incoming.write(raw.recv(65536) or b"")
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                pass
            # Our next flight, cut short for kind 1: with TLS 1.2 the key exchange, with
            # TLS 1.3 (where our side is done once the server's flight is read) the
            # Finished.
            data = outgoing.read()
            if kind == 1 and data:
                raw.sendall(data[:rng.randrange(1, len(data))])
                return False
            if data:
                raw.sendall(data)
        pump()
        request = (b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")
        if kind == 2:
            tls.write(request[:rng.randrange(1, len(request))])
            pump()
            return False
        tls.write(request + build_frame(OP_TEXT, b"tls churn") +
                  build_frame(OP_CLOSE, struct.pack("!H", 1000)))
        pump()
        got = b""
        while b"tls churn" not in got or b"\x88\x02\x03\xe8" not in got:
            data = raw.recv(65536)
            check(data, "TLS session: the server closed before its echo and close frame")
            incoming.write(data)
            try:
                while True:
                    chunk = tls.read(65536)
                    if not chunk:
                        break
                    got += chunk
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
        return True
    finally:
        raw.close()


def tls_churn(_):
    certs = tempfile.mkdtemp(prefix="wsev-tls-churn-")
    subprocess.run([os.path.join(ROOT, "scripts", "make-cert.sh"), certs], check=True)
    s = Server(ECHO, "--tls-port", "0", "--cert", os.path.join(certs, "localhost.crt"),
               "--key", os.path.join(certs, "localhost.key"), name="wsev-echo (TLS churn)",
               want_tls=True)
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    rng = random.Random(6455)
    try:
        pid = server_pid(s)

        def run(n):
            kinds = [i % 4 for i in range(n)]
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                seeds = [rng.randrange(1 << 30) for _ in kinds]
                return list(pool.map(lambda a: tls_cycle(s.tls_port, ctx, a[0], random.Random(a[1])),
                                     zip(kinds, seeds)))

        run(200)  # warm-up: buffers and pools at their working size
        fds0 = settled_fd_count(pid)
        rss0 = proc_status(pid, "VmRSS")
        start = time.monotonic()
        results = run(2000)
        elapsed = time.monotonic() - start
        deadline = time.monotonic() + 5 * s.slow
        while fd_count(pid) != fds0 and time.monotonic() < deadline:
            time.sleep(0.05)  # resets are seen by the server a little later
        rss1, fds1 = proc_status(pid, "VmRSS"), fd_count(pid)
        print("  2000 TLS cycles (500 each: reset in the ClientHello, in the handshake, in "
              "the upgrade request, whole sessions: %d echoed) in %.1f s; server RSS %d kB "
              "-> %d kB, fds %d -> %d" % (sum(results), elapsed, rss0, rss1, fds0, fds1),
              flush=True)
        check(sum(results) == 500, "only %d of 500 whole sessions echoed" % sum(results))
        check(fds1 == fds0, "descriptors leaked: %d -> %d" % (fds0, fds1))
        check(SANITIZED or rss1 - rss0 < 2048, "memory not back: %d kB -> %d kB" % (rss0, rss1))
        c = s.connect()
        c.handshake()
        c.echo(OP_TEXT, "plain ws after the TLS churn")
    finally:
        problem = s.stop()
        subprocess.run(["rm", "-rf", certs])
        if problem:
            raise TestFailure(problem)


def main():
    r = Runner("wsev limits")
    keep = Server(ECHO, "--ping-interval", "200", "--ping-timeout", "300",
                  name="wsev-echo (keepalive)")
    r.run("keepalive-silent-peer-dropped", keepalive_silent_peer_dropped, keep)
    r.run("keepalive-answering-peer-kept", keepalive_answering_peer_kept, keep)
    r.run("keepalive-busy-peer-not-pinged", keepalive_busy_peer_not_pinged, None)
    r.record("keepalive-server-clean-exit", keep.stop())
    hs = Server(ECHO, "--handshake-timeout", "300", name="wsev-echo (handshake 300 ms)")
    r.run("handshake-deadline", handshake_deadline, hs)
    r.record("handshake-server-clean-exit", hs.stop())
    mc = Server(ECHO, "--max-connections", "3", name="wsev-echo (max 3)")
    r.run("max-connections-503", max_connections, mc)
    r.run("half-closed-peer-gets-echo-then-fin", half_closed_peer, mc)
    r.record("max-connections-server-clean-exit", mc.stop())
    r.run("close-deadline", close_deadline, None)
    r.run("graceful-shutdown", graceful_shutdown, None)
    r.run("slow-consumer-1008-bounded-memory", slow_consumer, None)
    r.run("fd-exhaustion-no-spin-recovers", fd_exhaustion, None)
    r.run("churn-100000-no-leak", churn, None)
    r.run("tls-churn-resets-mid-handshake-no-leak", tls_churn, None)
    sys.exit(r.finish())


if __name__ == "__main__":
    main()
