/* A connection's life: its states, reading and routing the bytes by state, the
 * WebSocket's frames in (through the reader), closing, and release.
 *
 *   (CONNECTING ->) HANDSHAKE -> OPEN -> (CLOSING) -> LINGERING -> DEAD
 *
 * CONNECTING: ours, resolving and connecting (client.c). HANDSHAKE: the upgrade
 * (server.c reads the request; client.c runs TLS and reads the 101). OPEN: frames
 * both ways. CLOSING: we sent a close frame and read on for the peer's. LINGERING:
 * the WebSocket is over and the application was told; our last bytes are flushed, a
 * FIN follows, and input is discarded until the peer's EOF or the close timeout.
 * DEAD: the handle is closing; the memory goes in its close callback, never earlier,
 * so nothing up the stack ever touches freed memory. */
#define _GNU_SOURCE /* struct ucred (SO_PEERCRED) */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "alloc.h"
#include "context.h"
#include "deadline.h"
#include "dispatch.h"
#include "frame.h"
#include "utf8.h"

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static int alive(const wsev_conn *c) {
  return c->state == WSEV_CONN_OPEN || c->state == WSEV_CONN_CLOSING;
}

static void handle_init(wsev_conn *c) {
  if (c->unix_socket)
    uv_pipe_init(c->ctx->loop, &c->sock.pipe, 0);
  else
    uv_tcp_init(c->ctx->loop, &c->sock.tcp);
  c->sock.stream.data = c;
}

int wsev__conn_open_socket(wsev_conn *c, uv_os_sock_t sock) {
  return c->unix_socket ? uv_pipe_open(&c->sock.pipe, sock) : uv_tcp_open(&c->sock.tcp, sock);
}

wsev_conn *wsev__conn_new(wsev_ctx *ctx, int unix_socket) {
  wsev_conn *c = wsev__calloc(1, sizeof *c);
  if (!c) return NULL;
  c->ctx = ctx;
  c->unix_socket = unix_socket != 0;
  handle_init(c);
  wsev__handle_opened(ctx);
  c->all_next = ctx->all_head;
  if (ctx->all_head) ctx->all_head->all_prev = c;
  ctx->all_head = c;
  c->state = WSEV_CONN_CONNECTING;
  return c;
}

int wsev__conn_set_id(wsev_conn *c, uint64_t id) {
  wsev_ctx *ctx = c->ctx;
  /* Room for its closed event is reserved now, so that event can never be lost. */
  if (wsev__reserve_events(ctx, ctx->ids.count + 1) != 0 || wsev__idmap_put(&ctx->ids, id, c) != 0)
    return UV_ENOMEM;
  c->id = id;
  return 0;
}

int wsev__conn_take_id(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  if (c->id) return 0; /* one id for the connection's requests, then its WebSocket */
  return wsev__conn_set_id(
      c, atomic_fetch_add_explicit(&ctx->next_id, ctx->id_stride, memory_order_relaxed));
}

int wsev__conn_set_client(wsev_conn *c, const struct sockaddr_storage *client) {
  if (!c->origin && !(c->origin = wsev__malloc(sizeof *c->origin))) return UV_ENOMEM;
  c->origin->client = *client;
  return 0;
}

int wsev__conn_read_start_with(wsev_conn *c, uv_read_cb read_cb) {
  return uv_read_start(&c->sock.stream, on_alloc, read_cb);
}

int wsev__conn_read_start(wsev_conn *c) {
  return wsev__conn_read_start_with(c, c->proxy_pending ? wsev__server_proxy_read : on_read);
}

