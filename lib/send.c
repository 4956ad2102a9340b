/* Messages out: wsev_write, wsev_write_text and wsev_broadcast, the state and
 * backpressure rules they follow, and the control frames the connection sends. Bytes
 * go to the connection's writer and the connection onto the flush list; nothing is
 * written to the socket before the check phase (flush.c). */
#include <string.h>

#include "alloc.h"
#include "context.h"
#include "frame.h"

/* A fresh masking key for a frame of ours (RFC 6455 section 5.3); NULL for a server's
 * frames, or when the random source failed (*rc is then UV_ENOMEM). */
static const uint8_t *mask_for(wsev_conn *c, uint8_t key[4], int *rc) {
  *rc = 0;
  if (!c->client) return NULL;
  wsev_rng *rng = wsev__ctx_rng(c->ctx);
  if (!rng || wsev__rng_bytes(rng, key, 4) != 0) *rc = UV_ENOMEM;
  return key;
}

static int queue_frame(wsev_conn *c, wsev_buf *b, int opcode, const void *data, size_t len) {
  uint8_t key[4];
  int rc;
  const uint8_t *mask = mask_for(c, key, &rc);
  return rc ? rc : wsev__frame_into(b, &c->ctx->pool, opcode, data, len, mask);
}

void wsev__send_control(wsev_conn *c, int opcode, const void *data, size_t len) {
  if (queue_frame(c, &c->writer.out, opcode, data, len) == 0) wsev__flush_mark(c);
}

void wsev__send_close(wsev_conn *c, unsigned code, const char *reason) {
  uint8_t payload[WSEV_FRAME_MAX_CONTROL] = {(uint8_t)(code >> 8), (uint8_t)code};
  size_t len = reason ? strlen(reason) : 0;
  if (len > WSEV_FRAME_MAX_CONTROL - 2) len = WSEV_FRAME_MAX_CONTROL - 2;
  memcpy(payload + 2, reason ? reason : "", len);
  wsev__send_control(c, WSEV_OP_CLOSE, payload, code == WSEV_CLOSE_NO_STATUS ? 0 : 2 + len);
}

int wsev__send_bytes(wsev_conn *c, const void *data, size_t len) {
  int rc = wsev__writer_bytes(&c->writer, &c->ctx->pool, data, len);
  if (!rc) wsev__flush_mark(c);
  return rc;
}

size_t wsev__send_buffered(const wsev_conn *c) {
  return wsev__writer_buffered(&c->writer) + (wsev__conn_opening(c) ? c->handshake.held.len : 0);
}

static size_t send_limit(const wsev_ctx *ctx) {
  return ctx->set.max_buffered ? ctx->set.max_buffered : SIZE_MAX;
}

void wsev__send_refuse(wsev_conn *c) {
  if (c->state != WSEV_CONN_OPEN) return;
  /* Whole frames not yet begun are dropped, so the close frame comes right after what
   * is already on its way and reaches the peer as soon as it reads again (within the
   * close timeout); unless the 101 response is still among them (the application
   * wrote that much in conn_accepted). */
  wsev_writer *w = &c->writer;
  if (!w->head_kept) wsev__writer_drop_unsent(w, &c->ctx->pool);
  wsev__conn_fail(c, WSEV_CLOSE_POLICY);
}

/* Before a message of `len` bytes: WSEV_ECLOSING unless open, or WSEV_EBACKPRESSURE
 * (and the connection fails with 1008) if it would take the queue over the limit. */
static inline __attribute__((always_inline)) int may_send(wsev_conn *c, size_t len) {
  if (c->state != WSEV_CONN_OPEN) return WSEV_ECLOSING;
  if (!wsev__writer_over_limit(&c->writer, len, send_limit(c->ctx))) return 0;
  wsev__send_refuse(c); /* the peer does not keep up */
  return WSEV_EBACKPRESSURE;
}

/* After a message was queued (rc 0): the connection goes on the flush list, and
 * conn_drained becomes due once its queue went over the low-water mark. */
static inline __attribute__((always_inline)) int sent(wsev_conn *c, int rc) {
  if (rc) return rc;
  wsev__flush_mark(c);
  if (wsev__writer_buffered(&c->writer) > c->ctx->set.low_water) c->writer.above_low_water = 1;
  return 0;
}

/* permessage-deflate: the payload to send for a message of `len` bytes, compressed
 * (*opcode gets RSV1, *data and *len the compressed bytes, lent by the context's
 * streams until the next message) when it was agreed, the message is long enough,
 * and compressing pays. 0 or UV_ENOMEM. */
