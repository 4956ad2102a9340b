/* The server side of a connection: accepting it, reading its HTTP request (handshake.c
 * parses it), the origin policy, the application's say on an upgrade (at once or
 * deferred), the 101 or an error status, and plain HTTP requests with their answers.
 * A wsev_request is the connection while its request is being answered. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "alloc.h"
#include "context.h"
#include "deadline.h"
#include "dispatch.h"
#include "forwarded.h"
#include "frame.h"
#include "proxy_protocol.h"

/* A header block may grow without bound only as far as this (a limit of 0). */
#define UNLIMITED_HEADER (SIZE_MAX / 4)

static wsev_hs *new_request(const wsev_ctx *ctx) {
  return wsev__hs_new(ctx->set.max_header_size ? ctx->set.max_header_size : UNLIMITED_HEADER);
}

static void forget_request(wsev_conn *c) {
  wsev__hs_free(c->handshake.request);
  c->handshake.request = NULL;
}

void wsev__server_reject(wsev_conn *c, int status) {
  char response[256];
  size_t len = wsev__hs_response_error(status, response, sizeof response);
  forget_request(c);
  wsev__send_bytes(c, response, len);
  if (c->handshake.deferred) {
    c->handshake.deferred = 0; /* reading again, to see the peer's EOF */
    if (wsev__conn_read_start(c) != 0) {
      wsev__conn_abort(c);
      return;
    }
  }
  wsev__conn_linger(c);
}

/* ---- accepting ------------------------------------------------------------------- */

void wsev__server_serve(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  c->state = WSEV_CONN_HANDSHAKE;
  if (!c->unix_socket) uv_tcp_nodelay(&c->sock.tcp, 1);
  if (wsev__conn_read_start(c) != 0) {
    wsev__conn_abort(c);
    return;
  }
  /* With I/O threads the count is shared: take a place first, so that two threads
   * cannot both take the last one. */
  size_t before = ctx->active_total ? atomic_fetch_add(ctx->active_total, 1) : ctx->n_active;
  c->counted = 1;
  ctx->n_active++;
  if (ctx->set.max_connections && before >= ctx->set.max_connections) {
    wsev__server_reject(c, 503);
    return;
  }
  if (!(c->handshake.request = new_request(ctx))) {
    wsev__conn_abort(c);
    return;
  }
  wsev__deadline_set(c, WSEV_DEADLINE_HANDSHAKE, ctx->set.handshake_timeout_ms);
}

int wsev__server_accept(wsev_ctx *ctx, uv_stream_t *server, const wsev_accept_from *from) {
  wsev_conn *c = wsev__conn_new(ctx, from->unix_socket);
  if (!c) return UV_ENOMEM;
  if (uv_accept(server, &c->sock.stream) != 0) {
    wsev__conn_abort(c);
    return 0;
  }
  /* Over the limit, a TLS client is closed at once: a 503 would first cost a whole
   * handshake, just when the server is at its limit (and plaintext is no answer). */
  if (from->tls && (wsev__ctx_full(ctx) || !(c->tls = wsev__tls_new(from->tls, NULL, 0)))) {
    wsev__conn_abort(c);
    return 0;
  }
  c->trust = from->trust & 7;
  c->proxy_pending = (from->trust & WSEV_TRUST_PROXY_PROTOCOL) != 0;
  wsev__server_serve(c);
  return 0;
}

/* ---- the PROXY protocol header, before TLS or HTTP ------------------------------------ */

/* The header is complete: remember the client it names, then read as usual. */
static void proxy_header_done(wsev_conn *c, const wsev_proxy_header *header, uint8_t *rest,
                              size_t n) {
  if (!header->local && wsev__conn_set_client(c, &header->source) != 0) {
    wsev__conn_abort(c);
    return;
  }
  c->proxy_pending = 0;
  uv_read_stop(&c->sock.stream);
  if (wsev__conn_read_start(c) != 0) {
    wsev__conn_abort(c);
    return;
  }
  if (n) wsev__conn_received(c, rest, n);
}

