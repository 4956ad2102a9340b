#!/usr/bin/env python3
"""Write the seed corpus of fuzz-proxy into test/fuzz/corpus/proxy/: PROXY protocol
headers (v1 and v2, valid and broken, with the client's first bytes after them), and
Forwarded / X-Forwarded-For values (the two separated by a NUL).

Deterministic: running it again rewrites the same files (every file in that directory
is its own). Run from anywhere:

    python3 test/fuzz/gen-corpus-proxy.py
"""
import ipaddress
import struct

from corpuslib import write_corpus

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
GET = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
HELLO = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"


def v2(ver_cmd, fam, body, length=None):
    return SIG + bytes([ver_cmd, fam]) + struct.pack(">H", len(body) if length is None else length) + body


def addrs(src, dst, sport, dport):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return s.packed + d.packed + struct.pack(">HH", sport, dport)


def tlv(t, value):
    return bytes([t]) + struct.pack(">H", len(value)) + value


def proxy_seeds():
    a4 = addrs("192.0.2.1", "198.51.100.2", 56324, 443)
    a6 = addrs("2001:db8::1", "2001:db8::2", 4711, 8443)
    tlvs = (tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0x03, b"\x01\x02\x03\x04")
            + tlv(0x04, b"") + tlv(0x05, b"\x5a" * 16)
            + tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3")) + tlv(0xEA, b"vpce-0123"))
    return {
        "v1-tcp4": b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" + GET,
        "v1-tcp4-max": b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n" + HELLO,
        "v1-tcp4-zero": b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
        "v1-tcp6": b"PROXY TCP6 2001:db8::1 ::1 4711 443\r\n" + GET,
        "v1-tcp6-mapped": b"PROXY TCP6 ::ffff:1.2.3.4 FFFF::0 1 2\r\n",
        "v1-tcp6-long": b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"0:" * 7 + b"0 65535 65535\r\n",
        "v1-unknown": b"PROXY UNKNOWN\r\n" + GET,
        "v1-unknown-long": b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n",
        "v1-unknown-108": b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n",
        "v1-leading-zero": b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        "v1-port-65536": b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "v1-lf-only": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        "v1-double-space": b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "v1-partial": b"PROXY TCP4 1.2.3.4 5.6",
        "v2-tcp4": v2(0x21, 0x11, a4) + HELLO,
        "v2-tcp6": v2(0x21, 0x21, a6) + GET,
        "v2-udp4": v2(0x21, 0x12, a4),
        "v2-udp6": v2(0x21, 0x22, a6),
        "v2-local": v2(0x20, 0x00, b"") + GET,
        "v2-local-addrs": v2(0x20, 0x11, a4),
        "v2-unspec": v2(0x21, 0x00, b"abc"),
        "v2-unix": v2(0x21, 0x31, b"/run/a.sock".ljust(108, b"\0") + b"/run/b.sock".ljust(108, b"\0")),
        "v2-tlvs": v2(0x21, 0x11, a4 + tlvs) + GET,
        "v2-tcp6-tlv": v2(0x21, 0x21, a6 + tlv(0xE0, b"\x00" * 8)),
        "v2-short-len": v2(0x21, 0x11, a4[:11]),
        "v2-tlv-overrun": v2(0x21, 0x11, a4 + b"\x01\x00\x05ab"),
        "v2-tlv-leftover": v2(0x21, 0x11, a4 + b"\x01\x00"),
        "v2-too-long": v2(0x21, 0x11, a4, length=0xFFFF),
        "v2-version-1": v2(0x11, 0x11, a4),
        "v2-command-2": v2(0x22, 0x11, a4),
        "v2-family-4": v2(0x21, 0x41, a4),
        "v2-partial": v2(0x21, 0x21, a6)[:30],
        "http": GET,
        "tls": HELLO,
    }


def forwarded_seeds():
    """Forwarded value, NUL, X-Forwarded-For value (no NUL: no X-Forwarded-For)."""
    return {
        "fwd-rfc-1": b'for="_gazonk"',
        "fwd-rfc-2": b'For="[2001:db8:cafe::17]:4711"',
        "fwd-rfc-3": b"for=192.0.2.60;proto=http;by=203.0.113.43",
        "fwd-rfc-4": b"for=192.0.2.43, for=198.51.100.17",
        "fwd-unknown": b'for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown',
        "fwd-escapes": b'host="a,b;c\\"d";for="1.2.3.\\4:_obf"',
        "fwd-lenient": b"for=[::1]:8080;proto=http, for=1.2.3.4:80",
        "fwd-ows": b"  for=1.2.3.4 ; proto=http  ,\tfor=5.6.7.8\t,,",
        "fwd-open-quote": b'for="1.2.3.4, for=5.6.7.8\x009.9.9.9',
        "fwd-and-xff": b"for=1.2.3.4\x005.6.7.8",
        "fwd-empty-xff": b"\x00203.0.113.195, 70.41.3.18, 150.172.238.178",
        "xff-v6-port": b"\x001.2.3.4, [2001:db8::1]:4711",
        "xff-v4-port": b"\x00unknown, 1.2.3.4:8080",
        "xff-garbage": b"\x001.2.3.4, _hidden",
        "xff-bare-v6": b"\x00 2001:db8:85a3:8d3:1319:8a2e:370:7348 ",
    }


def main():
    seeds = proxy_seeds()
    seeds.update(forwarded_seeds())
    write_corpus("proxy", seeds)
    print(f"proxy: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
