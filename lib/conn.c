/* One connection: the upgrade, the RFC 6455 frame stream, corked output and the
 * closing sequence.
 *
 * Life of a connection:
 *   HANDSHAKE -> OPEN -> (CLOSING) -> DRAINING -> DEAD
 * HANDSHAKE reads the upgrade request. OPEN exchanges frames. CLOSING means we sent
 * a close frame and parse on for the peer's. DRAINING means the WebSocket is over
 * (the application has been told): our last bytes are flushed, a FIN follows, and
 * input is discarded until the peer's EOF or the close deadline. DEAD means the
 * handle is closing; the memory goes in the close callback, never earlier, so
 * nothing up the stack ever touches freed memory. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "frame.h"
#include "internal.h"
#include "utf8.h"

typedef struct {
  uv_write_t req;
  wsev_conn *conn;
  wsev_seg *segs; /* the bytes in flight, released when written */
  size_t len;     /* bytes in flight */
} write_req;

static void start_draining(wsev_conn *c);

/* ---- output ------------------------------------------------------------------- */

static int out_reserve(wsev_conn *c, size_t extra) {
  wsev_buf *b = &c->out;
  if (extra > SIZE_MAX / 2 - b->len) return WSEV_EMSGSIZE;
  return wsev__buf_grow(c->ctx, b, b->len + extra);
}

static int queue_bytes(wsev_conn *c, const void *data, size_t len) {
  int rc = out_reserve(c, len);
  if (rc) return rc;
  memcpy(c->out.data + c->out.len, data, len);
  c->out.len += len;
  wsev__mark_dirty(c);
  return 0;
}

int wsev__conn_queue(wsev_conn *c, const void *data, size_t len) {
  return queue_bytes(c, data, len);
}

/* Frame a message into b; ours are masked with a fresh key (RFC 6455 5.3). */
static int frame_into(wsev_conn *c, wsev_buf *b, int opcode, const void *data, size_t len) {
  uint8_t mask[4];
  if (len > SIZE_MAX / 2 - WSEV_FRAME_MAX_HEADER - b->len) return WSEV_EMSGSIZE;
  int rc = wsev__buf_grow(c->ctx, b, b->len + WSEV_FRAME_MAX_HEADER + len);
  if (rc) return rc;
  if (c->client) {
    wsev_rng *rng = wsev__ctx_rng(c->ctx);
    if (!rng || wsev__rng_bytes(rng, mask, 4) != 0) return UV_ENOMEM;
  }
  uint8_t *payload = b->data + b->len;
  payload += wsev__frame_encode_header(payload, 1, opcode, len, c->client ? mask : NULL);
  if (len) memcpy(payload, data, len);
  if (c->client) wsev__frame_unmask(payload, len, mask, 0); /* XOR: masking is unmasking */
  b->len = (size_t)(payload - b->data) + len;
  return 0;
}

static int queue_frame(wsev_conn *c, int opcode, const void *data, size_t len) {
  int rc = frame_into(c, &c->out, opcode, data, len);
  if (!rc) wsev__mark_dirty(c);
  return rc;
}

/* A close frame with `code` and a reason (NULL: none); 1005 (no status) means an
 * empty payload. */
static void send_close(wsev_conn *c, unsigned code, const char *reason) {
  uint8_t payload[WSEV_FRAME_MAX_CONTROL] = {(uint8_t)(code >> 8), (uint8_t)code};
  size_t len = reason ? strlen(reason) : 0;
  if (len > WSEV_FRAME_MAX_CONTROL - 2) len = WSEV_FRAME_MAX_CONTROL - 2;
  memcpy(payload + 2, reason ? reason : "", len);
  queue_frame(c, WSEV_OP_CLOSE, payload, code == WSEV_CLOSE_NO_STATUS ? 0 : 2 + len);
}

/* Remember how the connection ends, for wsev_get_close_info: the first of our close,
 * the peer's close or a failure wins. */
static void set_close(wsev_conn *c, unsigned code, int by_peer, const char *reason, size_t len) {
  if (c->close_set) return;
  c->close_set = 1;
  c->close_code = (uint16_t)code;
  c->close_by_peer = (uint8_t)by_peer;
  if (len) {
    c->close_reason = wsev__malloc(len + 1); /* without memory: no reason */
    if (c->close_reason) {
      memcpy(c->close_reason, reason, len);
      c->close_reason[len] = 0;
    }
  }
}

/* Ours, before the 101 (frames written meanwhile wait in `pending`). */
static int opening(const wsev_conn *c) {
  return c->client && (c->state == WSEV_CONN_CONNECTING || c->state == WSEV_CONN_HANDSHAKE);
}

static void fail(wsev_conn *c, unsigned code);

static size_t buffered(const wsev_conn *c) { return c->seg_bytes + c->out.len + c->inflight; }

size_t wsev__conn_buffered(const wsev_conn *c) {
  return buffered(c) + (opening(c) ? c->pending.len : 0);
}

static void append_seg(wsev_conn *c, wsev_seg *seg) {
  if (c->segs_tail)
    c->segs_tail->next = seg;
  else
    c->segs = seg;
  c->segs_tail = seg;
  c->seg_bytes += seg->len - seg->off;
}

/* Move the `out` buffer to the end of the segment queue (before a shared frame is
 * queued behind it). 0 or UV_ENOMEM. */
static int seal_out(wsev_conn *c) {
  if (!c->out.len) return 0;
  wsev_seg *seg = wsev__seg_get(c->ctx);
  if (!seg) return UV_ENOMEM;
  seg->data = c->out.data;
  seg->len = c->out.len;
  seg->cap = c->out.cap;
  memset(&c->out, 0, sizeof c->out);
  append_seg(c, seg);
  return 0;
}

