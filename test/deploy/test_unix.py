#!/usr/bin/python3
"""wsev on Unix domain sockets: wsev-echo --unix and wsev-client's ws+unix: URLs.

Usage: test_unix.py PATH/TO/wsev-echo PATH/TO/wsev-client

- wsev-echo --unix PATH: Python websockets (unix_connect) and raw frames echo; the
  socket file exists while it serves and is gone after SIGTERM (with a client still
  connected, which gets 1001); --log-connections names the peer "unix:PATH".
- What is at PATH before: a stale socket file (bound, closed, never unlinked) is
  replaced; a live one (someone listening) makes wsev-echo fail with "address already
  in use" and is left working; a regular file makes it fail and is left intact; a path
  too long for sun_path is refused.
- --unix-mode gives the socket file those permission bits.
- wsev-client "ws+unix:PATH:/request-path" echoes through wsev-echo; against a Python
  websockets server on a Unix socket the request path (default "/") and the Host
  header ("localhost") are as documented, and "wss+unix:" does TLS over the socket.
"""

import asyncio
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "client"))

import websockets  # noqa: E402
from proxies import (OpenLog, make_certs, raw_echo_cases, run_async, unix_conn,  # noqa: E402
                     ws_echo_cases, ws_options)
from clienttest import Client  # noqa: E402
from wsevtest import OP_TEXT, Runner, Server, TestFailure, check  # noqa: E402

if len(sys.argv) < 3:
    sys.stderr.write("usage: %s PATH/TO/wsev-echo PATH/TO/wsev-client\n" % sys.argv[0])
    sys.exit(2)
EXE, CLIENT = sys.argv[1], sys.argv[2]
R = Runner("deploy-unix")
TMP = tempfile.mkdtemp(prefix="wsev-deploy-unix.")
RUNNING = []


def sock_path(name):
    return os.path.join(TMP, name)


def start_echo(path, *args):
    """wsev-echo 0 --unix path ARGS, once it has said it listens there."""
    s = Server(EXE, "--unix", path, *args, name="wsev-echo --unix")
    RUNNING.append(s)
    want = "wsev-echo listening on unix %s" % path
    deadline = time.monotonic() + 5
    while want not in s.lines:
        if time.monotonic() > deadline:
            raise TestFailure("no %r line (stdout: %r)" % (want, s.lines[:5]))
        time.sleep(0.02)
    return s


def stop(server):
    RUNNING.remove(server)
    return server.stop()


