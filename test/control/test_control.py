"""Application control against real clients (Python websockets, raw sockets,
http.client): origin policy, subprotocol negotiation, deferred upgrades, close codes
and reasons on both sides, per-connection data, connection info, plain HTTP (/health,
/stats), graceful shutdown on SIGINT. The server is the wsev-control sample
(sample/control.c), which prints one line per event.

usage: test_control.py PATH/TO/wsev-control
"""

import asyncio
import http.client
import json
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from wsevtest import OP_TEXT, Runner, Server, TestFailure, build_frame, check  # noqa: E402

import websockets  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatusCode  # noqa: E402

EXE = sys.argv[1]


def wait_line(server, pattern, timeout=3.0, start=0):
    """The first stdout line from index `start` on matching `pattern`."""
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while True:
        for line in server.lines[start:]:
            m = rx.search(line)
            if m:
                return m
        if time.monotonic() > deadline:
            raise TestFailure("no line matching %r in %r" % (pattern, server.lines[start:][-10:]))
        time.sleep(0.01)


def no_line(server, pattern, wait=0.3, start=0):
    time.sleep(wait)
    for line in server.lines[start:]:
        check(not re.search(pattern, line), "unexpected line %r" % line)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def uri(s, path="/"):
    return "ws://127.0.0.1:%d%s" % (s.port, path)


async def expect_status(url, status, **kw):
    try:
        async with websockets.connect(url, **kw):
            pass
    except InvalidStatusCode as e:
        check(e.status_code == status, "got %d, expected %d" % (e.status_code, status))
        return
    raise TestFailure("the upgrade to %s was accepted, expected %d" % (url, status))


# ---------------------------------------------------------------- origins

def origins_list(s):
    mark = len(s.lines)

    async def go():
        async with websockets.connect(uri(s), origin="https://good.example") as ws:
            await ws.send("hi")
            check(await ws.recv() == "hi", "echo")
        async with websockets.connect(uri(s)) as ws:  # no Origin: not a browser
            await ws.send("hi")
            check(await ws.recv() == "hi", "echo without origin")
        await expect_status(uri(s, "/evil"), 403, origin="https://evil.example")
        await expect_status(uri(s, "/evil"), 403, origin="https://good.example:444")
    run(go())
    # Refused by the policy before the application is asked.
    no_line(s, r"upgrade \d+ path=/evil", start=mark)


def origins_same_host(s):
    async def go():
        async with websockets.connect(uri(s), origin="http://127.0.0.1:%d" % s.port) as ws:
            await ws.send("same")
            check(await ws.recv() == "same", "echo")
        await expect_status(uri(s), 403, origin="http://other.example:%d" % s.port)
        await expect_status(uri(s), 403, origin="http://127.0.0.1:1")
    run(go())


# ---------------------------------------------------------------- subprotocols

def subprotocols(s):
    async def go():
        async with websockets.connect(uri(s)) as ws:
            check(ws.subprotocol is None, "none offered: got %r" % ws.subprotocol)
        async with websockets.connect(uri(s), subprotocols=["chat.v1"]) as ws:
            check(ws.subprotocol == "chat.v1", "one offered: got %r" % ws.subprotocol)
            await ws.send("info")
            info = await ws.recv()
            check(info == "path=/ protocol=chat.v1", "conn info says %r" % info)
        async with websockets.connect(uri(s), subprotocols=["chat.v1", "chat.v2"]) as ws:
            # the server's preference wins: chat.v2
            check(ws.subprotocol == "chat.v2", "both offered: got %r" % ws.subprotocol)
        async with websockets.connect(uri(s), subprotocols=["mqtt"]) as ws:
            check(ws.subprotocol is None, "none matches: got %r" % ws.subprotocol)
    run(go())


# ---------------------------------------------------------------- upgrade decisions

