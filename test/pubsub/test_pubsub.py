#!/usr/bin/python3
"""Integration tests of wsev-pubsub against Python's websockets library (Debian's
python3-websockets, run with /usr/bin/python3).

usage: test_pubsub.py /path/to/wsev-pubsub [--valgrind]

With --valgrind every server runs under valgrind's memcheck, through test/valgrind-wrap
(exit code 99 on a memory error or leak, which fails the exit-code checks).

Starts `wsev-pubsub --port 0 --quiet`, runs every case against it (and a few cases
against extra instances), prints PASS/FAIL per case and a final `N passed, N failed`
line, and exits non-zero if any case failed or the server did not survive.
"""
import asyncio
import os
import re
import signal
import socket
import sys
import time
import traceback

import websockets

STEP = 10.0  # timeout of any single await, seconds
CASE = 90.0  # timeout of a whole case, seconds
QUIET = 0.3  # how long to wait to be sure that no further message arrives

EXE = None  # the server command: [path] or [valgrind-wrap, path]
# test/valgrind-wrap: valgrind with the memcheck options every wsev test uses.
VALGRIND = [os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                          "valgrind-wrap"))]


class Server:
    """A wsev-pubsub process."""

    def __init__(self, proc, port):
        self.proc = proc
        self.port = port

    @classmethod
    async def start(cls, *args):
        proc = await asyncio.create_subprocess_exec(
            *EXE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(proc.stdout.readline(), STEP)
        m = re.fullmatch(rb"wsev-pubsub listening on port (\d+)\n", line)
        if not m:
            proc.kill()
            await proc.wait()
            err = await proc.stderr.read()
            raise AssertionError(f"bad first line {line!r}; stderr {err!r}")
        return cls(proc, int(m.group(1)))

    async def stop(self, sig=signal.SIGTERM):
        """Send `sig` (once) and return the exit code.

        (Never signal a process that may already have exited: Popen.send_signal then
        reaps it behind asyncio's child watcher, which reports exit code 255.)"""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), STEP)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"server did not exit within {STEP}s of {sig.name}")


SERVER = None


async def connect(port=None):
    uri = f"ws://127.0.0.1:{port or SERVER.port}/"
    return await asyncio.wait_for(
        websockets.connect(uri, max_size=None, ping_interval=None, close_timeout=2),
        STEP)


async def recv(ws):
    return await asyncio.wait_for(ws.recv(), STEP)


async def cmd(ws, msg, expect="OK"):
    """Send a command and check its reply, which must be text."""
    await asyncio.wait_for(ws.send(msg), STEP)
    got = await recv(ws)
    assert got == expect, f"{msg!r}: expected reply {expect!r}, got {got!r}"


async def expect_nothing(*conns, wait=QUIET):
    """No message arrives on any of `conns` within `wait` seconds."""
    async def one(ws):
        try:
            got = await asyncio.wait_for(ws.recv(), wait)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"unexpected message {got!r}")
    await asyncio.gather(*(one(ws) for ws in conns))


async def close_all(*conns):
    await asyncio.gather(*(asyncio.wait_for(ws.close(), STEP) for ws in conns),
                         return_exceptions=True)


async def connect_many(n):
    return list(await asyncio.gather(*(connect() for _ in range(n))))


# ---------------------------------------------------------------------------------
# cases


async def case_replies():
    ws = await connect()
    try:
        await cmd(ws, "subscribe:a")
        await cmd(ws, "subscribe:a")  # again: still OK
        await cmd(ws, "subscribe:b")
        await cmd(ws, "unsubscribe:a")
        await cmd(ws, "unsubscribe:never-subscribed")
        await cmd(ws, "unsubscribe-all")
        await cmd(ws, "unsubscribe-all")  # with nothing left
        await cmd(ws, "publish:nobody-listens:hello")
        await cmd(ws, "subscribe:caf\u00e9-\u2603")  # UTF-8 channel names
        await cmd(ws, "publish:caf\u00e9-\u2603:\u00fcber")
        assert await recv(ws) == "\u00fcber"
        await expect_nothing(ws)
    finally:
        await close_all(ws)


