#!/usr/bin/python3
"""wsev-echo against a real peer: the Python `websockets` library (Debian's 10.x).

Usage: test_websockets.py PATH/TO/wsev-echo

Every message must come back byte-exact with its type (str for text, bytes for
binary). Each case has a time limit, so a hang is a failure.
"""

import asyncio
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import websockets  # noqa: E402
from wsevtest import Runner, Server, TestFailure, check, script_args, short  # noqa: E402

EXE = script_args()
R = Runner("websockets")
CASE_TIMEOUT = 30.0


def connect(port, **kw):
    opts = dict(max_size=None, compression=None, ping_interval=None, open_timeout=5,
                close_timeout=5)
    opts.update(kw)
    return websockets.connect("ws://127.0.0.1:%d/" % port, **opts)


async def recv(ws, timeout=10.0):
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except asyncio.TimeoutError:
        raise TestFailure("no message from the server within %.0f s" % timeout)


async def echo(ws, msg, timeout=10.0):
    await ws.send(msg)
    got = await recv(ws, timeout)
    check(type(got) is type(msg), "sent %s, got back %s" % (type(msg).__name__,
                                                             type(got).__name__))
    check(got == msg, "echo differs: sent %d %s (%s), got %d (%s)" % (
        len(msg), type(msg).__name__, short(msg if isinstance(msg, bytes) else msg.encode()),
        len(got), short(got if isinstance(got, bytes) else got.encode())))


