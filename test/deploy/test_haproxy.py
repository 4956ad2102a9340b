#!/usr/bin/python3
"""wsev-echo behind HAProxy, with the PROXY protocol (versions 1 and 2) telling wsev who
the client is. HAProxy is started here on free loopback ports (proxies.HAProxy).

Usage: test_haproxy.py PATH/TO/wsev-echo

- HAProxy in mode tcp and mode http, send-proxy-v2 and send-proxy, in front of
  wsev-echo --proxy-protocol --log-connections: echo works, and a client connecting
  from 127.0.0.2 is reported as 127.0.0.2; health checks (a PROXY header, v2 LOCAL or
  v1, then a TCP close or an HTTP GET) leave the server UP and open no WebSocket. Also
  wsev-echo over TLS behind mode tcp (the header comes before the ClientHello), and
  over a Unix socket.
- Raw sockets straight at wsev-echo --proxy-protocol: valid headers of every kind are
  believed; forged or broken ones, a truncated one followed by silence, and plain HTTP
  without a header are each closed without an answer (wsev.h), and the next valid one
  is served.
- A listener without --proxy-protocol that receives a PROXY header never opens a
  WebSocket (400 or a close), and goes on serving others.
- mode http with option forwardfor in front of wsev-echo --trust-x-forwarded-for: the
  client is 127.0.0.2 whatever X-Forwarded-For or Forwarded the client forged.
"""

import asyncio
import os
import shutil
import socket
import ssl
import struct
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import websockets  # noqa: E402
from proxies import (HAProxy, OpenLog, make_certs, run_async, split_addr, tcp_conn,  # noqa: E402
                     ws_echo_cases, ws_options)
from wsevtest import (OP_TEXT, Runner, Server, TestFailure, check,  # noqa: E402
                      check_upgrade_response, new_key, script_args, short)

EXE = script_args()
R = Runner("deploy-haproxy")
TMP = tempfile.mkdtemp(prefix="wsev-deploy-haproxy.")
CA, CRT, KEY = make_certs(os.path.join(TMP, "certs"))
SOCK = os.path.join(TMP, "echo.sock")
RUNNING = []


def start(thing, *args, **kw):
    try:
        obj = thing(*args, **kw)
    except TestFailure as e:
        R.record("start %s" % kw.get("name", thing.__name__), str(e))
        return None
    RUNNING.append(obj)
    return obj


def stop(thing, what):
    R.record(what, thing.stop())
    RUNNING.remove(thing)


# =========================================================================== PROXY headers

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src="203.0.113.7", dst="127.0.0.1", sport=4242, dport=80, command=1,
             tlvs=b"", version=2, fam=None, addr=None):
    """A PROXY protocol v2 header (command 1 PROXY, 0 LOCAL); fam and addr override
    the address family byte and the address block."""
    if addr is None:
        if ":" in src:
            addr = (socket.inet_pton(socket.AF_INET6, src)
                    + socket.inet_pton(socket.AF_INET6, dst) + struct.pack("!HH", sport, dport))
            fam = 0x21 if fam is None else fam
        else:
            addr = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport,
                                                                               dport)
            fam = 0x11 if fam is None else fam
    body = addr + tlvs
    return V2_SIG + bytes([(version << 4) | command, fam]) + struct.pack("!H", len(body)) + body


def tlv(kind, value):
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def proxy_v1(src="203.0.113.7", dst="127.0.0.1", sport=4242, dport=80, proto=None):
    proto = proto or ("TCP6" if ":" in src else "TCP4")
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def upgrade_request():
    return ("GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n" % new_key()).encode()


# =========================================================================== raw cases

def served(server, log, header, want_client, how="together"):
    """header then an upgrade from a raw socket, sent "together" (one send), "split"
    (two sends 50 ms apart) or "bytewise": a 101 and an echo, and the open line names
    want_client ("HOST:PORT", "[HOST]:PORT", or "peer": the socket's own address)."""
    log.mark()
    c = tcp_conn(server.port)
    try:
        req = c.request()
        if how == "bytewise":
            c.send_bytewise(header + req)
        elif how == "split":
            c.send(header)
            time.sleep(0.05)
            c.send(req)
        else:
            c.send(header + req)
        status, hdrs = c.read_response()
        check_upgrade_response(status, hdrs, c.key)
        c.echo(OP_TEXT, b"with a header")
        _, client, peer = log.next_open()
    finally:
        c.close()
    if want_client == "peer":
        check(client == peer, "client %r differs from peer %r" % (client, peer))
    else:
        check(client == want_client, "client reported as %r, expected %r"
              % (client, want_client))