/* ---- the end ------------------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h) { wsev__conn_release(h->data); }

void wsev__conn_release(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  if (c->all_prev)
    c->all_prev->all_next = c->all_next;
  else if (ctx->all_head == c)
    ctx->all_head = c->all_next;
  if (c->all_next) c->all_next->all_prev = c->all_prev;
  wsev__flush_forget(c);
  wsev__deadline_clear(c);
  wsev__hs_free(c->handshake.request);
  wsev__client_hs_free(c->handshake.response);
  wsev__free(c->handshake.held.data);
  wsev__tls_free(c->tls);
  wsev__writer_free(&c->writer, &ctx->pool);
  wsev__reader_free(&c->reader, &ctx->pool);
  wsev__deflate_free(c->deflate);
  wsev__free(c->origin);
  wsev__free(c->path);
  wsev__free(c->protocol);
  wsev__free(c->ending.reason);
  wsev__free(c->reaction);
  wsev__free(c);
  wsev__handle_closed(ctx);
}

void wsev__conn_set_ending(wsev_conn *c, unsigned code, int by_peer, const char *reason,
                           size_t len) {
  wsev_conn_ending *e = &c->ending;
  if (e->set) return;
  e->set = 1;
  e->code = (uint16_t)code;
  e->by_peer = (uint8_t)by_peer;
  if (len) {
    e->reason = wsev__malloc(len + 1); /* without memory: no reason */
    if (e->reason) {
      memcpy(e->reason, reason, len);
      e->reason[len] = 0;
    }
  }
}

/* The WebSocket is over: forget the id and tell the application (at most once). */
static void end_websocket(wsev_conn *c) {
  uint64_t id = c->id;
  if (c->counted) {
    c->counted = 0;
    c->ctx->n_active--;
    if (c->ctx->active_total) atomic_fetch_sub(c->ctx->active_total, 1);
  }
  if (!id) return;
  c->id = 0;
  wsev__idmap_del(&c->ctx->ids, id);
  if (!c->announced) { /* an upgrade that was refused, or left while deferred */
    if (c->ctx->id_dropped) c->ctx->id_dropped(c->ctx, id);
    return;
  }
  if (!c->ending.set) wsev__conn_set_ending(c, WSEV_CLOSE_ABNORMAL, 1, NULL, 0); /* dropped */
  wsev__emit_closed(c->ctx, id, &c->ending, c->user_data);
}

void wsev__conn_abort(wsev_conn *c) {
  if (c->state == WSEV_CONN_DEAD) return;
  c->state = WSEV_CONN_DEAD;
  wsev__deadline_clear(c);
  wsev__client_dial_end(c);
  uv_close((uv_handle_t *)&c->sock, on_handle_closed);
  end_websocket(c);
}

void wsev__conn_linger(wsev_conn *c) {
  c->state = WSEV_CONN_LINGERING;
  wsev__deadline_set(c, WSEV_DEADLINE_CLOSE, c->ctx->set.close_timeout_ms);
  wsev__flush_mark(c); /* the flush sends what is queued, then the FIN */
  end_websocket(c);
}

void wsev__conn_fail(wsev_conn *c, unsigned code) {
  wsev__conn_set_ending(c, code, 0, NULL, 0);
  if (c->state == WSEV_CONN_OPEN) wsev__send_close(c, code, NULL);
  wsev__conn_linger(c);
}

/* Start the closing handshake. */
static int close_conn(wsev_conn *c, unsigned code, const char *reason) {
  if (wsev__conn_opening(c)) {
    wsev__client_fail(c, UV_ECANCELED, "closed by the application before it opened");
    return 0;
  }
  if (c->state != WSEV_CONN_OPEN) return WSEV_ECLOSING;
  wsev__conn_set_ending(c, code, 0, reason, reason ? strlen(reason) : 0);
  wsev__send_close(c, code, reason);
  c->state = WSEV_CONN_CLOSING;
  wsev__reader_discard(&c->reader); /* messages after our close are not delivered */
  wsev__deadline_set(c, WSEV_DEADLINE_CLOSE, c->ctx->set.close_timeout_ms);
  return 0;
}

/* ---- the open WebSocket ---------------------------------------------------------- */

