/* permessage-deflate over zlib: raw deflate streams (no zlib header), each message
 * flushed with Z_SYNC_FLUSH and its trailing 00 00 ff ff taken off (RFC 7692 section
 * 7.2.1), and put back before inflating (section 7.2.2). */
#include "deflate.h"

#include <string.h>

#include "alloc.h"

#define DEFAULT_LEVEL 6
#define DEFAULT_MEM_LEVEL 8
#define DEFAULT_THRESHOLD 128

int wsev__deflate_options_normalize(const wsev_deflate_options *in, wsev_deflate_options *out) {
  memset(out, 0, sizeof *out);
  if (!in || in->mode == WSEV_DEFLATE_OFF) return 0;
  if ((in->mode != WSEV_DEFLATE_SHARED && in->mode != WSEV_DEFLATE_DEDICATED) || in->level < 0 ||
      in->level > 9 || (in->window_bits && (in->window_bits < 9 || in->window_bits > 15)) ||
      in->mem_level < 0 || in->mem_level > 9)
    return UV_EINVAL;
  out->mode = in->mode;
  out->level = in->level ? in->level : DEFAULT_LEVEL;
  out->window_bits = in->window_bits ? in->window_bits : 15;
  out->mem_level = in->mem_level ? in->mem_level : DEFAULT_MEM_LEVEL;
  out->threshold = in->threshold ? in->threshold : DEFAULT_THRESHOLD;
  return 0;
}

wsev_pmd_config wsev__deflate_config(const wsev_deflate_options *options) {
  wsev_pmd_config config = {WSEV_PMD_OFF, 15};
#ifdef WSEV_HAVE_ZLIB
  if (options && options->mode != WSEV_DEFLATE_OFF) {
    config.mode = options->mode == WSEV_DEFLATE_SHARED ? WSEV_PMD_SHARED : WSEV_PMD_DEDICATED;
    config.window_bits = options->window_bits;
  }
#else
  (void)options;
#endif
  return config;
}

#ifdef WSEV_HAVE_ZLIB
#include <zlib.h>
#ifdef WSEV_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

