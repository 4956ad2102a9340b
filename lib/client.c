/* The client side of a connection (connections we open): wsev_add_conn and
 * wsev_adopt_socket, resolving the name without blocking, connecting to each address
 * in turn, then (over TLS once its handshake is done) the upgrade request, the
 * server's 101 (client_handshake.c checks it), and every way this can fail, each
 * reported with a reason in the close info. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "context.h"
#include "deadline.h"
#include "dispatch.h"
#include "frame.h"
#include "url.h"

/* Resolving and connecting, until the upgrade request is sent. */
struct wsev_dial {
  uv_getaddrinfo_t resolve;
  uv_connect_t connect;
  wsev_conn *conn; /* NULL once the connection gave up: a request in flight frees us */
  struct addrinfo *addrs, *next;
  char *request;
  size_t request_len;
  int last_error;
  uint8_t resolving;
  uint8_t connecting;
  char port[8];
  char host[256];
};

static void dial_free(struct wsev_dial *d) {
  if (d->addrs) uv_freeaddrinfo(d->addrs);
  wsev__free(d->request);
  wsev__free(d);
}

void wsev__client_dial_end(wsev_conn *c) {
  struct wsev_dial *d = c->handshake.dial;
  if (!d) return;
  c->handshake.dial = NULL;
  d->conn = NULL;
  if (d->resolving)
    uv_cancel((uv_req_t *)&d->resolve); /* its callback frees d, cancelled or not */
  else if (!d->connecting)
    dial_free(d); /* else the connect callback does, once the socket is closed */
}

void wsev__client_fail(wsev_conn *c, int error, const char *reason) {
  c->ending.error = error;
  wsev__conn_set_ending(c, WSEV_CLOSE_ABNORMAL, 0, reason, strlen(reason));
  if (c->tls && wsev__tls_pending(c->tls)) {
    wsev__conn_linger(c); /* a TLS alert explains it to the server */
    return;
  }
  wsev__conn_abort(c);
}

static int tls_unfinished(const wsev_conn *c) {
  return c->tls && !wsev__tls_handshake_done(c->tls);
}

void wsev__client_lost(wsev_conn *c, int error) {
  char reason[124];
  snprintf(reason, sizeof reason, "%s during %s",
           error == UV_EOF ? "connection closed by the server" : uv_strerror(error),
           tls_unfinished(c) ? "the TLS handshake" : "the upgrade response");
  if (error == UV_EOF) error = tls_unfinished(c) ? WSEV_ETLS : WSEV_EHANDSHAKE;
  wsev__client_fail(c, error, reason);
}

void wsev__client_timed_out(wsev_conn *c) {
  wsev__client_fail(c, UV_ETIMEDOUT,
                    c->state == WSEV_CONN_CONNECTING ? "timed out connecting"
                    : c->handshake.response && !c->handshake.dial
                        ? "timed out waiting for the 101"
                        : "timed out in the TLS handshake");
}

/* ---- the upgrade --------------------------------------------------------------------- */

void wsev__client_send_request(wsev_conn *c) {
  struct wsev_dial *d = c->handshake.dial;
  if (wsev__send_bytes(c, d->request, d->request_len) != 0) {
    wsev__client_fail(c, UV_ENOMEM, "out of memory");
    return;
  }
  wsev__client_dial_end(c); /* done with dialing */
}

void wsev__client_connected(wsev_conn *c) {
  c->state = WSEV_CONN_HANDSHAKE;
  uv_tcp_nodelay(&c->tcp, 1);
  if (wsev__conn_read_start(c) != 0) {
    wsev__client_fail(c, UV_ENOMEM, "cannot read");
    return;
  }
  if (c->tls)
    wsev__tls_conn_start(c);
  else
    wsev__client_send_request(c);
}

