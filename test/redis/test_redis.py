#!/usr/bin/python3
"""wsev-pubsub instances federated through a real redis-server (Debian's), driven by
Python's websockets (Debian's python3-websockets, run with /usr/bin/python3).

usage: test_redis.py /path/to/wsev-pubsub [CASE...]

Every case starts its own redis-server on a free loopback port (never a system
service, never a fixed port), in a temporary directory, and stops it afterwards.

  fanout        3 instances, 300 subscribers spread over them and 10 channels, one
                publisher per instance: every publish reaches every subscriber of its
                channel exactly once, in publish order per publisher; Redis holds a
                subscription per instance only for channels it has subscribers for
  redis_down    Redis killed mid-run: local delivery goes on, the loop never stalls
                over 10 ms (measured by the instance, GET /stats); Redis restarted on
                the same port: cross-instance delivery resumes within 2 s without any
                client action, every channel subscribed again
  redis_slow    DEBUG SLEEP 1: local delivery goes on at once, no stall, and the
                other instance gets every message, once, in order, after the sleep
  redis_frozen  Redis stopped (SIGSTOP) with its connections open: noticed by an
                unanswered PING within a few seconds, local delivery goes on; back
                after SIGCONT
  bad_password  a wrong password: a clear error (stderr and /stats), the instance
                serves locally; the right one federates
  foreign_messages  malformed publishes on a wsev: channel are dropped, well-formed
                ones from other ids delivered

Prints PASS/FAIL per case and `N passed, N failed`; exits non-zero on any failure.
"""
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
import urllib.request

import websockets

STEP = 10.0
CASE = 60.0
EXE = None
MAX_STALL_MS = 10.0


# ---- redis-server and a tiny RESP client ---------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp_encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


async def resp_read(reader):
    line = await reader.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = await reader.readexactly(n + 2)
        return data[:-2]
    if kind == b"*":
        return [await resp_read(reader) for _ in range(int(rest))]
    raise ValueError(f"bad reply {line!r}")


class Redis:
    """A redis-server of our own on a free loopback port."""

    def __init__(self, password=None):
        self.dir = tempfile.mkdtemp(prefix="wsev-redis-")
        self.password = password
        self.port = None
        self.proc = None

    async def start(self, port=None):
        for attempt in range(5):
            self.port = port or free_port()
            args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", self.dir,
                    "--enable-debug-command", "local", "--daemonize", "no",
                    "--loglevel", "warning"]
            if self.password:
                args += ["--requirepass", self.password]
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            for _ in range(100):
                try:
                    if await self.cmd("PING") == "PONG":
                        return self
                except OSError:
                    pass
                if self.proc.returncode is not None:
                    break
                await asyncio.sleep(0.02)
            await self.stop()
            if port:
                await asyncio.sleep(0.2)  # the same port: wait and try again
        raise AssertionError("redis-server did not start")

    async def cmd(self, *args):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), STEP)
        try:
            if self.password:
                writer.write(resp_encode("AUTH", self.password))
                await resp_read(reader)
            writer.write(resp_encode(*args))
            return await asyncio.wait_for(resp_read(reader), STEP)
        finally:
            writer.close()

    async def numsub(self, *channels):
        r = await self.cmd("PUBSUB", "NUMSUB", *channels)
        return {r[i].decode(): r[i + 1] for i in range(0, len(r), 2)}

    async def channels(self):
        return sorted(c.decode() for c in await self.cmd("PUBSUB", "CHANNELS", "wsev:*"))

    async def stop(self, sig=signal.SIGKILL):
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await self.proc.wait()

    def url(self, password=None):
        pw = password if password is not None else self.password
        return f"redis://{':' + pw + '@' if pw else ''}127.0.0.1:{self.port}"

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- wsev-pubsub instances ------------------------------------------------------------

