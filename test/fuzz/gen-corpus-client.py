#!/usr/bin/env python3
"""Write the seed corpora of the client-side fuzz targets into
test/fuzz/corpus/{url,client-handshake,http-proxy}/ (gen-corpus.py does the
server-side ones).

Deterministic: running it again rewrites the same files (every file in those
directories is its own). Run from anywhere:

    python3 test/fuzz/gen-corpus-client.py
"""

from corpuslib import write_corpus

ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3's example key
FRAME = b"\x81\x05Hello"


def url_seeds():
    """fuzz-url input: URL, then optionally NUL + extra header lines, then NUL +
    each offered subprotocol."""
    s = {
        "plain": b"ws://example.com",
        "tls": b"wss://example.com/",
        "path-query": b"ws://example.com:8080/chat?room=1&x=%20y",
        "query-only": b"wss://example.com?a=b",
        "explicit-default": b"ws://example.com:80/x",
        "explicit-default-tls": b"wss://example.com:443/x",
        "empty-port": b"ws://example.com:/",
        "max-port": b"ws://h:65535",
        "upper": b"WSS://EXAMPLE.COM/Path",
        "ipv4": b"ws://127.0.0.1:9001/echo",
        "ipv6-loopback": b"ws://[::1]/",
        "ipv6-port": b"wss://[2001:db8::1]:8080/x?y",
        "ipv6-mapped": b"ws://[::ffff:192.0.2.1]",
        "name-chars": b"ws://my-host_1~x.sub.example/",
        "long-label": b"ws://" + b"a" * 63 + b".example/",
        "path-chars": b"ws://h/a-b_c.d~e!$&'()*+,;=:@/%41?x=[1]&y=/?",
        "bad-fragment": b"ws://example.com/chat#frag",
        "bad-userinfo": b"ws://user:pw@example.com/",
        "bad-scheme": b"http://example.com/",
        "bad-port-zero": b"ws://example.com:0",
        "bad-port-big": b"ws://example.com:65536",
        "bad-numeric": b"ws://127.1/",
        "bad-zone": b"ws://[fe80::1%25eth0]/",
        "bad-space": b"ws://h/a b",
        "bad-percent": b"ws://h/%4g",
        "bad-empty-host": b"ws:///x",
        "bad-trailing-dot": b"ws://example.com./",
        "headers": b"ws://h/\0X-A: 1\r\nCookie: a=b\r\n",
        "headers-empty": b"ws://h/\0",
        "headers-tab": b"ws://h/\0X-A: a\tb\r\n",
        "headers-reserved": b"ws://h/\0Host: evil\r\n",
        "headers-no-crlf": b"ws://h/\0X-A: 1",
        "headers-injection": b"ws://h/\0X-A: 1\r\n\r\nGET / HTTP/1.1\r\n",
        "protocols": b"ws://h/chat\0\0chat\0superchat",
        "protocol-one": b"wss://[::1]:9443/\0X-Y: z\r\n\0v1.json",
        "protocol-dup": b"ws://h/\0\0chat\0chat",
        "protocol-bad": b"ws://h/\0\0a b",
        "protocol-empty": b"ws://h/\0\0",
        # Unix sockets (Node ws's form).
        "unix": b"ws+unix:/run/app.sock:/chat?room=1",
        "unix-tls": b"wss+unix:/tmp/s.sock",
        "unix-slashes": b"ws+unix:///tmp/s.sock:/x",
        "unix-relative": b"ws+unix:app.sock:?q",
        "unix-protocols": b"WS+UNIX:/s:/a:b\0X-A: 1\r\n\0chat",
        "bad-unix-empty": b"ws+unix::/x",
        "bad-unix-host": b"ws+unix://host/s",
        "bad-unix-query": b"ws+unix:/s?x",
        # The URL field is also read as a proxy's URL.
        "proxy": b"http://proxy.example:3128",
        "proxy-auth": b"http://user:p%40ss@[::1]:8080/",
        "proxy-user-only": b"HTTP://u@127.0.0.1",
        "bad-proxy-user-colon": b"http://u%3Ax:p@h",
        "bad-proxy-two-at": b"http://a@b@h",
        "bad-proxy-https": b"https://h:443",
    }
    return s


def response(status=b"101 Switching Protocols", upgrade=b"Upgrade: websocket\r\n",
             connection=b"Connection: Upgrade\r\n",
             accept=b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\n", extra=b"",
             proto=b"HTTP/1.1", eol=b"\r\n"):
    head = proto + b" " + status + b"\r\n" + upgrade + connection + accept + extra + b"\r\n"
    return head.replace(b"\r\n", eol)


def chs(flags, data, seed=0x5a):
    """fuzz-client-handshake input: flags (bits 0-1 offered protocols: none, chat,
    chat+superchat, empty list; bits 2-7 header limit / 64), split seed, response."""
    return bytes([flags, seed]) + data


