/* fuzz-inflate: permessage-deflate's inflate path through the frame reader
 * (lib/reader.h with a wsev_deflate from lib/deflate.h), in two modes.
 *
 * Input: 6 bytes of parameters, then the body.
 *   byte 0: bit 0: frames come from a server (unmasked), else from a client (masked);
 *           bit 1: the peer keeps its context (in_takeover: a dedicated inflater);
 *           bit 2: round-trip mode (else frames mode);
 *           bit 3: take each reassembled message's buffer (wsev__reader_take_message);
 *           bit 4 (frames mode): permessage-deflate not agreed at all;
 *           bit 5 (frames mode): discard data after the first CLOSE, as after ours
 *   byte 1: bits 0-2: the peer's window, in_bits - 8 (8..15);
 *           bits 3-6 (round trip): zlib level, mod 10
 *   bytes 2-3: the maximum message size, big endian (0..65535)
 *   byte 4: split seed
 *   byte 5 (round trip): bits 0-3: zlib memLevel (mod 9, + 1); bits 4-5: strategy
 *
 * Frames mode: the body is the bytes a peer sends. Invariants (abort() when broken):
 * - no crash, leak or undefined behaviour (ASan, LSan, UBSan);
 * - a MESSAGE is at most the maximum, a text one is valid UTF-8, a PING/PONG at most
 *   125 bytes, a CLOSE fails with 0, 1002 or 1007;
 * - a FAIL is 1002, 1007 or 1009 (1011 only without memory, which never happens here);
 *   NOMEM never happens;
 * - after wsev__reader_discard (bit 5) no MESSAGE comes;
 * - the events (kinds, codes, lengths, bytes) are the same whether the body is read in
 *   one piece, in pieces from the seed, or byte by byte, each run with a fresh reader
 *   and fresh streams (a dedicated inflater carries state across messages).
 *
 * Round-trip mode: the body is a list of records, each a message that this target
 * compresses with zlib (raw deflate, the agreed window, one stream kept across
 * messages when in_takeover) and frames itself:
 *   1 byte flags: bit 0 compressed (RSV1) or sent as it is; bits 1-2 fragments - 1;
 *     bit 3 a ping between fragments; bit 4 text even if not UTF-8; bit 5 text if it
 *     is UTF-8; bits 6-7 how it is flushed: 0 one sync flush, 1 two sync flushes,
 *     2 a full flush then a sync flush, 3 a final block (BFINAL) and an empty stored
 *     block after it;
 *   1 byte length L, then L bytes of message; L = 255: a run instead, 2 bytes count/4
 *     (big endian) and 1 byte value (up to 256 KiB, bombs for the 64 KiB maximum;
 *     1 MiB of runs in all).
 * The reader must give back exactly those messages (and pings), byte for byte, in
 * every split; a message over the maximum (compressed or inflated) must end the run
 * with 1009 at that message, and a text one that is not UTF-8 with 1007. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "deflate.h"
#include "frame.h"
#include "fuzz-common.h"
#include "reader.h"
#include "utf8.h"

#define PARAMS 6
#define MAX_RECORDED 256 /* events kept for comparison; all are hashed */
#define MAX_MESSAGES 64  /* round trip: records read */
#define BYTE_BY_BYTE_MAX 16384
#define RUN_BYTES_MAX (1024 * 1024) /* round trip: bytes of runs in all, for speed */

typedef struct {
  int from_server, in_takeover, roundtrip, take, agreed, discard;
  int in_bits, level, mem_level, strategy;
  uint64_t max;
  uint8_t seed;
} config;

typedef struct {
  int kind;
  unsigned code, fail;
  int text;
  size_t len;
  uint64_t hash;
} record;

/* What one run of the reader gave. */
typedef struct {
  record ev[MAX_RECORDED];
  size_t count;
  uint64_t hash; /* of every event, also past MAX_RECORDED */
} outcome;

/* Round trip: an event the reader must give, in order. */
typedef struct {
  int kind; /* WSEV_READ_MESSAGE, _PING or _FAIL */
  int text;
  unsigned fail;
  const uint8_t *data;
  size_t len;
} expect;

typedef struct {
  expect ev[2 * MAX_MESSAGES * 4];
  size_t count;
} plan;