class Instance:
    def __init__(self, proc, port):
        self.proc = proc
        self.port = port
        self.err = b""

    @classmethod
    async def start(cls, redis_url, *extra):
        """redis_url None: a control instance, not federated, that measures its own
        loop's stalls (--measure-lag) to tell a stall of the machine from ours."""
        fed = ["--redis", redis_url] if redis_url else ["--measure-lag"]
        proc = await asyncio.create_subprocess_exec(
            *EXE, "--port", "0", "--no-tls", "--quiet", *fed, *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(proc.stdout.readline(), STEP)
        m = re.fullmatch(rb"wsev-pubsub listening on port (\d+)\n", line)
        if not m:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"bad first line {line!r}: {await proc.stderr.read()!r}")
        inst = cls(proc, int(m.group(1)))
        inst.reader = asyncio.ensure_future(inst._read_stderr())
        return inst

    async def _read_stderr(self):
        while True:
            chunk = await self.proc.stderr.read(4096)
            if not chunk:
                return
            self.err += chunk

    async def stats(self, reset=False):
        url = f"http://127.0.0.1:{self.port}/stats{'?reset' if reset else ''}"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=STEP).read())
        return json.loads(body)

    async def wait_state(self, state, within):
        deadline = time.monotonic() + within
        while True:
            st = await self.stats()
            if st["redis"] == state:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"instance {self.port}: redis {st['redis']!r}, "
                                     f"not {state!r} after {within}s ({st['reason']})")
            await asyncio.sleep(0.02)

    async def stop(self):
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), STEP)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError("instance did not exit after SIGTERM")
        await self.reader
        return code


async def connect(inst):
    return await asyncio.wait_for(websockets.connect(
        f"ws://127.0.0.1:{inst.port}/", max_size=None, ping_interval=None, close_timeout=2,
        max_queue=None), STEP)


async def cmd(ws, msg, expect="OK"):
    await ws.send(msg)
    got = await asyncio.wait_for(ws.recv(), STEP)
    assert got == expect, f"{msg!r}: expected {expect!r}, got {got!r}"


async def recv_until(ws, pred, within):
    """Messages until one satisfies pred (returned last), within `within` seconds."""
    got = []
    deadline = time.monotonic() + within
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"nothing matching within {within}s; got {got[-5:]!r}")
        try:
            m = await asyncio.wait_for(ws.recv(), left)
        except asyncio.TimeoutError:
            continue
        got.append(m)
        if pred(m):
            return got


async def drain(ws, quiet=0.3):
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(ws.recv(), quiet))
        except asyncio.TimeoutError:
            return got


class Env:
    """What a case started, stopped whatever happens."""

    def __init__(self):
        self.redis = []
        self.instances = []
        self.conns = []

    async def close(self):
        await asyncio.gather(*(asyncio.wait_for(c.close(), STEP) for c in self.conns),
                             return_exceptions=True)
        codes = []
        for inst in self.instances:
            codes.append(await inst.stop())
        for r in self.redis:
            await r.stop(signal.SIGTERM)
            r.cleanup()
        return codes


async def federated(env, n):
    """A Redis of the test's own and n instances federated through it, all up."""
    redis = await Redis().start()
    env.redis.append(redis)
    insts = [await Instance.start(redis.url()) for _ in range(n)]
    env.instances += insts
    for inst in insts:
        await inst.wait_state("up", 5)
    return redis, insts


async def connect_many(env, inst, n):
    conns = list(await asyncio.gather(*(connect(inst) for _ in range(n))))
    env.conns += conns
    return conns


async def wait_numsub(redis, want, within=STEP):
    deadline = time.monotonic() + within
    while True:
        got = await redis.numsub(*want)
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"PUBSUB NUMSUB {got}, expected {want}")
        await asyncio.sleep(0.02)


# ---- cases ----------------------------------------------------------------------------