/* Keep n more bytes of a header that came in pieces: 0 or UV_ENOMEM. */
static int hold(wsev_buf *held, const uint8_t *p, size_t n) {
  if (held->len + n > held->cap) {
    size_t cap = (held->len + n) * 2;
    uint8_t *grown = wsev__realloc(held->data, cap);
    if (!grown) return UV_ENOMEM;
    held->data = grown;
    held->cap = cap;
  }
  memcpy(held->data + held->len, p, n);
  held->len += n;
  return 0;
}

void wsev__server_proxy_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  wsev_conn *c = s->data;
  if (nread == 0) return;
  if (nread < 0) { /* the header never came whole: nothing to answer */
    wsev__conn_abort(c);
    return;
  }
  wsev_buf *held = &c->handshake.held;
  uint8_t *p = (uint8_t *)buf->base;
  size_t n = (size_t)nread;
  if (held->len) { /* a header in pieces: join them */
    if (hold(held, p, n) != 0) {
      wsev__conn_abort(c);
      return;
    }
    p = held->data;
    n = held->len;
  }
  wsev_proxy_header header;
  int used = wsev__proxy_header_parse(p, n, &header);
  if (used < 0) { /* a client that did not come through the proxy, or a forged header */
    wsev__conn_abort(c);
    return;
  }
  if (used == 0) { /* more to come (the parser bounds the header's length) */
    if (!held->len && hold(held, p, n) != 0) wsev__conn_abort(c);
    return;
  }
  wsev_buf joined = *held; /* freed after the rest is through: `p` may point into it */
  memset(held, 0, sizeof *held);
  proxy_header_done(c, &header, p + used, n - (size_t)used);
  wsev__free(joined.data);
}

/* ---- what a trusted proxy says in the request ----------------------------------------- */

/* Every value of the header `name`, joined with ", " as one list (RFC 9110 section 5.3),
 * into *out (NULL when absent). 0 or UV_ENOMEM. */
static int joined_header(const wsev_hs *req, const char *name, char **out) {
  size_t pos = 0, total = 0;
  const char *key, *value;
  *out = NULL;
  while ((key = wsev__hs_header_at(req, &pos, &value)) != NULL)
    if (strcasecmp(key, name) == 0) total += strlen(value) + 2;
  if (!total) return 0;
  char *joined = wsev__malloc(total + 1);
  if (!joined) return UV_ENOMEM;
  size_t len = 0;
  for (pos = 0; (key = wsev__hs_header_at(req, &pos, &value)) != NULL;) {
    if (strcasecmp(key, name) != 0) continue;
    if (len) memcpy(joined + len, ", ", 2), len += 2;
    size_t n = strlen(value);
    memcpy(joined + len, value, n);
    len += n;
  }
  joined[len] = 0;
  *out = joined;
  return 0;
}

/* The client a trusted proxy names in Forwarded or X-Forwarded-For, if any. 0, or
 * UV_ENOMEM. */
static int forwarded_client(wsev_conn *c) {
  const wsev_hs *req = c->handshake.request;
  char *forwarded = NULL, *xff = NULL;
  struct sockaddr_storage client;
  /* Only what the listener trusts is read: a client could send the other header. */
  int rc = c->trust & WSEV_TRUST_FORWARDED ? joined_header(req, "forwarded", &forwarded) : 0;
  if (!rc && (c->trust & WSEV_TRUST_X_FORWARDED_FOR))
    rc = joined_header(req, "x-forwarded-for", &xff);
  if (!rc && (forwarded || xff) && wsev__forwarded_client(forwarded, xff, &client) == 0)
    rc = wsev__conn_set_client(c, &client);
  wsev__free(forwarded);
  wsev__free(xff);
  return rc;
}

/* ---- the origin policy ------------------------------------------------------------ */