/* Returns WSEV_EBACKPRESSURE (and closes the connection) if `len` more bytes would
 * take its send buffer over the limit while bytes are already waiting. */
static int check_backpressure(wsev_conn *c, size_t len) {
  size_t max = c->ctx->max_buffered, waiting = buffered(c);
  if (!waiting || (len <= max && waiting <= max - len)) return 0;
  /* The peer does not keep up. Whole frames not yet begun are dropped, so the close
   * frame comes right after what is already on its way and reaches the peer as
   * soon as it reads again (within the close timeout); unless the 101 response is
   * still among them (the application wrote that much in conn_accepted). */
  if (c->response_left) {
    fail(c, WSEV_CLOSE_POLICY);
    return WSEV_EBACKPRESSURE;
  }
  c->out.len = 0;
  wsev_seg **pp = &c->segs, *kept = NULL;
  while (*pp) {
    wsev_seg *seg = *pp;
    if (seg->off == 0) {
      *pp = seg->next;
      c->seg_bytes -= seg->len;
      wsev__seg_release(c->ctx, seg);
    } else {
      kept = seg;
      pp = &seg->next;
    }
  }
  c->segs_tail = kept;
  fail(c, WSEV_CLOSE_POLICY);
  return WSEV_EBACKPRESSURE;
}

static int after_send(wsev_conn *c, int rc) {
  if (rc == 0 && buffered(c) > c->ctx->low_water) c->above_low_water = 1;
  return rc;
}


int wsev__conn_send(wsev_conn *c, int opcode, const void *data, size_t len) {
  if (opening(c)) {
    if (len > c->ctx->max_buffered || c->pending.len > c->ctx->max_buffered - len) {
      wsev__conn_fail_open(c, WSEV_EBACKPRESSURE, "send limit reached before it opened");
      return WSEV_EBACKPRESSURE;
    }
    return frame_into(c, &c->pending, opcode, data, len);
  }
  if (c->state != WSEV_CONN_OPEN) return WSEV_ECLOSING;
  int rc = check_backpressure(c, len);
  return rc ? rc : after_send(c, queue_frame(c, opcode, data, len));
}

int wsev__conn_send_framed(wsev_conn *c, const uint8_t *frame, size_t len) {
  if (c->state != WSEV_CONN_OPEN) return WSEV_ECLOSING;
  int rc = check_backpressure(c, len);
  return rc ? rc : after_send(c, queue_bytes(c, frame, len));
}

int wsev__conn_send_shared(wsev_conn *c, wsev_shared *shared) {
  if (c->state != WSEV_CONN_OPEN) return WSEV_ECLOSING;
  int rc = check_backpressure(c, shared->len);
  if (rc) return rc;
  wsev_seg *seg = wsev__seg_get(c->ctx);
  if (!seg) return UV_ENOMEM;
  if (seal_out(c) != 0) {
    wsev__seg_release(c->ctx, seg);
    return UV_ENOMEM;
  }
  shared->refs++;
  seg->shared = shared;
  seg->data = shared->data;
  seg->len = shared->len;
  append_seg(c, seg);
  wsev__mark_dirty(c);
  return after_send(c, 0);
}

/* conn_drained is due once a buffer that went above the low-water mark is back. */
static void check_drained(wsev_conn *c) {
  if (c->above_low_water && buffered(c) <= c->ctx->low_water && c->state == WSEV_CONN_OPEN) {
    c->above_low_water = 0;
    wsev__emit(c->ctx, WSEV_EV_DRAINED, c->id);
  }
}

/* ---- teardown ----------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h) { wsev__conn_release(h->data); }

void wsev__conn_release(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  if (c->all_prev)
    c->all_prev->all_next = c->all_next;
  else if (ctx->all_head == c)
    ctx->all_head = c->all_next;
  if (c->all_next) c->all_next->all_prev = c->all_prev;
  if (c->dirty) {
    /* Rare: closed after being marked dirty in the same iteration. */
    wsev_conn **pp = &ctx->dirty_head;
    while (*pp && *pp != c)
      pp = &(*pp)->dirty_next;
    if (*pp) *pp = c->dirty_next;
  }
  wsev__deadline_clear(c);
  wsev__hs_free(c->hs);
  wsev__tls_free(c->tls);
  wsev__client_hs_free(c->chs);
  while (c->segs) {
    wsev_seg *seg = c->segs;
    c->segs = seg->next;
    wsev__seg_release(ctx, seg);
  }
  wsev__buf_put(ctx, c->out.data, c->out.cap);
  wsev__buf_put(ctx, c->msg.data, c->msg.cap);
  wsev__free(c->ctrl);
  wsev__free(c->info);
  wsev__free(c->close_reason);
  wsev__free(c->pending.data);
  wsev__free(c);
  wsev__handle_closed(ctx);
}

/* The WebSocket is over: forget the id and tell the application (at most once). */
static void end_websocket(wsev_conn *c) {
  uint64_t id = c->id;
  if (c->counted) {
    c->counted = 0;
    c->ctx->n_active--;
  }
  if (!id) return;
  c->id = 0;
  wsev__idmap_del(&c->ctx->ids, id);
  if (!c->announced) return; /* an upgrade that was refused, or left while deferred */
  if (!c->close_set) set_close(c, WSEV_CLOSE_ABNORMAL, 1, NULL, 0); /* dropped */
  wsev__emit_closed(c->ctx, id, c->close_code, c->close_by_peer, c->error, c->close_reason,
                    c->user_data);
}

void wsev__conn_abort(wsev_conn *c) {
  if (c->state == WSEV_CONN_DEAD) return;
  c->state = WSEV_CONN_DEAD;
  wsev__deadline_clear(c);
  if (c->dial) wsev__dial_abort(c);
  /* A failed attempt's socket that is closing already frees us when it is closed. */
  if (!c->tcp_closing) uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  end_websocket(c);
}

