"""A build without zlib (meson -Ddeflate=disabled): the extension is never accepted or
offered, and asking for it is refused rather than ignored.

  test_no_deflate.py WSEV-ECHO WSEV-CLIENT
"""
import os
import subprocess
import sys

from wsevtest import Conn, Runner, Server, check, OP_TEXT

R = Runner("no-deflate build")


def offers_declined(server):
    c = Conn(server.port)
    c.send(c.request(extra_headers=[("Sec-WebSocket-Extensions",
                                     "permessage-deflate; client_max_window_bits")]))
    status, hdrs = c.read_response()
    check(status.startswith("HTTP/1.1 101"), "upgrade refused: %s" % status)
    check("sec-websocket-extensions" not in hdrs,
          "extension answered: %s" % hdrs.get("sec-websocket-extensions"))
    c.send_text(b"plain as ever")
    c.expect_echo(OP_TEXT, b"plain as ever")
    c.close()


def option_refused(exe, *args):
    # --deflate needs zlib: the sample must say so and stop (usage status 2).
    p = subprocess.run([exe] + list(args), input="", capture_output=True, text=True, timeout=10)
    check(p.returncode == 2, "%s %s exited %d: %s" % (exe, " ".join(args), p.returncode,
                                                      p.stderr.strip()))


def main():
    echo, client = sys.argv[1], sys.argv[2]
    server = Server(echo)
    R.run("permessage-deflate offer declined, messages plain", offers_declined, server)
    R.record("wsev-echo still running at the end", server.stop())
    R.run("wsev-echo --deflate refused", option_refused, echo, "0", "--deflate")
    R.run("wsev-client --deflate refused", option_refused, client,
          "ws://127.0.0.1:1/", "--deflate")
    return R.finish()


if __name__ == "__main__":
    sys.exit(main())