async def case_fanout(env):
    redis, insts = await federated(env, 3)
    channels = [f"ch{i}" for i in range(10)]
    # 300 subscribers, 100 per instance; subscriber k listens to channel k % 10.
    subs = []
    for i, inst in enumerate(insts):
        conns = await connect_many(env, inst, 100)
        for j, ws in enumerate(conns):
            subs.append((ws, channels[(i * 100 + j) % 10]))
    await asyncio.gather(*(cmd(ws, f"subscribe:{ch}") for ws, ch in subs))
    # Each instance holds one Redis subscription per channel it has subscribers for.
    await wait_numsub(redis, {f"wsev:{ch}": 3 for ch in channels})
    assert await redis.channels() == sorted(f"wsev:{ch}" for ch in channels)

    # One publisher per instance, 20 messages on every channel, interleaved.
    pubs = await asyncio.gather(*(connect(inst) for inst in insts))
    env.conns += pubs
    per_channel = 20

    async def publish(p, ws):
        for seq in range(per_channel):
            for ch in channels:
                await ws.send(f"publish:{ch}:P{p}:{seq}")
        for _ in range(per_channel * len(channels)):
            assert await asyncio.wait_for(ws.recv(), STEP) == "OK"

    expect = per_channel * len(pubs)

    async def collect(ws):
        got = []
        while len(got) < expect:
            got.append(await asyncio.wait_for(ws.recv(), STEP))
        got += await drain(ws, 0.2)  # nothing more may come
        return got

    collectors = [asyncio.ensure_future(collect(ws)) for ws, _ in subs]
    t0 = time.monotonic()
    await asyncio.gather(*(publish(p, ws) for p, ws in enumerate(pubs)))
    results = await asyncio.gather(*collectors)
    elapsed = time.monotonic() - t0
    deliveries = 0
    for (ws, ch), got in zip(subs, results):
        assert len(got) == expect, f"{ch}: {len(got)} messages, expected {expect}"
        nxt = [0] * len(pubs)
        for m in got:
            p, seq = re.fullmatch(r"P(\d+):(\d+)", m).groups()
            p, seq = int(p), int(seq)
            assert seq == nxt[p], f"{ch}: from P{p} got {seq}, expected {nxt[p]}"
            nxt[p] += 1
        deliveries += len(got)
    print(f"  {deliveries} deliveries to 300 subscribers on 3 instances in {elapsed:.2f}s, "
          "each exactly once and in order per publisher")
    for inst in insts:
        st = await inst.stats()
        assert st["dropped"] == 0, st
    # When the last subscriber of a channel on an instance goes, so does its
    # subscription in Redis; the other instances keep theirs.
    leaving = [ws for (ws, ch), (i, _) in zip(subs, enumerate(subs))
               if ch == "ch9" and i < 100]
    await asyncio.gather(*(cmd(ws, "unsubscribe:ch9") for ws in leaving))
    await wait_numsub(redis, {"wsev:ch9": 2, "wsev:ch0": 3})


async def stall_stats(insts):
    return [await inst.stats() for inst in insts]


async def reset_stalls(insts):
    for inst in insts:
        await inst.stats(reset=True)


async def judge_stalls(what, insts, control):
    """True if the federated instances' loops never stalled over MAX_STALL_MS during
    `what`; False if they did but the idle control instance stalled at least half as
    long at the same time (the machine was preempting every process: inconclusive, the
    caller measures again, at most 3 times); raises if only the federated ones
    stalled."""
    st = await stall_stats(insts)
    worst = max(s["max_lag_ms"] for s in st)
    ctl = (await control.stats())["max_lag_ms"]
    print(f"  {what}: longest loop stall {worst:.2f} ms (control instance {ctl:.2f} ms)")
    if worst <= MAX_STALL_MS:
        return True
    if ctl >= worst * 0.5:
        print("  the machine stalled every process alike: measuring again")
        return False
    raise AssertionError(f"{what}: loop stalled {worst:.2f} ms (> {MAX_STALL_MS} ms); "
                         f"control {ctl:.2f} ms")