static void start_draining(wsev_conn *c) {
  c->state = WSEV_CONN_DRAINING;
  wsev__deadline_set(c, WSEV_DEADLINE_CLOSE, c->ctx->close_timeout_ms);
  wsev__mark_dirty(c); /* the flush sends what is queued, then the FIN */
  end_websocket(c);
}

/* RFC 6455 section 7.1.7, "fail the WebSocket connection". */
static void fail(wsev_conn *c, unsigned code) {
  set_close(c, code, 0, NULL, 0);
  if (c->state == WSEV_CONN_OPEN) send_close(c, code, NULL);
  start_draining(c);
}

int wsev__conn_close(wsev_conn *c, unsigned code, const char *reason) {
  if (opening(c)) {
    wsev__conn_fail_open(c, UV_ECANCELED, "closed by the application before it opened");
    return 0;
  }
  if (c->state != WSEV_CONN_OPEN) return WSEV_ECLOSING;
  set_close(c, code, 0, reason, reason ? strlen(reason) : 0);
  send_close(c, code, reason);
  c->state = WSEV_CONN_CLOSING;
  wsev__deadline_set(c, WSEV_DEADLINE_CLOSE, c->ctx->close_timeout_ms);
  return 0;
}

/* ---- flushing ----------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status) {
  wsev_conn *c = req->data;
  wsev__free(req);
  if (c->state == WSEV_CONN_DEAD) return;
  c->shutdown_done = 1;
  if (status < 0 || c->read_eof) wsev__conn_abort(c);
}

static void on_write(uv_write_t *req, int status) {
  write_req *wr = (write_req *)req;
  wsev_conn *c = wr->conn;
  c->inflight -= wr->len;
  while (wr->segs) {
    wsev_seg *seg = wr->segs;
    wr->segs = seg->next;
    wsev__seg_release(c->ctx, seg);
  }
  wsev__free(wr);
  if (c->state == WSEV_CONN_DEAD) return;
  if (status < 0) {
    wsev__conn_abort(c);
    return;
  }
  /* Output that waited behind this write goes out with the next flush. */
  if (c->segs || c->out.len || (c->tls && wsev__tls_pending(c->tls)) ||
      (c->state == WSEV_CONN_DRAINING && !c->shutdown_sent))
    wsev__mark_dirty(c);
  check_drained(c);
}

/* Account for `n` bytes the kernel took from the head of the output. */
static void consume(wsev_conn *c, size_t n) {
  c->response_left -= n < c->response_left ? n : c->response_left;
  while (n && c->segs) {
    wsev_seg *seg = c->segs;
    size_t take = seg->len - seg->off < n ? seg->len - seg->off : n;
    seg->off += take;
    c->seg_bytes -= take;
    n -= take;
    if (seg->off == seg->len) {
      c->segs = seg->next;
      if (!c->segs) c->segs_tail = NULL;
      wsev__seg_release(c->ctx, seg);
    }
  }
  if (n == c->out.len && n) {
    wsev__buf_put(c->ctx, c->out.data, c->out.cap);
    memset(&c->out, 0, sizeof c->out);
  } else if (n) {
    memmove(c->out.data, c->out.data + n, c->out.len - n);
    c->out.len -= n;
  }
}

/* Hand the segments `head` (`bytes` unwritten in all) to one uv_write whose
 * request owns them. 0 or an error (then they are still the caller's). */
static int write_segs(wsev_conn *c, wsev_seg *head, size_t bytes) {
  write_req *wr = wsev__malloc(sizeof *wr);
  if (!wr) return UV_ENOMEM;
  unsigned count = 0;
  for (wsev_seg *seg = head; seg; seg = seg->next)
    count++;
  uv_buf_t stack_bufs[16], *bufs = stack_bufs;
  if (count > 16 && !(bufs = wsev__malloc(count * sizeof *bufs))) {
    wsev__free(wr);
    return UV_ENOMEM;
  }
  unsigned i = 0;
  for (wsev_seg *seg = head; seg; seg = seg->next)
    bufs[i++] = uv_buf_init((char *)seg->data + seg->off, (unsigned)(seg->len - seg->off));
  wr->conn = c;
  wr->segs = head;
  wr->len = bytes;
  int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, bufs, count, on_write); /* copies bufs */
  if (bufs != stack_bufs) wsev__free(bufs);
  if (rc != 0) {
    wsev__free(wr);
    return rc;
  }
  c->inflight += bytes;
  return 0;
}

/* Hand everything still queued to one uv_write. 0 or error. */
static int write_rest(wsev_conn *c) {
  if (seal_out(c) != 0) return UV_ENOMEM;
  int rc = write_segs(c, c->segs, c->seg_bytes);
  if (rc) return rc;
  c->segs = c->segs_tail = NULL;
  c->seg_bytes = 0;
  return 0;
}

/* Over TLS, at most this much plaintext is encrypted per write: the ciphertext
 * buffer stays bounded however much is queued. */
#define TLS_CHUNK (256 * 1024)

/* Encrypt queued plaintext (once the handshake is done) and write the records, as
 * much as the kernel takes now; the rest goes in a write request, and the next
 * chunk is encrypted when it completes. Returns 1 when everything queued is out. */