def refused(server, log, data, what, expect_timeout=False):
    """data (a bad or missing header, then an upgrade request) must be closed without an
    answer and without an open line; with expect_timeout the close must come from the
    1 s handshake timeout."""
    log.mark()
    c = tcp_conn(server.port)
    t0 = time.monotonic()
    try:
        try:
            c.send(data)
        except OSError:
            pass  # already closed: fine
        got = c.read_all_until_eof(timeout=6.0)
    finally:
        c.close()
    elapsed = time.monotonic() - t0
    # wsev.h: a connection without a valid header is closed without an answer.
    check(not got, "%s: the server answered %s instead of closing" % (what, short(got, 120)))
    if expect_timeout:
        check(0.5 <= elapsed <= 4.0, "%s: closed after %.2f s, expected the 1 s handshake "
              "timeout" % (what, elapsed))
    time.sleep(0.05)
    check(not log.opens_since_mark(), "%s: a WebSocket was opened: %r"
          % (what, log.opens_since_mark()))


def raw_cases(server, log):
    req = upgrade_request()
    valid = [
        ("v2-tcp4", proxy_v2(), "203.0.113.7:4242", "together"),
        ("v2-tcp6", proxy_v2("2001:db8::7", "::1", 4243, 443), "[2001:db8::7]:4243",
         "together"),
        ("v2-with-tlvs", proxy_v2(tlvs=tlv(0x02, b"example.com") + tlv(0x04, b"\x00" * 5)),
         "203.0.113.7:4242", "together"),
        ("v2-local-is-peer", proxy_v2(command=0, fam=0, addr=b""), "peer", "together"),
        # LOCAL with addresses (what a proxy's own check may send): still the peer.
        ("v2-local-with-addresses-is-peer", proxy_v2(command=0), "peer", "together"),
        ("v2-unspec-is-peer", proxy_v2(fam=0, addr=b""), "peer", "together"),
        ("v2-split-from-request", proxy_v2(sport=998), "203.0.113.7:998", "split"),
        ("v2-bytewise", proxy_v2(sport=999), "203.0.113.7:999", "bytewise"),
        ("v1-tcp4", proxy_v1(sport=5555), "203.0.113.7:5555", "together"),
        ("v1-tcp6", proxy_v1("2001:db8::8", "::1", 5556, 80), "[2001:db8::8]:5556",
         "together"),
        ("v1-unknown-is-peer", b"PROXY UNKNOWN\r\n", "peer", "together"),
        ("v1-unknown-with-addresses-is-peer",
         b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", "peer", "together"),
        ("v1-split-from-request", proxy_v1(sport=5558), "203.0.113.7:5558", "split"),
        ("v1-bytewise", proxy_v1(sport=5557), "203.0.113.7:5557", "bytewise"),
    ]
    for name, header, want, how in valid:
        R.run("raw valid %s" % name, served, server, log, header, want, how)

    # What a forger or a broken proxy sends. After each, a valid one must be served.
    good = proxy_v2()
    bad = [
        ("v2-bad-signature", b"\r\n\r\n\x00\r\nQUIX\n" + good[12:]),
        ("v2-version-1", proxy_v2(version=1)),
        ("v2-version-3", proxy_v2(version=3)),
        ("v2-command-2", proxy_v2(command=2)),
        ("v2-tcp4-address-too-short", proxy_v2(addr=b"\x7f\x00\x00\x01", fam=0x11)),
        ("v2-tcp6-address-too-short", proxy_v2(addr=b"\x00" * 12, fam=0x21)),
        ("v2-length-65535-never-sent", good[:14] + b"\xff\xff" + good[16:]),
        ("v1-bad-address", proxy_v1("999.1.2.3", "127.0.0.1")),
        ("v1-ipv6-as-tcp4", proxy_v1("2001:db8::1", "::1", proto="TCP4")),
        ("v1-bad-port", b"PROXY TCP4 1.2.3.4 127.0.0.1 99999 80\r\n"),
        ("v1-missing-field", b"PROXY TCP4 1.2.3.4 127.0.0.1 1234\r\n"),
        ("v1-lf-only", b"PROXY TCP4 1.2.3.4 127.0.0.1 1234 80\n"),
        ("v1-too-long", b"PROXY TCP4 " + b"1" * 120 + b"\r\n"),
        ("v1-lowercase", b"proxy TCP4 1.2.3.4 127.0.0.1 1234 80\r\n"),
        ("plain-http-no-header", b""),
    ]
    for name, header in bad:
        def run(header=header, name=name):
            refused(server, log, header + req, name)
            served(server, log, proxy_v2(sport=777), "203.0.113.7:777")
        R.run("raw refused %s" % name, run)

    for name, part in (("v2-truncated", good[:20]), ("v1-truncated", b"PROXY TCP4 1.2.")):
        def run(part=part, name=name):
            refused(server, log, part, name, expect_timeout=True)
            served(server, log, proxy_v2(sport=778), "203.0.113.7:778")
        R.run("raw refused %s then silence" % name, run)


def untrusting_cases(server, log):
    """A listener without --proxy-protocol: a PROXY header is not HTTP."""
    req = upgrade_request()
    for name, header in (("v1", proxy_v1()), ("v2", proxy_v2())):
        def run(header=header, name=name):
            log.mark()
            c = tcp_conn(server.port)
            try:
                c.send(header + req)
                got = c.read_all_until_eof(timeout=6.0)
            finally:
                c.close()
            status = got.split(b"\r\n")[0]
            check(not got or status.startswith(b"HTTP/1.1 400"),
                  "PROXY %s to an untrusting listener: answered %s" % (name, short(got, 120)))
            time.sleep(0.05)
            check(not log.opens_since_mark(), "a WebSocket was opened: %r"
                  % log.opens_since_mark())
            c = tcp_conn(server.port).handshake()
            c.echo(OP_TEXT, b"still serving")
            c.close()
            # Its open line, read before the next case marks the log (else, under a
            # slow server, it lands after that mark and looks like the next case's).
            log.next_open()
        R.run("untrusting listener refuses a PROXY %s header" % name, run)


# =========================================================================== through HAProxy

def through(hap, log, name, tls=False, want="127.0.0.2"):
    """A websockets client from 127.0.0.2 through frontend `name`: echo, and the open
    line names 127.0.0.2 (a new source port each time) with HAProxy as the peer."""
    async def run():
        log.mark()
        port = hap.ports[name]
        if tls:
            url = "wss://localhost:%d/" % port
            kw = ws_options(ssl=ssl.create_default_context(cafile=CA))
        else:
            url = "ws://127.0.0.1:%d/" % port
            kw = ws_options()
        async with websockets.connect(url, local_addr=("127.0.0.2", 0), **kw) as ws:
            for msg in ("through haproxy", b"\x00" * 70000):
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), 10)
                check(got == msg, "echo differs: %s" % short(got if isinstance(got, bytes)
                                                              else got.encode()))
            local_port = ws.local_address[1]
        _, client, peer = log.next_open()
        host, cport = split_addr(client)
        check(host == want, "client reported as %r, expected %s" % (client, want))
        check(cport == local_port, "client port %r, expected our source port %d"
              % (cport, local_port))
        check(split_addr(peer)[0] in ("127.0.0.1", "unix:" + SOCK),
              "peer %r is not HAProxy" % peer)
    run_async(run, 30)