enum { SPLIT_WHOLE, SPLIT_SEEDED, SPLIT_BYTES };
static const char *const split_name[] = {"whole", "seeded", "byte by byte"};

static uint64_t mix(uint64_t h, uint64_t v) {
  return (h ^ v) * UINT64_C(0x100000001b3) + (h >> 29);
}

static void print_outcome(const char *what, const outcome *o) {
  fprintf(stderr, "%s: %zu events\n", what, o->count);
  for (size_t i = 0; i < o->count && i < MAX_RECORDED && i < 40; i++)
    fprintf(stderr, "  kind %d code %u fail %u text %d len %zu hash %016llx\n", o->ev[i].kind,
            o->ev[i].code, o->ev[i].fail, o->ev[i].text, o->ev[i].len,
            (unsigned long long)o->ev[i].hash);
}

/* Read `in` with a fresh reader (and fresh streams) in pieces chosen by `split`,
 * checking each event, and against `pl` when given. */
static void run(const config *c, const uint8_t *in, size_t n, int split, outcome *o,
                const plan *pl) {
  memset(o, 0, sizeof *o);
  uint8_t *copy = malloc(n ? n : 1); /* the reader unmasks in place */
  if (!copy) abort();
  if (n) memcpy(copy, in, n);
  wsev_pool pool;
  wsev__pool_init(&pool);
  wsev_reader r;
  wsev__reader_init(&r, c->from_server);
  wsev_deflate_streams *streams = NULL;
  wsev_deflate *d = NULL;
  if (c->agreed) {
    wsev_deflate_options options = {.mode = c->in_takeover ? WSEV_DEFLATE_DEDICATED
                                                           : WSEV_DEFLATE_SHARED,
                                    .level = 6, .window_bits = 15, .mem_level = 8,
                                    .threshold = 128};
    streams = wsev__deflate_streams_new();
    FUZZ_CHECK(streams != NULL);
    d = wsev__deflate_new(&options, streams);
    FUZZ_CHECK(d != NULL);
    d->agreed.on = 1;
    d->agreed.in_takeover = (uint8_t)c->in_takeover;
    d->agreed.in_bits = (uint8_t)c->in_bits;
    d->agreed.out_takeover = (uint8_t)c->in_takeover;
    d->agreed.out_bits = 15;
    wsev__reader_inflate(&r, d);
  }

  fuzz_rng rng = {UINT64_C(0x5eed) ^ c->seed ^ ((uint64_t)n << 8)};
  size_t at = 0;
  int over = 0;
  while (at < n && !over) {
    size_t len = split == SPLIT_WHOLE ? n - at : split == SPLIT_BYTES ? 1 : fuzz_chunk(&rng, n - at);
    uint8_t *p = copy + at;
    size_t left = len;
    for (;;) {
      wsev_read_event ev;
      memset(&ev, 0, sizeof ev);
      wsev_read_kind kind = wsev__reader_next(&r, &pool, c->max, &p, &left, &ev);
      FUZZ_CHECK(p + left == copy + at + len); /* it only moves forward within the piece */
      if (kind == WSEV_READ_MORE) {
        FUZZ_CHECK(left == 0);
        break;
      }
      FUZZ_CHECK(kind != WSEV_READ_NOMEM);
      record e = {.kind = (int)kind, .code = ev.code, .fail = ev.fail};
      switch (kind) {
      case WSEV_READ_MESSAGE:
        FUZZ_CHECK(!r.discard);
        FUZZ_CHECK(ev.len <= c->max);
        FUZZ_CHECK(ev.len == 0 || ev.data != NULL);
        e.text = ev.text;
        if (ev.text) {
          FUZZ_CHECK(wsev__utf8_is_valid(ev.data, ev.len));
          FUZZ_CHECK(ref_utf8_valid(ev.data, ev.len));
        }
        break;
      case WSEV_READ_PING:
      case WSEV_READ_PONG: FUZZ_CHECK(ev.len <= WSEV_FRAME_MAX_CONTROL); break;
      case WSEV_READ_CLOSE:
        FUZZ_CHECK(ev.fail == 0 || ev.fail == 1002 || ev.fail == 1007);
        if (c->discard) wsev__reader_discard(&r);
        FUZZ_CHECK(ev.len <= WSEV_FRAME_MAX_CONTROL - 2);
        break;
      case WSEV_READ_FAIL:
        FUZZ_CHECK(ev.fail == 1002 || ev.fail == 1007 || ev.fail == 1009);
        over = 1;
        break;
      default: FUZZ_CHECK(!"unknown event kind");
      }
      e.len = ev.len;
      e.hash = ev.len ? fuzz_hash(ev.data, ev.len) : 0;

      if (pl) { /* round trip: exactly the planned event */
        FUZZ_CHECK(o->count < pl->count);
        const expect *x = &pl->ev[o->count];
        if (x->kind != e.kind || x->fail != e.fail ||
            (x->kind == WSEV_READ_MESSAGE && x->text != e.text) ||
            (x->kind != WSEV_READ_FAIL &&
             (x->len != ev.len || (ev.len && memcmp(x->data, ev.data, ev.len) != 0)))) {
          fprintf(stderr,
                  "round trip (%s), event %zu: got kind %d fail %u text %d len %zu; "
                  "expected kind %d fail %u text %d len %zu\n",
                  split_name[split], o->count, e.kind, e.fail, e.text, ev.len, x->kind, x->fail,
                  x->text, x->len);
          FUZZ_CHECK(!"round trip: not the message that was sent");
        }
      }

      if (kind == WSEV_READ_MESSAGE && c->take) {
        wsev_buf taken;
        if (wsev__reader_take_message(&r, &taken)) {
          FUZZ_CHECK(taken.data == ev.data && taken.len == ev.len && taken.cap >= taken.len);
          wsev__buf_release(&pool, &taken);
        }
      }
      if (o->count < MAX_RECORDED) o->ev[o->count] = e;
      o->count++;
      o->hash = mix(mix(mix(mix(o->hash, e.kind), e.code * 65536u + e.fail),
                        (uint64_t)e.len * 2 + (unsigned)e.text),
                    e.hash);
      if (over) break;
    }
    at += len;
  }
  if (pl) FUZZ_CHECK(o->count == pl->count); /* every planned event came */

  wsev__reader_free(&r, &pool);
  wsev__deflate_free(d);
  wsev__deflate_streams_free(streams);
  wsev__pool_free(&pool);
  free(copy);
}

