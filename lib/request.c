/* The application's view of an HTTP request (wsev_request is the connection while
 * its request is being answered), plain HTTP responses, and the origin policy. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "internal.h"

static const wsev_hs *hs_of(const wsev_request *req) { return ((const wsev_conn *)req)->hs; }

const char *wsev_request_path(const wsev_request *req) { return wsev__hs_path(hs_of(req)); }
const char *wsev_request_method(const wsev_request *req) { return wsev__hs_method(hs_of(req)); }

const char *wsev_request_server_name(const wsev_request *req) {
  const wsev_tls *tls = ((const wsev_conn *)req)->tls;
  return tls ? wsev__tls_server_name(tls) : NULL;
}

const char *wsev_request_header(const wsev_request *req, const char *name) {
  return wsev__hs_header(hs_of(req), name);
}

size_t wsev_request_protocol_count(const wsev_request *req) {
  return wsev__hs_protocol_count(hs_of(req));
}

const char *wsev_request_protocol(const wsev_request *req, size_t index) {
  return wsev__hs_protocol(hs_of(req), index);
}

int wsev_request_select_protocol(wsev_request *req, const char *protocol) {
  wsev_conn *c = (wsev_conn *)req;
  if (!protocol) {
    c->selected = NULL;
    return 0;
  }
  for (size_t i = 0; i < wsev__hs_protocol_count(c->hs); i++) {
    const char *offered = wsev__hs_protocol(c->hs, i);
    if (strcmp(offered, protocol) == 0) {
      c->selected = offered; /* lives as long as the request */
      return 0;
    }
  }
  return UV_EINVAL;
}

uint64_t wsev_request_id(const wsev_request *req) { return ((const wsev_conn *)req)->id; }

int wsev_respond(wsev_request *req, int status, const char *headers, const void *body, size_t len) {
  wsev_conn *c = (wsev_conn *)req;
  if (!c->in_http || c->responded || status < 100 || status > 599) return UV_EINVAL;
  c->responded = 1;
  char head[256];
  int n =
      snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n%s", status,
               wsev__hs_status_text(status), len,
               wsev__hs_keep_alive(c->hs) && !c->ctx->shutting_down ? "" : "Connection: close\r\n");
  if (n < 0 || (size_t)n >= sizeof head) return UV_EINVAL;
  size_t header_len = headers ? strlen(headers) : 0;
  size_t total = (size_t)n + header_len + 2 + len;
  char *response = wsev__malloc(total);
  if (!response) return UV_ENOMEM;
  memcpy(response, head, (size_t)n);
  memcpy(response + n, headers ? headers : "", header_len);
  memcpy(response + n + header_len, "\r\n", 2);
  if (len) memcpy(response + n + header_len + 2, body, len);
  int rc = wsev__conn_queue(c, response, total);
  wsev__free(response);
  return rc;
}

int wsev_allow_origin(wsev_ctx *ctx, const char *origin) {
  if (!origin) return UV_EINVAL;
  char **grown = wsev__realloc(ctx->origins, (ctx->n_origins + 1) * sizeof *grown);
  if (!grown) return UV_ENOMEM;
  ctx->origins = grown;
  size_t len = strlen(origin);
  char *copy = wsev__malloc(len + 1);
  if (!copy) return UV_ENOMEM;
  memcpy(copy, origin, len + 1);
  ctx->origins[ctx->n_origins++] = copy;
  return 0;
}

void wsev_allow_same_host_origin(wsev_ctx *ctx, int enabled) { ctx->same_host_origin = enabled; }
