#!/usr/bin/python3
"""Certificates replaced without a restart (SIGHUP) and chosen by SNI, on wsev-echo.

usage: test_rotation.py PATH/TO/wsev-echo [PATH/TO/wsev-pubsub]

- rotation: wsev-echo --tls-port 0 --cert LIVE --key LIVE serving pair A; 100 wss
  clients (Python websockets) connect and stay; the files are replaced by pair B (a new
  key, the same name, the same CA) and SIGHUP sent while other clients keep connecting.
  After "certificates reloaded" every new handshake presents B (openssl s_client and
  Python ssl, compared by SHA-256 fingerprint, several times so that with I/O threads
  each thread is seen), every connection made during the reload succeeded, none of the
  100 was dropped (each echoes after), and a session ticket s_client got before the
  reload still resumes ("Reused").
- bad pairs: a mismatched key and then a missing key file make the reload fail ("reload
  failed" on stderr, with the reason) and the old certificate stays; a good pair after
  that takes effect.
- SNI: --cert (default, localhost) and --sni-cert/--sni-key for a.test and b.test:
  s_client -servername a.test / b.test gets theirs, verified for that name; an unknown
  name and no SNI get the default; their session tickets resume (TLS 1.2 and the best
  version); a reload that renews a.test's pair keeps the others, and the tickets.
- pubsub: wsev-pubsub reloads its --cert/--key on SIGHUP the same way.

Certificates come from scripts/make-cert.sh --leaf into a temporary directory. Every
wait is bounded; servers are stopped at the end (and must exit cleanly). Prints
PASS/FAIL per case and "N passed, N failed".
"""

import asyncio
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import websockets  # noqa: E402
from wsevtest import (OP_CLOSE, Runner, Server, TestFailure, build_frame, check,  # noqa: E402
                      short)

if len(sys.argv) < 2:
    sys.stderr.write("usage: %s PATH/TO/wsev-echo\n" % sys.argv[0])
    sys.exit(2)
EXE = sys.argv[1]
PUBSUB = sys.argv[2] if len(sys.argv) > 2 else None
MAKE_CERT = os.path.join(HERE, "..", "..", "scripts", "make-cert.sh")
SLOW = 6.0 if shlex.split(os.environ.get("WSEV_SERVER_WRAP", "")) else 1.0
R = Runner("deploy-rotation")
TMP = tempfile.mkdtemp(prefix="wsev-rotation.")
RUNNING = []
# Handshakes probed after a change: with I/O threads each lands on one of them.
PROBES = 4


def f(name, ext="crt"):
    return os.path.join(TMP, "%s.%s" % (name, ext))


def make_certs():
    """The CA and localhost (the default), pairs A, B and C for localhost (each its own
    key), a.test twice (the second a renewal) and b.test."""
    leaves = [("pair-a", "localhost"), ("pair-b", "localhost"), ("pair-c", "localhost"),
              ("a", "a.test"), ("a-renewed", "a.test"), ("b", "b.test")]
    for cmd in [[TMP]] + [[TMP, "--leaf", name, dns] for name, dns in leaves]:
        r = subprocess.run(["bash", MAKE_CERT] + cmd, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "make-cert.sh %s failed: %s" % (" ".join(cmd), r.stderr))


def fp_der(der):
    return hashlib.sha256(der).hexdigest()


def fp_file(name):
    """The SHA-256 fingerprint of a certificate file's (first) certificate."""
    with open(f(name)) as fh:
        return fp_der(ssl.PEM_cert_to_DER_cert(fh.read()))


def names_by_fp():
    return {fp_file(n): n for n in ("localhost", "pair-a", "pair-b", "pair-c", "a",
                                    "a-renewed", "b")}


def install(src, dst):
    """Put pair src in place of pair dst, each file replaced at once (rename)."""
    for ext in ("crt", "key"):
        shutil.copyfile(f(src, ext), f(dst, ext) + ".new")
        os.replace(f(dst, ext) + ".new", f(dst, ext))


