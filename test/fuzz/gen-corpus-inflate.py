#!/usr/bin/env python3
"""Write the seed corpus of fuzz-inflate into test/fuzz/corpus/inflate/.

The layout of an input is described at the top of fuzz-inflate.c: 6 bytes of
parameters, then frames (frames mode) or message records (round-trip mode). The
compressed seeds are made here with zlib (raw deflate, RFC 7692 section 7.2.1).
Deterministic: running it again rewrites the same files (and removes every other file
in that directory). Run from anywhere:

    python3 test/fuzz/gen-corpus-inflate.py
"""
import random
import struct
import zlib

from corpuslib import MASK, frame, write_corpus

TAIL = b"\x00\x00\xff\xff"
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 4, 2, 1


def params(server=False, takeover=False, roundtrip=False, take=False, no_pmd=False, discard=False,
           in_bits=15, level=6, max_size=0xFFFF, seed=0, mem_level=8, strategy=0):
    b0 = server | takeover << 1 | roundtrip << 2 | take << 3 | no_pmd << 4 | discard << 5
    b1 = (in_bits - 8) | level << 3
    b5 = (mem_level - 1) % 9 | strategy << 4
    return bytes([b0, b1]) + struct.pack(">H", max_size) + bytes([seed, b5])


class Compressor:
    """A peer's compressor: one raw deflate stream, kept across messages (takeover) or
    made anew for each."""

    def __init__(self, wbits=15, level=6, takeover=False, strategy=zlib.Z_DEFAULT_STRATEGY):
        self.args = (level, zlib.DEFLATED, -wbits, 8, strategy)
        self.takeover = takeover
        self.z = zlib.compressobj(*self.args)

    def message(self, data, bfinal=False, flushes=1):
        """The payload of one compressed message."""
        if not self.takeover:
            self.z = zlib.compressobj(*self.args)
        if bfinal:  # a final block, then an empty stored block without its 00 00 ff ff
            out = self.z.compress(data) + self.z.flush(zlib.Z_FINISH) + b"\x00"
            self.z = zlib.compressobj(*self.args)
            return out
        out = b""
        step = max(1, len(data) // flushes)
        for i in range(flushes):
            part = data[i * step:] if i == flushes - 1 else data[i * step:(i + 1) * step]
            out += self.z.compress(part) + self.z.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]


def deflate(data, **kw):
    return Compressor(**kw).message(data)


def fragments(op, payload, cuts, mask=MASK, between=b""):
    """A compressed message in frames cut at `cuts`, RSV1 on the first only."""
    pieces, at = [], 0
    for c in list(cuts) + [len(payload)]:
        pieces.append(payload[at:c])
        at = c
    out = b""
    for i, p in enumerate(pieces):
        out += frame(op if i == 0 else CONT, p, fin=i == len(pieces) - 1, mask=mask,
                     rsv=RSV1 if i == 0 else 0)
        if i < len(pieces) - 1:
            out += between
    return out


LOREM = (b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
         b"incididunt ut labore et dolore magna aliqua. ")
JSON = b'{"type":"update","topic":"prices","items":[{"id":1,"price":10.5},{"id":2,"price":7.25}]}'