def text_of(n):
    pat = "The quick brown fox jumps over the lazy dog. "
    return (pat * (n // len(pat) + 1))[:n]


# =========================================================================== cases

async def c_text_binary_empty(port):
    async with connect(port) as ws:
        await echo(ws, "hello, wsev")
        await echo(ws, b"\x00\x01\x02\xff binary")
        await echo(ws, "")
        await echo(ws, b"")
        await echo(ws, "\u03ba\u1f79\u03c3\u03bc\u03b5 \U0001F600 \u20ac \u0000 \U0010FFFF")


async def c_sizes(port):
    async with connect(port) as ws:
        for n in (125, 126, 127, 65535, 65536, 65537):
            await echo(ws, text_of(n))
            await echo(ws, os.urandom(n))


async def c_8mib(port):
    async with connect(port) as ws:
        await echo(ws, os.urandom(8 << 20), timeout=20)


async def c_big_multibyte_text(port):
    async with connect(port) as ws:
        s = ("\u00e9\u4e2d\U0001d11e" * 400000)[:1000000]  # ~3 MiB of UTF-8
        await echo(ws, s, timeout=20)


async def c_fragmented(port):
    async with connect(port) as ws:
        await ws.send(iter(["frag", "", "men", "ted \u20ac"]))
        got = await recv(ws)
        check(got == "fragmented \u20ac", "fragmented text came back as %r" % (got,))
        await ws.send(iter([b"\x00\x01", b"", b"\x02" * 70000, b"\x03"]))
        got = await recv(ws)
        check(got == b"\x00\x01" + b"\x02" * 70000 + b"\x03",
              "fragmented binary came back as %s" % short(got))

        async def agen():
            for i in range(50):
                yield "part%d," % i
                await asyncio.sleep(0)
        await ws.send(agen())
        got = await recv(ws)
        want = "".join("part%d," % i for i in range(50))
        check(got == want, "async-fragmented text came back as %r" % (got[:80],))
        await echo(ws, "after fragments")


async def c_fragmented_with_ping(port):
    # A ping while a fragmented message is being sent (websockets allows it).
    async with connect(port) as ws:
        async def agen():
            yield b"first-"
            await asyncio.sleep(0.05)
            yield b"second"
        send_task = asyncio.ensure_future(ws.send(agen()))
        await asyncio.sleep(0.01)
        waiter = await ws.ping(b"mid")
        await asyncio.wait_for(send_task, 5)
        await asyncio.wait_for(waiter, 5)
        got = await recv(ws)
        check(got == b"first-second", "got %s" % short(got))


async def c_ping(port):
    async with connect(port) as ws:
        waiter = await ws.ping(b"x")
        try:
            await asyncio.wait_for(waiter, 5)
        except asyncio.TimeoutError:
            raise TestFailure("no pong for ping b'x' within 5 s")
        waiters = [await ws.ping(b"p%d" % i) for i in range(10)]
        await asyncio.wait_for(asyncio.gather(*waiters), 5)
        waiter = await ws.ping(b"")
        await asyncio.wait_for(waiter, 5)
        waiter = await ws.ping(os.urandom(125))
        await asyncio.wait_for(waiter, 5)
        await ws.pong(b"unsolicited")
        await echo(ws, "after pings")


async def c_close_code(port, code, reason):
    ws = await connect(port)
    await echo(ws, "before close")
    await asyncio.wait_for(ws.close(code=code, reason=reason), 10)
    check(ws.close_code == code, "close code from the server is %r, expected %d (reason %r)"
          % (ws.close_code, code, ws.close_reason))


async def c_close_default(port):
    ws = await connect(port)
    await asyncio.wait_for(ws.close(), 10)
    check(ws.close_code == 1000, "close code from the server is %r, expected 1000"
          % (ws.close_code,))


async def c_async_with_closes_cleanly(port):
    async with connect(port) as ws:
        await echo(ws, b"x")
    check(ws.close_code == 1000, "close code %r" % (ws.close_code,))
    await asyncio.wait_for(ws.wait_closed(), 5)


async def c_deflate_offered(port):
    # The default client offers permessage-deflate; the server must not accept an
    # extension it doesn't implement, and messages still round-trip.
    async with connect(port, compression="deflate") as ws:
        ext = ws.response_headers.get("Sec-WebSocket-Extensions")
        check(ext is None, "server accepted extensions %r" % (ext,))
        await echo(ws, text_of(5000))
        await echo(ws, os.urandom(5000))


async def c_concurrent(port, nclients=100, nmsg=20):
    async def client(i):
        async with connect(port) as ws:
            msgs = []
            for m in range(nmsg):
                if (i + m) % 2:
                    msgs.append(os.urandom((i * 31 + m * 17) % 2000))
                else:
                    msgs.append("client %d message %d %s" % (i, m, text_of((i + m * 7) % 300)))
            for msg in msgs:
                await ws.send(msg)
            for m, msg in enumerate(msgs):
                got = await recv(ws, 20)
                check(got == msg, "client %d message %d: out of order or corrupted (%s vs %s)"
                      % (i, m, short(got if isinstance(got, bytes) else got.encode()),
                         short(msg if isinstance(msg, bytes) else msg.encode())))
    await asyncio.gather(*(client(i) for i in range(nclients)))


async def c_many_sequential(port):
    # Open and close 200 connections one after the other (ids never reused, no leak
    # that would make the server stop accepting).
    for i in range(200):
        async with connect(port) as ws:
            await echo(ws, "n%d" % i)


async def c_interleaved_big_and_small(port):
    # While one client streams big messages, another gets its small echoes.
    async with connect(port) as big, connect(port) as small:
        async def streamer():
            for _ in range(4):
                await echo(big, os.urandom(2 << 20), timeout=20)

        async def chatter():
            for i in range(100):
                await echo(small, "small %d" % i)
        await asyncio.gather(streamer(), chatter())


# =========================================================================== main

def run(name, coro_fn, *args):
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


def main():
    try:
        server = Server(EXE)
    except TestFailure as e:
        R.record("start wsev-echo", str(e))
        return R.finish()
    port = server.port
    run("ws-text-binary-empty", c_text_binary_empty, port)
    run("ws-sizes-125-126-127-65535-65536-65537", c_sizes, port)
    run("ws-binary-8MiB", c_8mib, port)
    run("ws-text-3MiB-multibyte", c_big_multibyte_text, port)
    run("ws-fragmented-messages", c_fragmented, port)
    run("ws-ping-during-fragmented-send", c_fragmented_with_ping, port)
    run("ws-ping-pong", c_ping, port)
    for code, reason in ((4000, "x"), (1000, "bye"), (1001, ""), (3000, "\u20ac"),
                         (4999, "r" * 100)):
        run("ws-close-code-%d-echoed" % code, c_close_code, port, code, reason)
    run("ws-close-default-1000", c_close_default, port)
    run("ws-async-with-closes-cleanly", c_async_with_closes_cleanly, port)
    run("ws-deflate-offered-not-accepted", c_deflate_offered, port)
    run("ws-100-concurrent-clients-x20", c_concurrent, port)
    run("ws-200-sequential-connections", c_many_sequential, port)
    run("ws-big-and-small-interleaved", c_interleaved_big_and_small, port)
    R.record("wsev-echo still running at the end", server.stop())
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