static int origin_allowed(const wsev_conn *c) {
  const wsev_ctx *ctx = c->ctx;
  const wsev_hs *req = c->handshake.request;
  const char *origin = wsev__hs_header(req, "origin");
  if (!origin || (!ctx->n_origins && !ctx->same_host_origin)) return 1;
  for (size_t i = 0; i < ctx->n_origins; i++)
    if (strcasecmp(origin, ctx->origins[i]) == 0) return 1;
  if (ctx->same_host_origin) {
    const char *host = wsev__hs_header(req, "host");
    const char *authority = strstr(origin, "://");
    if (host && authority && strcasecmp(authority + 3, host) == 0) return 1;
  }
  return 0;
}

int wsev_allow_origin(wsev_ctx *ctx, const char *origin) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!origin) return UV_EINVAL;
  char **grown = wsev__realloc(ctx->origins, (ctx->n_origins + 1) * sizeof *grown);
  if (!grown) return UV_ENOMEM;
  ctx->origins = grown;
  size_t len = strlen(origin);
  char *copy = wsev__malloc(len + 1);
  if (!copy) return UV_ENOMEM;
  memcpy(copy, origin, len + 1);
  ctx->origins[ctx->n_origins++] = copy;
  if (ctx->io) wsev__io_origins(ctx);
  return 0;
}

int wsev_allow_same_host_origin(wsev_ctx *ctx, int enabled) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  ctx->same_host_origin = enabled;
  if (ctx->io) wsev__io_origins(ctx);
  return 0;
}

/* ---- the upgrade ------------------------------------------------------------------- */

static char *copy_string(const char *s) {
  size_t len = strlen(s);
  char *copy = wsev__malloc(len + 1);
  if (copy) memcpy(copy, s, len + 1);
  return copy;
}

/* The offered subprotocol equal to `protocol` (it lives as long as the request), or
 * NULL if it was not offered. */
static const char *offered(const wsev_hs *req, const char *protocol) {
  for (size_t i = 0; i < wsev__hs_protocol_count(req); i++)
    if (strcmp(wsev__hs_protocol(req, i), protocol) == 0) return wsev__hs_protocol(req, i);
  return NULL;
}

/* Safari 15.0 to 15.3 offer permessage-deflate and then get it wrong (messages after
 * the first fail to inflate on either side), whatever the answer: never accepted. */
static int deflate_broken(const wsev_hs *req) {
  const char *agent = wsev__hs_header(req, "user-agent");
  const char *v = agent ? strstr(agent, "Version/15.") : NULL;
  if (!v || strstr(agent, "Chrome/") || !strstr(agent, "Safari/")) return 0;
  v += strlen("Version/15.");
  return *v >= '0' && *v <= '3' && !(v[1] >= '0' && v[1] <= '9');
}

/* permessage-deflate: the context's answer to the client's offers, if any (into
 * `answer`, or "" for none). With `agree`, c->deflate is set for an accepted offer
 * (without memory for it, every offer is declined). -1 for a Sec-WebSocket-Extensions
 * header that breaks the grammar. */
static int negotiate_deflate(wsev_conn *c, char answer[WSEV_PMD_HEADER_MAX], int agree) {
  const wsev_deflate_options *options = &c->ctx->set.deflate;
  wsev_pmd_config config = wsev__deflate_config(options);
  if (config.mode != WSEV_PMD_OFF && deflate_broken(c->handshake.request))
    config.mode = WSEV_PMD_OFF;
  wsev_pmd_agreed agreed;
  int rc = wsev__pmd_accept(wsev__hs_extensions(c->handshake.request), &config, &agreed, answer);
  if (rc > 0 && agree) {
    if ((c->deflate = wsev__deflate_new(options, wsev__ctx_deflate_streams(c->ctx))))
      c->deflate->agreed = agreed;
    else
      answer[0] = 0;
  }
  return rc;
}