static void same(const outcome *a, const outcome *b, int split) {
  int equal = a->count == b->count && a->hash == b->hash;
  for (size_t i = 0; equal && i < a->count && i < MAX_RECORDED; i++) {
    const record *x = &a->ev[i], *y = &b->ev[i];
    equal = x->kind == y->kind && x->code == y->code && x->fail == y->fail &&
            x->text == y->text && x->len == y->len && x->hash == y->hash;
  }
  if (!equal) {
    print_outcome("whole", a);
    print_outcome(split_name[split], b);
    FUZZ_CHECK(!"the events depend on how the bytes were split");
  }
}

/* Read the body in every split and compare. */
static void run_splits(const config *c, const uint8_t *in, size_t n, const plan *pl) {
  static outcome whole, other;
  run(c, in, n, SPLIT_WHOLE, &whole, pl);
  run(c, in, n, SPLIT_SEEDED, &other, pl);
  same(&whole, &other, SPLIT_SEEDED);
  if (n <= BYTE_BY_BYTE_MAX) {
    run(c, in, n, SPLIT_BYTES, &other, pl);
    same(&whole, &other, SPLIT_BYTES);
  }
}

/* ------------------------------------------------------------- round trip ---- */

typedef struct {
  uint8_t *data;
  size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
      cap *= 2;
    uint8_t *grown = realloc(b->data, cap);
    if (!grown) abort();
    b->data = grown;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
}

/* Run zlib over in[0..n) with `flush`, appending to *out. */
static void deflate_into(z_stream *z, const uint8_t *in, size_t n, int flush, bytes *out) {
  uint8_t buf[4096];
  z->next_in = (Bytef *)in;
  z->avail_in = (uInt)n;
  for (;;) {
    z->next_out = buf;
    z->avail_out = sizeof buf;
    int rc = deflate(z, flush);
    FUZZ_CHECK(rc == Z_OK || rc == Z_BUF_ERROR || rc == Z_STREAM_END);
    put(out, buf, sizeof buf - z->avail_out);
    if (z->avail_out && !z->avail_in) break; /* all in, all out */
  }
}