def upgrade_decisions(s):
    mark = len(s.lines)

    async def go():
        await expect_status(uri(s, "/reject"), 403)
        async with websockets.connect(uri(s, "/defer-accept"), subprotocols=["chat.v1"]) as ws:
            check(ws.subprotocol == "chat.v1", "deferred accept protocol %r" % ws.subprotocol)
            await ws.send("after defer")
            check(await ws.recv() == "after defer", "echo after a deferred accept")
        await expect_status(uri(s, "/defer-reject"), 401)
        t = time.monotonic()
        await expect_status(uri(s, "/defer-never"), 503)
        took = time.monotonic() - t
        check(0.25 <= took < 3, "deferred upgrade timed out after %.2f s (deadline 0.3 s)" % took)
    run(go())
    m = wait_line(s, r"upgrade (\d+) path=/reject", start=mark)
    no_line(s, r"accepted %s " % m.group(1), wait=0.1, start=mark)
    m = wait_line(s, r"upgrade (\d+) path=/defer-never", start=mark)
    no_line(s, r"(accepted|closed) %s " % m.group(1), wait=0.1, start=mark)


def deferred_answered_from_callback(s):
    """A deferred upgrade answered from inside another connection's message_received."""
    mark = len(s.lines)

    async def go():
        admin = await websockets.connect(uri(s, "/admin"))
        waiting = asyncio.ensure_future(websockets.connect(uri(s, "/defer-message")))
        m = None
        for _ in range(200):
            m = next((re.search(r"upgrade (\d+) path=/defer-message", l)
                      for l in s.lines[mark:] if "path=/defer-message" in l), None)
            if m:
                break
            await asyncio.sleep(0.01)
        check(m is not None, "the deferred upgrade never reached the server")
        await admin.send("approve:%s" % m.group(1))
        check(await admin.recv() == "approved rc=0", "wsev_accept from a callback failed")
        ws = await waiting
        await ws.send("approved")
        check(await ws.recv() == "approved", "echo on the approved connection")
        await admin.send("approve:%s" % m.group(1))  # twice: no longer pending
        check((await admin.recv()).startswith("approved rc=-"), "a second accept must fail")
        await ws.close()
        await admin.close()
    run(go())


def deferred_frames_kept(s):
    """Frames sent right behind the request wait while the decision is pending."""
    c = s.connect()
    c.send(c.request(path="/defer-accept") + build_frame(OP_TEXT, b"early bird"))
    status, _ = c.read_response()
    check(status.startswith("HTTP/1.1 101"), "got %r" % status)
    c.expect_echo(OP_TEXT, b"early bird")


# ---------------------------------------------------------------- closes

def close_peer_initiated(s):
    mark = len(s.lines)

    async def go():
        ws = await websockets.connect(uri(s, "/p"))
        await ws.send("x")
        await ws.recv()
        await ws.close(code=4001, reason="bye from client")
        check(ws.close_code == 4001, "server echoed %r" % ws.close_code)
    run(go())
    m = wait_line(s, r"accepted (\d+) path=/p ", start=mark)
    cid = m.group(1)
    wait_line(s, r"data-ok %s$" % cid, start=mark)
    wait_line(s, r"closed %s code=4001 by_peer=1 data=tag-%s reason=bye from client$"
              % (cid, cid), start=mark)


def close_server_initiated(s):
    mark = len(s.lines)

    async def go():
        ws = await websockets.connect(uri(s, "/s"))
        await ws.send("close:4002:server says bye")
        try:
            await ws.recv()
            raise TestFailure("a message instead of the close")
        except ConnectionClosed as e:
            check(e.code == 4002 and e.reason == "server says bye",
                  "client saw %r %r" % (e.code, e.reason))
    run(go())
    m = wait_line(s, r"accepted (\d+) path=/s ", start=mark)
    cid = m.group(1)
    wait_line(s, r"close_with %s rc=0" % cid, start=mark)
    wait_line(s, r"closed %s code=4002 by_peer=0 data=tag-%s reason=server says bye$"
              % (cid, cid), start=mark)


def close_abnormal(s):
    mark = len(s.lines)
    c = s.connect()
    c.handshake(path="/abnormal")
    m = wait_line(s, r"accepted (\d+) path=/abnormal ", start=mark)
    c.abort()  # the client is killed: RST, no close frame
    wait_line(s, r"closed %s code=1006 by_peer=1 data=tag-%s reason=$" % (m.group(1), m.group(1)),
              start=mark)


def close_protocol_error(s):
    mark = len(s.lines)
    c = s.connect()
    c.handshake(path="/bad")
    m = wait_line(s, r"accepted (\d+) path=/bad ", start=mark)
    c.send(build_frame(OP_TEXT, b"unmasked", mask=False))
    c.expect_close(1002)
    wait_line(s, r"closed %s code=1002 by_peer=0 data=tag-%s reason=$" % (m.group(1), m.group(1)),
              start=mark)