/* The peer's close frame. */
static void peer_close(wsev_conn *c, const wsev_read_event *ev) {
  if (c->state == WSEV_CONN_CLOSING) {
    wsev__conn_linger(c); /* the answer to our close */
  } else if (ev->fail) {
    wsev__conn_fail(c, ev->fail);
  } else {
    wsev__conn_set_ending(c, ev->code, 1, (const char *)ev->data, ev->len);
    wsev__send_close(c, ev->code, NULL); /* echo the code, as RFC 6455 section 5.5.1 suggests */
    wsev__conn_linger(c);
  }
}

/* The connection's reaction to a frame: a pong, the close handshake, a failure. */
static void react(wsev_conn *c, wsev_read_kind kind, const wsev_read_event *ev) {
  switch (kind) {
  case WSEV_READ_PING:
    if (c->state == WSEV_CONN_OPEN) wsev__send_control(c, WSEV_OP_PONG, ev->data, ev->len);
    break;
  case WSEV_READ_CLOSE: peer_close(c, ev); break;
  case WSEV_READ_FAIL: wsev__conn_fail(c, ev->fail); break;
  case WSEV_READ_NOMEM: wsev__conn_abort(c); break;
  default: break;
  }
}

/* I/O thread: a reaction waits while messages before it are with the application (so
 * that the application's replies go first), and so does the input behind it. */
struct wsev_reaction {
  wsev_read_kind kind;
  wsev_read_event ev;
  uint8_t data[WSEV_FRAME_MAX_CONTROL];
};

/* Keep p[0..n) for later; stop reading. */
static void hold_input(wsev_conn *c, const uint8_t *p, size_t n) {
  wsev_buf *held = &c->handshake.held;
  if (n) {
    uint8_t *grown = wsev__realloc(held->data, held->len + n);
    if (!grown) {
      wsev__conn_fail(c, WSEV_CLOSE_INTERNAL_ERROR);
      return;
    }
    memcpy(grown + held->len, p, n);
    held->data = grown;
    held->len += n;
  }
  if (!c->paused) uv_read_stop(&c->sock.stream);
  c->paused = 1;
}

/* Returns 1 if the reaction waits (with the input behind it). */
static int reaction_waits(wsev_conn *c, wsev_read_kind kind, const wsev_read_event *ev,
                          const uint8_t *p, size_t n) {
  if (!c->ctx->app_busy || !c->ctx->app_busy(c)) return 0;
  struct wsev_reaction *r = wsev__malloc(sizeof *r);
  if (!r) return 0; /* without memory it goes now, out of order */
  r->kind = kind;
  r->ev = *ev;
  /* Only pings and closes carry a payload (a control frame's: at most 125 bytes); a
   * failure's data and len are whatever the reader lent last. */
  r->ev.len = kind == WSEV_READ_PING || kind == WSEV_READ_CLOSE ? ev->len : 0;
  if (r->ev.len) memcpy(r->data, ev->data, r->ev.len);
  r->ev.data = r->data;
  c->reaction = r;
  hold_input(c, p, n);
  return 1;
}

static void frames_input(wsev_conn *c, uint8_t *p, size_t n) {
  wsev_ctx *ctx = c->ctx;
  if (c->paused) { /* TLS records decrypted after a pause */
    hold_input(c, p, n);
    return;
  }
  uint64_t max = ctx->set.max_message_size ? ctx->set.max_message_size : UINT64_MAX;
  /* Until the reader wants more: its last call also gives back a buffer it lent. */
  while (alive(c)) {
    wsev_read_event ev;
    wsev_read_kind kind = wsev__reader_next(&c->reader, &ctx->pool, max, &p, &n, &ev);
    switch (kind) {
    case WSEV_READ_MORE: return;
    case WSEV_READ_MESSAGE:
      /* An I/O thread may take the reader's buffer instead (no copy), when the event
       * would be dispatched at once anyway. */
      if (!ctx->take_message || !wsev__dispatch_now(ctx) || !ctx->take_message(c, &ev))
        wsev__emit_message(ctx, c->id, ev.data, ev.len, ev.text);
      if (ctx->app_busy) c->handed++;
      break;
    case WSEV_READ_PONG: break;
    default:
      if (reaction_waits(c, kind, &ev, p, n)) return;
      react(c, kind, &ev);
      if (kind == WSEV_READ_FAIL || kind == WSEV_READ_NOMEM) return;
    }
  }
}