async def case_subscribe_twice_delivers_once():
    sub, pub = await connect_many(2)
    try:
        await cmd(sub, "subscribe:twice")
        await cmd(sub, "subscribe:twice")
        await cmd(pub, "publish:twice:once")
        assert await recv(sub) == "once"
        await expect_nothing(sub, pub)
    finally:
        await close_all(sub, pub)


async def case_invalid_messages():
    ws = await connect()
    try:
        bad = ["", "hello", "subscribe", "subscribe:", "subscribe:a:b", "unsubscribe",
               "unsubscribe:", "unsubscribe:a:b", "unsubscribe-all ", " unsubscribe-all",
               "unsubscribe-all:x", "publish", "publish:", "publish:chan",
               "publish::body", "Subscribe:x", "SUBSCRIBE:x", " subscribe:x",
               "publish-x:y:z", "x" * 70000]
        for msg in bad:
            await cmd(ws, msg, "Invalid message")
        await cmd(ws, b"bogus", "Invalid message")  # binary: reply still text
        await cmd(ws, b"", "Invalid message")
        await cmd(ws, bytes([0xff, 0xfe, 0x00]), "Invalid message")
        # invalid commands changed nothing: the connection still works
        await cmd(ws, "subscribe:after-invalid")
        await cmd(ws, "publish:after-invalid:fine")
        assert await recv(ws) == "fine"
        await expect_nothing(ws)
    finally:
        await close_all(ws)


async def case_publisher_gets_ok_then_body():
    ws = await connect()
    try:
        await cmd(ws, "subscribe:self")
        for i in range(100):
            await asyncio.wait_for(ws.send(f"publish:self:m{i}"), STEP)
        for i in range(100):
            got = await recv(ws)
            assert got == "OK", f"expected the reply OK before m{i}, got {got!r}"
            got = await recv(ws)
            assert got == f"m{i}", f"expected m{i}, got {got!r}"
        await expect_nothing(ws)
    finally:
        await close_all(ws)


async def case_fanout_50():
    subs = await connect_many(50)
    others = await connect_many(5)    # subscribed to another channel
    unsubbed = await connect_many(5)  # subscribed to news, then unsubscribed
    idle = await connect()            # never subscribed
    pub = await connect()             # publishes, not subscribed
    everyone = subs + others + unsubbed + [idle, pub]
    try:
        await asyncio.gather(*(cmd(ws, "subscribe:news") for ws in subs))
        await asyncio.gather(*(cmd(ws, "subscribe:sports") for ws in others))
        await asyncio.gather(*(cmd(ws, "subscribe:news") for ws in unsubbed))
        await asyncio.gather(*(cmd(ws, "unsubscribe:news") for ws in unsubbed))

        await cmd(pub, "publish:news:hello")
        got = await asyncio.gather(*(recv(ws) for ws in subs))
        assert got == ["hello"] * 50, f"subscribers got {got!r}"
        await expect_nothing(*everyone)

        await cmd(pub, "publish:sports:goal")
        got = await asyncio.gather(*(recv(ws) for ws in others))
        assert got == ["goal"] * 5, f"sports subscribers got {got!r}"
        await expect_nothing(*everyone)
    finally:
        await close_all(*everyone)


async def case_body_with_colons_and_empty():
    sub, pub = await connect_many(2)
    try:
        await cmd(sub, "subscribe:c")
        bodies = ["a:b::c:", ":", "::", "", "x", "publish:c:nested", " spaced body "]
        for body in bodies:
            await cmd(pub, "publish:c:" + body)
            got = await recv(sub)
            assert isinstance(got, str), f"text publish arrived as {type(got).__name__}"
            assert got == body, f"expected {body!r}, got {got!r}"
        await expect_nothing(sub, pub)
    finally:
        await close_all(sub, pub)