def close_bad_arguments(s):
    mark = len(s.lines)

    async def go():
        async with websockets.connect(uri(s, "/args")) as ws:
            await ws.send("close:1005:reserved")  # 1005 may not be sent
            await ws.send("close:4000:" + "r" * 124)  # reason over 123 bytes
            await ws.send("ping")
            check(await ws.recv() == "ping", "still open after refused closes")
    run(go())
    m = wait_line(s, r"accepted (\d+) path=/args ", start=mark)
    # The lines were printed before the echo left, but our reader thread may lag.
    deadline = time.monotonic() + 3.0
    while True:
        lines = [l for l in s.lines[mark:] if l.startswith("close_with %s " % m.group(1))]
        if len(lines) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    check(len(lines) == 2 and all(not l.endswith("rc=0") for l in lines),
          "close_with with a bad code or reason: %r" % lines)


# ---------------------------------------------------------------- info and HTTP

def conn_info(s):
    mark = len(s.lines)

    async def go():
        async with websockets.connect(uri(s, "/room/7?user=ann")) as ws:
            await ws.send("info")
            check(await ws.recv() == "path=/room/7?user=ann protocol=-", "info reply")
    run(go())
    m = wait_line(s, r"accepted \d+ path=/room/7\?user=ann protocol=- peer=127\.0\.0\.1 "
                     r"local_port=(\d+) tls=0 client=0", start=mark)
    check(int(m.group(1)) == s.port, "local port %s, server port %d" % (m.group(1), s.port))


def http_requests(s):
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    conn.request("GET", "/health")
    r = conn.getresponse()
    check(r.status == 200 and r.read() == b"ok", "health: %d" % r.status)
    check(r.getheader("Content-Type") == "text/plain", "content type")
    conn.request("GET", "/health")  # kept alive: the same connection again
    r = conn.getresponse()
    check(r.status == 200 and r.read() == b"ok", "second request on the connection")
    conn.request("GET", "/nothing")
    r = conn.getresponse()
    check(r.status == 404, "unanswered request: %d" % r.status)
    r.read()
    conn.request("POST", "/health", body=b"data")
    r = conn.getresponse()
    check(r.status == 413, "request with a body: %d" % r.status)
    conn.close()
    # Pipelined: two requests in one send, two responses in order.
    c = s.connect()
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n"
           b"Connection: close\r\n\r\n")
    data = c.read_all_until_eof()
    check(data.count(b"HTTP/1.1 200 OK") == 2, "pipelined responses: %r" % data[:200])
    check(b"Connection: close" in data, "the last one says it closes")


def stats_now(s):
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    try:
        conn.request("GET", "/stats")
        r = conn.getresponse()
        body = r.read()
        check(r.status == 200, "stats: %d" % r.status)
        check(r.getheader("Content-Type") == "application/json", "stats content type %r"
              % r.getheader("Content-Type"))
        return json.loads(body)
    finally:
        conn.close()


def stats(s):
    """GET /stats: open connections (by subprotocol), accepted, closed, messages."""
    mark = len(s.lines)
    zero = {"open": 0, "accepted": 0, "closed": 0, "messages": 0,
            "protocols": {"chat.v2": 0, "chat.v1": 0, "none": 0}}
    got = stats_now(s)
    check(got == zero, "a new server's stats: %r" % got)

    async def go():
        a = await websockets.connect(uri(s, "/a"), subprotocols=["chat.v1"])
        b = await websockets.connect(uri(s, "/b"), subprotocols=["chat.v1", "chat.v2"])
        c = await websockets.connect(uri(s, "/c"))
        await a.send("one")
        await a.recv()
        await b.send("two")
        await b.recv()
        got = stats_now(s)
        check(got == {"open": 3, "accepted": 3, "closed": 0, "messages": 2,
                      "protocols": {"chat.v2": 1, "chat.v1": 1, "none": 1}},
              "three open: %r" % got)
        await b.close()
        await c.close()
        for path in ("/b", "/c"):
            cid = wait_line(s, r"accepted (\d+) path=%s " % path, start=mark).group(1)
            wait_line(s, r"closed %s " % cid, start=mark)
        got = stats_now(s)
        check(got == {"open": 1, "accepted": 3, "closed": 2, "messages": 2,
                      "protocols": {"chat.v2": 0, "chat.v1": 1, "none": 0}},
              "two closed: %r" % got)
        await a.close()
        cid = wait_line(s, r"accepted (\d+) path=/a ", start=mark).group(1)
        wait_line(s, r"closed %s " % cid, start=mark)
    run(go())
    got = stats_now(s)
    check(got["open"] == 0 and got["closed"] == 3 and got["protocols"]["chat.v1"] == 0,
          "all closed: %r" % got)
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    conn.request("HEAD", "/stats")  # only GET is answered
    r = conn.getresponse()
    r.read()
    check(r.status == 404, "HEAD /stats: %d" % r.status)
    conn.close()