static int flush_tls(wsev_conn *c) {
  wsev_tls *tls = c->tls;
  int can_encrypt = wsev__tls_handshake_done(tls) && !wsev__tls_error(tls, NULL, 0);
  for (;;) {
    if (can_encrypt && (c->segs || c->out.len)) {
      if (seal_out(c) != 0) goto fail;
      size_t done = 0;
      for (wsev_seg *seg = c->segs; seg && done < TLS_CHUNK; seg = seg->next) {
        size_t n = seg->len - seg->off;
        if (n > TLS_CHUNK - done) n = TLS_CHUNK - done;
        if (wsev__tls_encrypt(tls, seg->data + seg->off, n) != 0) goto fail;
        done += n;
      }
      consume(c, done);
    }
    if (c->state == WSEV_CONN_DRAINING && !c->segs) wsev__tls_close_notify(tls);
    size_t len, cap;
    uint8_t *records = wsev__tls_take(tls, &len, &cap);
    if (!len) {
      wsev__free(records);
      return !can_encrypt || !c->segs;
    }
    uv_buf_t buf = uv_buf_init((char *)records, (unsigned)len);
    int written = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
    if (written == UV_EAGAIN) written = 0;
    if (written < 0) {
      wsev__free(records);
      goto fail;
    }
    if ((size_t)written < len) {
      wsev_seg *seg = wsev__seg_get(c->ctx);
      if (!seg) {
        wsev__free(records);
        goto fail;
      }
      seg->data = records;
      seg->cap = cap;
      seg->len = len;
      seg->off = (size_t)written;
      if (write_segs(c, seg, len - (size_t)written) != 0) {
        wsev__seg_release(c->ctx, seg);
        goto fail;
      }
      return 0;
    }
    wsev__free(records);
  }
fail:
  wsev__conn_abort(c);
  return 0;
}

void wsev__conn_flush(wsev_conn *c) {
  if (c->state == WSEV_CONN_DEAD || c->inflight) return;
  if (c->tls) {
    if (!flush_tls(c)) return;
    check_drained(c);
  } else if (c->segs || c->out.len) {
    /* Everything queued during this iteration, in one writev. */
    uv_buf_t bufs[64];
    unsigned n = 0;
    wsev_seg *seg = c->segs;
    for (; seg && n < 63; seg = seg->next)
      bufs[n++] = uv_buf_init((char *)seg->data + seg->off, (unsigned)(seg->len - seg->off));
    if (!seg && c->out.len) bufs[n++] = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
    int written = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (written == UV_EAGAIN) written = 0;
    if (written < 0) {
      wsev__conn_abort(c);
      return;
    }
    consume(c, (size_t)written);
    if (c->segs || c->out.len) {
      /* The kernel did not take it all: the rest waits in a write request. */
      if (write_rest(c) != 0) wsev__conn_abort(c);
      return;
    }
    check_drained(c);
  }
  if (c->state == WSEV_CONN_DRAINING && !c->shutdown_sent) {
    uv_shutdown_t *req = wsev__malloc(sizeof *req);
    if (!req) {
      wsev__conn_abort(c);
      return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
      wsev__free(req);
      wsev__conn_abort(c);
      return;
    }
    c->shutdown_sent = 1;
  }
}

/* ---- keepalive and shutdown --------------------------------------------------- */

void wsev__conn_keepalive(wsev_conn *c, uint64_t now) {
  wsev_ctx *ctx = c->ctx;
  if (c->state != WSEV_CONN_OPEN || c->in_deadline) return; /* a ping is out already */
  if (now - c->last_rx < ctx->ping_interval_ms) return;
  queue_frame(c, WSEV_OP_PING, NULL, 0);
  wsev__deadline_set(c, WSEV_DEADLINE_PONG, ctx->ping_timeout_ms);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Answer an HTTP client with an error status and close. */
static void reject(wsev_conn *c, int status) {
  char response[256];
  size_t len = wsev__hs_response_error(status, response, sizeof response);
  wsev__hs_free(c->hs);
  c->hs = NULL;
  queue_bytes(c, response, len);
  if (c->deferred) {
    c->deferred = 0; /* reading again, to see the peer's EOF */
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
      wsev__conn_abort(c);
      return;
    }
  }
  start_draining(c);
}

void wsev__conn_shutdown(wsev_conn *c) {
  if (c->state == WSEV_CONN_HANDSHAKE) {
    reject(c, 503);
  } else if (c->state == WSEV_CONN_OPEN) {
    wsev__conn_close(c, WSEV_CLOSE_GOING_AWAY, NULL);
  }
}

void wsev__conn_deadline(wsev_conn *c) {
  switch (c->deadline_kind) {
  case WSEV_DEADLINE_DEFER:
    reject(c, 503); /* the application did not answer in time */
    break;
  case WSEV_DEADLINE_PONG:
    set_close(c, WSEV_CLOSE_ABNORMAL, 0, NULL, 0); /* we gave up on a silent peer */
    wsev__conn_abort(c);
    break;
  case WSEV_DEADLINE_HANDSHAKE:
    if (opening(c)) {
      wsev__conn_fail_open(c, UV_ETIMEDOUT,
                           c->state == WSEV_CONN_CONNECTING ? "timed out connecting"
                           : c->chs && !c->dial             ? "timed out waiting for the 101"
                                                            : "timed out in the TLS handshake");
      break;
    }
    wsev__conn_abort(c);
    break;
  default: wsev__conn_abort(c);
  }
}

/* ---- receiving frames ----------------------------------------------------------- */

static int alive(const wsev_conn *c) {
  return c->state == WSEV_CONN_OPEN || c->state == WSEV_CONN_CLOSING;
}

static void handle_control(wsev_conn *c, const uint8_t *p, size_t len) {
  switch (c->frame_opcode) {
  case WSEV_OP_PING:
    if (c->state == WSEV_CONN_OPEN) queue_frame(c, WSEV_OP_PONG, p, len);
    break;
  case WSEV_OP_PONG: break;
  case WSEV_OP_CLOSE: {
    unsigned code = 0;
    int bad = wsev__close_payload_check(p, len, &code);
    if (c->state == WSEV_CONN_CLOSING) {
      start_draining(c); /* the answer to our close */
    } else if (bad) {
      fail(c, (unsigned)bad);
    } else {
      set_close(c, code, 1, len >= 2 ? (const char *)p + 2 : NULL, len >= 2 ? len - 2 : 0);
      send_close(c, code, NULL); /* echo the code, as RFC 6455 section 5.5.1 suggests */
      start_draining(c);
    }
    break;
  }
  }
}