void wsev__conn_open(wsev_conn *c, uint8_t *rest, size_t n) {
  wsev_ctx *ctx = c->ctx;
  wsev__reader_init(&c->reader, c->client);
  if (c->deflate) wsev__reader_inflate(&c->reader, c->deflate);
  c->state = WSEV_CONN_OPEN;
  c->announced = 1;
  c->deadline.last_rx = uv_now(ctx->loop);
  wsev__deadline_clear(c);
  wsev__emit(ctx, WSEV_EV_ACCEPTED, c->id);
  if (n && c->state == WSEV_CONN_OPEN) frames_input(c, rest, n);
}

/* ---- reading ------------------------------------------------------------------------ */

void wsev__conn_input(wsev_conn *c, uint8_t *p, size_t n) {
  switch (c->state) {
  case WSEV_CONN_HANDSHAKE:
    if (c->client)
      wsev__client_input(c, p, n);
    else
      wsev__server_input(c, p, n);
    break;
  case WSEV_CONN_OPEN:
  case WSEV_CONN_CLOSING: frames_input(c, p, n); break;
  default: break; /* lingering: discarded */
  }
}

static void peer_eof_now(wsev_conn *c);

void wsev__conn_acked(wsev_conn *c) {
  if (c->state == WSEV_CONN_DEAD) return;
  struct wsev_reaction *r = c->reaction;
  if (r) {
    c->reaction = NULL;
    react(c, r->kind, &r->ev);
    wsev__free(r);
  }
  if (c->paused && c->state != WSEV_CONN_DEAD) {
    c->paused = 0;
    wsev_buf held = c->handshake.held;
    memset(&c->handshake.held, 0, sizeof held);
    /* Lingering reads too: it waits for the peer's EOF. */
    if (!c->read_eof && wsev__conn_read_start(c) != 0) {
      wsev__free(held.data);
      wsev__conn_abort(c);
      return;
    }
    wsev__conn_input(c, held.data ? held.data : (uint8_t *)"", held.len);
    wsev__free(held.data);
  }
  if (c->eof_waiting && !c->paused && c->state != WSEV_CONN_DEAD && !c->ctx->app_busy(c)) {
    c->eof_waiting = 0;
    peer_eof_now(c);
  }
}

void wsev__conn_peer_eof(wsev_conn *c) {
  c->read_eof = 1;
  uv_read_stop(&c->sock.stream);
  if (alive(c) && (c->paused || (c->ctx->app_busy && c->ctx->app_busy(c)))) {
    c->eof_waiting = 1; /* after the application's replies (wsev__conn_acked) */
    return;
  }
  peer_eof_now(c);
}

static void peer_eof_now(wsev_conn *c) {
  if (wsev__conn_opening(c)) {
    wsev__client_lost(c, UV_EOF);
  } else if (alive(c)) {
    /* Gone without a closing handshake: send what is queued anyway. */
    if (!wsev__writer_has_output(&c->writer) && !c->writer.inflight) {
      wsev__conn_abort(c);
      return;
    }
    wsev__conn_linger(c);
  } else if (c->state != WSEV_CONN_LINGERING || c->shutdown_done) {
    wsev__conn_abort(c);
  }
  /* Otherwise the shutdown callback closes the handle once our bytes are out. */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  wsev_conn *c = h->data;
  (void)suggested;
  *buf = uv_buf_init((char *)c->ctx->read_buf, WSEV_READ_BUFFER_SIZE);
}