def frames_seeds():
    rng = random.Random(7692)
    noise = bytes(rng.randrange(256) for _ in range(600))
    s = {}
    hello = deflate(b"Hello, compressed world! " * 4)
    s["shared-text"] = params() + frame(TEXT, hello, rsv=RSV1)
    s["shared-binary-from-server"] = params(server=True) + frame(BINARY, deflate(noise[:200] * 3),
                                                                  mask=None, rsv=RSV1)
    s["shared-many"] = params() + b"".join(
        frame(TEXT, deflate(JSON.replace(b"10.5", str(i).encode())), rsv=RSV1) for i in range(6))
    s["shared-level0-stored"] = params() + frame(BINARY, deflate(noise, level=0), rsv=RSV1)
    s["shared-two-flushes"] = params() + frame(TEXT, Compressor().message(LOREM * 3, flushes=3),
                                               rsv=RSV1)
    s["shared-bfinal"] = params() + frame(TEXT, Compressor().message(LOREM, bfinal=True), rsv=RSV1)
    s["empty-fixed-block"] = params() + frame(TEXT, b"\x02\x00", rsv=RSV1)
    s["empty-payload"] = params(server=True) + frame(BINARY, b"", mask=None, rsv=RSV1)
    s["empty-stored-block"] = params() + frame(TEXT, b"\x00", rsv=RSV1)

    c = Compressor(takeover=True)
    s["takeover-context"] = params(takeover=True) + b"".join(
        frame(TEXT, c.message(m), rsv=RSV1) for m in [JSON, JSON, JSON.replace(b"7.25", b"8")])
    for bits in (9, 12):
        c = Compressor(wbits=bits, takeover=True)
        s["takeover-window%d" % bits] = params(takeover=True, in_bits=bits) + b"".join(
            frame(BINARY, c.message(noise[:300] + LOREM * 2), rsv=RSV1) for _ in range(3))
    c = Compressor(wbits=9, takeover=True, strategy=zlib.Z_RLE)
    s["takeover-window8-rle"] = params(takeover=True, in_bits=8, server=True) + b"".join(
        frame(TEXT, c.message(b"aaaaabbbbbbbbbbbcccc" * 20 + m), mask=None, rsv=RSV1)
        for m in (b"x", b"yy"))
    # A window larger than agreed: a distance past the 512 bytes kept from the message
    # before fails (1007). (Within one message zlib finds every distance in its output.)
    c = Compressor(wbits=15, takeover=True)
    s["takeover-window-too-big"] = params(takeover=True, in_bits=9) + b"".join(
        frame(BINARY, c.message(noise), rsv=RSV1) for _ in range(2))
    # In takeover mode an uncompressed message in between leaves the context alone.
    c = Compressor(takeover=True)
    s["takeover-uncompressed-between"] = params(takeover=True) + frame(
        TEXT, c.message(LOREM), rsv=RSV1) + frame(TEXT, b"plain") + frame(TEXT, c.message(LOREM),
                                                                           rsv=RSV1)

    ping = frame(PING, b"are you there")
    payload = deflate(LOREM * 4)
    s["fragmented-ping"] = params() + fragments(TEXT, payload, [5, 40], between=ping)
    s["fragmented-empty-first"] = params(take=True) + fragments(BINARY, payload, [0, 1])
    s["fragmented-takeover"] = params(takeover=True, take=True) + fragments(
        TEXT, payload, [len(payload) // 2]) + frame(TEXT, b"after")

    bomb = deflate(bytes(1 << 20), level=9)
    s["bomb-1mib"] = params() + frame(BINARY, bomb, rsv=RSV1)
    s["bomb-takeover"] = params(takeover=True, in_bits=10) + frame(
        BINARY, deflate(bytes(1 << 20), level=9, wbits=10), rsv=RSV1)
    s["exact-max"] = params(max_size=4096) + frame(TEXT, deflate(b"a" * 4096), rsv=RSV1)
    s["max-plus-one"] = params(max_size=4096) + frame(TEXT, deflate(b"a" * 4097), rsv=RSV1)
    s["max-zero"] = params(max_size=0) + frame(TEXT, deflate(b""), rsv=RSV1) + frame(
        TEXT, deflate(b"x"), rsv=RSV1)

    s["corrupt-random"] = params() + frame(BINARY, noise[:64], rsv=RSV1)
    s["corrupt-truncated"] = params() + frame(TEXT, hello[:len(hello) // 2], rsv=RSV1)
    s["corrupt-reserved-btype"] = params() + frame(BINARY, b"\x07\x00\x00", rsv=RSV1)
    s["corrupt-bad-stored-len"] = params() + frame(BINARY, b"\x00\x05\x00\x00\x00abc", rsv=RSV1)
    s["invalid-utf8-text"] = params() + frame(TEXT, deflate(b"caf\xc3 \xff\xfe" * 10), rsv=RSV1)
    s["utf8-split-by-compression"] = params() + frame(
        TEXT, deflate("\u20ac\U0001f600 ".encode() * 30), rsv=RSV1)

    s["rsv1-continuation"] = params() + frame(TEXT, b"abc", fin=False) + frame(
        CONT, deflate(b"def"), rsv=RSV1)
    s["rsv1-ping"] = params() + frame(PING, deflate(b"ping"), rsv=RSV1)
    s["rsv1-close"] = params() + frame(CLOSE, b"\x03\xe8", rsv=RSV1)
    s["rsv1-not-agreed"] = params(no_pmd=True) + frame(TEXT, hello, rsv=RSV1)
    s["rsv2-data"] = params() + frame(TEXT, hello, rsv=RSV1 | RSV2)
    s["rsv3-data"] = params() + frame(BINARY, b"x", rsv=RSV3)
    s["unmasked-to-server"] = params() + frame(TEXT, hello, mask=None, rsv=RSV1)

    s["mixed-close"] = params(take=True) + frame(TEXT, b"plain text") + frame(
        BINARY, deflate(noise[:100] * 2), rsv=RSV1) + frame(PONG, b"") + frame(
        CLOSE, b"\x03\xe8bye")
    # After a close, data is parsed (and RSV1 still checked) but not delivered.
    s["discard-after-close"] = params(discard=True, takeover=True) + frame(CLOSE, b"\x03\xe8") + \
        fragments(TEXT, payload, [7]) + frame(PING, b"still") + frame(CONT, b"x", rsv=RSV1)
    return s


def rec(data, compressed=True, frags=1, ping=False, force_text=False, text=True, how=0):
    assert len(data) < 255
    flags = compressed | (frags - 1) << 1 | ping << 3 | force_text << 4 | text << 5 | how << 6
    return bytes([flags, len(data)]) + data


def run(count, value=0, compressed=True, text=False, frags=1):
    assert count % 4 == 0
    flags = compressed | (frags - 1) << 1 | text << 5
    return bytes([flags, 255]) + struct.pack(">H", count // 4) + bytes([value])


def roundtrip_seeds():
    rng = random.Random(1952)
    noise = bytes(rng.randrange(256) for _ in range(200))
    words = LOREM[:120]
    s = {}
    rt = lambda **kw: params(roundtrip=True, **kw)
    s["rt-shared"] = rt() + rec(words) + rec(JSON) + rec(noise[:100]) + rec(b"")
    s["rt-takeover"] = rt(takeover=True) + rec(JSON) + rec(JSON) + rec(words) + rec(JSON)
    for bits in (9, 11, 13, 15):
        s["rt-takeover-window%d" % bits] = rt(takeover=True, in_bits=bits, seed=bits) + rec(
            noise[:150]) + rec(noise[:150], frags=3) + rec(words)
    s["rt-window8-huffman"] = rt(takeover=True, in_bits=8, strategy=2) + rec(words) + rec(words)
    s["rt-window8-rle"] = rt(in_bits=8, strategy=3) + rec(b"a" * 100 + b"b" * 50) + run(4000, 65)
    s["rt-flushes"] = rt(takeover=True, seed=3) + rec(words, how=1) + rec(words, how=2) + rec(
        words, how=3) + rec(words, how=0)
    s["rt-bfinal-shared"] = rt(seed=9) + rec(JSON, how=3) + rec(b"", how=3)
    s["rt-fragments-pings"] = rt(seed=5, server=True) + rec(words, frags=4, ping=True) + rec(
        noise[:60], frags=2, ping=True, compressed=False) + rec(JSON, frags=3, ping=True)
    s["rt-empty-takeover"] = rt(takeover=True) + rec(JSON) + rec(b"") + rec(b"") + rec(JSON)
    s["rt-uncompressed-mix"] = rt(takeover=True, take=True) + rec(words) + rec(
        words, compressed=False) + rec(words) + rec(b"", compressed=False)
    s["rt-levels"] = rt(level=0, mem_level=1) + rec(words) + rec(noise[:120])
    s["rt-level9-filtered"] = rt(level=9, mem_level=9, strategy=1, takeover=True) + rec(
        words) + rec(words)
    s["rt-bomb"] = rt() + rec(b"before") + run(65535 * 4, 0)
    s["rt-bomb-takeover"] = rt(takeover=True, in_bits=10, take=True) + run(60000, 0x20) + run(
        200000, 0x20, frags=3)
    s["rt-exact-max"] = rt(max_size=1000) + run(1000, 120) + run(1004, 120)
    s["rt-compressed-over-max"] = rt(max_size=100) + rec(noise[:99], frags=2)
    s["rt-invalid-utf8"] = rt(takeover=True) + rec(words) + rec(b"ok \xc3\x28 not", force_text=True)
    s["rt-invalid-utf8-plain"] = rt() + rec(b"\xed\xa0\x80", force_text=True, compressed=False)
    s["rt-utf8-text"] = rt(takeover=True) + rec("\u00e9t\u00e9 \u20ac \U0001f600".encode() * 5)
    return s


def main():
    seeds = {**frames_seeds(), **roundtrip_seeds()}
    write_corpus("inflate", seeds)
    print("corpus/inflate: %d seeds, %d bytes" % (len(seeds), sum(map(len, seeds.values()))))


if __name__ == "__main__":
    main()
