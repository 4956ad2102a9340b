/* The client side of a connection (connections we open): wsev_add_conn and
 * wsev_adopt_socket, resolving the name without blocking, connecting (one address
 * directly, several raced by dial.c, a Unix socket with uv_pipe_connect), the CONNECT
 * tunnel through an HTTP proxy (http_proxy.c reads the answer), then (over TLS once
 * its handshake is done) the upgrade request, the server's 101 (client_handshake.c
 * checks it), and every way this can fail, each reported with a reason in the close
 * info. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "context.h"
#include "deadline.h"
#include "dial.h"
#include "dispatch.h"
#include "frame.h"
#include "http_proxy.h"
#include "url.h"

/* Resolving and connecting, through the proxy's tunnel if any, until the upgrade
 * request is sent. */
struct wsev_dial {
  uv_getaddrinfo_t resolve;
  uv_connect_t connect;
  wsev_conn *conn; /* NULL once the connection gave up: a request in flight frees us */
  struct addrinfo *addrs;
  wsev_race *race; /* several addresses: the attempts racing */
  char *request;
  size_t request_len;
  /* Through a proxy: the CONNECT request, its answer while it is read, and the TLS
   * session, which starts only once the tunnel is open. */
  char *proxy_request;
  size_t proxy_request_len;
  wsev_proxy_answer *answer;
  wsev_tls *tls;
  uint64_t delay_ms; /* Happy Eyeballs */
  int last_error;
  uint8_t resolving;
  uint8_t connecting; /* a direct connect (one address, or a Unix socket) in flight */
  uint8_t proxied;    /* host and port are the proxy's */
  uint8_t tunneling;  /* the CONNECT is sent, its answer is being read */
  char port[8];
  char host[256];
  char unix_path[108];
};

static void dial_free(struct wsev_dial *d) {
  if (d->addrs) uv_freeaddrinfo(d->addrs);
  wsev__free(d->request);
  wsev__free(d->proxy_request);
  wsev__free(d->answer);
  wsev__tls_free(d->tls);
  wsev__free(d);
}

void wsev__client_dial_end(wsev_conn *c) {
  struct wsev_dial *d = c->handshake.dial;
  if (!d) return;
  c->handshake.dial = NULL;
  d->conn = NULL;
  wsev__race_cancel(d->race); /* its handles close on their own */
  d->race = NULL;
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
  const struct wsev_dial *d = c->handshake.dial;
  const char *what = "timed out in the TLS handshake";
  if (c->state == WSEV_CONN_CONNECTING)
    what = d && d->tunneling ? "timed out waiting for the proxy's answer"
           : d && d->proxied ? "timed out connecting to the proxy"
                             : "timed out connecting";
  else if (c->handshake.response && !d)
    what = "timed out waiting for the 101";
  wsev__client_fail(c, UV_ETIMEDOUT, what);
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
  if (!c->unix_socket) uv_tcp_nodelay(&c->sock.tcp, 1);
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

/* ---- the proxy's tunnel ------------------------------------------------------------ */

/* The proxy's answer, read here (not by conn.c, whose reading starts with TLS or the
 * upgrade once the tunnel is open). */
static void tunnel_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  wsev_conn *c = s->data;
  struct wsev_dial *d = c->handshake.dial;
  if (nread == 0) return;
  if (nread < 0) {
    char reason[124];
    if (nread == UV_EOF)
      snprintf(reason, sizeof reason, "the proxy closed the connection before answering");
    else
      snprintf(reason, sizeof reason, "reading the proxy's answer: %s", uv_strerror((int)nread));
    wsev__client_fail(c, WSEV_EPROXY, reason);
    return;
  }
  size_t used;
  int rc = wsev__proxy_answer_feed(d->answer, (const uint8_t *)buf->base, (size_t)nread, &used);
  if (rc == WSEV_PROXY_MORE) return;
  if (rc != WSEV_PROXY_OPEN) {
    wsev__client_fail(c, rc, wsev__proxy_answer_reason(d->answer));
    return;
  }
  /* The tunnel is open: the rest is the server's, as if it came from a direct
   * connection (bytes the proxy sent with its answer are not lost). */
  uv_read_stop(s);
  d->tunneling = 0;
  wsev__free(d->answer);
  d->answer = NULL;
  c->tls = d->tls;
  d->tls = NULL;
  uint8_t *rest = (uint8_t *)buf->base + used;
  size_t n = (size_t)nread - used;
  wsev__client_connected(c); /* may end the dialing state: d is not used after */
  if (n && c->state == WSEV_CONN_HANDSHAKE) wsev__conn_received(c, rest, n);
}

