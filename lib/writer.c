#include "writer.h"

#include <string.h>

#include "frame.h"
#include "wsev.h"

static int reserve(wsev_buf *b, wsev_pool *pool, size_t extra) {
  if (extra > SIZE_MAX / 2 - b->len) return WSEV_EMSGSIZE;
  return wsev__buf_grow(pool, b, b->len + extra);
}

int wsev__writer_bytes(wsev_writer *w, wsev_pool *pool, const void *data, size_t len) {
  int rc = reserve(&w->out, pool, len);
  if (rc) return rc;
  if (len) memcpy(w->out.data + w->out.len, data, len);
  w->out.len += len;
  return 0;
}

int wsev__frame_into(wsev_buf *b, wsev_pool *pool, int opcode, const void *data, size_t len,
                     const uint8_t *mask) {
  if (len > SIZE_MAX / 2 - WSEV_FRAME_MAX_HEADER) return WSEV_EMSGSIZE;
  int rc = reserve(b, pool, WSEV_FRAME_MAX_HEADER + len);
  if (rc) return rc;
  uint8_t *payload = b->data + b->len;
  payload += wsev__frame_encode_header(payload, 1, opcode, len, mask);
  if (len) memcpy(payload, data, len);
  if (mask) wsev__frame_unmask(payload, len, mask, 0); /* XOR: masking is unmasking */
  b->len = (size_t)(payload - b->data) + len;
  return 0;
}

int wsev__writer_frame(wsev_writer *w, wsev_pool *pool, int opcode, const void *data, size_t len,
                       const uint8_t *mask) {
  return wsev__frame_into(&w->out, pool, opcode, data, len, mask);
}

static void append_seg(wsev_writer *w, wsev_seg *seg) {
  if (w->segs_tail)
    w->segs_tail->next = seg;
  else
    w->segs = seg;
  w->segs_tail = seg;
  w->seg_bytes += seg->len - seg->off;
}

int wsev__writer_seal(wsev_writer *w, wsev_pool *pool) {
  if (!w->out.len) return 0;
  wsev_seg *seg = wsev__seg_get(pool);
  if (!seg) return UV_ENOMEM;
  seg->data = w->out.data;
  seg->len = w->out.len;
  seg->cap = w->out.cap;
  memset(&w->out, 0, sizeof w->out);
  append_seg(w, seg);
  return 0;
}

int wsev__writer_shared(wsev_writer *w, wsev_pool *pool, wsev_shared *shared) {
  wsev_seg *seg = wsev__seg_get(pool);
  if (!seg) return UV_ENOMEM;
  if (wsev__writer_seal(w, pool) != 0) { /* what was queued before goes first */
    wsev__seg_release(pool, seg);
    return UV_ENOMEM;
  }
  atomic_fetch_add_explicit(&shared->refs, 1, memory_order_relaxed);
  seg->shared = shared;
  seg->data = shared->data;
  seg->len = shared->len;
  append_seg(w, seg);
  return 0;
}

void wsev__writer_drop_unsent(wsev_writer *w, wsev_pool *pool) {
  w->out.len = 0;
  wsev_seg **pp = &w->segs, *kept = NULL;
  while (*pp) {
    wsev_seg *seg = *pp;
    if (seg->off == 0) {
      *pp = seg->next;
      w->seg_bytes -= seg->len;
      wsev__seg_release(pool, seg);
    } else {
      kept = seg;
      pp = &seg->next;
    }
  }
  w->segs_tail = kept;
}

unsigned wsev__writer_gather(const wsev_writer *w, uv_buf_t *bufs, unsigned max) {
  unsigned n = 0;
  const wsev_seg *seg = w->segs;
  for (; seg && n < max; seg = seg->next)
    bufs[n++] = uv_buf_init((char *)seg->data + seg->off, (unsigned)(seg->len - seg->off));
  if (!seg && w->out.len && n < max)
    bufs[n++] = uv_buf_init((char *)w->out.data, (unsigned)w->out.len);
  return n;
}

void wsev__writer_consume(wsev_writer *w, wsev_pool *pool, size_t n) {
  w->head_kept -= n < w->head_kept ? (uint16_t)n : w->head_kept;
  while (n && w->segs) {
    wsev_seg *seg = w->segs;
    size_t take = seg->len - seg->off < n ? seg->len - seg->off : n;
    seg->off += take;
    w->seg_bytes -= take;
    n -= take;
    if (seg->off == seg->len) {
      w->segs = seg->next;
      if (!w->segs) w->segs_tail = NULL;
      wsev__seg_release(pool, seg);
    }
  }
  if (n == w->out.len && n) {
    wsev__buf_release(pool, &w->out);
  } else if (n) {
    memmove(w->out.data, w->out.data + n, w->out.len - n);
    w->out.len -= n;
  }
}

int wsev__writer_take(wsev_writer *w, wsev_pool *pool, wsev_seg **head, size_t *bytes) {
  if (wsev__writer_seal(w, pool) != 0) return UV_ENOMEM;
  *head = w->segs;
  *bytes = w->seg_bytes;
  w->segs = w->segs_tail = NULL;
  w->seg_bytes = 0;
  return 0;
}

void wsev__writer_free(wsev_writer *w, wsev_pool *pool) {
  while (w->segs) {
    wsev_seg *seg = w->segs;
    w->segs = seg->next;
    wsev__seg_release(pool, seg);
  }
  w->segs_tail = NULL;
  w->seg_bytes = 0;
  wsev__buf_release(pool, &w->out);
}
