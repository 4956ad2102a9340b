/* The corked writer: one connection's output queue. Frames (masked for connections
 * we open) and raw bytes are appended to a buffer from the pool; frames shared by a
 * broadcast are queued by reference, in order, as segments ahead of that buffer. The
 * flush takes the whole queue as one writev once per loop iteration (flush.c) and
 * reports what the kernel took. Backpressure is decided here: bytes waiting, and
 * which of them may still be dropped. No I/O, so it can be tested on its own. */
#ifndef WSEV_WRITER_H
#define WSEV_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bufpool.h"

typedef struct {
  wsev_seg *segs; /* output to write before `out`, oldest first */
  wsev_seg *segs_tail;
  size_t seg_bytes;        /* unwritten bytes in segs */
  wsev_buf out;            /* bytes not yet handed to the kernel, behind segs */
  size_t inflight;         /* bytes in write requests not completed yet */
  uint16_t head_kept;      /* bytes at the head that must go out whole (the 101 response) */
  uint8_t above_low_water; /* conn_drained is due when the queue drains */
} wsev_writer;

/* Bytes waiting: queued, or handed to the kernel in requests not completed yet. */
static inline size_t wsev__writer_buffered(const wsev_writer *w) {
  return w->seg_bytes + w->out.len + w->inflight;
}
/* Anything not yet handed to the kernel. */
static inline int wsev__writer_has_output(const wsev_writer *w) { return w->segs || w->out.len; }

/* Append raw bytes (an HTTP message). 0, UV_ENOMEM or WSEV_EMSGSIZE. */
int wsev__writer_bytes(wsev_writer *w, wsev_pool *pool, const void *data, size_t len);
/* Frame a whole message (fin set) into b: masked with `mask` (NULL: unmasked, as a
 * server sends). 0, UV_ENOMEM or WSEV_EMSGSIZE; b is unchanged on error. */
int wsev__frame_into(wsev_buf *b, wsev_pool *pool, int opcode, const void *data, size_t len,
                     const uint8_t *mask);
/* The same, appended to the queue. */
int wsev__writer_frame(wsev_writer *w, wsev_pool *pool, int opcode, const void *data, size_t len,
                       const uint8_t *mask);
/* Queue a reference to a shared frame (one more reference is taken). 0 or UV_ENOMEM. */
int wsev__writer_shared(wsev_writer *w, wsev_pool *pool, wsev_shared *shared);

/* 1 if `len` more bytes would take the bytes waiting over `max` while some are
 * already waiting (a message larger than max still goes into an empty queue). */
static inline int wsev__writer_over_limit(const wsev_writer *w, size_t len, size_t max) {
  size_t waiting = wsev__writer_buffered(w);
  return waiting && (len > max || waiting > max - len);
}
/* Drop every whole frame not yet begun, so a close frame queued next follows what
 * is already on its way. */
void wsev__writer_drop_unsent(wsev_writer *w, wsev_pool *pool);

/* Up to `max` buffers describing the queue from its head, for one writev. */
unsigned wsev__writer_gather(const wsev_writer *w, uv_buf_t *bufs, unsigned max);
/* The kernel took `n` bytes from the head of the queue. */
void wsev__writer_consume(wsev_writer *w, wsev_pool *pool, size_t n);
/* Move `out` to the end of the segments, so that the whole queue is segments. 0 or
 * UV_ENOMEM. */
int wsev__writer_seal(wsev_writer *w, wsev_pool *pool);
/* Take the whole queue as a list of segments (for a write request that owns them) and
 * its unwritten bytes. 0 or UV_ENOMEM (then nothing was taken). */
int wsev__writer_take(wsev_writer *w, wsev_pool *pool, wsev_seg **head, size_t *bytes);
/* Give back everything queued. */
void wsev__writer_free(wsev_writer *w, wsev_pool *pool);

#endif