async def case_binary_forwarded_as_binary():
    sub, pub = await connect_many(2)
    try:
        await cmd(sub, "subscribe:bin")
        payload = bytes(range(256)) + b":\x00:\xff"
        await cmd(pub, b"publish:bin:" + payload)  # reply is text "OK"
        got = await recv(sub)
        assert isinstance(got, bytes), f"binary publish arrived as {type(got).__name__}"
        assert got == payload, f"binary body mangled: {got!r}"

        await cmd(pub, b"publish:bin:")  # empty binary body
        got = await recv(sub)
        assert got == b"", f"expected empty bytes, got {got!r}"

        big = os.urandom(200_000)
        await cmd(pub, b"publish:bin:" + big)
        got = await recv(sub)
        assert got == big, "200 kB binary body mangled"

        await cmd(pub, "publish:bin:now text")
        got = await recv(sub)
        assert got == "now text" and isinstance(got, str), f"got {got!r}"
        # binary subscribe / unsubscribe commands work too
        await cmd(sub, b"unsubscribe:bin")
        await cmd(pub, "publish:bin:gone")
        await expect_nothing(sub, pub)
    finally:
        await close_all(sub, pub)


async def case_unsubscribe_all():
    a, b, pub = await connect_many(3)
    try:
        for ch in ("x", "y", "z"):
            await cmd(a, f"subscribe:{ch}")
        await cmd(b, "subscribe:y")
        await cmd(a, "unsubscribe-all")
        for ch in ("x", "y", "z"):
            await cmd(pub, f"publish:{ch}:after-{ch}")
        assert await recv(b) == "after-y"
        await expect_nothing(a, b, pub)
        # a can subscribe again afterwards
        await cmd(a, "subscribe:x")
        await cmd(pub, "publish:x:again")
        assert await recv(a) == "again"
        await expect_nothing(a, b, pub)
    finally:
        await close_all(a, b, pub)


async def case_abrupt_disconnect():
    keep, pub = await connect_many(2)
    gone = await connect_many(20)
    try:
        await cmd(keep, "subscribe:drop")
        await asyncio.gather(*(cmd(ws, "subscribe:drop") for ws in gone))
        await asyncio.gather(*(cmd(ws, "subscribe:drop-other") for ws in gone))
        # vanish without a close frame (half of them with unread data, which makes the
        # kernel answer with RST)
        for i, ws in enumerate(gone):
            if i % 2:
                await asyncio.wait_for(ws.send("publish:drop:unanswered"), STEP)
            ws.transport.abort()
        # the first publishes may race with the server noticing; it must survive
        big = "B" * 100_000
        for i in range(20):
            await cmd(pub, f"publish:drop:{big}{i}")
            got = await recv(keep)
            while got == "unanswered":  # published by the vanished peers as they left
                got = await recv(keep)
            assert got == f"{big}{i}", f"keep got {got[:20]!r}..."
            await asyncio.sleep(0.02)
        await expect_nothing(keep, pub)
        # the dropped connections no longer count as subscribers of anything
        await cmd(pub, "publish:drop-other:nobody")
        await expect_nothing(keep, pub)
        await cmd(pub, "publish:drop:last")
        assert await recv(keep) == "last"
        await expect_nothing(keep, pub)
    finally:
        await close_all(keep, pub)


async def case_clean_close_drops_subscriptions():
    keep, leaver, pub = await connect_many(3)
    try:
        await cmd(keep, "subscribe:cc")
        await cmd(leaver, "subscribe:cc")
        await asyncio.wait_for(leaver.close(), STEP)
        assert leaver.close_code == 1000, f"close code {leaver.close_code}"
        await cmd(pub, "publish:cc:after")
        assert await recv(keep) == "after"
        await expect_nothing(keep, pub)
    finally:
        await close_all(keep, leaver, pub)