class Echo(Server):
    """wsev-echo whose stderr lines are kept, to wait for what a reload said."""

    def __init__(self, *args, exe=None, **kwargs):
        self.err_lines = []
        super().__init__(exe or EXE, *args, want_tls=True, **kwargs)
        RUNNING.append(self)

    def _read_stderr(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sys.stderr.write("[%s] %s\n" % (self.name, line))
            sys.stderr.flush()
            if len(self.err_lines) < 1000:
                self.err_lines.append(line)
            if ("runtime error:" in line or "Sanitizer" in line) and \
                    len(self.sanitizer_reports) < 20:
                self.sanitizer_reports.append(line)

    def count(self, text):
        return sum(text in line for line in self.err_lines)

    def reload(self, expect):
        """SIGHUP, then wait for the next stderr line saying `expect` ("certificates
        reloaded" or "reload failed"): that line."""
        before = self.count(expect)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10 * SLOW
        while self.count(expect) == before:
            check(self.proc.poll() is None, "%s ended after SIGHUP" % self.name)
            if time.monotonic() > deadline:
                raise TestFailure("no %r on stderr within %.0f s after SIGHUP (stderr: %r)"
                                  % (expect, 10 * SLOW, self.err_lines[-5:]))
            time.sleep(0.01)
        return [line for line in self.err_lines if expect in line][-1]

    def finish(self):
        RUNNING.remove(self)
        problem = self.stop()
        check(problem is None, problem or "")


# --------------------------------------------------------------------------- TLS peers

def s_client(port, servername="localhost", *args, request=False):
    """openssl s_client to the TLS port (servername None: no SNI). With request, a
    WebSocket upgrade and a close frame go in, and s_client reads until the server
    closes (so that a TLS 1.3 session ticket has come by then). (exit status,
    stdout, description for messages)."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", f("ca")]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    cmd += list(args)
    stdin = b""
    if request:
        cmd.append("-ign_eof")
        stdin = (b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n"
                 + build_frame(OP_CLOSE, struct.pack("!H", 1000)))
    try:
        p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=15 * SLOW)
    except subprocess.TimeoutExpired as e:
        raise TestFailure("%s did not finish (stdout %s)" % (" ".join(cmd), short(e.stdout, 300)))
    what = "%s\nstdout: %s\nstderr: %s" % (" ".join(cmd), short(p.stdout, 2000),
                                          p.stderr.decode("utf-8", "replace")[:1000])
    return p.returncode, p.stdout.decode("latin-1"), what


def presented(port, servername="localhost", verify=True):
    """The fingerprint of the certificate a new handshake gets, as s_client shows it
    (verified against the CA and, with verify, the name)."""
    args = ["-verify_return_error"] + (["-verify_hostname", servername] if verify else [])
    rc, out, what = s_client(port, servername, *args)
    check(rc == 0, "s_client exit status %d: %s" % (rc, what))
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    check(m, "no certificate in s_client's output: %s" % what)
    return fp_der(ssl.PEM_cert_to_DER_cert(m.group(0)))


def python_presented(port, server_hostname="localhost"):
    """The same with Python's ssl (verified, host name checked)."""
    ctx = ssl.create_default_context(cafile=f("ca"))
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as s:
            return fp_der(s.getpeercert(binary_form=True))


def expect_presented(port, want, servername="localhost", verify=True, python=True):
    names = names_by_fp()
    for i in range(PROBES):
        got = presented(port, servername, verify)
        check(got == fp_file(want), "s_client -servername %s: handshake %d got %s, expected %s"
              % (servername, i + 1, names.get(got, got), want))
        if python and servername:
            got = python_presented(port, servername)
            check(got == fp_file(want), "Python ssl (%s): handshake %d got %s, expected %s"
                  % (servername, i + 1, names.get(got, got), want))


def save_session(port, path, servername="localhost", *args):
    rc, out, what = s_client(port, servername, "-sess_out", path, *args, request=True)
    check(rc == 0 and re.search(r"^New, TLSv1\.[23]", out, re.M), "s_client: %s" % what)
    check("HTTP/1.1 101" in out, "no 101 answer: %s" % what)
    check(os.path.getsize(path) > 0, "s_client wrote no session")


def expect_resumed(port, path, servername="localhost", *args):
    rc, out, what = s_client(port, servername, "-sess_in", path, *args, request=True)
    check(rc == 0 and "HTTP/1.1 101" in out, "s_client: %s" % what)
    check(re.search(r"^Reused, TLSv1\.[23]", out, re.M),
          "the session was not resumed: %s" % what)


# --------------------------------------------------------------------------- websockets

def client_ctx():
    ctx = ssl.create_default_context(cafile=f("ca"))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def wss(port):
    return websockets.connect("wss://127.0.0.1:%d/" % port, ssl=client_ctx(),
                              server_hostname="localhost", compression=None,
                              ping_interval=None, open_timeout=20 * SLOW,
                              close_timeout=10 * SLOW)


def peer_fp(ws):
    return fp_der(ws.transport.get_extra_info("ssl_object").getpeercert(binary_form=True))


async def echo(ws, msg):
    await ws.send(msg)
    try:
        got = await asyncio.wait_for(ws.recv(), 10 * SLOW)
    except asyncio.TimeoutError:
        raise TestFailure("no echo of %r within %.0f s" % (msg, 10 * SLOW))
    check(got == msg, "sent %r, got back %r" % (msg, got))


def run_async(coro_fn, timeout=90):
    async def bounded():
        try:
            await asyncio.wait_for(coro_fn(), timeout * SLOW)
        except asyncio.TimeoutError:
            raise TestFailure("case did not finish within %.0f s" % (timeout * SLOW))
        except websockets.exceptions.ConnectionClosed as e:
            raise TestFailure("a connection was closed: %r (code %r)" % (e, e.code))
    asyncio.run(bounded())


# =========================================================================== cases

async def c_rotation():
    install("pair-a", "live")
    srv = Echo("--tls-port", "0", "--cert", f("live"), "--key", f("live", "key"))
    port = srv.tls_port
    loop = asyncio.get_running_loop()

    def blocking(fn, *args):  # s_client and Python ssl off the loop the clients are on
        return loop.run_in_executor(None, fn, *args)

    await blocking(expect_presented, port, "pair-a")
    session = os.path.join(TMP, "before-reload.sess")
    await blocking(save_session, port, session)

    clients = []
    try:
        await rotate(srv, port, clients, session, blocking)
    finally:
        for ws in clients:  # after a failure: gone at once, not after close timeouts
            ws.transport.abort()
    srv.finish()


async def rotate(srv, port, clients, session, blocking):
    for batch in range(5):
        clients += await asyncio.gather(*(wss(port) for _ in range(20)))
    for i, ws in enumerate(clients):
        check(peer_fp(ws) == fp_file("pair-a"), "client %d did not get pair A" % i)
        await echo(ws, "before %d" % i)

    # Clients that keep connecting (each: handshake, echo, close) across the reload.
    churn = []  # (started, ended, certificate, error)
    stop_churn = asyncio.Event()

    async def churner():
        while not stop_churn.is_set():
            started = time.monotonic()
            try:
                async with wss(port) as ws:
                    await echo(ws, "churn")
                    churn.append((started, time.monotonic(), peer_fp(ws), None))
            except Exception as e:  # noqa: BLE001 - any failure is reported below
                churn.append((started, time.monotonic(), None, repr(e)))

    tasks = [asyncio.ensure_future(churner()) for _ in range(2)]
    await asyncio.sleep(0.3)
    install("pair-b", "live")
    hup = time.monotonic()
    line = await blocking(srv.reload, "certificates reloaded")
    reloaded = time.monotonic()
    # Let the churn go on until some connections began after the reload.
    deadline = reloaded + 20 * SLOW
    while sum(c[0] > reloaded for c in churn) < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop_churn.set()
    await asyncio.gather(*tasks)

    failed = [c for c in churn if c[3]]
    check(not failed, "%d of %d connections during the reload failed, e.g. %s"
          % (len(failed), len(churn), failed[0][3] if failed else ""))
    check(any(c[0] < hup for c in churn) and sum(c[0] > reloaded for c in churn) >= 10,
          "the churn did not span the reload (%d connections)" % len(churn))
    stale = [c for c in churn if c[0] > reloaded and c[2] != fp_file("pair-b")]
    check(not stale, "%d connections begun after %r did not get pair B" % (len(stale), line))

    await blocking(expect_presented, port, "pair-b")
    for i, ws in enumerate(clients):
        await echo(ws, "after %d" % i)
    await blocking(expect_resumed, port, session)
    await asyncio.gather(*(ws.close() for ws in clients))
    check(all(ws.close_code == 1000 for ws in clients), "a client's close was not 1000")


def c_bad_pairs():
    install("pair-a", "live2")
    srv = Echo("--tls-port", "0", "--cert", f("live2"), "--key", f("live2", "key"))
    port = srv.tls_port
    expect_presented(port, "pair-a", python=False)
    # B's certificate with C's key.
    shutil.copyfile(f("pair-b"), f("live2"))
    shutil.copyfile(f("pair-c", "key"), f("live2", "key"))
    line = srv.reload("reload failed")
    check("does not match" in line, "the failure does not say why: %r" % line)
    expect_presented(port, "pair-a")
    # B's pair, but the key file gone.
    shutil.copyfile(f("pair-b", "key"), f("live2", "key"))
    os.remove(f("live2", "key"))
    line = srv.reload("reload failed")
    check("private key" in line, "the failure does not say why: %r" % line)
    expect_presented(port, "pair-a")
    check(srv.count("certificates reloaded") == 0, "a bad pair was reported reloaded")
    # A good pair takes effect.
    install("pair-c", "live2")
    srv.reload("certificates reloaded")
    expect_presented(port, "pair-c")
    srv.finish()


def c_sni():
    for name in ("localhost", "a", "b"):
        install(name, "sni-" + name)
    srv = Echo("--tls-port", "0", "--cert", f("sni-localhost"), "--key", f("sni-localhost", "key"),
               "--sni-cert", f("sni-a"), "--sni-key", f("sni-a", "key"),
               "--sni-cert", f("sni-b"), "--sni-key", f("sni-b", "key"))
    port = srv.tls_port
    expect_presented(port, "a", "a.test")
    expect_presented(port, "b", "b.test")
    expect_presented(port, "localhost", "localhost")
    expect_presented(port, "localhost", "unknown.test", verify=False, python=False)
    expect_presented(port, "localhost", None, verify=False)
    # Tickets issued under a certificate SNI chose resume (with TLS 1.2 too, where the
    # name is part of the session), also after a reload.
    sessions = [(os.path.join(TMP, "sni-%d.sess" % i), name, args)
                for i, (name, args) in enumerate([("a.test", []), ("a.test", ["-tls1_2"]),
                                                  ("b.test", ["-tls1_2"])])]
    for path, name, args in sessions:
        save_session(port, path, name, *args)
        expect_resumed(port, path, name, *args)
    # Renewing one of them keeps the rest.
    install("a-renewed", "sni-a")
    srv.reload("certificates reloaded")
    expect_presented(port, "a-renewed", "a.test")
    expect_presented(port, "b", "b.test")
    expect_presented(port, "localhost", None, verify=False)
    for path, name, args in sessions:
        expect_resumed(port, path, name, *args)
    srv.finish()


def c_pubsub():
    install("pair-a", "live3")
    srv = Echo("--tls-port", "0", "--cert", f("live3"), "--key", f("live3", "key"), "--quiet",
               exe=PUBSUB, name="wsev-pubsub", port_args=("--port", "0"))
    expect_presented(srv.tls_port, "pair-a")
    install("pair-b", "live3")
    srv.reload("certificates reloaded")
    expect_presented(srv.tls_port, "pair-b")
    srv.finish()


def main():
    try:
        R.run("make certificates", make_certs)
        if R.failed == 0:
            R.run("rotation: 100 clients stay, new handshakes get B, the ticket resumes",
                  run_async, c_rotation)
            R.run("bad pairs are refused and the old one stays", c_bad_pairs)
            R.run("SNI: a.test, b.test, unknown and none", c_sni)
            if PUBSUB:
                R.run("wsev-pubsub reloads on SIGHUP", c_pubsub)
    finally:
        for srv in list(RUNNING):
            RUNNING.remove(srv)
            srv.stop()
        shutil.rmtree(TMP, ignore_errors=True)
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