def sigint_shutdown():
    """SIGINT: open connections get a 1001 close and their conn_closed, a deferred
    upgrade still waiting gets 503, and the server frees everything and exits 0."""
    s = Server(EXE, "--port", "0", name="wsev-control (SIGINT)", port_args=())
    try:
        async def go():
            ws = await websockets.connect(uri(s, "/stay"))
            await ws.send("hello")
            check(await ws.recv() == "hello", "echo")
            waiting = asyncio.ensure_future(websockets.connect(uri(s, "/defer-message")))
            for _ in range(int(300 * s.slow)):
                if any("path=/defer-message" in l for l in s.lines):
                    break
                await asyncio.sleep(0.01)
            else:
                raise TestFailure("the deferred upgrade never reached the server")
            s.proc.send_signal(signal.SIGINT)
            try:
                await ws.recv()
                raise TestFailure("a message instead of the close")
            except ConnectionClosed as e:
                check(e.code == 1001, "close code on shutdown: %r" % e.code)
            try:
                await waiting
                raise TestFailure("the deferred upgrade was accepted during shutdown")
            except InvalidStatusCode as e:
                check(e.status_code == 503, "deferred upgrade on shutdown: %d" % e.status_code)
        run(go())
        cid = wait_line(s, r"accepted (\d+) path=/stay ").group(1)
        wait_line(s, r"shutdown on signal %d" % signal.SIGINT)
        wait_line(s, r"closed %s code=1001 by_peer=0 data=tag-%s reason=$" % (cid, cid))
        try:
            rc = s.proc.wait(10 * s.slow)
        except Exception:
            raise TestFailure("still running 10 s after SIGINT")
        check(rc == 0, "exit status %r after SIGINT (expected 0)" % rc)
    finally:
        problem = s.stop()  # reports sanitizer lines; "exited on its own" is expected
    if problem and "exited on its own with status 0" not in problem:
        raise TestFailure(problem)


def main():
    r = Runner("wsev application control")
    s = Server(EXE, "--port", "0", "--allow-origin", "https://good.example",
               "--defer-timeout", "300", name="wsev-control", port_args=())
    r.run("http-stats-counts-connections", stats, s)  # first: counts from zero
    r.run("origin-allowed-list-403-for-others", origins_list, s)
    r.run("subprotocols-none-one-both-nomatch", subprotocols, s)
    r.run("upgrade-reject-defer-accept-reject-timeout", upgrade_decisions, s)
    r.run("deferred-upgrade-keeps-early-frames", deferred_frames_kept, s)
    r.run("deferred-upgrade-answered-from-a-callback", deferred_answered_from_callback, s)
    r.run("close-peer-initiated-code-reason-data", close_peer_initiated, s)
    r.run("close-server-initiated-code-reason", close_server_initiated, s)
    r.run("close-abnormal-1006", close_abnormal, s)
    r.run("close-protocol-error-1002", close_protocol_error, s)
    r.run("close-with-bad-arguments-refused", close_bad_arguments, s)
    r.run("conn-info", conn_info, s)
    r.run("http-health-keepalive-404-413-pipelined", http_requests, s)
    r.record("server-clean-exit", s.stop())
    same = Server(EXE, "--port", "0", "--same-host", name="wsev-control --same-host",
                  port_args=())
    r.run("origin-same-host", origins_same_host, same)
    r.record("same-host-server-clean-exit", same.stop())
    r.run("sigint-graceful-shutdown-1001-503-exit-0", sigint_shutdown)
    sys.exit(r.finish())


if __name__ == "__main__":
    main()
