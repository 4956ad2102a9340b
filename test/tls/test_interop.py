#!/usr/bin/python3
"""The two TLS backends against each other: wsev-client built over each one against
wsev-echo built over the other (and over the same, as a control).

usage: test_interop.py --openssl-echo E --openssl-client C --mbedtls-echo E --mbedtls-client C

For each pair: a client that trusts the test CA, by name and by address, echoes text
up to 1 MiB and closes with 1000; one that trusts only the system's CAs fails with
WSEV_ETLSVERIFY (in its own backend's words); an insecure one still echoes. Both
servers must survive and exit cleanly. Prints PASS/FAIL per case and "N passed, N
failed"; exits 1 if any failed.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "client"))
import clienttest as ct  # noqa: E402
from clienttest import SLOW, TIMEOUT, Client, server_line, start_server  # noqa: E402

BACKENDS = ("openssl", "mbedtls")


def roundtrip(c, messages):
    for m in messages:
        c.send(m)
    for m in messages:
        c.expect(m, timeout=TIMEOUT * 2)


def case_verified(client_exe, port, ca):
    for host in ("localhost", "127.0.0.1"):
        c = Client(client_exe, "wss://%s:%d/interop" % (host, port), "--ca", ca)
        try:
            roundtrip(c, ["across backends via " + host, "\u00fcber \u2603", "z" * 100000,
                          "".join(chr(0x41 + i % 26) for i in range(1 << 20))])
            c.wait_connected()
            c.finish(0, "closed 1000")
        finally:
            c.kill()


def case_untrusted(client_exe, port):
    c = Client(client_exe, "wss://localhost:%d/" % port)
    try:
        c.finish(1, "failed: WSEV_ETLSVERIFY: certificate: .+")
    finally:
        c.kill()


def case_insecure(client_exe, port):
    c = Client(client_exe, "wss://127.0.0.1:%d/" % port, "--insecure")
    try:
        roundtrip(c, ["insecure but encrypted"])
        c.finish(0, "closed 1000")
    finally:
        c.kill()


def main():
    ap = argparse.ArgumentParser()
    for b in BACKENDS:
        ap.add_argument("--%s-echo" % b, required=True)
        ap.add_argument("--%s-client" % b, required=True)
    a = ap.parse_args()
    d = ct.certs()
    ca = os.path.join(d, "ca.crt")
    r = ct.Runner("TLS backends interoperating")
    servers, ports = {}, {}
    try:
        for b in BACKENDS:
            servers[b] = start_server(getattr(a, "%s_echo" % b), "--tls-port", "0", "--cert",
                                      os.path.join(d, "localhost.crt"), "--key",
                                      os.path.join(d, "localhost.key"),
                                      name="wsev-echo (%s)" % b)
            ports[b] = int(server_line(servers[b], r"listening for TLS on port (\d+)",
                                       3 * SLOW).group(1))
        for cb in BACKENDS:
            exe = getattr(a, "%s_client" % cb)
            for sb in BACKENDS:
                pair = "client %s -> server %s" % (cb, sb)
                r.run(pair + ": verified, 1 MiB, close", case_verified, exe, ports[sb], ca)
                r.run(pair + ": untrusted -> WSEV_ETLSVERIFY", case_untrusted, exe, ports[sb])
                r.run(pair + ": insecure", case_insecure, exe, ports[sb])
    finally:
        for b, s in servers.items():
            r.record("wsev-echo (%s) survived and exited cleanly" % b, s.stop())
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
