#!/usr/bin/python3
"""wsev-echo behind nginx (Debian's nginx-light), started here on free loopback ports
with the configuration the README recommends (proxies.Nginx).

Usage: test_nginx.py PATH/TO/wsev-echo

- nginx -> wsev-echo over TCP, over a Unix socket (wsev-echo --unix), and with TLS
  ended by nginx: the echo cases over raw frames and with Python websockets.
- Headless Chromium through nginx's TLS port.
- The client address: from 127.0.0.2 through nginx, wsev-echo reports 127.0.0.2 when it
  trusts the header nginx sets (--trust-x-forwarded-for for X-Forwarded-For,
  --trust-forwarded for Forwarded), whatever the client forged in its own headers, and
  nginx itself otherwise.
"""

import base64
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import websockets  # noqa: E402
from proxies import (ROOT, Nginx, OpenLog, make_certs, raw_echo_cases,  # noqa: E402
                     split_addr, tcp_conn, tls_conn, unix_conn, ws_echo_cases, ws_options)
from wsevtest import OP_TEXT, Runner, Server, TestFailure, check, script_args  # noqa: E402

EXE = script_args()
R = Runner("deploy-nginx")
TMP = tempfile.mkdtemp(prefix="wsev-deploy-nginx.")
CA, CRT, KEY = make_certs(os.path.join(TMP, "certs"))
SOCK = os.path.join(TMP, "echo.sock")
RUNNING = []  # servers and proxies to stop at the end, in reverse order


def start(thing, *args, **kw):
    """Start a Server or a proxy; on failure the case list records it and goes on."""
    try:
        obj = thing(*args, **kw)
    except TestFailure as e:
        R.record("start %s" % kw.get("name", thing.__name__), str(e))
        return None
    RUNNING.append(obj)
    return obj


def tls_context():
    return ssl.create_default_context(cafile=CA)


def paths(nginx):
    """The ways through nginx to wsev: (label, raw connection factory, websockets
    connect factory)."""
    return [
        ("plain", lambda: tcp_conn(nginx.port),
         lambda: websockets.connect("ws://127.0.0.1:%d/" % nginx.port, **ws_options())),
        ("tls", lambda: tls_conn(nginx.tls_port, CA),
         lambda: websockets.connect("wss://localhost:%d/" % nginx.tls_port,
                                    ssl=tls_context(), **ws_options())),
    ]


# =========================================================================== Chromium

CHROMIUM_SCRIPT = r"""
import { launchChromium } from %s;
const url = process.argv[1], spki = process.argv[2];
function wait(promise, ms, what) {
  let timer;
  const t = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}
const browser = await launchChromium(wait, {
  extraArgs: [`--ignore-certificate-errors-spki-list=${spki}`] });
try {
  const page = await wait(browser.newPage(), 10000, 'new page');
  const result = await wait(page.evaluate(async (url) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const next = () => new Promise((resolve, reject) => {
      ws.onmessage = (ev) => resolve(ev.data);
      ws.onclose = (ev) => reject(new Error(`closed ${ev.code}`));
    });
    await new Promise((resolve, reject) => {
      ws.onopen = resolve; ws.onclose = (ev) => reject(new Error(`closed ${ev.code} before open`));
    });
    const out = {};
    ws.send('hello from Chromium \u20ac'); out.text = await next();
    const bytes = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 255);
    ws.send(bytes);
    const back = new Uint8Array(await next());
    out.binaryOk = back.length === bytes.length && back.every((v, i) => v === bytes[i]);
    const closed = new Promise((resolve) => { ws.onclose = (ev) => resolve(ev.code); });
    ws.close(4000, 'done'); out.closeCode = await closed;
    return out;
  }, url), 20000, 'the page\'s WebSocket');
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
"""


