/* Connections we open: wsev_add_conn (resolve the name without blocking, connect to
 * each address in turn) and wsev_adopt_socket. Once the socket is connected,
 * conn.c takes over: TLS, the upgrade request, the 101, client framing. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "internal.h"
#include "url.h"

/* Client TLS configurations (trusted CAs parsed once) kept for reuse. */
#define CLIENT_TLS_CACHE (int)(sizeof ((wsev_ctx *)0)->client_tls / sizeof(wsev_tls_config *))

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

void wsev__dial_abort(wsev_conn *c) {
  struct wsev_dial *d = c->dial;
  if (!d) return;
  c->dial = NULL;
  d->conn = NULL;
  if (d->resolving)
    uv_cancel((uv_req_t *)&d->resolve); /* its callback frees d, cancelled or not */
  else if (!d->connecting)
    dial_free(d); /* else the connect callback does, once the socket is closed */
}

const char *wsev__dial_request(wsev_conn *c, size_t *len) {
  *len = c->dial->request_len;
  return c->dial->request;
}

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
    wsev__conn_connected(c);
    return;
  }
  d->last_error = status;
  if (d->next)
    next_attempt(c);
  else
    try_next(c); /* reports the failure */
}

static void try_next(wsev_conn *c) {
  struct wsev_dial *d = c->dial;
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
  wsev__conn_fail_open(c, d->last_error, reason);
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
    wsev__conn_fail_open(c, status < 0 ? status : UV_EAI_NONAME, reason);
    return;
  }
  d->next = addrs;
  d->last_error = UV_ECONNREFUSED;
  try_next(c);
}

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
  int rc = wsev__tls_client_config(rng, ca_file, insecure, out);
  if (rc == 0 && ctx->n_client_tls < CLIENT_TLS_CACHE) {
    ctx->client_tls[ctx->n_client_tls++] = *out;
    wsev__tls_config_ref(*out); /* the cache's */
  }
  return rc;
}

/* Everything a connection of ours needs before its socket is connected; on
 * success *out is registered under a new id (not yet told to anyone). */
static int new_client(wsev_ctx *ctx, const char *url_text, const wsev_client_options *o,
                      wsev_conn **out) {
  wsev_url url;
  if (!ctx || !url_text) return UV_EINVAL;
  if (ctx->freeing || ctx->shutting_down) return UV_EINVAL;
  int rc = wsev__url_parse(url_text, &url);
  if (rc) return rc;
  const char *const *protocols = o ? o->protocols : NULL;
  const char *headers = o ? o->headers : NULL, *origin = o ? o->origin : NULL;
  wsev_tls_config *tls_conf = NULL;
  struct wsev_dial *d = NULL;
  wsev_conn *c = NULL;
  uint8_t key[16];
  char accept[29];
  size_t resource_len = strlen(url.resource);

  if ((rc = wsev__client_options_check(protocols, headers)) != 0 ||
      (rc = wsev__client_origin_check(origin)) != 0)
    goto fail;
  if (url.tls && (rc = client_tls(ctx, o, &tls_conf)) != 0) goto fail;
  rc = UV_ENOMEM;
  wsev_rng *rng = wsev__ctx_rng(ctx);
  if (!rng || wsev__rng_bytes(rng, key, sizeof key) != 0) goto fail;
  if (url.tls && !wsev__ctx_tls_plain(ctx)) goto fail;
  if (!(d = wsev__calloc(1, sizeof *d))) goto fail;
  rc = wsev__client_request(&url, key, origin, protocols, headers, &d->request, &d->request_len,
                            accept);
  if (rc) goto fail;
  rc = UV_ENOMEM;
  if (!(c = wsev__conn_new(ctx))) goto fail;
  c->client = 1;
  c->dial = d;
  d->conn = c;
  c->user_data = o ? o->data : NULL;
  if (!(c->chs = wsev__client_hs_new(accept, protocols, ctx->max_header_size)) ||
      !(c->info = wsev__malloc(resource_len + 1)) ||
      (url.tls && !(c->tls = wsev__tls_new(tls_conf, url.host, url.port))) ||
      wsev__reserve_events(ctx, ctx->ids.count + 1) != 0 ||
      wsev__idmap_put(&ctx->ids, ctx->next_id, c) != 0)
    goto fail;
  memcpy(c->info, url.resource, resource_len + 1);
  snprintf(d->host, sizeof d->host, "%s", url.host);
  snprintf(d->port, sizeof d->port, "%u", (unsigned)url.port);
  c->id = ctx->next_id++;
  uint64_t timeout = o && o->connect_timeout_ms ? o->connect_timeout_ms : ctx->handshake_timeout_ms;
  wsev__deadline_set(c, WSEV_DEADLINE_HANDSHAKE, timeout);
  wsev__tls_config_unref(tls_conf); /* the session holds its own reference */
  wsev__url_free(&url);
  *out = c;
  return 0;
fail:
  if (c)
    wsev__conn_abort(c); /* not announced: no event; frees d through dial_abort */
  else if (d)
    dial_free(d);
  wsev__tls_config_unref(tls_conf);
  wsev__url_free(&url);
  return rc;
}

static int add_conn(wsev_ctx *ctx, const char *url, const wsev_client_options *options,
                    uint64_t *id) {
  wsev_conn *c;
  int rc = new_client(ctx, url, options, &c);
  if (rc) return rc;
  struct wsev_dial *d = c->dial;
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
    wsev__conn_serve(c);
    return 0;
  }
  if ((rc = new_client(ctx, url, options, &c)) != 0) return rc;
  if ((rc = uv_tcp_open(&c->tcp, sock)) != 0) {
    wsev__conn_abort(c);
    return rc;
  }
  c->announced = 1;
  if (id) *id = c->id;
  wsev__conn_connected(c);
  return 0;
}

/* Events raised on the way (a failure) wait until the caller has the id. */
int wsev_add_conn(wsev_ctx *ctx, const char *url, const wsev_client_options *options,
                  uint64_t *id) {
  if (!ctx || !id || ctx->freeing || ctx->shutting_down) return UV_EINVAL;
  ctx->in_api++;
  int rc = add_conn(ctx, url, options, id);
  ctx->in_api--;
  return rc;
}

int wsev_adopt_socket(wsev_ctx *ctx, uv_os_sock_t sock, const char *url,
                      const wsev_client_options *options, uint64_t *id) {
  if (!ctx || ctx->freeing || ctx->shutting_down) return UV_EINVAL;
  ctx->in_api++;
  int rc = adopt(ctx, sock, url, options, id);
  ctx->in_api--;
  return rc;
}