/* Send the 101 and open the WebSocket; `rest` are frames that came behind the request. */
static void accept_upgrade(wsev_conn *c, const char *protocol, uint8_t *rest, size_t n) {
  wsev_hs *req = c->handshake.request;
  char response[512 + WSEV_PMD_HEADER_MAX], extensions[WSEV_PMD_HEADER_MAX];
  size_t len = negotiate_deflate(c, extensions, 1) < 0
                   ? 0
                   : wsev__hs_response_101(req, protocol, extensions[0] ? extensions : NULL,
                                           response, sizeof response);
  if (!len || !(c->path = copy_string(wsev__hs_path(req))) ||
      (protocol && !(c->protocol = copy_string(protocol))) ||
      wsev__send_bytes(c, response, len) != 0) {
    wsev__conn_abort(c);
    return;
  }
  c->writer.head_kept = (uint16_t)len;
  forget_request(c);
  wsev__conn_open(c, rest, n);
}

/* Hold the bytes behind a deferred request until the answer; reading pauses. */
static void defer_upgrade(wsev_conn *c, uint8_t *rest, size_t n) {
  wsev_conn_handshake *hs = &c->handshake;
  if (n) {
    if (!(hs->held.data = wsev__malloc(n))) {
      wsev__server_reject(c, 503);
      return;
    }
    memcpy(hs->held.data, rest, n);
    hs->held.len = n;
  }
  uv_read_stop(&c->sock.stream);
  hs->deferred = 1;
  wsev__deadline_set(c, WSEV_DEADLINE_DEFER, c->ctx->set.defer_timeout_ms);
}

/* A valid upgrade request: the origin policy, then the application's say. */
static void upgrade_request(wsev_conn *c, uint8_t *rest, size_t n) {
  wsev_ctx *ctx = c->ctx;
  if ((c->trust & (WSEV_TRUST_FORWARDED | WSEV_TRUST_X_FORWARDED_FOR)) && forwarded_client(c) != 0) {
    wsev__server_reject(c, 503);
    return;
  }
  if (!origin_allowed(c)) {
    wsev__server_reject(c, 403);
    return;
  }
  char extensions[WSEV_PMD_HEADER_MAX];
  if (negotiate_deflate(c, extensions, 0) < 0) { /* answered again on acceptance */
    wsev__server_reject(c, 400);
    return;
  }
  /* The id is handed out now, so that a deferred answer can name it. */
  if (wsev__conn_take_id(c) != 0) {
    wsev__server_reject(c, 503);
    return;
  }
  if (!ctx->handler.upgrade_requested) {
    accept_upgrade(c, NULL, rest, n);
    return;
  }
  c->handshake.selected = NULL;
  wsev_request req = {.conn = c};
  wsev__dispatch_begin(ctx);
  int verdict = ctx->handler.upgrade_requested(ctx, &req);
  wsev__dispatch_end(ctx);
  if (c->state != WSEV_CONN_HANDSHAKE) return;
  if (verdict == WSEV_ACCEPT)
    accept_upgrade(c, c->handshake.selected, rest, n);
  else if (verdict == WSEV_DEFER)
    defer_upgrade(c, rest, n);
  else
    wsev__server_reject(c, verdict >= 400 && verdict <= 599 ? verdict : 500);
}

/* The answer to a deferred upgrade (status 0: accept with `protocol`). */
static int decide(wsev_ctx *ctx, uint64_t id, int status, const char *protocol) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (ctx->io) return wsev__io_decide(ctx, id, status, protocol);
  wsev_conn *c = wsev__idmap_get(&ctx->ids, id);
  if (!c || c->announced || !c->handshake.deferred || c->handshake.http_waiting)
    return WSEV_ENOCONN;
  if (protocol && !(protocol = offered(c->handshake.request, protocol))) return UV_EINVAL;
  ctx->in_api++; /* conn_accepted and what follows go out from the next flush */
  if (status) {
    wsev__server_reject(c, status);
  } else {
    c->handshake.deferred = 0;
    if (wsev__conn_read_start(c) != 0) {
      wsev__conn_abort(c);
    } else {
      wsev_buf held = c->handshake.held;
      memset(&c->handshake.held, 0, sizeof held);
      accept_upgrade(c, protocol, held.data, held.len);
      wsev__free(held.data);
    }
  }
  ctx->in_api--;
  return 0;
}