def spki_hash(cert):
    """base64 SHA-256 of the certificate's SubjectPublicKeyInfo: Chromium is told to
    accept that one key and no other certificate error."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def chromium_through_tls(nginx):
    node = shutil.which("node")
    check(node is not None, "node is missing (scripts/deps.sh --test installs it)")
    helper = "file://" + os.path.join(ROOT, "test", "browser", "chromium.mjs")
    script = CHROMIUM_SCRIPT % ('"%s"' % helper)
    url = "wss://localhost:%d/" % nginx.tls_port
    try:
        r = subprocess.run([node, "--input-type=module", "-e", script, url, spki_hash(CRT)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
    except subprocess.TimeoutExpired:
        raise TestFailure("the Chromium script did not finish within 60 s")
    lines = r.stdout.strip().splitlines()
    check(r.returncode == 0 and lines, "the Chromium script failed (status %d): %s %s"
          % (r.returncode, r.stdout.strip()[-2000:], r.stderr.strip()[-2000:]))
    got = json.loads(lines[-1])
    check(got.get("text") == "hello from Chromium \u20ac", "text echo: %r" % got)
    check(got.get("binaryOk") is True, "1 MiB binary echo differs: %r" % got)
    check(got.get("closeCode") == 4000, "close code seen by the page: %r" % got)


# =========================================================================== forwarded

def client_seen(log, conn_factory, extra_headers=None):
    """Open a WebSocket with conn_factory(), return (client, peer) hosts from the
    server's open line for it."""
    log.mark()
    c = conn_factory()
    try:
        c.handshake(extra_headers=extra_headers)
        c.echo(OP_TEXT, b"who am I")
        _, client, peer = log.next_open()
    finally:
        c.close()
    return split_addr(client)[0], split_addr(peer)[0]


def forwarded_cases(nginx, log, label, want):
    """Connections from 127.0.0.2 through nginx's ports must be reported as coming
    from want["xff"] (nginx's X-Forwarded-For ports: plain and TLS) or want["fwd"] (its
    Forwarded port): 127.0.0.2 when wsev trusts the header that port's nginx sets,
    nginx's own 127.0.0.1 when not, whatever the client forged. peer is always nginx."""
    forged_xff = [("X-Forwarded-For", "6.6.6.6")]
    forged_fwd = [("Forwarded", "for=6.6.6.6")]
    cases = [
        ("xff", nginx.port, None, None),
        ("xff-forged-xff", nginx.port, forged_xff, None),
        # That configuration also drops a client's own Forwarded header: passed
        # through, it would be believed by a wsev that trusts Forwarded too.
        ("xff-forged-forwarded", nginx.port, forged_fwd, None),
        ("xff-forged-both", nginx.port, forged_xff + forged_fwd, None),
        ("xff-forged-list", nginx.port, [("X-Forwarded-For", "6.6.6.6, 7.7.7.7")], None),
        ("tls-xff-forged-xff", nginx.tls_port, forged_xff, None),
        ("forwarded", nginx.fwd_port, None, None),
        ("forwarded-forged-forwarded", nginx.fwd_port, forged_fwd, None),
        ("forwarded-forged-list", nginx.fwd_port,
         [("Forwarded", 'for=6.6.6.6;proto=https, for="[2001:db8::6]:66"')], None),
        ("forwarded-forged-xff", nginx.fwd_port, forged_xff, None),
        ("forwarded-forged-both", nginx.fwd_port, forged_xff + forged_fwd, None),
        # A client's value with an open quote: whatever wsev makes of the result, it
        # must not be the forged address (its own peer, nginx, is acceptable).
        ("forwarded-forged-open-quote", nginx.fwd_port, [("Forwarded", 'for="6.6.6.6')],
         {want["fwd"], "127.0.0.1"}),
    ]
    for name, port, headers, accept in cases:
        expected = want["fwd"] if port == nginx.fwd_port else want["xff"]
        if port == nginx.tls_port:
            factory = (lambda p=port: tls_conn(p, CA, source="127.0.0.2"))
        else:
            factory = (lambda p=port: tcp_conn(p, source="127.0.0.2"))

        def run(factory=factory, headers=headers, accept=accept or {expected}):
            client, peer = client_seen(log, factory, headers)
            check(peer == "127.0.0.1", "peer is %r, expected nginx's 127.0.0.1" % peer)
            check(client in accept, "client reported as %r, expected %s"
                  % (client, " or ".join(sorted(accept))))
        R.run("%s %s" % (label, name), run)


# =========================================================================== unix mode