async def case_redis_down(env):
    redis, insts = await federated(env, 2)
    a, b = insts
    control = await Instance.start(None)
    env.instances.append(control)
    topics = [f"t{i}" for i in range(5)]
    sa, pa = await connect_many(env, a, 2)
    sb, = await connect_many(env, b, 1)
    for t in topics:
        await cmd(sa, f"subscribe:{t}")
        await cmd(sb, f"subscribe:{t}")
    await wait_numsub(redis, {f"wsev:{t}": 2 for t in topics})
    await cmd(pa, "publish:t0:before")
    assert await recv_until(sa, lambda m: True, STEP) == ["before"]
    assert await recv_until(sb, lambda m: True, STEP) == ["before"]

    measured = 0
    for cycle in range(1, 4):
        await reset_stalls(insts + [control])
        await redis.stop(signal.SIGKILL)
        t_down = time.monotonic()
        await a.wait_state("down", 3)
        await b.wait_state("down", 3)
        # Local delivery goes on while Redis is gone.
        for k in range(50):
            await pa.send(f"publish:t1:local{k}")
            await asyncio.sleep(0.01)
        got = await recv_until(sa, lambda m: m == "local49", STEP)
        assert got == [f"local{k}" for k in range(50)], got[:5]
        await drain(pa, 0.05)
        lost = await drain(sb, 0.2)
        assert lost == [], f"B got {lost!r} while Redis was down"
        print(f"  cycle {cycle}: Redis down {time.monotonic() - t_down:.2f}s, 50 local "
              "deliveries on A, none on B")
        clean = await judge_stalls("while Redis was down", insts, control)
        await reset_stalls(insts + [control])

        await redis.start(port=redis.port)
        t_up = time.monotonic()
        # Without any client action: the links come back, every topic is subscribed
        # again, and a publish on A reaches B.
        k = 0
        while True:
            await pa.send(f"publish:t4:again{k}")
            await asyncio.sleep(0.02)
            got = await drain(sb, 0.01)
            if any(m.startswith("again") for m in got):
                break
            k += 1
            assert time.monotonic() - t_up < 2.0, "no cross-instance delivery 2 s after restart"
        resumed = time.monotonic() - t_up
        await wait_numsub(redis, {f"wsev:{t}": 2 for t in topics}, within=0.5)
        st = await stall_stats(insts)
        assert all(s["redis"] == "up" and s["reconnects"] == cycle for s in st), st
        print(f"  cycle {cycle}: Redis restarted, cross-instance delivery after "
              f"{resumed:.2f}s, all {len(topics)} topics subscribed by both instances again")
        clean = await judge_stalls("while Redis came back", insts, control) and clean
        # And back the other way, exactly once.
        await drain(sa, 0.2)
        await drain(pa, 0.05)
        await cmd(sb, f"publish:t2:from-b{cycle}")
        assert await recv_until(sa, lambda m: True, 2) == [f"from-b{cycle}"]
        assert await drain(sa, 0.3) == []
        await drain(sb, 0.05)
        if clean:
            measured = cycle
            break
    assert measured, "the machine stalled every process in each of 3 attempts"
async def case_redis_slow(env):
    redis, insts = await federated(env, 2)
    a, b = insts
    control = await Instance.start(None)
    env.instances.append(control)
    sa, pa = await connect_many(env, a, 2)
    sb, = await connect_many(env, b, 1)
    await cmd(sa, "subscribe:s")
    await cmd(sb, "subscribe:s")
    await wait_numsub(redis, {"wsev:s": 2})
    for attempt in range(3):
        await reset_stalls(insts + [control])
        # Redis sleeps for a second: it takes nothing in and sends nothing out.
        sleeper = asyncio.ensure_future(redis.cmd("DEBUG", "SLEEP", "1"))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        for k in range(20):
            await pa.send(f"publish:s:m{k}")
        got = await recv_until(sa, lambda m: m == "m19", STEP)
        local = time.monotonic() - t0
        assert got == [f"m{k}" for k in range(20)]
        assert local < 0.5, f"local delivery took {local:.2f}s while Redis slept"
        assert not sleeper.done(), "DEBUG SLEEP returned early"
        await sleeper
        got = await recv_until(sb, lambda m: m == "m19", 5)
        remote = time.monotonic() - t0
        assert got == [f"m{k}" for k in range(20)], got
        assert await drain(sb, 0.3) == []
        await drain(pa, 0.05)
        st = await stall_stats(insts)
        assert all(s["redis"] == "up" and s["dropped"] == 0 for s in st), st
        print(f"  Redis asleep 1 s: local delivery in {local * 1000:.0f} ms, the other "
              f"instance got all 20 once and in order after {remote:.2f}s")
        if await judge_stalls("while Redis slept", insts, control):
            return
    raise AssertionError("the machine stalled every process in each of 3 attempts")


async def case_bad_password(env):
    redis = await Redis(password="s3cret").start()
    env.redis.append(redis)
    bad = await Instance.start(redis.url(password="wrong"))
    env.instances.append(bad)
    st = await bad.wait_state("down", 5)
    assert "refused" in st["reason"] and ("WRONGPASS" in st["reason"] or
                                          "invalid" in st["reason"]), st
    # It still serves locally.
    s, p = await connect_many(env, bad, 2)
    await cmd(s, "subscribe:x")
    await cmd(p, "publish:x:local")
    assert await recv_until(s, lambda m: True, STEP) == ["local"]
    # The right password federates.
    good = [await Instance.start(redis.url()) for _ in range(2)]
    env.instances += good
    for inst in good:
        await inst.wait_state("up", 5)
    g1, = await connect_many(env, good[0], 1)
    g2, = await connect_many(env, good[1], 1)
    await cmd(g1, "subscribe:y")
    await wait_numsub(redis, {"wsev:y": 1})
    await cmd(g2, "publish:y:hello")
    assert await recv_until(g1, lambda m: True, STEP) == ["hello"]
    # Never up with the wrong password: down, or connecting again after its backoff.
    assert (await bad.stats())["redis"] in ("down", "connecting")
    err = bad.err.decode(errors="replace")
    assert "redis down: redis refused us" in err, err
    print(f"  wrong password: {st['reason']!r}; local delivery works; the right one federates")


