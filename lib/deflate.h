/* permessage-deflate's data path (RFC 7692 section 7.2) over zlib: a message is
 * compressed whole, and inflated whole with a bound on what it may inflate to.
 *
 * Streams. A side of the agreement that keeps its context from message to message
 * needs a stream of the connection's own (made at its first compressed message).
 * A side without context uses the context's streams instead (one context per loop, so
 * one set per I/O thread), reset after every message: one inflater, and one
 * compressor per window size in use. Those are what make the shared mode cost no
 * memory per connection, and what lets a broadcast be compressed once for every
 * recipient with the same window. zlib allocates through wsev's allocator. No I/O.
 *
 * Built without zlib (meson -Ddeflate=disabled), WSEV_HAVE_ZLIB is not defined: the
 * extension is never offered or accepted, and these functions are never called. */
#ifndef WSEV_DEFLATE_H
#define WSEV_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "bufpool.h"
#include "deflate_negotiation.h"
#include "wsev.h"

/* The context's streams (and its buffer for compressed output). */
typedef struct wsev_deflate_streams wsev_deflate_streams;

/* A connection's part, allocated once the extension is offered (ours) or agreed (a
 * client's): what was agreed, and its own streams if it needs them. */
typedef struct {
  wsev_pmd_agreed agreed;
  wsev_deflate_options options;  /* level, memory level and threshold for this connection */
  wsev_deflate_streams *streams; /* the context's, for a side without context */
  struct z_stream_s *own_out;    /* our compressor, when we keep the context */
  struct z_stream_s *own_in;     /* our inflater, when the peer keeps it */
} wsev_deflate;

/* Options with every zero replaced by its default, or *out cleared (mode off) for NULL.
 * UV_EINVAL for a value out of range. */
int wsev__deflate_options_normalize(const wsev_deflate_options *in, wsev_deflate_options *out);
/* The negotiation's view of the options. */
wsev_pmd_config wsev__deflate_config(const wsev_deflate_options *options);

/* A connection's part (agreed: none yet), or NULL without memory. */
wsev_deflate *wsev__deflate_new(const wsev_deflate_options *options, wsev_deflate_streams *streams);
/* Free it and its own streams (NULL is fine). */
void wsev__deflate_free(wsev_deflate *d);

/* NULL without memory. */
wsev_deflate_streams *wsev__deflate_streams_new(void);
void wsev__deflate_streams_free(wsev_deflate_streams *s);

/* Compress a message for a connection: 1 with *out and *out_len (valid until the next
 * call with the same context's streams), 0 when it is to go uncompressed (we may not
 * compress: our window is 8; or, without context, it would not shrink), UV_ENOMEM.
 * Streams made now take d's level and memory level. */
int wsev__deflate_message(wsev_deflate *d, const uint8_t *data, size_t len, const uint8_t **out,
                          size_t *out_len);

/* Inflate a compressed message into *out (a buffer from the pool, grown as it fills:
 * at the moment it is copied, old and new together are at most about 2.5 times
 * `max`). 0; or the close code to fail the connection with, *out empty: 1009 as soon
 * as it would inflate to more than `max` bytes (inflating stops there), 1007 for data
 * that is not deflate (or refers back into an earlier message further than the
 * window agreed), 1011 without memory. */
unsigned wsev__inflate_message(wsev_deflate *d, wsev_pool *pool, const uint8_t *in, size_t len,
                               uint64_t max, wsev_buf *out);

#endif