static void control_bytes(wsev_conn *c, const uint8_t *p, size_t n) {
  if (c->payload_left == 0 && !c->ctrl) {
    c->in_frame = 0;
    handle_control(c, p, n); /* the whole payload is here */
    return;
  }
  if (!c->ctrl) {
    c->ctrl = wsev__malloc(WSEV_FRAME_MAX_CONTROL);
    c->ctrl_len = 0;
    if (!c->ctrl) {
      wsev__conn_abort(c);
      return;
    }
  }
  memcpy(c->ctrl + c->ctrl_len, p, n);
  c->ctrl_len += (uint8_t)n;
  if (c->payload_left == 0) {
    uint8_t *payload = c->ctrl;
    c->ctrl = NULL;
    c->in_frame = 0;
    handle_control(c, payload, c->ctrl_len);
    wsev__free(payload);
  }
}

static void message_done(wsev_conn *c, const uint8_t *data, size_t len) {
  int text = c->msg_opcode == WSEV_OP_TEXT;
  c->msg_opcode = 0;
  if (text && c->utf8_state != WSEV_UTF8_ACCEPT) {
    fail(c, WSEV_CLOSE_INVALID_DATA); /* ended inside a code point */
    return;
  }
  wsev__emit_message(c->ctx, c->id, data, len, text ? WSEV_TEXT : WSEV_BINARY);
}

static void data_bytes(wsev_conn *c, uint8_t *p, size_t n) {
  int last = c->payload_left == 0 && c->frame_fin;
  if (c->payload_left == 0) c->in_frame = 0;
  if (c->state == WSEV_CONN_CLOSING) {
    /* After our close frame, messages are no longer delivered. */
    if (last) c->msg_opcode = 0;
    return;
  }
  if (c->msg_opcode == WSEV_OP_TEXT && n) {
    c->utf8_state = wsev__utf8_validate(c->utf8_state, p, n);
    if (c->utf8_state == WSEV_UTF8_REJECT) {
      fail(c, WSEV_CLOSE_INVALID_DATA);
      return;
    }
  }
  if (last && c->msg.len == 0 && c->msg_size == n) {
    message_done(c, p, n); /* the whole message is in this read: no copy */
    return;
  }
  if (n) {
    wsev_buf *m = &c->msg;
    /* msg_size already counts the whole current frame: one buffer per frame at
     * most, and geometric growth across many fragments. */
    if (m->len + n > m->cap && wsev__buf_grow(c->ctx, m, (size_t)c->msg_size) != 0) {
      fail(c, WSEV_CLOSE_INTERNAL_ERROR);
      return;
    }
    memcpy(m->data + m->len, p, n);
    m->len += n;
  }
  if (last) {
    message_done(c, c->msg.data, c->msg.len);
    wsev__buf_put(c->ctx, c->msg.data, c->msg.cap);
    memset(&c->msg, 0, sizeof c->msg);
  }
}

/* Returns 1 if parsing goes on. */
static int start_frame(wsev_conn *c, const wsev_frame_header *h) {
  int code = wsev__frame_check(h, c->msg_opcode != 0, !c->client);
  if (code) {
    fail(c, (unsigned)code);
    return 0;
  }
  if (!(h->opcode & 0x8)) {
    if (h->opcode != WSEV_OP_CONT) {
      c->msg_opcode = h->opcode;
      c->msg_size = 0;
      c->utf8_state = WSEV_UTF8_ACCEPT;
    }
    if (h->payload_len > c->ctx->max_message_size - c->msg_size) {
      fail(c, WSEV_CLOSE_TOO_BIG);
      return 0;
    }
    c->msg_size += h->payload_len;
  }
  c->frame_opcode = h->opcode;
  c->frame_fin = h->fin;
  memcpy(c->mask, h->mask, 4);
  c->mask_offset = 0;
  c->payload_left = h->payload_len;
  c->in_frame = 1;
  if (h->payload_len == 0) {
    if (h->opcode & 0x8)
      control_bytes(c, NULL, 0);
    else
      data_bytes(c, NULL, 0);
  }
  return alive(c);
}

static void frame_bytes(wsev_conn *c, uint8_t *p, size_t n) {
  while (n && alive(c)) {
    if (!c->in_frame) {
      wsev_frame_header h;
      int hl;
      size_t used;
      if (c->hdr_len) {
        size_t take = sizeof c->hdr - c->hdr_len;
        if (take > n) take = n;
        memcpy(c->hdr + c->hdr_len, p, take);
        hl = wsev__frame_parse_header(c->hdr, c->hdr_len + take, &h);
        if (hl == 0) {
          c->hdr_len += (uint8_t)take;
          return;
        }
        used = hl > 0 ? (size_t)hl - c->hdr_len : 0;
      } else {
        hl = wsev__frame_parse_header(p, n, &h);
        if (hl == 0) {
          memcpy(c->hdr, p, n); /* n < 14 here */
          c->hdr_len = (uint8_t)n;
          return;
        }
        used = hl > 0 ? (size_t)hl : 0;
      }
      if (hl < 0) {
        fail(c, WSEV_CLOSE_PROTOCOL_ERROR);
        return;
      }
      c->hdr_len = 0;
      p += used;
      n -= used;
      if (!start_frame(c, &h)) return;
      continue;
    }
    size_t take = n < c->payload_left ? n : (size_t)c->payload_left;
    if (!c->client) c->mask_offset = (uint8_t)wsev__frame_unmask(p, take, c->mask, c->mask_offset);
    c->payload_left -= take;
    if (c->frame_opcode & 0x8)
      control_bytes(c, p, take);
    else
      data_bytes(c, p, take);
    p += take;
    n -= take;
  }
}