/* Inlined into on_read: every read of the state machine passes here. */
static inline void received(wsev_conn *c, uint8_t *p, size_t n) {
  if (c->tls)
    wsev__tls_conn_input(c, p, n);
  else
    wsev__conn_input(c, p, n);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  wsev_conn *c = s->data;
  if (nread == 0) return;
  if (nread == UV_EOF) {
    wsev__conn_peer_eof(c);
    return;
  }
  if (nread < 0) {
    if (wsev__conn_opening(c))
      wsev__client_lost(c, (int)nread);
    else
      wsev__conn_abort(c);
    return;
  }
  c->deadline.last_rx = uv_now(c->ctx->loop);
  if (c->deadline.armed && c->deadline.kind == WSEV_DEADLINE_PONG) wsev__deadline_clear(c);
  received(c, (uint8_t *)buf->base, (size_t)nread);
}

void wsev__conn_received(wsev_conn *c, uint8_t *p, size_t n) { received(c, p, n); }

/* ---- hooks for the context's timers ----------------------------------------------- */

void wsev__conn_on_deadline(wsev_conn *c) {
  switch (c->deadline.kind) {
  case WSEV_DEADLINE_DEFER:
    wsev__server_reject(c, 503); /* the application did not answer in time */
    break;
  case WSEV_DEADLINE_PONG:
    wsev__conn_set_ending(c, WSEV_CLOSE_ABNORMAL, 0, NULL, 0); /* we gave up on a silent peer */
    wsev__conn_abort(c);
    break;
  case WSEV_DEADLINE_HANDSHAKE:
    if (wsev__conn_opening(c))
      wsev__client_timed_out(c);
    else
      wsev__conn_abort(c);
    break;
  default: wsev__conn_abort(c);
  }
}

void wsev__conn_on_keepalive(wsev_conn *c, uint64_t now) {
  const wsev_settings *set = &c->ctx->set;
  if (c->state != WSEV_CONN_OPEN || c->deadline.armed) return; /* a ping is out already */
  if (now - c->deadline.last_rx < set->ping_interval_ms) return;
  wsev__send_control(c, WSEV_OP_PING, NULL, 0);
  wsev__deadline_set(c, WSEV_DEADLINE_PONG, set->ping_timeout_ms);
}

void wsev__conn_on_shutdown(wsev_conn *c) {
  if (wsev__conn_opening(c))
    wsev__client_fail(c, UV_ECANCELED, "the context is shutting down");
  else if (c->state == WSEV_CONN_HANDSHAKE)
    wsev__server_reject(c, 503);
  else if (c->state == WSEV_CONN_OPEN)
    close_conn(c, WSEV_CLOSE_GOING_AWAY, NULL);
}

/* ---- the API ---------------------------------------------------------------------- */

int wsev_close_with(wsev_ctx *ctx, uint64_t id, unsigned code, const char *reason) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  wsev_conn *c = NULL;
  if (ctx->io ? !wsev__io_known(ctx, id) : !(c = wsev__conn_find(ctx, id))) return WSEV_ENOCONN;
  size_t len = reason ? strlen(reason) : 0;
  if (!wsev__close_code_is_valid(code) || len > 123 ||
      (len && !wsev__utf8_is_valid((const uint8_t *)reason, len)))
    return UV_EINVAL;
  if (ctx->io) return wsev__io_close(ctx, id, code, reason);
  ctx->in_api++; /* abandoning one of ours raises conn_closed: after we return */
  int rc = close_conn(c, code, reason);
  ctx->in_api--;
  return rc;
}

int wsev_close(wsev_ctx *ctx, uint64_t id) {
  return wsev_close_with(ctx, id, WSEV_CLOSE_NORMAL, NULL);
}

int wsev_set_conn_data(wsev_ctx *ctx, uint64_t id, void *data) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (ctx->io) return wsev__io_set_conn_data(ctx, id, data);
  wsev_conn *c = wsev__conn_find(ctx, id);
  if (!c) return WSEV_ENOCONN;
  c->user_data = data;
  return 0;
}