static void start_tunnel(wsev_conn *c) {
  struct wsev_dial *d = c->handshake.dial;
  wsev_ctx *ctx = c->ctx;
  if (!c->unix_socket) uv_tcp_nodelay(&c->sock.tcp, 1);
  if (!(d->answer = wsev__malloc(sizeof *d->answer))) {
    wsev__client_fail(c, UV_ENOMEM, "out of memory");
    return;
  }
  wsev__proxy_answer_init(d->answer,
                          ctx->set.max_header_size ? ctx->set.max_header_size : SIZE_MAX / 4);
  if (wsev__send_bytes(c, d->proxy_request, d->proxy_request_len) != 0 ||
      wsev__conn_read_start_with(c, tunnel_read) != 0) {
    wsev__client_fail(c, UV_ENOMEM, "cannot send the CONNECT request");
    return;
  }
  d->tunneling = 1;
}

/* ---- dialing ---------------------------------------------------------------------- */

/* Ours is connected (to the server, or to the proxy). */
static void socket_connected(wsev_conn *c) {
  if (c->handshake.dial->proxied)
    start_tunnel(c);
  else
    wsev__client_connected(c);
}

static void connect_failed(wsev_conn *c) {
  struct wsev_dial *d = c->handshake.dial;
  char reason[124];
  if (c->unix_socket)
    snprintf(reason, sizeof reason, "cannot connect to %.80s: %s", d->unix_path,
             uv_strerror(d->last_error));
  else
    snprintf(reason, sizeof reason, "cannot connect to %s%.60s port %s: %s",
             d->proxied ? "proxy " : "", d->host, d->port, uv_strerror(d->last_error));
  wsev__client_fail(c, d->last_error, reason);
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
    socket_connected(c);
    return;
  }
  d->last_error = status;
  connect_failed(c);
}