/* The payload of a compressed message as RFC 7692 section 7.2.1 says: the flushed
 * stream without its trailing empty stored block's 00 00 ff ff. */
static void compress_message(z_stream *z, int takeover, int how, size_t cut, const uint8_t *m,
                             size_t len, bytes *out) {
  static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
  size_t start = out->len;
  if (how == 3) { /* a final block; then an empty stored block (3 zero bits, padding) */
    deflate_into(z, m, len, Z_FINISH, out);
    put(out, "", 1);
    deflateReset(z); /* the stream ended: the peer's inflater starts anew too */
    return;
  }
  if (how == 1 || how == 2) {
    deflate_into(z, m, cut, how == 1 ? Z_SYNC_FLUSH : Z_FULL_FLUSH, out);
    m += cut;
    len -= cut;
  }
  deflate_into(z, m, len, Z_SYNC_FLUSH, out);
  /* zlib writes nothing for a flush with nothing new (an empty message after one):
   * the empty stored block the RFC then appends is 3 zero bits padded to a byte, then
   * 00 00 ff ff, which goes. */
  if (out->len == start) {
    put(out, "", 1);
  } else {
    FUZZ_CHECK(out->len - start >= 4 && memcmp(out->data + out->len - 4, tail, 4) == 0);
    out->len -= 4;
  }
  if (!takeover) deflateReset(z);
}

static void frame(bytes *out, int fin, int opcode, const uint8_t *p, size_t n, const config *c,
                  fuzz_rng *rng) {
  uint8_t hdr[WSEV_FRAME_MAX_HEADER], key[4] = {0, 0, 0, 0};
  uint64_t v = fuzz_next(rng);
  if (v & 1) memcpy(key, &v, 4); /* sometimes all zero */
  size_t h = wsev__frame_encode_header(hdr, fin, opcode, n, c->from_server ? NULL : key);
  put(out, hdr, h);
  size_t at = out->len;
  put(out, p, n);
  if (!c->from_server) wsev__frame_unmask(out->data + at, n, key, 0);
}