int wsev_accept(wsev_ctx *ctx, uint64_t id, const char *protocol) {
  return decide(ctx, id, 0, protocol);
}

int wsev_reject(wsev_ctx *ctx, uint64_t id, int status) {
  if (status < 400 || status > 599) return UV_EINVAL;
  return decide(ctx, id, status, NULL);
}

/* ---- plain HTTP ------------------------------------------------------------------- */

/* After a plain request was answered: the next request on the connection, or the end.
 * Returns 1 if the connection stays for another request. */
static int http_next(wsev_conn *c) {
  wsev_ctx *ctx = c->ctx;
  wsev_conn_handshake *hs = &c->handshake;
  int again = wsev__hs_keep_alive(hs->request) && !ctx->shutting_down;
  forget_request(c);
  if (!again) {
    wsev__conn_linger(c);
    return 0;
  }
  if (!(hs->request = new_request(ctx))) {
    wsev__conn_abort(c);
    return 0;
  }
  wsev__deadline_set(c, WSEV_DEADLINE_HANDSHAKE, ctx->set.handshake_timeout_ms);
  return 1;
}

void wsev__server_http_wait(wsev_conn *c) { c->handshake.http_waiting = 1; }

void wsev__server_http_answer(wsev_conn *c, const uint8_t *response, size_t len) {
  wsev_conn_handshake *hs = &c->handshake;
  if (!hs->http_waiting || c->state != WSEV_CONN_HANDSHAKE) return;
  hs->http_waiting = 0;
  hs->deferred = 0;
  if (response) {
    wsev__send_bytes(c, response, len);
  } else {
    wsev_request req = {.conn = c};
    hs->in_http = 1;
    hs->responded = 0;
    wsev_respond(&req, 404, NULL, NULL, 0);
    hs->in_http = 0;
  }
  if (!http_next(c)) return;
  if (wsev__conn_read_start(c) != 0) {
    wsev__conn_abort(c);
    return;
  }
  wsev_buf held = hs->held; /* pipelined requests that came with this one */
  memset(&hs->held, 0, sizeof held);
  if (held.len) wsev__server_input(c, held.data, held.len);
  wsev__free(held.data);
}

/* A request without an Upgrade header; `rest` are the bytes behind it. Returns 1 if
 * the connection stays for another request now. */
static int http_request(wsev_conn *c, uint8_t *rest, size_t n) {
  wsev_ctx *ctx = c->ctx;
  wsev_conn_handshake *hs = &c->handshake;
  if (wsev__hs_has_body(hs->request)) {
    wsev__server_reject(c, 413);
    return 0;
  }
  if (!ctx->handler.http_request) {
    wsev__server_reject(c, strcmp(wsev__hs_method(hs->request), "GET") == 0 ? 426 : 400);
    return 0;
  }
  hs->responded = 0;
  wsev_request req = {.conn = c};
  wsev__dispatch_begin(ctx);
  hs->in_http = 1; /* wsev_respond answers this request during the callback only */
  ctx->handler.http_request(ctx, &req);
  hs->in_http = 0;
  wsev__dispatch_end(ctx);
  if (c->state != WSEV_CONN_HANDSHAKE) return 0;
  if (hs->http_waiting) {
    defer_upgrade(c, rest, n); /* the same pause: held bytes, a deadline (503) */
    return 0;
  }
  if (!hs->responded) {
    hs->in_http = 1; /* answer for the application */
    wsev_respond(&req, 404, NULL, NULL, 0);
    hs->in_http = 0;
  }
  return http_next(c);
}