/* ---- the upgrade ---------------------------------------------------------------- */

static int origin_allowed(const wsev_conn *c) {
  const wsev_ctx *ctx = c->ctx;
  const char *origin = wsev__hs_header(c->hs, "origin");
  if (!origin || (!ctx->n_origins && !ctx->same_host_origin)) return 1;
  for (size_t i = 0; i < ctx->n_origins; i++)
    if (strcasecmp(origin, ctx->origins[i]) == 0) return 1;
  if (ctx->same_host_origin) {
    const char *host = wsev__hs_header(c->hs, "host");
    const char *authority = strstr(origin, "://");
    if (host && authority && strcasecmp(authority + 3, host) == 0) return 1;
  }
  return 0;
}

/* Send the 101 and open the WebSocket; `rest` are frames that came behind the request. */
static void accept_upgrade(wsev_conn *c, const char *protocol, uint8_t *rest, size_t n) {
  wsev_ctx *ctx = c->ctx;
  char response[512];
  size_t len = wsev__hs_response_101(c->hs, protocol, response, sizeof response);
  const char *path = wsev__hs_path(c->hs);
  size_t path_len = strlen(path), protocol_len = protocol ? strlen(protocol) : 0;
  char *info = wsev__malloc(path_len + protocol_len + 2);
  if (!len || !info || queue_bytes(c, response, len) != 0) {
    wsev__free(info);
    wsev__conn_abort(c);
    return;
  }
  c->response_left = (uint16_t)len;
  memcpy(info, path, path_len + 1);
  memcpy(info + path_len + 1, protocol ? protocol : "", protocol_len + 1);
  c->info = info;
  c->has_protocol = protocol != NULL;
  wsev__hs_free(c->hs);
  c->hs = NULL;
  c->state = WSEV_CONN_OPEN;
  c->announced = 1;
  c->last_rx = uv_now(ctx->loop);
  wsev__deadline_clear(c);
  wsev__emit(ctx, WSEV_EV_ACCEPTED, c->id);
  if (n && c->state == WSEV_CONN_OPEN) frame_bytes(c, rest, n);
}

/* A valid upgrade request: the origin policy, then the application's say. */
static void upgrade_request(wsev_conn *c, uint8_t *rest, size_t n) {
  wsev_ctx *ctx = c->ctx;
  if (!origin_allowed(c)) {
    reject(c, 403);
    return;
  }
  /* The id is handed out now, so that a deferred answer can name it. Room for its
   * closed event is reserved at once, so that event can never be lost. */
  uint64_t id = ctx->next_id;
  if (wsev__reserve_events(ctx, ctx->ids.count + 1) != 0 ||
      wsev__idmap_put(&ctx->ids, id, c) != 0) {
    reject(c, 503);
    return;
  }
  ctx->next_id++;
  c->id = id;
  if (!ctx->handler.upgrade_requested) {
    accept_upgrade(c, NULL, rest, n);
    return;
  }
  c->selected = NULL;
  int verdict = wsev__call_upgrade(ctx, c);
  if (c->state != WSEV_CONN_HANDSHAKE) return;
  if (verdict == WSEV_ACCEPT) {
    accept_upgrade(c, c->selected, rest, n);
  } else if (verdict == WSEV_DEFER) {
    /* Reading pauses until the answer; what already came waits here. */
    if (n) {
      c->pending.data = wsev__malloc(n);
      if (!c->pending.data) {
        reject(c, 503);
        return;
      }
      memcpy(c->pending.data, rest, n);
      c->pending.len = n;
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->deferred = 1;
    wsev__deadline_set(c, WSEV_DEADLINE_DEFER, ctx->defer_timeout_ms);
  } else {
    reject(c, verdict >= 400 && verdict <= 599 ? verdict : 500);
  }
}

int wsev__conn_decide(wsev_conn *c, int status, const char *protocol) {
  if (status) {
    reject(c, status);
    return 0;
  }
  if (protocol) {
    size_t i, count = wsev__hs_protocol_count(c->hs);
    for (i = 0; i < count; i++)
      if (strcmp(wsev__hs_protocol(c->hs, i), protocol) == 0) break;
    if (i == count) return UV_EINVAL;
    protocol = wsev__hs_protocol(c->hs, i); /* lives until the 101 is built */
  }
  c->deferred = 0;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    wsev__conn_abort(c);
    return 0;
  }
  wsev_buf pending = c->pending;
  memset(&c->pending, 0, sizeof c->pending);
  accept_upgrade(c, protocol, pending.data, pending.len);
  wsev__free(pending.data);
  return 0;
}

/* A plain HTTP request. Returns 1 if the connection stays for another request. */
static int http_request(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  if (wsev__hs_has_body(c->hs)) {
    reject(c, 413);
    return 0;
  }
  if (!ctx->handler.http_request) {
    reject(c, strcmp(wsev__hs_method(c->hs), "GET") == 0 ? 426 : 400);
    return 0;
  }
  c->responded = 0;
  wsev__call_http(ctx, c);
  if (c->state != WSEV_CONN_HANDSHAKE) return 0;
  if (!c->responded) {
    c->in_http = 1; /* answer for the application: 404 */
    wsev_respond((wsev_request *)c, 404, NULL, NULL, 0);
    c->in_http = 0;
  }
  if (!wsev__hs_keep_alive(c->hs) || ctx->shutting_down) {
    wsev__hs_free(c->hs);
    c->hs = NULL;
    start_draining(c);
    return 0;
  }
  wsev__hs_free(c->hs);
  c->hs = wsev__hs_new(ctx->max_header_size);
  if (!c->hs) {
    wsev__conn_abort(c);
    return 0;
  }
  wsev__deadline_set(c, WSEV_DEADLINE_HANDSHAKE, ctx->handshake_timeout_ms);
  return 1;
}