def is_socket(path):
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def echo_fails(path, *args):
    """Run wsev-echo 0 --unix path ARGS expecting it to refuse to start: its stderr."""
    try:
        r = subprocess.run([EXE, "0", "--unix", path] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        raise TestFailure("wsev-echo --unix %s kept running (expected it to fail)" % path)
    check(r.returncode not in (0, 2), "wsev-echo --unix %s exited with %d (expected a "
          "failure to listen, not success or a usage error): %s"
          % (path, r.returncode, r.stderr.strip()))
    check("listening on unix" not in r.stdout, "it said it listens: %r" % r.stdout)
    return r.stderr


# =========================================================================== server side

def serves_and_cleans_up():
    path = sock_path("echo.sock")
    s = start_echo(path, "--log-connections")
    check(is_socket(path), "%s is not a socket while wsev-echo serves" % path)
    log = OpenLog(s)
    raw_echo_cases(R, "unix", lambda: unix_conn(path))
    ws_echo_cases(R, "unix", lambda: websockets.unix_connect(path, "ws://localhost/",
                                                             **ws_options()))

    def logged():
        log.mark()
        c = unix_conn(path).handshake()
        c.echo(OP_TEXT, b"who")
        cid, client, peer = log.next_open()
        check(peer == "unix:" + path, "peer is %r, expected %r" % (peer, "unix:" + path))
        check(client == peer, "client %r differs from peer %r" % (client, peer))
        c.close()
        deadline = time.monotonic() + 5
        while "closed %d" % cid not in s.lines:
            check(time.monotonic() < deadline, "no 'closed %d' line" % cid)
            time.sleep(0.02)
    R.run("unix --log-connections names peer unix:PATH", logged)

    # SIGTERM with a client still there: it gets 1001, and the file goes.
    async def shutdown():
        async with websockets.unix_connect(path, "ws://localhost/", **ws_options()) as ws:
            await ws.send("hi")
            check(await asyncio.wait_for(ws.recv(), 5) == "hi", "no echo")
            problem = await asyncio.get_running_loop().run_in_executor(None, stop, s)
            check(problem is None, problem or "")
            await asyncio.wait_for(ws.wait_closed(), 5)
            check(ws.close_code == 1001, "close code on shutdown %r, expected 1001"
                  % ws.close_code)
        check(not os.path.lexists(path), "%s is still there after wsev-echo exited" % path)
    R.run("unix socket file removed on SIGTERM, client gets 1001", run_async, shutdown, 20)


def stale_socket_replaced():
    path = sock_path("stale.sock")
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(path)
    old.close()  # left behind, as by a process that crashed
    check(is_socket(path), "test setup: no stale socket file")
    s = start_echo(path)
    c = unix_conn(path).handshake()
    c.echo(OP_TEXT, b"over a replaced stale socket")
    c.close()
    check(stop(s) is None, "wsev-echo did not exit cleanly")
    check(not os.path.lexists(path), "socket file left after exit")


def live_socket_kept():
    path = sock_path("live.sock")
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        other.bind(path)
        other.listen(4)
        err = echo_fails(path)
        check("address already in use" in err.lower(),
              "expected 'address already in use' on stderr, got %r" % err.strip())
        check(is_socket(path), "the live socket file was removed")
        # Still the other listener's: a connection reaches it.
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(2)
        c.connect(path)
        other.settimeout(2)
        a, _ = other.accept()
        a.close()
        c.close()
    finally:
        other.close()
        if os.path.lexists(path):
            os.unlink(path)


def regular_file_kept():
    path = sock_path("precious.txt")
    with open(path, "w") as f:
        f.write("do not delete me\n")
    err = echo_fails(path)
    check(err.strip(), "no message on stderr")
    with open(path) as f:
        check(f.read() == "do not delete me\n", "the regular file was changed")


def path_too_long():
    path = os.path.join(TMP, "x" * 120 + ".sock")
    err = echo_fails(path)
    check(err.strip(), "no message on stderr")
    check(not os.path.lexists(path), "a file was made at the too-long path")


def unix_mode(mode):
    path = sock_path("mode%o.sock" % mode)
    s = start_echo(path, "--unix-mode", "%o" % mode)
    got = stat.S_IMODE(os.lstat(path).st_mode)
    check(got == mode, "socket file mode %o, expected %o" % (got, mode))
    c = unix_conn(path).handshake()
    c.echo(OP_TEXT, b"mode")
    c.close()
    check(stop(s) is None, "wsev-echo did not exit cleanly")


# =========================================================================== client side

def client_run(url, lines, *args):
    """wsev-client URL ARGS (test/client's Client): each line sent must come back as
    is, then the end of stdin closes with 1000 and it exits 0. Its stderr."""
    c = Client(CLIENT, url, *args)
    try:
        c.wait_connected()
        for line in lines:
            c.send(line)
            c.expect(line, timeout=10)
        c.finish(0, "closed 1000")
        return c.stderr_text()
    finally:
        c.kill()


def client_echo():
    path = sock_path("client-echo.sock")
    s = start_echo(path, "--log-connections")
    log = OpenLog(s)
    client_run("ws+unix:%s:/some/path" % path,
               ["hello over ws+unix", "\u20ac" * 100, "x" * 70000])
    _, _, peer = log.next_open()
    check(peer == "unix:" + path, "wsev-echo saw peer %r" % peer)
    check(stop(s) is None, "wsev-echo did not exit cleanly")


class PyServer:
    """A Python websockets server on a Unix socket that records each request's path and
    Host header and echoes."""

    def __init__(self, path, tls=None):
        self.path, self.tls, self.requests = path, tls, []

    async def handler(self, ws, path):
        self.requests.append((path, ws.request_headers.get("Host")))
        try:
            async for msg in ws:
                await ws.send(msg)
        except websockets.exceptions.ConnectionClosed:
            pass

    async def run_client(self, url, lines, *args):
        kw = {}
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            kw["ssl"] = ctx
        async with websockets.unix_serve(self.handler, self.path, **kw):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, lambda: client_run(url, lines, *args))


def client_request_path(suffix, want_path):
    path = sock_path("py%d.sock" % len(suffix))
    srv = PyServer(path)

    async def run():
        await srv.run_client("ws+unix:%s%s" % (path, suffix), ["ping"])
    run_async(run, 20)
    check(srv.requests == [(want_path, "localhost")],
          "request (path, Host) %r, expected %r" % (srv.requests, [(want_path, "localhost")]))


def client_wss_unix(ca, crt, key):
    path = sock_path("tls.sock")
    srv = PyServer(path, tls=(crt, key))

    async def run():
        await srv.run_client("wss+unix:%s:/secure" % path, ["over TLS on a Unix socket"],
                             "--ca", ca)
    run_async(run, 20)
    check(srv.requests == [("/secure", "localhost")], "requests %r" % srv.requests)


def main():
    try:
        serves_and_cleans_up()
    except TestFailure as e:
        R.record("wsev-echo --unix starts", str(e))
    R.run("unix stale socket file replaced", stale_socket_replaced)
    R.run("unix live socket: address already in use, left working", live_socket_kept)
    R.run("unix regular file at the path: refused, left intact", regular_file_kept)
    R.run("unix path longer than sun_path refused", path_too_long)
    for mode in (0o600, 0o660):
        R.run("unix --unix-mode %o" % mode, unix_mode, mode)
    R.run("wsev-client ws+unix: echoes through wsev-echo --unix", client_echo)
    R.run("wsev-client ws+unix:PATH:/a/b?c=d sends that path, Host localhost",
          client_request_path, ":/a/b?c=d", "/a/b?c=d")
    R.run("wsev-client ws+unix:PATH without a request path sends /", client_request_path,
          "", "/")
    ca, crt, key = make_certs(os.path.join(TMP, "certs"))
    R.run("wsev-client wss+unix: TLS over a Unix socket", client_wss_unix, ca, crt, key)


if __name__ == "__main__":
    try:
        main()
    finally:
        for thing in reversed(RUNNING):
            thing.stop()
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(R.finish())