def unix_mode_case(mode, works):
    sock_dir = tempfile.mkdtemp(prefix="wsev-deploy-sock.")
    os.chmod(sock_dir, 0o755)
    path = os.path.join(sock_dir, "echo.sock")
    echo = nginx = None
    try:
        echo = Server(EXE, "--unix", path, "--unix-mode", mode, name="wsev-echo --unix-mode")
        nginx = Nginx("unix:" + path, user="nobody nogroup")
        c = tcp_conn(nginx.port)
        try:
            if works:
                c.handshake()
                c.echo(OP_TEXT, b"through a socket nobody may use")
            else:
                c.send(c.request())
                status, _ = c.read_response()
                check(status.startswith("HTTP/1.1 502"), "expected nginx's 502 (it may not "
                      "connect to the socket), got %r" % status)
                logs = nginx.logs()
                check("Permission denied" in logs, "no 'Permission denied' in nginx's "
                      "error log:\n%s" % logs)
        finally:
            c.close()
        problem = nginx.stop()
        check(problem is None, problem or "")
        nginx = None
        problem = echo.stop()
        check(problem is None, problem or "")
        echo = None
    finally:
        if nginx:
            nginx.stop()
        if echo:
            echo.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


# =========================================================================== main

def main():
    # nginx -> wsev-echo over TCP, and TLS ended by nginx.
    echo = start(Server, EXE, name="wsev-echo")
    if echo:
        nginx = start(Nginx, "127.0.0.1:%d" % echo.port, tls=(CRT, KEY))
        if nginx:
            for label, raw, ws in paths(nginx):
                raw_echo_cases(R, "tcp-upstream " + label, raw)
                ws_echo_cases(R, "tcp-upstream " + label, ws)
            R.run("chromium through nginx's TLS port", chromium_through_tls, nginx)
            R.record("nginx (tcp upstream) still running", nginx.stop())
            RUNNING.remove(nginx)
        R.record("wsev-echo (tcp upstream) exits cleanly", echo.stop())
        RUNNING.remove(echo)

    # nginx -> wsev-echo --unix: nginx reaches wsev over a Unix socket.
    echo = start(Server, EXE, "--unix", SOCK, name="wsev-echo --unix")
    if echo:
        R.run("unix: the socket works directly too",
              lambda: unix_conn(SOCK).handshake().echo(OP_TEXT, b"direct"))
        nginx = start(Nginx, "unix:" + SOCK, tls=(CRT, KEY))
        if nginx:
            for label, raw, ws in paths(nginx):
                raw_echo_cases(R, "unix-upstream " + label, raw)
                ws_echo_cases(R, "unix-upstream " + label, ws)
            R.record("nginx (unix upstream) still running", nginx.stop())
            RUNNING.remove(nginx)
        R.record("wsev-echo --unix exits cleanly", echo.stop())
        RUNNING.remove(echo)

    # nginx's workers as an unprivileged user reach the socket only if its mode lets
    # them (as in a deployment: wsev and nginx as different users).
    if os.geteuid() == 0:
        for mode, works in (("600", False), ("666", True)):
            R.run("unix-upstream --unix-mode %s, nginx workers as nobody: %s"
                  % (mode, "served" if works else "502"), unix_mode_case, mode, works)
    else:
        print("NOTE unix-upstream --unix-mode with nginx as another user: needs root, "
              "not run", flush=True)

    # Who the client is: wsev believes the header it is told to trust (the one nginx
    # sets), and nothing else.
    me, nginx_addr = "127.0.0.2", "127.0.0.1"
    for flags, want in (
            (["--trust-x-forwarded-for"], {"xff": me, "fwd": nginx_addr}),
            (["--trust-forwarded"], {"xff": nginx_addr, "fwd": me}),
            (["--trust-forwarded", "--trust-x-forwarded-for"], {"xff": me, "fwd": me}),
            ([], {"xff": nginx_addr, "fwd": nginx_addr})):
        args = ["--log-connections"] + flags
        label = " ".join(f[2:] for f in flags) or "untrusted"
        echo = start(Server, EXE, *args, name="wsev-echo " + " ".join(args))
        if not echo:
            continue
        nginx = start(Nginx, "127.0.0.1:%d" % echo.port, tls=(CRT, KEY))
        if nginx:
            forwarded_cases(nginx, OpenLog(echo), label, want)
            R.record("nginx (%s) still running" % label, nginx.stop())
            RUNNING.remove(nginx)
        R.record("wsev-echo %s exits cleanly" % " ".join(args), echo.stop())
        RUNNING.remove(echo)


if __name__ == "__main__":
    try:
        main()
    finally:
        for thing in reversed(RUNNING):
            thing.stop()
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(R.finish())