static void on_race_done(void *arg, int status, uv_os_sock_t sock) {
  struct wsev_dial *d = arg;
  wsev_conn *c = d->conn; /* still there: giving up cancels the race */
  d->race = NULL;
  if (status == 0 && (status = wsev__conn_open_socket(c, sock)) != 0) close(sock);
  if (status != 0) {
    d->last_error = status;
    connect_failed(c);
    return;
  }
  socket_connected(c);
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
  const struct addrinfo *order[2];
  size_t count = status < 0 || !addrs ? 0 : wsev__race_order(addrs, order, 2);
  if (count == 0) {
    char reason[124];
    status = status < 0 ? status : UV_EAI_NONAME;
    snprintf(reason, sizeof reason, "cannot resolve %s%.60s: %s", d->proxied ? "proxy " : "",
             d->host, uv_strerror(status));
    wsev__client_fail(c, status, reason);
    return;
  }
  int rc;
  if (count == 1) { /* the common case: one address, the connection's own handle */
    d->connect.data = d;
    if ((rc = uv_tcp_connect(&d->connect, &c->sock.tcp, order[0]->ai_addr, on_connect)) == 0) {
      d->connecting = 1;
      return;
    }
  } else if ((rc = wsev__race_start(c->ctx, addrs, d->delay_ms, on_race_done, d, &d->race)) == 0) {
    return;
  }
  d->last_error = rc;
  connect_failed(c);
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
 * *out is registered under a new id (not yet told to anyone). unix_socket: an adopted
 * socket's kind, or -1 to dial what the URL says. */
static int new_client(wsev_ctx *ctx, const char *url_text, const wsev_client_options *o,
                      uint64_t id, int unix_socket, wsev_conn **out) {
  wsev_url url;
  wsev_proxy_url proxy = {0};
  if (!url_text) return UV_EINVAL;
  int rc = wsev__url_parse(url_text, &url);
  if (rc) return rc;
  if (o && o->proxy && (rc = wsev__proxy_url_parse(o->proxy, &proxy)) != 0) {
    wsev__url_free(&url);
    return rc;
  }
  /* A Unix socket is local: dialled directly, whatever the proxy. */
  int proxied = o && o->proxy && !url.unix_path;
  if (unix_socket < 0) unix_socket = url.unix_path != NULL;
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
  if (proxied && (rc = wsev__proxy_request(url.host, url.ipv6, url.port, proxy.auth,
                                           &d->proxy_request, &d->proxy_request_len)) != 0)
    goto fail;
  rc = UV_ENOMEM;
  if (!(c = wsev__conn_new(ctx, unix_socket))) goto fail;
  c->client = 1;
  c->handshake.dial = d;
  d->conn = c;
  c->user_data = o ? o->data : NULL;
  if ((pmd.mode != WSEV_PMD_OFF &&
       !(c->deflate = wsev__deflate_new(&deflate, wsev__ctx_deflate_streams(ctx)))) ||
      !(c->handshake.response = wsev__client_hs_new(accept, protocols, &pmd, max_header)) ||
      !(c->path = wsev__malloc(resource_len + 1)) ||
      /* Through a proxy, TLS waits for the tunnel (the CONNECT goes in plain). */
      (url.tls &&
       !(*(proxied ? &d->tls : &c->tls) = wsev__tls_new(tls_conf, url.host, url.port))) ||
      (id ? wsev__conn_set_id(c, id) : wsev__conn_take_id(c)) != 0)
    goto fail;
  memcpy(c->path, url.resource, resource_len + 1);
  d->proxied = (uint8_t)proxied;
  d->delay_ms = o ? o->happy_eyeballs_delay_ms : 0;
  snprintf(d->host, sizeof d->host, "%s", proxied ? proxy.host : url.host);
  snprintf(d->port, sizeof d->port, "%u", (unsigned)(proxied ? proxy.port : url.port));
  if (url.unix_path) snprintf(d->unix_path, sizeof d->unix_path, "%s", url.unix_path);
  uint64_t timeout =
      o && o->connect_timeout_ms ? o->connect_timeout_ms : ctx->set.handshake_timeout_ms;
  wsev__deadline_set(c, WSEV_DEADLINE_HANDSHAKE, timeout);
  wsev__tls_config_unref(tls_conf); /* the session holds its own reference */
  wsev__url_free(&url);
  wsev__proxy_url_free(&proxy);
  *out = c;
  return 0;
fail:
  if (c)
    wsev__conn_abort(c); /* not announced: no event; frees d through dial_end */
  else if (d)
    dial_free(d);
  wsev__tls_config_unref(tls_conf);
  wsev__url_free(&url);
  wsev__proxy_url_free(&proxy);
  return rc;
}

static int add_conn(wsev_ctx *ctx, const char *url, const wsev_client_options *options,
                    uint64_t *id) {
  wsev_conn *c;
  int rc = new_client(ctx, url, options, *id, -1, &c);
  if (rc) return rc;
  struct wsev_dial *d = c->handshake.dial;
  if (c->unix_socket) {
    d->connect.data = d;
    uv_pipe_connect(&d->connect, &c->sock.pipe, d->unix_path, on_connect); /* errors come there */
    d->connecting = 1;
  } else {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    d->resolve.data = d;
    rc = uv_getaddrinfo(ctx->loop, &d->resolve, on_resolved, d->host, d->port, &hints);
    if (rc) {
      wsev__conn_abort(c);
      return rc;
    }
    d->resolving = 1;
  }
  c->announced = 1;
  *id = c->id;
  return 0;
}

static int adopt(wsev_ctx *ctx, uv_os_sock_t sock, const char *url,
                 const wsev_client_options *options, uint64_t *id) {
  wsev_conn *c;
  int rc;
  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  int unix_socket =
      getsockname(sock, (struct sockaddr *)&addr, &len) == 0 && addr.ss_family == AF_UNIX;
  if (!url) {
    if (!(c = wsev__conn_new(ctx, unix_socket))) return UV_ENOMEM;
    if ((rc = wsev__conn_open_socket(c, sock)) != 0) {
      wsev__conn_abort(c); /* the handle never owned the socket: it stays open */
      return rc;
    }
    if (id) *id = 0;
    wsev__server_serve(c);
    return 0;
  }
  if ((rc = new_client(ctx, url, options, id ? *id : 0, unix_socket, &c)) != 0) return rc;
  if ((rc = wsev__conn_open_socket(c, sock)) != 0) {
    wsev__conn_abort(c);
    return rc;
  }
  c->announced = 1;
  if (id) *id = c->id;
  socket_connected(c); /* with a proxy: the socket is taken to be connected to it */
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