/* The server's 101 was verified: the WebSocket is open. `rest` are its first frames. */
static void opened(wsev_conn *c, uint8_t *rest, size_t n) {
  wsev_ctx *ctx = c->ctx;
  wsev_conn_handshake *hs = &c->handshake;
  const char *protocol = wsev__client_hs_protocol(hs->response);
  if (protocol) {
    size_t len = strlen(protocol);
    if (!(c->protocol = wsev__malloc(len + 1))) {
      wsev__client_fail(c, UV_ENOMEM, "out of memory");
      return;
    }
    memcpy(c->protocol, protocol, len + 1);
  }
  if (c->deflate) { /* we offered it: did the server agree? */
    c->deflate->agreed = *wsev__client_hs_deflate(hs->response);
    if (!c->deflate->agreed.on) {
      wsev__deflate_free(c->deflate);
      c->deflate = NULL;
    }
  }
  wsev__client_hs_free(hs->response);
  hs->response = NULL;
  /* Frames written while opening go first, before anything conn_accepted writes. */
  if (hs->held.len > ctx->set.low_water) c->writer.above_low_water = 1; /* conn_drained is due */
  if (hs->held.len && wsev__send_bytes(c, hs->held.data, hs->held.len) != 0) {
    wsev__client_fail(c, UV_ENOMEM, "out of memory");
    return;
  }
  wsev__free(hs->held.data);
  memset(&hs->held, 0, sizeof hs->held);
  wsev__conn_open(c, rest, n);
}

void wsev__client_input(wsev_conn *c, uint8_t *p, size_t n) {
  size_t used = 0;
  int rc = wsev__client_hs_feed(c->handshake.response, (const char *)p, n, &used);
  if (rc == WSEV_CHS_MORE) return;
  if (rc == WSEV_CHS_DONE)
    opened(c, p + used, n - used);
  else
    wsev__client_fail(
        c, rc, rc == UV_ENOMEM ? "out of memory" : wsev__client_hs_error(c->handshake.response));
}

/* ---- dialing ---------------------------------------------------------------------- */

static void try_next(wsev_conn *c);

/* The socket of a failed attempt is closed: a fresh one for the next address. */
static void on_attempt_closed(uv_handle_t *h) {
  wsev_conn *c = h->data;
  c->tcp_closing = 0;
  if (c->state == WSEV_CONN_DEAD) {
    wsev__conn_release(c);
    return;
  }
  uv_tcp_init(c->ctx->loop, &c->tcp);
  c->tcp.data = c;
  try_next(c);
}

static void next_attempt(wsev_conn *c) {
  c->tcp_closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_attempt_closed);
}

static void on_connect(uv_connect_t *req, int status) {
  struct wsev_dial *d = req->data;
  wsev_conn *c = d->conn;
  d->connecting = 0;
  if (!c) {
    dial_free(d);
    return;
  }
  if (status == 0) {
    wsev__client_connected(c);
    return;
  }
  d->last_error = status;
  if (d->next)
    next_attempt(c);
  else
    try_next(c); /* reports the failure */
}

static void try_next(wsev_conn *c) {
  struct wsev_dial *d = c->handshake.dial;
  if (d->next) {
    struct addrinfo *ai = d->next;
    d->next = ai->ai_next;
    d->connect.data = d;
    int rc = uv_tcp_connect(&d->connect, &c->tcp, ai->ai_addr, on_connect);
    if (rc == 0) {
      d->connecting = 1;
      return;
    }
    d->last_error = rc;
    if (d->next) {
      next_attempt(c);
      return;
    }
  }
  char reason[124];
  snprintf(reason, sizeof reason, "cannot connect to %.60s port %s: %s", d->host, d->port,
           uv_strerror(d->last_error));
  wsev__client_fail(c, d->last_error, reason);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *addrs) {
  struct wsev_dial *d = req->data;
  wsev_conn *c = d->conn;
  d->resolving = 0;
  d->addrs = addrs;
  if (!c) {
    dial_free(d);
    return;
  }
  if (status < 0 || !addrs) {
    char reason[124];
    snprintf(reason, sizeof reason, "cannot resolve %.60s: %s", d->host,
             uv_strerror(status < 0 ? status : UV_EAI_NONAME));
    wsev__client_fail(c, status < 0 ? status : UV_EAI_NONAME, reason);
    return;
  }
  d->next = addrs;
  d->last_error = UV_ECONNREFUSED;
  try_next(c);
}