void *wsev_get_conn_data(const wsev_ctx *ctx, uint64_t id) {
  WSEV_CHECK_CTX_OR(ctx, NULL);
  if (ctx->closing && ctx->closing->id == id) return ctx->closing->user_data;
  if (ctx->io) return wsev__io_get_conn_data(ctx, id);
  wsev_conn *c = wsev__conn_find(ctx, id);
  return c ? c->user_data : NULL;
}

int wsev_get_close_info(const wsev_ctx *ctx, uint64_t id, wsev_close_info *info) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!info) return UV_EINVAL;
  const wsev_event *ev = ctx->closing;
  if (!ev || ev->id != id) return WSEV_ENOCONN;
  info->error = ev->error;
  info->code = ev->close_code;
  info->by_peer = ev->by_peer;
  size_t n = ev->len < sizeof info->reason ? ev->len : sizeof info->reason - 1;
  if (n) memcpy(info->reason, ev->data, n);
  info->reason[n] = 0;
  return 0;
}

static int tcp_peer(const wsev_conn *c, wsev_conn_info *info) {
  int len = sizeof info->peer;
  int rc = uv_tcp_getpeername(&c->sock.tcp, (struct sockaddr *)&info->peer, &len);
  struct sockaddr_storage local;
  len = sizeof local;
  if (!rc) rc = uv_tcp_getsockname(&c->sock.tcp, (struct sockaddr *)&local, &len);
  if (!rc)
    info->local_port =
        ntohs(local.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&local)->sin6_port
                                          : ((struct sockaddr_in *)&local)->sin_port);
  return rc;
}

/* A Unix socket's peer has no name of its own (unless it bound one): the socket's path
 * tells more, the listener's for an accepted one (its local name), the server's for
 * ours; and the kernel knows the peer process. */
static int unix_peer(const wsev_conn *c, wsev_conn_info *info) {
  struct sockaddr_un *un = (struct sockaddr_un *)&info->peer;
  socklen_t len = sizeof *un;
  uv_os_fd_t fd;
  int rc = uv_fileno((const uv_handle_t *)&c->sock, &fd);
  if (rc) return rc;
  if ((c->client ? getpeername(fd, (struct sockaddr *)un, &len)
                 : getsockname(fd, (struct sockaddr *)un, &len)) != 0)
    return -errno;
  un->sun_family = AF_UNIX;
  struct ucred cred;
  socklen_t cred_len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) == 0) {
    info->peer_pid = (int)cred.pid;
    info->peer_uid = (int)cred.uid;
    info->peer_gid = (int)cred.gid;
  }
  return 0;
}

int wsev_get_conn_info(const wsev_ctx *ctx, uint64_t id, wsev_conn_info *info) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!info) return UV_EINVAL;
  if (ctx->io) return wsev__io_conn_info(ctx, id, info);
  wsev_conn *c = wsev__conn_find(ctx, id);
  if (!c) return WSEV_ENOCONN;
  memset(info, 0, sizeof *info);
  info->peer_pid = info->peer_uid = info->peer_gid = -1;
  int rc = c->unix_socket ? unix_peer(c, info) : tcp_peer(c, info);
  if (rc) return rc;
  info->client_addr = c->origin ? c->origin->client : info->peer;
  info->forwarded = c->origin != NULL;
  info->path = c->path ? c->path : "";
  info->protocol = c->protocol;
  info->client = c->client;
  if (c->tls) {
    info->tls = 1;
    info->server_name = wsev__tls_server_name(c->tls);
    info->tls_version = wsev__tls_version(c->tls);
    info->tls_cipher = wsev__tls_cipher(c->tls);
    info->tls_resumed = wsev__tls_resumed(c->tls);
  }
  const wsev_pmd_agreed *pmd = c->deflate ? &c->deflate->agreed : NULL;
  if (pmd && pmd->on) {
    info->deflate.on = 1;
    info->deflate.our_window = pmd->out_bits;
    info->deflate.peer_window = pmd->in_bits;
    info->deflate.our_takeover = pmd->out_takeover;
    info->deflate.peer_takeover = pmd->in_takeover;
  }
  return 0;
}