async def case_200_clients_10_channels():
    n, nch = 200, 10
    conns = await connect_many(n)

    def channels_of(i):
        return {i % nch, (i * 3 + 1) % nch}

    try:
        async def subscribe(i):  # one command at a time per connection
            for c in sorted(channels_of(i)):
                await cmd(conns[i], f"subscribe:ch{c}")

        await asyncio.gather(*(subscribe(i) for i in range(n)))
        # every client publishes to two channels, neither necessarily its own
        publishes = {c: 0 for c in range(nch)}
        plan = []
        for i in range(n):
            for c in ((i + 1) % nch, (i * 7 + 5) % nch):
                plan.append((i, c))
                publishes[c] += 1
        expected = [sum(publishes[c] for c in channels_of(i)) for i in range(n)]
        oks = [0] * n
        for i, c in plan:
            oks[i] += 1

        async def publish_all(i):
            for j, c in plan:
                if j == i:
                    await asyncio.wait_for(conns[i].send(f"publish:ch{c}:from{i}:ch{c}"), STEP)

        async def drain(i):
            """Count OK replies and bodies until both are complete."""
            got_ok = got_body = 0
            per_channel = {}
            while got_ok < oks[i] or got_body < expected[i]:
                msg = await recv(conns[i])
                assert isinstance(msg, str), f"client {i}: unexpected binary {msg!r}"
                if msg == "OK":
                    got_ok += 1
                else:
                    m = re.fullmatch(r"from(\d+):ch(\d+)", msg)
                    assert m, f"client {i}: unexpected message {msg!r}"
                    ch = int(m.group(2))
                    assert ch in channels_of(i), f"client {i} got a message of ch{ch}"
                    per_channel[ch] = per_channel.get(ch, 0) + 1
                    got_body += 1
            for ch in channels_of(i):
                assert per_channel.get(ch, 0) == publishes[ch], \
                    f"client {i}: ch{ch} {per_channel.get(ch, 0)} != {publishes[ch]}"

        await asyncio.gather(*(publish_all(i) for i in range(n)),
                             *(drain(i) for i in range(n)))
        await expect_nothing(*conns)
    finally:
        await close_all(*conns)


async def case_log_output():
    """Without --quiet the server logs accepts, messages (first 100 bytes), closes."""
    srv = await Server.start("--port", "0")
    try:
        ws = await connect(srv.port)
        await cmd(ws, "subscribe:log")
        await cmd(ws, "y" * 300, "Invalid message")
        await asyncio.wait_for(ws.close(), STEP)
        lines = []
        while len(lines) < 4:
            line = await asyncio.wait_for(srv.proc.stdout.readline(), STEP)
            assert line, f"stdout ended early after {lines!r}"
            lines.append(line.decode().rstrip("\n"))
        # The client's address comes with it (this test connects over IPv4 loopback).
        m = re.fullmatch(r"Accepted connection (\d+) from 127\.0\.0\.1:\d+", lines[0])
        assert m, f"first log line {lines[0]!r}"
        cid = m.group(1)
        assert lines[1] == f"Message from {cid}: subscribe:log", lines[1]
        assert lines[2] == f"Message from {cid}: " + "y" * 100, lines[2]
        assert lines[3] == f"Closed connection {cid}", lines[3]
    finally:
        code = await srv.stop()
    assert code == 0, f"exit code {code} after SIGTERM"


async def case_sigterm_and_sigint_exit_0():
    for sig in (signal.SIGTERM, signal.SIGINT):
        srv = await Server.start("--port", "0", "--quiet")
        ws = await connect(srv.port)
        await cmd(ws, "subscribe:bye")  # leave state behind for the cleanup
        code = await srv.stop(sig)
        assert code == 0, f"exit code {code} after {sig.name}"
        await close_all(ws)


async def case_listen_failure_exits_1():
    proc = await asyncio.create_subprocess_exec(
        *EXE, "--port", str(SERVER.port), "--quiet",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), STEP)
    assert proc.returncode == 1, f"exit code {proc.returncode} for a port in use"
    assert b"listening" not in out, f"stdout {out!r}"
    assert err.strip(), "no message on stderr"
    for bad in ("notaport", "99999"):
        proc = await asyncio.create_subprocess_exec(
            *EXE, "--port", bad, "--quiet",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), STEP)
        assert proc.returncode == 1, f"exit code {proc.returncode} for port {bad!r}"
        assert err.strip(), f"no message on stderr for port {bad!r}"