static void handshake_bytes(wsev_conn *c, uint8_t *p, size_t n) {
  /* A loop, not recursion: keep-alive requests may be pipelined in one read. */
  for (;;) {
    size_t used = 0;
    int result = wsev__hs_feed(c->hs, (const char *)p, n, &used);
    if (result == WSEV_HS_MORE) return;
    p += used;
    n -= used;
    if (result == WSEV_HS_DONE) {
      upgrade_request(c, p, n);
      return;
    }
    if (result != WSEV_HS_HTTP) {
      reject(c, result);
      return;
    }
    if (!http_request(c) || n == 0) return;
  }
}

/* ---- reading ------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  wsev_conn *c = h->data;
  (void)suggested;
  *buf = uv_buf_init((char *)c->ctx->read_buf, WSEV_READ_BUFFER_SIZE);
}

/* Ours, before the 101: the server went away (EOF, or a read error). */
static void lost_while_opening(wsev_conn *c, int error) {
  char reason[124];
  const char *during = c->tls && !wsev__tls_handshake_done(c->tls) ? "the TLS handshake"
                                                                   : "the upgrade response";
  snprintf(reason, sizeof reason, "%s during %s",
           error == UV_EOF ? "connection closed by the server" : uv_strerror(error), during);
  if (error == UV_EOF)
    error = c->tls && !wsev__tls_handshake_done(c->tls) ? WSEV_ETLS : WSEV_EHANDSHAKE;
  wsev__conn_fail_open(c, error, reason);
}

static void on_peer_eof(wsev_conn *c) {
  c->read_eof = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (opening(c)) {
    lost_while_opening(c, UV_EOF);
  } else if (c->state == WSEV_CONN_OPEN || c->state == WSEV_CONN_CLOSING) {
    /* Gone without a closing handshake: send what is queued anyway. */
    if (!c->out.len && !c->inflight) {
      wsev__conn_abort(c);
      return;
    }
    start_draining(c);
  } else if (c->state != WSEV_CONN_DRAINING || c->shutdown_done) {
    wsev__conn_abort(c);
  }
  /* Otherwise the shutdown callback closes the handle once our bytes are out. */
}

/* ---- connections we open ------------------------------------------------------ */

void wsev__conn_fail_open(wsev_conn *c, int error, const char *reason) {
  c->error = error;
  set_close(c, WSEV_CLOSE_ABNORMAL, 0, reason, strlen(reason));
  if (c->tls && wsev__tls_pending(c->tls)) {
    start_draining(c); /* a TLS alert explains it to the server */
    return;
  }
  wsev__conn_abort(c);
}

/* The server's 101 was verified: the WebSocket is open. `rest` are its first frames. */
static void open_client(wsev_conn *c, uint8_t *rest, size_t n) {
  wsev_ctx *ctx = c->ctx;
  const char *protocol = wsev__client_hs_protocol(c->chs);
  if (protocol) {
    /* info is "path\0" so far: add the protocol. */
    size_t path_len = strlen(c->info), protocol_len = strlen(protocol);
    char *info = wsev__realloc(c->info, path_len + protocol_len + 2);
    if (!info) {
      wsev__conn_fail_open(c, UV_ENOMEM, "out of memory");
      return;
    }
    memcpy(info + path_len + 1, protocol, protocol_len + 1);
    c->info = info;
    c->has_protocol = 1;
  }
  wsev__client_hs_free(c->chs);
  c->chs = NULL;
  c->state = WSEV_CONN_OPEN;
  c->last_rx = uv_now(ctx->loop);
  wsev__deadline_clear(c);
  /* Frames written while opening go first, before anything conn_accepted writes. */
  if (c->pending.len > ctx->low_water) c->above_low_water = 1; /* conn_drained is due */
  if (c->pending.len && queue_bytes(c, c->pending.data, c->pending.len) != 0) {
    wsev__conn_fail_open(c, UV_ENOMEM, "out of memory");
    return;
  }
  wsev__free(c->pending.data);
  memset(&c->pending, 0, sizeof c->pending);
  wsev__emit(ctx, WSEV_EV_ACCEPTED, c->id);
  if (n && c->state == WSEV_CONN_OPEN) frame_bytes(c, rest, n);
}

static void client_handshake_bytes(wsev_conn *c, uint8_t *p, size_t n) {
  size_t used = 0;
  int rc = wsev__client_hs_feed(c->chs, (const char *)p, n, &used);
  if (rc == WSEV_CHS_MORE) return;
  if (rc == WSEV_CHS_DONE)
    open_client(c, p + used, n - used);
  else
    wsev__conn_fail_open(c, rc, rc == UV_ENOMEM ? "out of memory" : wsev__client_hs_error(c->chs));
}

/* Bytes of the HTTP or WebSocket stream (decrypted, over TLS). */
static void stream_bytes(wsev_conn *c, uint8_t *p, size_t n) {
  switch (c->state) {
  case WSEV_CONN_HANDSHAKE:
    if (c->client)
      client_handshake_bytes(c, p, n);
    else
      handshake_bytes(c, p, n);
    break;
  case WSEV_CONN_OPEN:
  case WSEV_CONN_CLOSING: frame_bytes(c, p, n); break;
  default: break; /* draining: discarded */
  }
}

static int reading(const wsev_conn *c) { return c->state == WSEV_CONN_HANDSHAKE || alive(c); }