struct wsev_deflate_streams {
  z_stream *out[16]; /* by window bits (9..15): compressors without context */
  int out_level[16], out_mem_level[16];
#ifdef WSEV_HAVE_LIBDEFLATE
  struct libdeflate_compressor *whole; /* a message without context, in one call */
  int whole_level;
#endif
  z_stream *in;     /* the inflater without context (any window up to 15) */
  uint8_t *scratch; /* compressed output */
  size_t scratch_cap;
};

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  (void)opaque;
  return size && items > SIZE_MAX / size ? NULL : wsev__malloc((size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p) {
  (void)opaque;
  wsev__free(p);
}

static z_stream *new_stream(void) {
  z_stream *z = wsev__calloc(1, sizeof *z);
  if (z) {
    z->zalloc = z_alloc;
    z->zfree = z_free;
  }
  return z;
}

static z_stream *new_deflater(int bits, int level, int mem_level) {
  z_stream *z = new_stream();
  if (z && deflateInit2(z, level, Z_DEFLATED, -bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
    wsev__free(z);
    z = NULL;
  }
  return z;
}

static z_stream *new_inflater(int bits) {
  z_stream *z = new_stream();
  /* A window of 256 bytes (8) is read with 512 (9): zlib's smallest, and larger is safe. */
  if (z && inflateInit2(z, -(bits < 9 ? 9 : bits)) != Z_OK) {
    wsev__free(z);
    z = NULL;
  }
  return z;
}

static void free_deflater(z_stream *z) {
  if (!z) return;
  deflateEnd(z);
  wsev__free(z);
}

static void free_inflater(z_stream *z) {
  if (!z) return;
  inflateEnd(z);
  wsev__free(z);
}

wsev_deflate_streams *wsev__deflate_streams_new(void) {
  return wsev__calloc(1, sizeof(wsev_deflate_streams));
}

void wsev__deflate_streams_free(wsev_deflate_streams *s) {
  if (!s) return;
  for (int i = 0; i < 16; i++)
    free_deflater(s->out[i]);
  free_inflater(s->in);
#ifdef WSEV_HAVE_LIBDEFLATE
  if (s->whole) libdeflate_free_compressor(s->whole);
#endif
  wsev__free(s->scratch);
  wsev__free(s);
}

wsev_deflate *wsev__deflate_new(const wsev_deflate_options *options,
                                wsev_deflate_streams *streams) {
  wsev_deflate *d = streams ? wsev__calloc(1, sizeof *d) : NULL;
  if (d) {
    d->options = *options;
    d->streams = streams;
  }
  return d;
}

void wsev__deflate_free(wsev_deflate *d) {
  if (!d) return;
  free_deflater(d->own_out);
  free_inflater(d->own_in);
  wsev__free(d);
}

/* The compressor for a message of d: its own, or the context's for its window (made
 * again if the options changed since). */
static z_stream *compressor(wsev_deflate *d) {
  wsev_deflate_streams *s = d->streams;
  const wsev_deflate_options *o = &d->options;
  int bits = d->agreed.out_bits;
  if (d->agreed.out_takeover) {
    if (!d->own_out) d->own_out = new_deflater(bits, o->level, o->mem_level);
    return d->own_out;
  }
  if (s->out[bits] && (s->out_level[bits] != o->level || s->out_mem_level[bits] != o->mem_level)) {
    free_deflater(s->out[bits]);
    s->out[bits] = NULL;
  }
  if (!s->out[bits]) {
    s->out[bits] = new_deflater(bits, o->level, o->mem_level);
    s->out_level[bits] = o->level;
    s->out_mem_level[bits] = o->mem_level;
  }
  return s->out[bits];
}

static int grow_scratch(wsev_deflate_streams *s, size_t need) {
  if (need <= s->scratch_cap) return 0;
  uint8_t *grown = wsev__realloc(s->scratch, need);
  if (!grown) return UV_ENOMEM;
  s->scratch = grown;
  s->scratch_cap = need;
  return 0;
}

#ifdef WSEV_HAVE_LIBDEFLATE
/* A message without context with libdeflate, which compresses a whole buffer in one
 * call (a fifth faster than zlib here, at the same level and size). Its stream ends
 * with a final block; a 0x00 after it turns the 00 00 ff ff the receiver appends into
 * an empty stored block, as RFC 7692 section 7.2.3.3's example does. Its window is
 * always 32 KiB: used where the agreed window is that, or the message no larger than
 * the window (no distance in it can reach further). Returns as wsev__deflate_message.
 * libdeflate 1.14 allocates its compressor (one per loop) with malloc, not through wsev's
 * allocator. */
static int deflate_whole(wsev_deflate *d, const uint8_t *data, size_t len, const uint8_t **out,
                         size_t *out_len) {
  wsev_deflate_streams *s = d->streams;
  if (s->whole && s->whole_level != d->options.level) {
    libdeflate_free_compressor(s->whole);
    s->whole = NULL;
  }
  if (!s->whole) {
    s->whole = libdeflate_alloc_compressor(d->options.level);
    s->whole_level = d->options.level;
  }
  if (!s->whole || grow_scratch(s, libdeflate_deflate_compress_bound(s->whole, len) + 1) != 0)
    return UV_ENOMEM;
  size_t n = libdeflate_deflate_compress(s->whole, data, len, s->scratch, s->scratch_cap - 1);
  if (!n) return UV_ENOMEM; /* cannot happen within the bound */
  s->scratch[n++] = 0x00;
  if (n >= len) return 0; /* it would not shrink: it goes as it is */
  *out = s->scratch;
  *out_len = n;
  return 1;
}
#endif

int wsev__deflate_message(wsev_deflate *d, const uint8_t *data, size_t len, const uint8_t **out,
                          size_t *out_len) {
  wsev_deflate_streams *s = d->streams;
  /* An empty message goes as it is (a second flush without input writes nothing); one
   * over 1 GiB too, since zlib counts in 32 bits. Either way the context is untouched. */
  if (d->agreed.out_bits < 9 || !len || len > (1u << 30)) return 0;
#ifdef WSEV_HAVE_LIBDEFLATE
  if (!d->agreed.out_takeover &&
      (d->agreed.out_bits == 15 || len <= (size_t)1 << d->agreed.out_bits))
    return deflate_whole(d, data, len, out, out_len);
#endif
  z_stream *z = compressor(d);
  if (!z) return UV_ENOMEM;
  /* deflateBound is for a finished stream; a sync flush adds at most an empty stored
   * block and a few bits, and the loop grows the buffer if that is ever short. */
  size_t produced = 0;
  if (grow_scratch(s, deflateBound(z, (uLong)len) + 16) != 0) return UV_ENOMEM;
  z->next_in = (Bytef *)data;
  z->avail_in = (uInt)len;
  for (;;) {
    z->next_out = s->scratch + produced;
    z->avail_out = (uInt)(s->scratch_cap - produced);
    int rc = deflate(z, Z_SYNC_FLUSH);
    produced = s->scratch_cap - z->avail_out;
    if (rc != Z_OK && rc != Z_BUF_ERROR) break;
    if (z->avail_out) break;
    if (grow_scratch(s, s->scratch_cap * 2) != 0) {
      deflateReset(z); /* its context now holds a message the peer never gets */
      return UV_ENOMEM;
    }
  }
  int ok = z->avail_in == 0 && produced >= 4 &&
           memcmp(s->scratch + produced - 4, "\x00\x00\xff\xff", 4) == 0;
  if (!d->agreed.out_takeover) deflateReset(z);
  if (!ok) { /* cannot happen with a working zlib; never send what we cannot vouch for */
    if (d->agreed.out_takeover) deflateReset(z);
    return UV_ENOMEM;
  }
  produced -= 4;
  /* Without context a message may as well go as it is when compressing does not pay;
   * with context it must go compressed, since the peer's window must follow ours. */
  if (!d->agreed.out_takeover && produced >= len) return 0;
  *out = s->scratch;
  *out_len = produced;
  return 1;
}

/* Inflate in[0..len) onto the end of *out, which may hold at most `limit` bytes. */
static unsigned inflate_into(z_stream *z, wsev_pool *pool, const uint8_t *in, size_t len,
                             size_t limit, wsev_buf *out) {
  size_t left = len;
  z->avail_in = 0;
  for (;;) {
    if (out->len >= limit) return 1009; /* the byte over the maximum: stop here */
    if (out->len == out->cap &&
        wsev__buf_grow(pool, out, out->cap > limit / 2 ? limit : out->cap * 2) != 0)
      return 1011;
    if (!z->avail_in && left) { /* zlib counts in 32 bits */
      z->next_in = (Bytef *)in + (len - left);
      z->avail_in = (uInt)(left > (1u << 30) ? (1u << 30) : left);
      left -= z->avail_in;
    }
    size_t room = (out->cap < limit ? out->cap : limit) - out->len;
    z->next_out = out->data + out->len;
    z->avail_out = (uInt)(room > (1u << 30) ? (1u << 30) : room);
    uInt before = z->avail_out;
    int rc = inflate(z, Z_SYNC_FLUSH);
    out->len += before - z->avail_out;
    if (rc == Z_STREAM_END) {
      /* A final block ends the stream; whatever follows starts a new one. */
      if (inflateReset(z) != Z_OK) return 1011;
      if (!z->avail_in && !left) return 0;
    } else if (rc == Z_MEM_ERROR) {
      return 1011;
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return 1007; /* Z_DATA_ERROR, Z_NEED_DICT */
    } else if (!z->avail_in && !left && z->avail_out) {
      return 0; /* all of it read, and all its output out */
    }
  }
}

unsigned wsev__inflate_message(wsev_deflate *d, wsev_pool *pool, const uint8_t *in, size_t len,
                               uint64_t max, wsev_buf *out) {
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  memset(out, 0, sizeof *out);
  /* No bytes at all is not deflate data, but it can only mean an empty message; the
   * stream is left as it was (the tail alone would leave it inside a block). */
  if (!len) return 0;
  z_stream **zp = d->agreed.in_takeover ? &d->own_in : &d->streams->in;
  if (!*zp && !(*zp = new_inflater(d->agreed.in_takeover ? d->agreed.in_bits : 15))) return 1011;
  z_stream *z = *zp;
  /* One byte more than the maximum is allowed into the buffer: that byte proves the
   * message too big, and inflating stops there. */
  size_t limit = max >= SIZE_MAX ? SIZE_MAX : (size_t)max + 1;
  size_t first = len < limit / 4 ? len * 4 : limit;
  unsigned rc = wsev__buf_grow(pool, out, first < 256 ? 256 : first) != 0 ? 1011 : 0;
  if (!rc) rc = inflate_into(z, pool, in, len, limit, out);
  if (!rc) rc = inflate_into(z, pool, tail, sizeof tail, limit, out);
  if (!rc && out->len > max) rc = 1009;
  if (!d->agreed.in_takeover) inflateReset(z);
  if (rc) wsev__buf_release(pool, out);
  return rc;
}

#else /* without zlib: never agreed, so never called */

struct wsev_deflate_streams {
  int unused;
};

wsev_deflate_streams *wsev__deflate_streams_new(void) { return NULL; }
void wsev__deflate_streams_free(wsev_deflate_streams *s) { (void)s; }
wsev_deflate *wsev__deflate_new(const wsev_deflate_options *options,
                                wsev_deflate_streams *streams) {
  (void)options, (void)streams;
  return NULL;
}
void wsev__deflate_free(wsev_deflate *d) { (void)d; }

int wsev__deflate_message(wsev_deflate *d, const uint8_t *data, size_t len, const uint8_t **out,
                          size_t *out_len) {
  (void)d, (void)data, (void)len, (void)out, (void)out_len;
  return 0;
}

unsigned wsev__inflate_message(wsev_deflate *d, wsev_pool *pool, const uint8_t *in, size_t len,
                               uint64_t max, wsev_buf *out) {
  (void)d, (void)pool, (void)in, (void)len, (void)max;
  memset(out, 0, sizeof *out);
  return 1011;
}

#endif