async def case_server_alive():
    assert SERVER.proc.returncode is None, \
        f"server exited with code {SERVER.proc.returncode}"
    ws = await connect()
    try:
        await cmd(ws, "subscribe:alive")
        await cmd(ws, "publish:alive:yes")
        assert await recv(ws) == "yes"
    finally:
        await close_all(ws)


async def case_page_and_stats():
    """GET / is a self-contained page that connects back; /stats is JSON; other paths
    are 404 and other methods 405; the WebSocket service on the same port goes on."""
    import http.client
    import json

    def get(method, path):
        c = http.client.HTTPConnection("127.0.0.1", SERVER.port, timeout=STEP)
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, r.getheader("Content-Type"), body

    status, ctype, body = await asyncio.to_thread(get, "GET", "/")
    assert status == 200 and ctype.startswith("text/html"), (status, ctype)
    page = body.decode()
    assert "<title>wsev pubsub</title>" in page
    assert "location.host" in page and "new WebSocket" in page  # connects back
    # Self-contained: no external scripts, styles, images or fonts.
    assert not re.search(r"""(src|href)\s*=|@import|url\(|https?://""", page), \
        "the page refers to something outside itself"
    status, ctype, body = await asyncio.to_thread(get, "GET", "/stats")
    assert status == 200 and ctype == "application/json", (status, ctype)
    st = json.loads(body)
    assert st["redis"] == "off" and st["published"] == 0, st
    assert (await asyncio.to_thread(get, "GET", "/nope"))[0] == 404
    assert (await asyncio.to_thread(get, "DELETE", "/"))[0] == 405
    ws = await connect()
    try:
        await cmd(ws, "subscribe:page")
        await cmd(ws, "publish:page:still", "OK")
        assert await recv(ws) == "still"
    finally:
        await close_all(ws)


CASES = [
    case_page_and_stats,
    case_replies,
    case_subscribe_twice_delivers_once,
    case_invalid_messages,
    case_publisher_gets_ok_then_body,
    case_fanout_50,
    case_body_with_colons_and_empty,
    case_binary_forwarded_as_binary,
    case_unsubscribe_all,
    case_abrupt_disconnect,
    case_clean_close_drops_subscriptions,
    case_200_clients_10_channels,
    case_log_output,
    case_sigterm_and_sigint_exit_0,
    case_listen_failure_exits_1,
    case_server_alive,  # keep last
]


async def main():
    global SERVER
    passed = failed = 0
    SERVER = await Server.start("--port", "0", "--quiet")
    try:
        for case in CASES:
            name = case.__name__[len("case_"):]
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(case(), CASE)
            except Exception as e:
                failed += 1
                if isinstance(e, asyncio.TimeoutError):
                    print(f"FAIL {name}: timed out")
                else:
                    print(f"FAIL {name}: {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stdout)
            else:
                passed += 1
                print(f"PASS {name} ({time.monotonic() - t0:.2f}s)")
            sys.stdout.flush()
            if SERVER.proc.returncode is not None:
                print(f"FAIL server died (exit code {SERVER.proc.returncode}) during {name}")
                failed += 1
                break
    finally:
        code = await SERVER.stop()
        err = await SERVER.proc.stderr.read()
        if err:
            print("server stderr:\n" + err.decode(errors="replace"))
        if code != 0:
            print(f"FAIL server exit code {code} after SIGTERM (expected 0)")
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    if len(sys.argv) == 2:
        EXE = [sys.argv[1]]
    elif len(sys.argv) == 3 and sys.argv[2] == "--valgrind":
        EXE = VALGRIND + [sys.argv[1]]
    else:
        sys.exit("usage: test_pubsub.py /path/to/wsev-pubsub [--valgrind]")
    sys.exit(1 if asyncio.run(main()) else 0)