static __attribute__((noinline)) int compress(wsev_conn *c, int *opcode, const void **data,
                                              size_t *len, unsigned flags) {
  wsev_deflate *d = c->deflate;
  if (*len < d->options.threshold || (flags & WSEV_SEND_UNCOMPRESSED)) return 0;
  const uint8_t *out;
  size_t out_len;
  int rc = wsev__deflate_message(d, *data, *len, &out, &out_len);
  if (rc <= 0) return rc;
  *opcode |= WSEV_FRAME_RSV1;
  *data = out;
  *len = out_len;
  return 0;
}

int wsev__send(wsev_conn *c, int opcode, const void *data, size_t len, unsigned flags) {
  if (wsev__conn_opening(c)) {
    size_t max = send_limit(c->ctx), held = c->handshake.held.len;
    if (len > max || held > max - len) {
      wsev__client_fail(c, WSEV_EBACKPRESSURE, "send limit reached before it opened");
      return WSEV_EBACKPRESSURE;
    }
    /* Not compressed: whether the server agrees is not known yet. */
    return queue_frame(c, &c->handshake.held, opcode, data, len);
  }
  /* Out of the plain path's way: it costs one test when nothing was agreed. */
  int rc = __builtin_expect(c->deflate != NULL, 0) ? compress(c, &opcode, &data, &len, flags) : 0;
  if (!rc) rc = may_send(c, len);
  return rc ? rc : sent(c, queue_frame(c, &c->writer.out, opcode, data, len));
}

/* ---- the API ----------------------------------------------------------------------- */

static inline __attribute__((always_inline)) int write_message(wsev_ctx *ctx, uint64_t id,
                                                               int opcode, const void *data,
                                                               size_t len, unsigned flags) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!data && len) return UV_EINVAL;
  if (ctx->io) return wsev__io_write(ctx, id, data, len, opcode == WSEV_OP_TEXT, flags);
  wsev_conn *c = wsev__conn_find(ctx, id);
  if (!c) return WSEV_ENOCONN;
  /* A write can close the connection (backpressure): its closed event must wait until
   * the caller is out of this function. */
  ctx->in_api++;
  int rc = wsev__send(c, opcode, data, len, flags);
  ctx->in_api--;
  return rc;
}

int wsev_write(wsev_ctx *ctx, uint64_t id, const void *data, size_t len) {
  return write_message(ctx, id, WSEV_OP_BINARY, data, len, 0);
}

int wsev_write_text(wsev_ctx *ctx, uint64_t id, const char *text, size_t len) {
  return write_message(ctx, id, WSEV_OP_TEXT, text, len, 0);
}

int wsev_send(wsev_ctx *ctx, uint64_t id, const void *data, size_t len, wsev_msg_type type,
              unsigned flags) {
  return write_message(ctx, id, type == WSEV_TEXT ? WSEV_OP_TEXT : WSEV_OP_BINARY, data, len,
                       flags);
}

void wsev__bcast_init(wsev_bcast *b, int opcode, const uint8_t *data, size_t len,
                      wsev_shared *shared, const uint8_t *frame, size_t frame_len) {
  memset(b, 0, sizeof *b);
  b->opcode = opcode;
  b->data = data;
  b->len = len;
  b->shared = shared;
  b->frame = frame;
  b->frame_len = frame_len;
}

void wsev__bcast_done(wsev_bcast *b) {
  for (int i = 0; i < 16; i++)
    if (b->deflated[i]) wsev__shared_unref(b->deflated[i]);
}

/* The broadcast's frame compressed for c, which compresses without context: made
 * once per window size, on its first recipient. NULL when it goes plain (*rc 0) or
 * without memory (*rc UV_ENOMEM). */
static wsev_shared *deflated_frame(wsev_conn *c, wsev_bcast *b, int *rc) {
  int bits = c->deflate->agreed.out_bits;
  *rc = 0;
  if (!(b->tried & (1u << bits))) {
    const uint8_t *out;
    size_t out_len;
    *rc = wsev__deflate_message(c->deflate, b->data, b->len, &out, &out_len);
    if (*rc < 0) return NULL; /* tried again for the next recipient */
    b->tried |= (uint16_t)(1u << bits);
    if (*rc == 1) {
      *rc = 0;
      wsev_shared *f = wsev__shared_new(out_len + WSEV_FRAME_MAX_HEADER);
      if (!f) {
        b->tried &= (uint16_t) ~(1u << bits);
        *rc = UV_ENOMEM;
        return NULL;
      }
      f->len = wsev__frame_encode_header(f->data, 1, b->opcode | WSEV_FRAME_RSV1, out_len, NULL);
      memcpy(f->data + f->len, out, out_len);
      f->len += out_len;
      b->deflated[bits] = f;
    }
  }
  return b->deflated[bits];
}