/* ---- TLS input ---------------------------------------------------------------- */

static int tls_plaintext(void *conn, uint8_t *p, size_t n) {
  wsev_conn *c = conn;
  if (c->deferred) {
    /* Records decrypted in the same read as a deferred request wait with it. */
    uint8_t *grown = wsev__realloc(c->pending.data, c->pending.len + n);
    if (!grown) {
      reject(c, 503);
      return 1;
    }
    memcpy(grown + c->pending.len, p, n);
    c->pending.data = grown;
    c->pending.len += n;
    return 0;
  }
  stream_bytes(c, p, n);
  return !reading(c);
}

static void send_request(wsev_conn *c);

static int tls_handshake_done(void *conn) {
  wsev_conn *c = conn;
  if (c->client) send_request(c);
  return !reading(c);
}

static const wsev_tls_sink tls_sink = {tls_handshake_done, tls_plaintext};

/* A broken handshake or record: nothing more can be exchanged. The alert mbedTLS
 * queued goes out before the FIN. */
static void tls_failed(wsev_conn *c) {
  if (opening(c)) {
    char reason[124];
    int error = wsev__tls_error(c->tls, reason, sizeof reason);
    wsev__conn_fail_open(c, error, reason);
    return;
  }
  set_close(c, WSEV_CLOSE_ABNORMAL, 1, NULL, 0);
  wsev__hs_free(c->hs);
  c->hs = NULL;
  start_draining(c);
}

static void tls_bytes(wsev_conn *c, uint8_t *p, size_t n) {
  if (!reading(c)) return;
  uint8_t *plain = wsev__ctx_tls_plain(c->ctx);
  if (!plain) {
    wsev__conn_abort(c);
    return;
  }
  int rc = wsev__tls_input(c->tls, p, n, plain, WSEV_READ_BUFFER_SIZE, &tls_sink, c);
  if (c->state == WSEV_CONN_DEAD) return;
  if (wsev__tls_pending(c->tls)) wsev__mark_dirty(c); /* handshake records, alerts */
  if (rc == WSEV_TLS_CLOSED)
    on_peer_eof(c);
  else if (rc == WSEV_TLS_FAILED)
    tls_failed(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  wsev_conn *c = s->data;
  if (nread == 0) return;
  if (nread == UV_EOF) {
    on_peer_eof(c);
    return;
  }
  if (nread < 0) {
    if (opening(c))
      lost_while_opening(c, (int)nread);
    else
      wsev__conn_abort(c);
    return;
  }
  uint8_t *p = (uint8_t *)buf->base;
  c->last_rx = uv_now(c->ctx->loop);
  if (c->in_deadline && c->deadline_kind == WSEV_DEADLINE_PONG) wsev__deadline_clear(c);
  if (c->tls)
    tls_bytes(c, p, (size_t)nread);
  else
    stream_bytes(c, p, (size_t)nread);
}

wsev_conn *wsev__conn_new(wsev_ctx *ctx) {
  wsev_conn *c = wsev__calloc(1, sizeof *c);
  if (!c) return NULL;
  c->ctx = ctx;
  uv_tcp_init(ctx->loop, &c->tcp);
  c->tcp.data = c;
  wsev__handle_opened(ctx);
  c->all_next = ctx->all_head;
  if (ctx->all_head) ctx->all_head->all_prev = c;
  ctx->all_head = c;
  c->state = WSEV_CONN_CONNECTING;
  return c;
}

static int at_connection_limit(const wsev_ctx *ctx) {
  return ctx->max_connections && ctx->n_active >= ctx->max_connections;
}

void wsev__conn_serve(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  c->state = WSEV_CONN_HANDSHAKE;
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    wsev__conn_abort(c);
    return;
  }
  if (at_connection_limit(ctx)) {
    reject(c, 503);
    return;
  }
  c->hs = wsev__hs_new(ctx->max_header_size);
  if (!c->hs) {
    wsev__conn_abort(c);
    return;
  }
  c->counted = 1;
  ctx->n_active++;
  wsev__deadline_set(c, WSEV_DEADLINE_HANDSHAKE, ctx->handshake_timeout_ms);
}

int wsev__conn_start(wsev_ctx *ctx, uv_stream_t *server, wsev_tls_config *tls) {
  wsev_conn *c = wsev__conn_new(ctx);
  if (!c) return UV_ENOMEM;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    wsev__conn_abort(c);
    return 0;
  }
  /* Over the limit, a TLS client is closed at once: a 503 would first cost a whole
   * handshake, just when the server is at its limit (and plaintext is no answer). */
  if (tls && at_connection_limit(ctx)) {
    wsev__conn_abort(c);
    return 0;
  }
  if (tls && !(c->tls = wsev__tls_new(tls, NULL, 0))) {
    wsev__conn_abort(c);
    return 0;
  }
  wsev__conn_serve(c);
  return 0;
}

/* Ours: the upgrade request goes out (over TLS once its handshake is done). */
static void send_request(wsev_conn *c) {
  size_t len;
  const char *request = wsev__dial_request(c, &len);
  if (queue_bytes(c, request, len) != 0) {
    wsev__conn_fail_open(c, UV_ENOMEM, "out of memory");
    return;
  }
  wsev__dial_abort(c); /* done with dialing */
}

void wsev__conn_connected(wsev_conn *c) {
  c->state = WSEV_CONN_HANDSHAKE;
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    wsev__conn_fail_open(c, UV_ENOMEM, "cannot read");
    return;
  }
  if (!c->tls) {
    send_request(c);
    return;
  }
  if (wsev__tls_start(c->tls) == WSEV_TLS_FAILED) {
    tls_failed(c);
    return;
  }
  wsev__mark_dirty(c); /* the ClientHello */
}
