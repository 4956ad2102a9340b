#!/usr/bin/python3
"""Happy Eyeballs (RFC 8305) in wsev-client: a name with two addresses whose first never
answers.

Usage: test_happy_eyeballs.py PATH/TO/wsev-echo PATH/TO/wsev-client

The test re-runs itself inside network and mount namespaces of its own (`unshare -n
-m`, with --map-root-user when not root), so nothing it changes outlives it: lo is
brought up, an /etc/hosts of its own is bind-mounted (he-test and he-proxy: ::1, then
127.0.0.1, the order getaddrinfo keeps), and nftables drops the SYNs to ::1 on the
ports used (or answers them with a reset). wsev-echo listens on every interface, so
127.0.0.1 answers. Checked, timing each connection from the start of wsev-client:
- --happy-eyeballs-delay 100: connected after the delay, well before any timeout;
- the default (250 ms) likewise;
- --happy-eyeballs-delay off: no racing, the first address is waited for until the
  connect timeout (ETIMEDOUT), never the second;
- ::1 refused (a reset): the next address is tried at once, whatever the delay;
- the proxy's name is raced the same way (tinyproxy on 127.0.0.1 only);
- once connected after a race, wsev-client holds as many sockets as after a direct
  connection (/proc/PID/fd): the losing attempt's socket is closed.
Exits 77 (skipped) when namespaces cannot be made here, saying why.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "client"))

if len(sys.argv) < 3:
    sys.stderr.write("usage: %s wsev-echo wsev-client\n" % sys.argv[0])
    sys.exit(2)


def outside():
    """Re-run inside new namespaces, or skip when they cannot be made."""
    base = ["unshare", "-n", "-m"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    if not shutil.which("unshare"):
        print("SKIP: unshare (util-linux) is not installed")
        sys.exit(77)
    probe = subprocess.run(base + ["true"], capture_output=True, text=True)
    if probe.returncode != 0:
        print("SKIP: cannot make network and mount namespaces here (%s): %s"
              % (" ".join(base), probe.stderr.strip()))
        sys.exit(77)
    r = subprocess.run(base + ["--", sys.executable, os.path.abspath(__file__), "--inside"]
                       + sys.argv[1:])
    sys.exit(r.returncode)


if "--inside" not in sys.argv:
    outside()

# ------------------------------------------------------------------ inside the namespaces

ARGS = [a for a in sys.argv[1:] if a != "--inside"]
ECHO, CLIENT = ARGS[0], ARGS[1]

from proxies import Program, port_accepts  # noqa: E402
import clienttest  # noqa: E402
from wsevtest import Runner, Server, TestFailure, check  # noqa: E402

SLOW = clienttest.SLOW
R = Runner("deploy-happy-eyeballs")
TMP = tempfile.mkdtemp(prefix="wsev-happy-eyeballs.")
for v in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
    os.environ.pop(v, None)


def sh(*cmd, stdin=None):
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise TestFailure("%s failed: %s" % (" ".join(cmd), (r.stderr or r.stdout).strip()))
    return r.stdout


def setup_network():
    sh("ip", "link", "set", "lo", "up")
    hosts = os.path.join(TMP, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n::1 he-test he-proxy\n127.0.0.1 he-test he-proxy\n")
    sh("mount", "--bind", hosts, "/etc/hosts")
    order = sh("getent", "ahosts", "he-test").split()
    check(order[:1] == ["::1"], "getaddrinfo does not give ::1 first for he-test: %r" % order)


def set_rules(drop_ports, reset_ports=()):
    """SYNs to ::1 on drop_ports vanish; on reset_ports they get a reset."""
    rules = ["flush ruleset", "table inet he {", "  chain out {",
             "    type filter hook output priority 0;"]
    for p in drop_ports:
        rules.append("    ip6 daddr ::1 tcp dport %d tcp flags syn drop" % p)
    for p in reset_ports:
        rules.append("    ip6 daddr ::1 tcp dport %d tcp flags syn reject with tcp reset" % p)
    rules += ["  }", "}", ""]
    sh("nft", "-f", "-", stdin="\n".join(rules))


def timed_client(url, *args):
    """(seconds to the first final-or-connected line, that line, the client)."""
    c = clienttest.Client(CLIENT, url, *args)
    m = c.wait_stderr(r"^wsev-client: (connected.*|failed.*|closed.*)$", timeout=15 * SLOW)
    return time.monotonic() - c.t0, m.group(1), c


def finish_echo(c):
    c.send("hi")
    c.expect("hi")
    c.finish(0, r"closed 1000")


def socket_count(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


class Tinyproxy(Program):
    name = "tinyproxy"
    exe = "/usr/bin/tinyproxy"

    def __init__(self, port, connect_ports):
        super().__init__()
        self.port = port
        conf = ["Port %d" % port, "Listen 127.0.0.1", "Timeout 30", "LogLevel Info",
                'LogFile "%s"' % self.path("tinyproxy.log"), "Allow 127.0.0.1",
                "DisableViaHeader Yes"] + ["ConnectPort %d" % p for p in connect_ports]
        with open(self.path("tinyproxy.conf"), "w") as f:
            f.write("\n".join(conf) + "\n")
        self._start([self.exe, "-d", "-c", self.path("tinyproxy.conf")],
                    lambda: port_accepts(port))

    def log_files(self):
        return [self.output, self.path("tinyproxy.log")]


def main():
    try:
        setup_network()
    except TestFailure as e:
        R.record("namespace setup", str(e))
        sys.exit(R.finish())
    echo = Server(ECHO)
    running = [echo]
    try:
        port = echo.port
        url = "ws://he-test:%d/raced" % port
        set_rules([port])

        def delay_100():
            t, line, c = timed_client(url, "--happy-eyeballs-delay", "100")
            check(line == "connected", "got %r" % line)
            check(0.1 <= t < 1.5 * SLOW, "connected after %.3f s (delay 0.1 s)" % t)
            print("  connected after %.3f s" % t)
            # The race is over: as many sockets as a direct connection holds.
            time.sleep(0.2 * SLOW)
            raced = socket_count(c.proc.pid)
            t2, line2, d = timed_client("ws://127.0.0.1:%d/direct" % port)
            check(line2 == "connected", "direct: got %r" % line2)
            time.sleep(0.2 * SLOW)
            direct = socket_count(d.proc.pid)
            check(raced == direct, "sockets after a race: %d, after a direct connection: %d"
                  % (raced, direct))
            finish_echo(d)
            finish_echo(c)
        R.run("--happy-eyeballs-delay 100: the second address wins", delay_100)

        def delay_default():
            t, line, c = timed_client(url)
            check(line == "connected", "got %r" % line)
            check(0.25 <= t < 1.75 * SLOW, "connected after %.3f s (delay 0.25 s)" % t)
            print("  connected after %.3f s" % t)
            finish_echo(c)
        R.run("the default delay (250 ms)", delay_default)

        def racing_off():
            t, line, c = timed_client(url, "--happy-eyeballs-delay", "off",
                                      "--connect-timeout", "1500")
            check(re.fullmatch(r"failed: ETIMEDOUT: timed out connecting", line),
                  "got %r" % line)
            check(t >= 1.5, "gave up after %.3f s (timeout 1.5 s)" % t)
            c.finish(1, None, close_stdin=False)
        R.run("--happy-eyeballs-delay off: the first address until the timeout", racing_off)

        def refused_first():
            set_rules([], reset_ports=[port])
            try:
                t, line, c = timed_client(url, "--happy-eyeballs-delay", "5000")
                check(line == "connected", "got %r" % line)
                check(t < 1.0 * SLOW, "connected after %.3f s (the next should start at once)"
                      % t)
                finish_echo(c)
            finally:
                set_rules([port])
        R.run("::1 refused: the next address at once", refused_first)

        def proxy_name():
            tp_port = port + 1 if port < 65535 else port - 1
            tp = Tinyproxy(tp_port, [port])
            running.append(tp)
            set_rules([port, tp_port])
            t, line, c = timed_client("ws://127.0.0.1:%d/via" % port, "--proxy",
                                      "http://he-proxy:%d" % tp_port,
                                      "--happy-eyeballs-delay", "100")
            check(line == "connected", "got %r" % line)
            check(0.1 <= t < 1.5 * SLOW, "connected after %.3f s (delay 0.1 s)" % t)
            finish_echo(c)
        R.run("the proxy's name is raced too", proxy_name)
    finally:
        for thing in reversed(running):
            R.record("%s stopped cleanly" % thing.name, thing.stop())
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(R.finish())


main()