static void roundtrip(const config *c, const uint8_t *body, size_t n) {
  static plan pl;
  pl.count = 0;
  static const int strategies[4] = {Z_DEFAULT_STRATEGY, Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE};
  int strategy = strategies[c->strategy];
  /* zlib's raw deflate cannot do a 256-byte window; with no matches farther than 1
   * byte (RLE) or none (Huffman only), window 9's output is window 8's too. */
  int bits = c->in_bits < 9 ? 9 : c->in_bits;
  if (c->in_bits < 9 && strategy != Z_HUFFMAN_ONLY) strategy = Z_RLE;
  z_stream z;
  memset(&z, 0, sizeof z);
  FUZZ_CHECK(deflateInit2(&z, c->level, Z_DEFLATED, -bits, c->mem_level, strategy) == Z_OK);

  uint8_t *msgs[MAX_MESSAGES];
  size_t nmsgs = 0;
  bytes stream = {0}, payload = {0};
  put(&payload, "", 1); /* allocated, so payload.data + 0 is never NULL + 0 */
  fuzz_rng rng = {UINT64_C(0xf00d) ^ c->seed};
  size_t i = 0, run_bytes = 0;
  while (i < n && nmsgs < MAX_MESSAGES) {
    uint8_t flags = body[i++];
    size_t len = i < n ? body[i++] : 0;
    uint8_t *m;
    if (len == 255) { /* a run */
      size_t count = 0;
      uint8_t value = 0;
      if (i + 3 <= n) {
        count = ((size_t)body[i] << 8 | body[i + 1]) * 4;
        if (count > RUN_BYTES_MAX - run_bytes) count = RUN_BYTES_MAX - run_bytes;
        run_bytes += count;
        value = body[i + 2];
        i += 3;
      } else {
        i = n;
      }
      m = malloc(count ? count : 1);
      if (!m) abort();
      memset(m, value, count);
      len = count;
    } else {
      if (len > n - i) len = n - i;
      m = malloc(len ? len : 1);
      if (!m) abort();
      if (len) memcpy(m, body + i, len);
      i += len;
    }
    msgs[nmsgs++] = m;

    int compressed = flags & 1, fragments = 1 + ((flags >> 1) & 3), pings = (flags >> 3) & 1;
    int valid = ref_utf8_valid(m, len);
    int text = (flags & 0x10) || ((flags & 0x20) && valid);
    int how = flags >> 6;
    payload.len = 0;
    if (compressed)
      compress_message(&z, c->in_takeover, how, len ? fuzz_next(&rng) % (len + 1) : 0, m, len,
                       &payload);
    else
      put(&payload, m, len);

    /* The fragments, at cut points from the seed; RSV1 on the first one only. What
     * the reader must say is followed frame by frame: over the maximum (all fragments
     * so far) is 1009 at that frame's header, and a plain text message fails (1007) in
     * the frame where its UTF-8 stops being a viable prefix. A failure ends the plan. */
    unsigned fail = 0;
    size_t at = 0;
    for (int f = 0; f < fragments && !fail; f++) {
      size_t left = payload.len - at;
      size_t take = f == fragments - 1 ? left : (left ? fuzz_next(&rng) % (left + 1) : 0);
      int opcode = f ? WSEV_OP_CONT : (text ? WSEV_OP_TEXT : WSEV_OP_BINARY) |
                                          (compressed ? WSEV_FRAME_RSV1 : 0);
      frame(&stream, f == fragments - 1, opcode, payload.data + at, take, c, &rng);
      at += take;
      if (at > c->max)
        fail = 1009;
      else if (!compressed && text && ref_utf8_class(m, at) < 0)
        fail = 1007;
      if (!fail && pings && f < fragments - 1) {
        uint8_t ping[8];
        size_t plen = fuzz_next(&rng) % (sizeof ping + 1);
        for (size_t k = 0; k < plen; k++)
          ping[k] = (uint8_t)fuzz_next(&rng);
        frame(&stream, 1, WSEV_OP_PING, ping, plen, c, &rng);
        uint8_t *copy = malloc(plen ? plen : 1); /* what the reader must give back */
        if (!copy) abort();
        memcpy(copy, ping, plen);
        FUZZ_CHECK(pl.count + 2 <= sizeof pl.ev / sizeof pl.ev[0]);
        pl.ev[pl.count++] = (expect){.kind = WSEV_READ_PING, .data = copy, .len = plen};
      }
    }
    /* Once whole: inflated over the maximum, then not UTF-8 (for a plain one, a
     * message that ends inside a code point). */
    if (!fail && len > c->max)
      fail = 1009;
    else if (!fail && text && !valid)
      fail = 1007;
    if (fail) {
      pl.ev[pl.count++] = (expect){.kind = WSEV_READ_FAIL, .fail = fail};
      break;
    }
    pl.ev[pl.count++] = (expect){.kind = WSEV_READ_MESSAGE, .text = text, .data = m, .len = len};
  }
  deflateEnd(&z);

  run_splits(c, stream.data, stream.len, &pl);

  for (size_t k = 0; k < pl.count; k++)
    if (pl.ev[k].kind == WSEV_READ_PING) free((void *)pl.ev[k].data);
  for (size_t k = 0; k < nmsgs; k++)
    free(msgs[k]);
  free(stream.data);
  free(payload.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < PARAMS) return 0;
  config c = {
      .from_server = data[0] & 1,
      .in_takeover = (data[0] >> 1) & 1,
      .roundtrip = (data[0] >> 2) & 1,
      .take = (data[0] >> 3) & 1,
      .agreed = !((data[0] >> 4) & 1) || ((data[0] >> 2) & 1),
      .discard = ((data[0] >> 5) & 1) && !((data[0] >> 2) & 1),
      .in_bits = 8 + (data[1] & 7),
      .level = ((data[1] >> 3) & 15) % 10,
      .max = (uint64_t)data[2] << 8 | data[3],
      .seed = data[4],
      .mem_level = 1 + (data[5] & 15) % 9,
      .strategy = (data[5] >> 4) & 3,
  };
  if (c.roundtrip)
    roundtrip(&c, data + PARAMS, size - PARAMS);
  else
    run_splits(&c, data + PARAMS, size - PARAMS, NULL);
  return 0;
}