def health_checks(hap, log, names):
    """Health checks every 100 ms for a second (each a PROXY header: v2 LOCAL or v1,
    then a TCP close in mode tcp or a GET in mode http): the servers stay UP, every
    check passed (L4OK; L7OK with wsev's 426 to a plain GET), and none opened a
    WebSocket."""
    log.mark()
    time.sleep(1.2)
    for name in names:
        row = hap.stat(name)
        check(row.get("status") == "UP", "be_%s/s1 is %r (check %r: %r)" % (
            name, row.get("status"), row.get("check_status"), row.get("last_chk")))
        want = "L7OK" if name.startswith("http") else "L4OK"
        # "* " marks a check in progress; the status is still the last one's.
        got = (row.get("check_status") or "").lstrip("* ")
        check(got == want, "be_%s/s1 check status %r (%r), expected %s"
              % (name, row.get("check_status"), row.get("last_chk"), want))
        if want == "L7OK":
            check(row.get("check_code") == "426", "be_%s/s1 check got HTTP %r, expected "
                  "wsev's 426 to a plain GET" % (name, row.get("check_code")))
        check(int(row.get("chkfail") or 0) == 0, "be_%s/s1 failed %s checks"
              % (name, row.get("chkfail")))
    check(not log.opens_since_mark(), "health checks opened WebSockets: %r"
          % log.opens_since_mark()[:3])


def refuses_via_haproxy(hap, log, name):
    """HAProxy sends a PROXY header to a listener that does not expect one: the client
    gets no WebSocket (mode tcp: the connection closes; mode http: an error status)."""
    async def run():
        log.mark()
        try:
            async with websockets.connect("ws://127.0.0.1:%d/" % hap.ports[name],
                                          **ws_options()):
                pass
        except (websockets.exceptions.InvalidHandshake, OSError, EOFError):
            pass
        else:
            raise TestFailure("the WebSocket opened")
        await asyncio.sleep(0.05)
        check(not log.opens_since_mark(), "a WebSocket was opened: %r"
              % log.opens_since_mark())
    run_async(run, 20)