/* ---- opening ------------------------------------------------------------------------ */

/* A reference to a client TLS configuration for these options: shared with earlier
 * connections when it matches (the system bundle is parsed once), else new. */
static int client_tls(wsev_ctx *ctx, const wsev_client_options *o, wsev_tls_config **out) {
  const char *ca_file = o ? o->ca_file : NULL;
  int insecure = o ? o->insecure : 0;
  for (int i = 0; i < ctx->n_client_tls; i++) {
    if (wsev__tls_config_matches(ctx->client_tls[i], ca_file, insecure)) {
      *out = ctx->client_tls[i];
      wsev__tls_config_ref(*out);
      return 0;
    }
  }
  wsev_rng *rng = wsev__ctx_rng(ctx);
  if (!rng) return UV_ENOMEM;
  int rc = wsev__tls_client_config(rng, ca_file, insecure, ctx->client_sessions, out);
  if (rc == 0 && ctx->n_client_tls < WSEV_CLIENT_TLS_CACHE) {
    ctx->client_tls[ctx->n_client_tls++] = *out;
    wsev__tls_config_ref(*out); /* the cache's */
  }
  return rc;
}

/* Everything a connection of ours needs before its socket is connected; on success
 * *out is registered under a new id (not yet told to anyone). */
static int new_client(wsev_ctx *ctx, const char *url_text, const wsev_client_options *o,
                      uint64_t id, wsev_conn **out) {
  wsev_url url;
  if (!url_text) return UV_EINVAL;
  int rc = wsev__url_parse(url_text, &url);
  if (rc) return rc;
  const char *const *protocols = o ? o->protocols : NULL;
  const char *headers = o ? o->headers : NULL, *origin = o ? o->origin : NULL;
  size_t max_header = ctx->set.max_header_size ? ctx->set.max_header_size : SIZE_MAX / 4;
  wsev_tls_config *tls_conf = NULL;
  struct wsev_dial *d = NULL;
  wsev_conn *c = NULL;
  uint8_t key[16];
  char accept[29], offer[WSEV_PMD_HEADER_MAX];
  size_t resource_len = strlen(url.resource);
  wsev_deflate_options deflate;
  wsev_pmd_config pmd;

  if ((rc = wsev__client_options_check(protocols, headers)) != 0 ||
      (rc = wsev__client_origin_check(origin)) != 0 ||
      (rc = wsev__deflate_options_normalize(o ? o->deflate : NULL, &deflate)) != 0)
    goto fail;
  pmd = wsev__deflate_config(&deflate);
  if (deflate.mode != WSEV_DEFLATE_OFF && pmd.mode == WSEV_PMD_OFF) {
    rc = UV_ENOTSUP; /* built without zlib */
    goto fail;
  }
  if (pmd.mode != WSEV_PMD_OFF) wsev__pmd_offer(&pmd, offer);
  if (url.tls && (rc = client_tls(ctx, o, &tls_conf)) != 0) goto fail;
  rc = UV_ENOMEM;
  wsev_rng *rng = wsev__ctx_rng(ctx);
  if (!rng || wsev__rng_bytes(rng, key, sizeof key) != 0) goto fail;
  if (url.tls && !wsev__ctx_tls_plain(ctx)) goto fail;
  if (!(d = wsev__calloc(1, sizeof *d))) goto fail;
  rc = wsev__client_request(&url, key, origin, protocols, headers,
                            pmd.mode != WSEV_PMD_OFF ? offer : NULL, &d->request, &d->request_len,
                            accept);
  if (rc) goto fail;
  rc = UV_ENOMEM;
  if (!(c = wsev__conn_new(ctx))) goto fail;
  c->client = 1;
  c->handshake.dial = d;
  d->conn = c;
  c->user_data = o ? o->data : NULL;
  if ((pmd.mode != WSEV_PMD_OFF &&
       !(c->deflate = wsev__deflate_new(&deflate, wsev__ctx_deflate_streams(ctx)))) ||
      !(c->handshake.response = wsev__client_hs_new(accept, protocols, &pmd, max_header)) ||
      !(c->path = wsev__malloc(resource_len + 1)) ||
      (url.tls && !(c->tls = wsev__tls_new(tls_conf, url.host, url.port))) ||
      (id ? wsev__conn_set_id(c, id) : wsev__conn_take_id(c)) != 0)
    goto fail;
  memcpy(c->path, url.resource, resource_len + 1);
  snprintf(d->host, sizeof d->host, "%s", url.host);
  snprintf(d->port, sizeof d->port, "%u", (unsigned)url.port);
  uint64_t timeout =
      o && o->connect_timeout_ms ? o->connect_timeout_ms : ctx->set.handshake_timeout_ms;
  wsev__deadline_set(c, WSEV_DEADLINE_HANDSHAKE, timeout);
  wsev__tls_config_unref(tls_conf); /* the session holds its own reference */
  wsev__url_free(&url);
  *out = c;
  return 0;
fail:
  if (c)
    wsev__conn_abort(c); /* not announced: no event; frees d through dial_end */
  else if (d)
    dial_free(d);
  wsev__tls_config_unref(tls_conf);
  wsev__url_free(&url);
  return rc;
}