/* Queue a frame for a recipient of a broadcast: shared, or copied into its queue. */
static inline int queue_framed(wsev_conn *c, wsev_shared *shared, const uint8_t *frame,
                               size_t frame_len) {
  int rc = may_send(c, frame_len);
  if (rc) return rc;
  if (shared) return sent(c, wsev__writer_shared(&c->writer, &c->ctx->pool, shared));
  return sent(c, wsev__writer_bytes(&c->writer, &c->ctx->pool, frame, frame_len));
}

/* A recipient that is ours (every frame masked), or that compresses: out of the plain
 * path's way. One with a compressor keeping context gets its own compression. */
static __attribute__((noinline)) int send_framed_otherwise(wsev_conn *c, wsev_bcast *b) {
  if (c->client || c->deflate->agreed.out_takeover)
    return wsev__send(c, b->opcode, b->data, b->len, 0);
  int rc = 0;
  wsev_shared *deflated =
      b->len >= c->deflate->options.threshold ? deflated_frame(c, b, &rc) : NULL;
  if (rc) return rc;
  if (!deflated) return queue_framed(c, b->shared, b->frame, b->frame_len);
  return queue_framed(c, deflated->len > WSEV_SHARE_MIN ? deflated : NULL, deflated->data,
                      deflated->len);
}

/* One recipient of a broadcast (wsev__send_framed): inlined into wsev_broadcast, with
 * b's plain frame passed in registers (b's address escapes to the calls). */
static inline int send_framed(wsev_conn *c, wsev_bcast *b, wsev_shared *shared,
                              const uint8_t *frame, size_t frame_len) {
  if (__builtin_expect(c->client || c->deflate, 0)) return send_framed_otherwise(c, b);
  return queue_framed(c, shared, frame, frame_len);
}

int wsev__send_framed(wsev_conn *c, wsev_bcast *b) {
  return send_framed(c, b, b->shared, b->frame, b->frame_len);
}

int wsev_broadcast(wsev_ctx *ctx, const uint64_t *ids, size_t count, const void *data, size_t len,
                   wsev_msg_type type) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if ((!ids && count) || (!data && len) ||
      len > SIZE_MAX - sizeof(wsev_shared) - WSEV_FRAME_MAX_HEADER)
    return UV_EINVAL;
  if (ctx->io) return wsev__io_broadcast(ctx, ids, count, data, len, type);
  int opcode = type == WSEV_TEXT ? WSEV_OP_TEXT : WSEV_OP_BINARY;
  uint8_t small[WSEV_SHARE_MIN + WSEV_FRAME_MAX_HEADER];
  wsev_shared *shared = NULL;
  uint8_t *frame = small;
  if (len > WSEV_SHARE_MIN) {
    if (!(shared = wsev__shared_new(len + WSEV_FRAME_MAX_HEADER))) return UV_ENOMEM;
    frame = shared->data;
  }
  size_t frame_len = wsev__frame_encode_header(frame, 1, opcode, len, NULL);
  if (len) memcpy(frame + frame_len, data, len);
  frame_len += len;
  if (shared) shared->len = frame_len;
  wsev_bcast b;
  wsev__bcast_init(&b, opcode, data, len, shared, frame, frame_len);
  int queued = 0;
  ctx->in_api++;
  for (size_t i = 0; i < count; i++) {
    wsev_conn *c = wsev__conn_find(ctx, ids[i]);
    if (c && send_framed(c, &b, shared, frame, frame_len) == 0) queued++;
  }
  ctx->in_api--;
  wsev__bcast_done(&b);
  if (shared) wsev__shared_unref(shared); /* ours; the queues hold their own */
  return queued;
}

size_t wsev_get_buffered_amount(const wsev_ctx *ctx, uint64_t id) {
  WSEV_CHECK_CTX_OR(ctx, 0);
  if (ctx->io) return wsev__io_buffered(ctx, id); /* as the thread last reported it */
  const wsev_conn *c = wsev__conn_find(ctx, id);
  return c ? wsev__send_buffered(c) : 0;
}