int wsev_respond(wsev_request *req, int status, const char *headers, const void *body, size_t len) {
  if (!req || status < 100 || status > 599 || (!body && len)) return UV_EINVAL;
  wsev_conn *c = req->conn;
  if (c ? !c->handshake.in_http || c->handshake.responded : !req->in_http || req->responded)
    return UV_EINVAL;
  char head[256];
  int keep = c ? wsev__hs_keep_alive(c->handshake.request) && !c->ctx->shutting_down
               : req->copy->keep_alive;
  int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s", status,
                   wsev__hs_status_text(status), len, keep ? "" : "Connection: close\r\n");
  if (n < 0 || (size_t)n >= sizeof head) return UV_EINVAL;
  size_t header_len = headers ? strlen(headers) : 0;
  size_t total = (size_t)n + header_len + 2 + len;
  char *response = wsev__malloc(total);
  if (!response) return UV_ENOMEM;
  memcpy(response, head, (size_t)n);
  memcpy(response + n, headers ? headers : "", header_len);
  memcpy(response + n + header_len, "\r\n", 2);
  if (len) memcpy(response + n + header_len + 2, body, len);
  if (!c) { /* threaded: the bytes go to the connection's thread after the callback */
    req->response = (uint8_t *)response;
    req->response_len = total;
    req->responded = 1;
    return 0;
  }
  int rc = wsev__send_bytes(c, response, total);
  wsev__free(response);
  if (!rc) c->handshake.responded = 1;
  return rc;
}

void wsev__server_input(wsev_conn *c, uint8_t *p, size_t n) {
  /* A loop, not recursion: keep-alive requests may be pipelined in one read. */
  for (;;) {
    size_t used = 0;
    int result = wsev__hs_feed(c->handshake.request, (const char *)p, n, &used);
    if (result == WSEV_HS_MORE) return;
    p += used;
    n -= used;
    if (result == WSEV_HS_DONE) {
      upgrade_request(c, p, n);
      return;
    }
    if (result != WSEV_HS_HTTP) {
      wsev__server_reject(c, result);
      return;
    }
    if (!http_request(c, p, n) || n == 0) return;
  }
}

/* ---- the request, as the application sees it ----------------------------------------- */

static const wsev_hs *request_of(const wsev_request *req) {
  return req->conn ? req->conn->handshake.request : NULL;
}

const char *wsev_request_path(const wsev_request *req) {
  if (!req) return NULL;
  return req->copy ? req->copy->path : wsev__hs_path(request_of(req));
}

const char *wsev_request_method(const wsev_request *req) {
  if (!req) return NULL;
  return req->copy ? req->copy->method : wsev__hs_method(request_of(req));
}

const char *wsev_request_header(const wsev_request *req, const char *name) {
  if (!req || !name) return NULL;
  if (!req->copy) return wsev__hs_header(request_of(req), name);
  const char *p = req->copy->headers, *end = p + req->copy->headers_len;
  while (p < end) {
    const char *value = p + strlen(p) + 1;
    if (strcasecmp(p, name) == 0) return value;
    p = value + strlen(value) + 1;
  }
  return NULL;
}

size_t wsev_request_protocol_count(const wsev_request *req) {
  if (!req) return 0;
  return req->copy ? req->copy->protocol_count : wsev__hs_protocol_count(request_of(req));
}

const char *wsev_request_protocol(const wsev_request *req, size_t index) {
  if (!req) return NULL;
  if (req->copy) return index < req->copy->protocol_count ? req->copy->protocols[index] : NULL;
  return wsev__hs_protocol(request_of(req), index);
}

const char *wsev_request_server_name(const wsev_request *req) {
  if (!req) return NULL;
  if (req->copy) return req->copy->server_name;
  return req->conn->tls ? wsev__tls_server_name(req->conn->tls) : NULL;
}

uint64_t wsev_request_id(const wsev_request *req) {
  if (!req) return 0;
  return req->copy ? req->copy->id : req->conn->id;
}

int wsev_request_select_protocol(wsev_request *req, const char *protocol) {
  if (!req) return UV_EINVAL;
  const char *found = NULL;
  for (size_t i = 0; protocol && !found && i < wsev_request_protocol_count(req); i++)
    if (strcmp(wsev_request_protocol(req, i), protocol) == 0) found = wsev_request_protocol(req, i);
  if (protocol && !found) return UV_EINVAL;
  if (req->copy)
    req->selected = found;
  else
    req->conn->handshake.selected = found;
  return 0;
}
