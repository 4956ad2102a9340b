/* Corked output to the socket. A connection written to is put on the context's flush
 * list once; in the check phase (after every callback of the iteration ran) each one
 * gets a single uv_try_write of its whole queue (a writev), and only what the kernel
 * did not take waits in a uv_write request. Over TLS the queue is encrypted first
 * (conn_tls.c). A lingering connection's FIN follows its last bytes. */
#include "alloc.h"
#include "context.h"
#include "dispatch.h"

typedef struct {
  uv_write_t req;
  wsev_conn *conn;
  wsev_seg *segs; /* the bytes in flight, released when written */
  size_t len;     /* bytes in flight */
} write_req;

void wsev__flush_mark(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  if (c->dirty) return;
  c->dirty = 1;
  if (!ctx->dirty_head) wsev__wake(ctx);
  c->dirty_next = ctx->dirty_head;
  ctx->dirty_head = c;
}

void wsev__flush_forget(wsev_conn *c) {
  if (!c->dirty) return;
  /* Rare: freed after being marked in the same iteration. */
  wsev_conn **pp = &c->ctx->dirty_head;
  while (*pp && *pp != c)
    pp = &(*pp)->dirty_next;
  if (*pp) *pp = c->dirty_next;
}

void wsev__flush_check_drained(wsev_conn *c) {
  wsev_writer *w = &c->writer;
  if (c->ctx->send_report) c->ctx->send_report(c);
  if (w->above_low_water && wsev__writer_buffered(w) <= c->ctx->set.low_water &&
      c->state == WSEV_CONN_OPEN) {
    w->above_low_water = 0;
    wsev__emit(c->ctx, WSEV_EV_DRAINED, c->id);
  }
}

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
  c->writer.inflight -= wr->len;
  while (wr->segs) {
    wsev_seg *seg = wr->segs;
    wr->segs = seg->next;
    wsev__seg_release(&c->ctx->pool, seg);
  }
  wsev__free(wr);
  if (c->state == WSEV_CONN_DEAD) return;
  if (status < 0) {
    wsev__conn_abort(c);
    return;
  }
  /* Output that waited behind this write goes out with the next flush. */
  if (wsev__writer_has_output(&c->writer) || (c->tls && wsev__tls_pending(c->tls)) ||
      (c->state == WSEV_CONN_LINGERING && !c->shutdown_sent))
    wsev__flush_mark(c);
  wsev__flush_check_drained(c);
}

int wsev__flush_write_segs(wsev_conn *c, wsev_seg *head, size_t bytes) {
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
  int rc = uv_write(&wr->req, &c->sock.stream, bufs, count, on_write); /* copies bufs */
  if (bufs != stack_bufs) wsev__free(bufs);
  if (rc != 0) {
    wsev__free(wr);
    return rc;
  }
  c->writer.inflight += bytes;
  return 0;
}

/* Everything queued during this iteration, in one writev; the rest in a request.
 * Returns 0 when all of it is out, 1 when some waits, -1 on failure. */
static int flush_plain(wsev_conn *c) {
  wsev_writer *w = &c->writer;
  uv_buf_t bufs[64];
  unsigned n = wsev__writer_gather(w, bufs, 64);
  int written = uv_try_write(&c->sock.stream, bufs, n);
  if (written == UV_EAGAIN) written = 0;
  if (written < 0) return -1;
  wsev__writer_consume(w, &c->ctx->pool, (size_t)written);
  if (!wsev__writer_has_output(w)) return 0;
  /* The kernel did not take it all: the rest waits in a write request. */
  wsev_seg *head;
  size_t bytes;
  if (wsev__writer_take(w, &c->ctx->pool, &head, &bytes) != 0) return -1;
  if (wsev__flush_write_segs(c, head, bytes) != 0) {
    while (head) {
      wsev_seg *seg = head;
      head = seg->next;
      wsev__seg_release(&c->ctx->pool, seg);
    }
    return -1;
  }
  return 1;
}

static void send_fin(wsev_conn *c) {
  uv_shutdown_t *req = wsev__malloc(sizeof *req);
  if (!req) {
    wsev__conn_abort(c);
    return;
  }
  req->data = c;
  if (uv_shutdown(req, &c->sock.stream, on_shutdown) != 0) {
    wsev__free(req);
    wsev__conn_abort(c);
    return;
  }
  c->shutdown_sent = 1;
}

static void flush(wsev_conn *c) {
  if (c->state == WSEV_CONN_DEAD || c->writer.inflight) return;
  if (c->tls) {
    if (!wsev__tls_conn_flush(c)) return;
    wsev__flush_check_drained(c);
  } else if (wsev__writer_has_output(&c->writer)) {
    int rc = flush_plain(c);
    if (rc < 0) wsev__conn_abort(c);
    if (rc) return;
    wsev__flush_check_drained(c);
  }
  if (c->state == WSEV_CONN_LINGERING && !c->shutdown_sent) send_fin(c);
}

void wsev__flush_all(wsev_ctx *ctx) {
  /* Flushing may fail a connection, whose conn_closed callback may write to others:
   * keep taking the list until it stays empty. */
  while (ctx->dirty_head) {
    wsev_conn *c = ctx->dirty_head;
    ctx->dirty_head = NULL;
    while (c) {
      wsev_conn *next = c->dirty_next;
      c->dirty = 0;
      c->dirty_next = NULL;
      flush(c);
      c = next;
    }
  }
}