def client_handshake_seeds():
    P_CHAT, P_BOTH, P_EMPTY = 1, 2, 3
    s = {
        "valid": chs(0, response()),
        "valid-frame": chs(0, response() + FRAME),
        "valid-two-frames": chs(P_CHAT, response() + FRAME + b"\x88\x02\x03\xe8"),
        "valid-protocol": chs(P_BOTH, response(extra=b"Sec-WebSocket-Protocol: superchat\r\n") + FRAME),
        "valid-protocol-chat": chs(P_CHAT, response(extra=b"Sec-WebSocket-Protocol: chat\r\n")),
        "valid-case": chs(0, response(upgrade=b"upgrade: WebSocket\r\n",
                                      connection=b"CONNECTION: keep-alive, UPGRADE\r\n")),
        "valid-no-reason": chs(0, response(status=b"101") + FRAME),
        "valid-extra-headers": chs(0, response(extra=b"Server: x\r\nDate: today\r\n")),
        "valid-small-limit": chs(3 << 2, response() + FRAME),
        "valid-lf-only": chs(0, response(eol=b"\n") + FRAME),
        "too-large": chs(1 << 2, response(extra=b"X-Pad: " + b"p" * 100 + b"\r\n")),
        "http10-101": chs(0, response(proto=b"HTTP/1.0")),
        "http20-101": chs(0, response(proto=b"HTTP/2.0")),
        "404": chs(0, b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"),
        "200-chunked": chs(0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "302": chs(0, b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n"),
        "100-then-101": chs(0, b"HTTP/1.1 100 Continue\r\n\r\n" + response()),
        "odd-reason": chs(0, b"HTTP/1.1 500 Caf\xc3\xa9 \xff!\r\n\r\n"),
        "long-reason": chs(0, b"HTTP/1.1 500 " + b"r" * 200 + b"\r\n\r\n"),
        "no-upgrade": chs(0, response(upgrade=b"")),
        "upgrade-h2c": chs(0, response(upgrade=b"Upgrade: h2c\r\n")),
        "no-connection": chs(0, response(connection=b"")),
        "connection-close": chs(0, response(connection=b"Connection: close\r\n")),
        "no-accept": chs(0, response(accept=b"")),
        "bad-accept": chs(0, response(accept=b"Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n")),
        "dup-accept": chs(0, response(extra=b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\n")),
        "extension": chs(0, response(extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")),
        "unrequested-protocol": chs(0, response(extra=b"Sec-WebSocket-Protocol: chat\r\n")),
        "empty-list-protocol": chs(P_EMPTY, response(extra=b"Sec-WebSocket-Protocol: chat\r\n")),
        "wrong-protocol": chs(P_BOTH, response(extra=b"Sec-WebSocket-Protocol: other\r\n")),
        "two-protocols": chs(P_BOTH, response(extra=b"Sec-WebSocket-Protocol: chat, superchat\r\n")),
        "dup-protocol": chs(P_BOTH, response(extra=b"Sec-WebSocket-Protocol: chat\r\n"
                                             b"Sec-WebSocket-Protocol: chat\r\n")),
        "tls-record": chs(0, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
        "request": chs(0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "incomplete": chs(0, response()[:40]),
        "empty": b"",
        "bad-header-token": chs(0, b"HTTP/1.1 101 Switching Protocols\r\n(Bad): x\r\n\r\n"),
    }
    return s


def proxy_answer(flags, data, seed=0x5a):
    """fuzz-http-proxy input: flags (bits 0-6 head limit / 16, 0: the default),
    split seed, the proxy's answer."""
    return bytes([flags, seed]) + data


def http_proxy_seeds():
    pa = proxy_answer
    s = {
        "200": pa(0, b"HTTP/1.1 200 Connection established\r\n\r\n"),
        "200-tinyproxy": pa(0, b"HTTP/1.0 200 Connection established\r\n"
                               b"Proxy-agent: tinyproxy/1.11.1\r\n\r\n"),
        "200-rest": pa(0, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nHTTP/1.1 101 x\r\n"),
        "200-tls-rest": pa(0, b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03\x00\x10"),
        "200-lf": pa(0, b"HTTP/1.1 200 OK\nA:\nB: \t x \xff\n\n"),
        "200-no-reason": pa(0, b"HTTP/1.1 200\r\n\r\n"),
        "200-small-limit": pa(2, b"HTTP/1.1 200 OK\r\nX: " + b"a" * 40 + b"\r\n\r\n"),
        "100-then-200": pa(0, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nx"),
        "103-then-407": pa(0, b"HTTP/1.1 103 Early Hints\r\nLink: a\r\n\r\nHTTP/1.1 407 A\r\n\r\n"),
        "407": pa(0, b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                     b"Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n"),
        "403": pa(0, b"HTTP/1.0 403 Access violation\r\nContent-Type: text/html\r\n\r\n<html>"),
        "502": pa(0, b"HTTP/1.1 502 Bad Gateway\r\n\r\n"),
        "101": pa(0, b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        "odd-reason": pa(0, b"HTTP/1.1 403 Caf\xc3\xa9\t!\r\n\r\n"),
        "long-reason": pa(0, b"HTTP/1.1 403 " + b"r" * 300 + b"\r\n"),
        "bad-ssh": pa(0, b"SSH-2.0-OpenSSH_9.2\r\n"),
        "bad-http2": pa(0, b"HTTP/2 200\r\n\r\n"),
        "bad-cr": pa(0, b"HTTP/1.1 200 OK\rX\n\r\n"),
        "bad-fold": pa(0, b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"),
        "bad-name": pa(0, b"HTTP/1.1 200 OK\r\nA b: c\r\n\r\n"),
        "bad-no-colon": pa(0, b"HTTP/1.1 200 OK\r\nAb\r\n\r\n"),
        "bad-ctl": pa(0, b"HTTP/1.1 200 OK\r\nA: \x01\r\n\r\n"),
        "over-limit": pa(1, b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20 + b"\r\n\r\n"),
        "incomplete": pa(0, b"HTTP/1.1 200 OK\r\nA: b\r\n"),
        "empty": b"",
    }
    return s


def main():
    for target, seeds in (("url", url_seeds()), ("client-handshake", client_handshake_seeds()),
                          ("http-proxy", http_proxy_seeds())):
        write_corpus(target, seeds)
        print(f"{target}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