static int add_conn(wsev_ctx *ctx, const char *url, const wsev_client_options *options,
                    uint64_t *id) {
  wsev_conn *c;
  int rc = new_client(ctx, url, options, *id, &c);
  if (rc) return rc;
  struct wsev_dial *d = c->handshake.dial;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  d->resolve.data = d;
  rc = uv_getaddrinfo(ctx->loop, &d->resolve, on_resolved, d->host, d->port, &hints);
  if (rc) {
    wsev__conn_abort(c);
    return rc;
  }
  d->resolving = 1;
  c->announced = 1;
  *id = c->id;
  return 0;
}

static int adopt(wsev_ctx *ctx, uv_os_sock_t sock, const char *url,
                 const wsev_client_options *options, uint64_t *id) {
  wsev_conn *c;
  int rc;
  if (!url) {
    if (!(c = wsev__conn_new(ctx))) return UV_ENOMEM;
    if ((rc = uv_tcp_open(&c->tcp, sock)) != 0) {
      wsev__conn_abort(c); /* the handle never owned the socket: it stays open */
      return rc;
    }
    if (id) *id = 0;
    wsev__server_serve(c);
    return 0;
  }
  if ((rc = new_client(ctx, url, options, id ? *id : 0, &c)) != 0) return rc;
  if ((rc = uv_tcp_open(&c->tcp, sock)) != 0) {
    wsev__conn_abort(c);
    return rc;
  }
  c->announced = 1;
  if (id) *id = c->id;
  wsev__client_connected(c);
  return 0;
}

int wsev__client_open(wsev_ctx *ctx, const char *url, const wsev_client_options *options,
                      uint64_t *id, uv_os_sock_t *sock) {
  ctx->in_api++; /* events raised on the way (a failure) wait until the caller has the id */
  int rc = sock ? adopt(ctx, *sock, url, options, id) : add_conn(ctx, url, options, id);
  ctx->in_api--;
  return rc;
}

int wsev_add_conn(wsev_ctx *ctx, const char *url, const wsev_client_options *options,
                  uint64_t *id) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!wsev__ctx_usable(ctx) || !id) return UV_EINVAL;
  if (ctx->io) return wsev__io_open(ctx, url, options, id, NULL);
  *id = 0;
  ctx->in_api++;
  int rc = add_conn(ctx, url, options, id);
  ctx->in_api--;
  return rc;
}

int wsev_adopt_socket(wsev_ctx *ctx, uv_os_sock_t sock, const char *url,
                      const wsev_client_options *options, uint64_t *id) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!wsev__ctx_usable(ctx)) return UV_EINVAL;
  if (ctx->io) return wsev__io_open(ctx, url, options, id, &sock);
  if (id) *id = 0;
  ctx->in_api++;
  int rc = adopt(ctx, sock, url, options, id);
  ctx->in_api--;
  return rc;
}