def forwardfor(hap, log, name, headers):
    """mode http with option forwardfor in front of wsev-echo --trust-x-forwarded-for:
    HAProxy adds its own X-Forwarded-For line after any the client sent, and wsev
    believes only the last entry; a Forwarded header (which HAProxy 2.6 neither sets
    nor removes) is not trusted."""
    log.mark()
    c = tcp_conn(hap.ports[name], source="127.0.0.2")
    try:
        c.handshake(extra_headers=headers)
        c.echo(OP_TEXT, b"forwarded for")
        _, client, peer = log.next_open()
    finally:
        c.close()
    check(split_addr(client)[0] == "127.0.0.2", "client reported as %r, expected 127.0.0.2"
          % client)
    check(split_addr(peer)[0] == "127.0.0.1", "peer %r is not HAProxy" % peer)


def main():
    args = ["--proxy-protocol", "--log-connections", "--handshake-timeout", "1000",
            "--unix", SOCK, "--tls-port", "0", "--cert", CRT, "--key", KEY]
    echo = start(Server, EXE, *args, name="wsev-echo --proxy-protocol", want_tls=True)
    plain = start(Server, EXE, "--log-connections", name="wsev-echo (no trust)")
    xff = start(Server, EXE, "--log-connections", "--trust-x-forwarded-for",
                name="wsev-echo --trust-x-forwarded-for")
    if echo:
        log = OpenLog(echo)
        raw_cases(echo, log)
        addr = "127.0.0.1:%d" % echo.port
        chk = "check inter 100ms"
        backends = [
            ("tcp-v2", "tcp", "%s send-proxy-v2 %s" % (addr, chk)),
            ("tcp-v1", "tcp", "%s send-proxy %s" % (addr, chk)),
            ("http-v2", "http", "%s send-proxy-v2 %s" % (addr, chk),
             ["option httpchk GET /health", "http-check expect status 426"]),
            ("http-v1", "http", "%s send-proxy %s" % (addr, chk),
             ["option httpchk GET /health", "http-check expect status 426"]),
            ("tls-v2", "tcp", "127.0.0.1:%d send-proxy-v2 %s" % (echo.tls_port, chk)),
            ("unix-v2", "tcp", "unix@%s send-proxy-v2 %s" % (SOCK, chk)),
        ]
        if plain:
            backends.append(("tcp-v2-untrusting", "tcp",
                             "127.0.0.1:%d send-proxy-v2" % plain.port))
            backends.append(("http-v2-untrusting", "http",
                             "127.0.0.1:%d send-proxy-v2" % plain.port))
        if xff:
            backends.append(("http-xff", "http", "127.0.0.1:%d" % xff.port,
                             ["option forwardfor"]))
        hap = start(HAProxy, backends)
        if hap:
            for name in ("tcp-v2", "tcp-v1", "http-v2", "http-v1", "unix-v2"):
                R.run("haproxy %s: echo, client 127.0.0.2" % name, through, hap, log, name)
            R.run("haproxy tls-v2: wss through mode tcp, client 127.0.0.2", through, hap,
                  log, "tls-v2", True)
            ws_echo_cases(R, "haproxy tcp-v2", lambda: websockets.connect(
                "ws://127.0.0.1:%d/" % hap.ports["tcp-v2"], **ws_options()))
            ws_echo_cases(R, "haproxy http-v1", lambda: websockets.connect(
                "ws://127.0.0.1:%d/" % hap.ports["http-v1"], **ws_options()))
            R.run("haproxy health checks with send-proxy(-v2): UP, no WebSocket",
                  health_checks, hap, log,
                  ["tcp-v2", "tcp-v1", "http-v2", "http-v1", "tls-v2", "unix-v2"])
            if plain:
                plog = OpenLog(plain)
                for name in ("tcp-v2-untrusting", "http-v2-untrusting"):
                    R.run("haproxy %s: no WebSocket" % name, refuses_via_haproxy, hap, plog,
                          name)
            if xff:
                xlog = OpenLog(xff)
                for what, headers in (
                        ("no headers", None),
                        ("forged X-Forwarded-For", [("X-Forwarded-For", "6.6.6.6")]),
                        ("forged list", [("X-Forwarded-For", "6.6.6.6, 7.7.7.7")]),
                        ("forged Forwarded", [("Forwarded", "for=6.6.6.6")])):
                    R.run("haproxy option forwardfor, %s: client 127.0.0.2" % what,
                          forwardfor, hap, xlog, "http-xff", headers)
            stop(hap, "haproxy still running")
        R.record("wsev-echo --proxy-protocol still running",
                 echo.alive_problem())
        stop(echo, "wsev-echo --proxy-protocol exits cleanly")
    if xff:
        stop(xff, "wsev-echo --trust-x-forwarded-for exits cleanly")
    if plain:
        untrusting_cases(plain, OpenLog(plain))
        stop(plain, "wsev-echo (no trust) exits cleanly")


if __name__ == "__main__":
    try:
        main()
    finally:
        for thing in reversed(RUNNING):
            thing.stop()
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(R.finish())