async def case_redis_frozen(env):
    """Redis stopped (SIGSTOP) with its connections open: the instances notice the
    silence (an unanswered PING) and say so, local delivery goes on; once it runs
    again (SIGCONT) they are back and deliver across instances."""
    redis, insts = await federated(env, 2)
    a, b = insts
    sa, pa = await connect_many(env, a, 2)
    sb, = await connect_many(env, b, 1)
    await cmd(sa, "subscribe:z")
    await cmd(sb, "subscribe:z")
    await wait_numsub(redis, {"wsev:z": 2})
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        st = await a.wait_state("down", 6)
        noticed = time.monotonic() - t0
        assert "stopped answering" in st["reason"], st
        await cmd(pa, "publish:z:local")
        assert await recv_until(sa, lambda m: True, STEP) == ["local"]
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    t1 = time.monotonic()
    for inst in insts:
        await inst.wait_state("up", 5)
    await wait_numsub(redis, {"wsev:z": 2})
    # Whatever the frozen Redis still delivers late is at most once; then it works.
    await drain(sb, 0.3)
    await cmd(pa, "publish:z:after")
    assert (await recv_until(sb, lambda m: m == "after", 3))[-1:] == ["after"]
    print(f"  Redis frozen: noticed after {noticed:.2f}s (local delivery went on), back "
          f"{time.monotonic() - t1:.2f}s after it ran again")


async def case_foreign_messages(env):
    """Anyone can PUBLISH on a wsev: channel: short payloads, unknown types and text
    that is not UTF-8 are dropped; a well-formed one from another instance id is
    delivered, as text or binary."""
    redis, (a,) = await federated(env, 1)
    s, = await connect_many(env, a, 1)
    await cmd(s, "subscribe:f")
    await wait_numsub(redis, {"wsev:f": 1})
    other = b"\x01" * 8
    for bad in [b"", b"short", other + b"\x07" + b"type", other + b"\x01" + b"\xff\xfe bad utf-8"]:
        assert await redis.cmd("PUBLISH", "wsev:f", bad) == 1
    assert await redis.cmd("PUBLISH", "wsev:f", other + b"\x01" + "héllo".encode()) == 1
    assert await redis.cmd("PUBLISH", "wsev:f", other + b"\x00" + b"\x00\xffbin") == 1
    assert await recv_until(s, lambda m: True, STEP) == ["héllo"]
    assert await recv_until(s, lambda m: True, STEP) == [b"\x00\xffbin"]
    assert await drain(s, 0.3) == []
    assert (await a.stats())["received"] == 2


CASES = [case_fanout, case_redis_down, case_redis_slow, case_redis_frozen, case_bad_password,
         case_foreign_messages]


async def main(names):
    passed = failed = 0
    for case in CASES:
        name = case.__name__[len("case_"):]
        if names and name not in names:
            continue
        env = Env()
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(case(env), CASE)
        except Exception as e:
            failed += 1
            msg = "timed out" if isinstance(e, asyncio.TimeoutError) else \
                f"{type(e).__name__}: {e}"
            print(f"FAIL {name}: {msg}")
            traceback.print_exc(file=sys.stdout)
            for inst in env.instances:
                print(f"  instance {inst.port} stderr: {inst.err.decode(errors='replace')}")
        else:
            passed += 1
            print(f"PASS {name} ({time.monotonic() - t0:.2f}s)")
        finally:
            codes = await env.close()
            if any(c != 0 for c in codes):
                print(f"FAIL {name}: instance exit codes {codes} after SIGTERM")
                failed += 1
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    if not shutil.which("redis-server"):
        print("redis-server not found (Debian package redis-server); skipping")
        sys.exit(77)
    EXE = [sys.argv[1]]
    sys.exit(1 if asyncio.run(main(sys.argv[2:])) else 0)
