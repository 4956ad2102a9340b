/* TLS glue between a connection and its session (tls.c): ciphertext read from the
 * socket is decrypted into the context's plaintext buffer and handed to the state
 * machine; at flush time the queued plaintext is encrypted and the records written.
 * A broken handshake or record ends the connection; the alert goes out first. */
#include <string.h>

#include "alloc.h"
#include "context.h"
#include "frame.h"

/* At most this much plaintext is encrypted per write, so the ciphertext buffer stays
 * bounded however much is queued. */
#define TLS_CHUNK (256 * 1024)

static int on_plaintext(void *conn, uint8_t *p, size_t n) {
  wsev_conn *c = conn;
  wsev_conn_handshake *hs = &c->handshake;
  if (hs->deferred) {
    /* Records decrypted in the same read as a deferred request wait with it. */
    uint8_t *grown = wsev__realloc(hs->held.data, hs->held.len + n);
    if (!grown) {
      wsev__server_reject(c, 503);
      return 1;
    }
    memcpy(grown + hs->held.len, p, n);
    hs->held.data = grown;
    hs->held.len += n;
    return 0;
  }
  wsev__conn_input(c, p, n);
  return !wsev__conn_reading(c);
}

static int on_handshake_done(void *conn) {
  wsev_conn *c = conn;
  if (c->client) wsev__client_send_request(c);
  return !wsev__conn_reading(c);
}

static const wsev_tls_sink sink = {on_handshake_done, on_plaintext};

/* Nothing more can be exchanged. */
static void failed(wsev_conn *c) {
  if (wsev__conn_opening(c)) {
    char reason[124];
    int error = wsev__tls_error(c->tls, reason, sizeof reason);
    wsev__client_fail(c, error, reason);
    return;
  }
  wsev__conn_set_ending(c, WSEV_CLOSE_ABNORMAL, 1, NULL, 0);
  wsev__hs_free(c->handshake.request);
  c->handshake.request = NULL;
  wsev__conn_linger(c);
}

void wsev__tls_conn_input(wsev_conn *c, uint8_t *p, size_t n) {
  if (!wsev__conn_reading(c)) return;
  uint8_t *plain = wsev__ctx_tls_plain(c->ctx);
  if (!plain) {
    wsev__conn_abort(c);
    return;
  }
  int rc = wsev__tls_input(c->tls, p, n, plain, WSEV_READ_BUFFER_SIZE, &sink, c);
  if (c->state == WSEV_CONN_DEAD) return;
  if (wsev__tls_pending(c->tls)) wsev__flush_mark(c); /* handshake records, alerts */
  if (rc == WSEV_TLS_CLOSED)
    wsev__conn_peer_eof(c);
  else if (rc == WSEV_TLS_FAILED)
    failed(c);
}

void wsev__tls_conn_start(wsev_conn *c) {
  if (wsev__tls_start(c->tls) == WSEV_TLS_FAILED) {
    failed(c);
    return;
  }
  wsev__flush_mark(c); /* the ClientHello */
}

/* Encrypt up to TLS_CHUNK bytes of the queue. 0 or an error. */
static int encrypt_chunk(wsev_conn *c) {
  wsev_writer *w = &c->writer;
  if (wsev__writer_seal(w, &c->ctx->pool) != 0) return UV_ENOMEM;
  size_t done = 0;
  for (wsev_seg *seg = w->segs; seg && done < TLS_CHUNK; seg = seg->next) {
    size_t n = seg->len - seg->off;
    if (n > TLS_CHUNK - done) n = TLS_CHUNK - done;
    int rc = wsev__tls_encrypt(c->tls, seg->data + seg->off, n);
    if (rc) return rc;
    done += n;
  }
  wsev__writer_consume(w, &c->ctx->pool, done);
  return 0;
}

/* Write the records produced so far, as much as the kernel takes now; the rest goes
 * in a write request. 1 when all were written, 0 when some wait, -1 on failure. */
static int write_records(wsev_conn *c) {
  size_t len, cap;
  uint8_t *records = wsev__tls_take(c->tls, &len, &cap);
  uv_buf_t buf = uv_buf_init((char *)records, (unsigned)len);
  int written = uv_try_write(&c->sock.stream, &buf, 1);
  if (written == UV_EAGAIN) written = 0;
  if (written < 0) {
    wsev__free(records);
    return -1;
  }
  if ((size_t)written == len) {
    wsev__free(records);
    return 1;
  }
  wsev_seg *seg = wsev__seg_get(&c->ctx->pool);
  if (!seg) {
    wsev__free(records);
    return -1;
  }
  seg->data = records;
  seg->cap = cap;
  seg->len = len;
  seg->off = (size_t)written;
  if (wsev__flush_write_segs(c, seg, len - (size_t)written) != 0) {
    wsev__seg_release(&c->ctx->pool, seg);
    return -1;
  }
  return 0;
}

int wsev__tls_conn_flush(wsev_conn *c) {
  wsev_tls *tls = c->tls;
  int can_encrypt = wsev__tls_handshake_done(tls) && !wsev__tls_error(tls, NULL, 0);
  for (;;) {
    if (can_encrypt && wsev__writer_has_output(&c->writer) && encrypt_chunk(c) != 0) break;
    if (c->state == WSEV_CONN_LINGERING && !c->writer.segs) wsev__tls_close_notify(tls);
    if (!wsev__tls_pending(tls)) {
      size_t len, cap;
      wsev__free(wsev__tls_take(tls, &len, &cap)); /* an idle session keeps no buffer */
      return !can_encrypt || !c->writer.segs;
    }
    int rc = write_records(c);
    if (rc < 0) break;
    if (rc == 0) return 0;
  }
  wsev__conn_abort(c);
  return 0;
}
