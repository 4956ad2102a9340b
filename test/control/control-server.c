/* A server that uses every application control of wsev, for the tests in this
 * folder. It prints one line per event to stdout for the tests to check.
 *
 *   control-server [--allow-origin ORIGIN]... [--same-host] [--defer-timeout MS]
 *
 * Upgrade paths: /reject -> 403; /defer-accept -> accepted 50 ms later;
 * /defer-reject -> 401 50 ms later; /defer-never -> no answer (503 at the deadline);
 * /defer-message -> accepted when another connection sends "approve:ID";
 * anything else -> accepted. Subprotocols: the first of chat.v2, chat.v1 that the
 * client offers. Messages: "close:CODE:REASON" closes with that code and reason;
 * "info" answers with the connection's info; anything else is echoed. Plain HTTP:
 * /health -> 200 "ok"; anything else unanswered (404). */
#include <arpa/inet.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wsev.h>

static const char *const supported[] = {"chat.v2", "chat.v1"};

typedef struct {
  uint64_t id;
  char tag[32];
} conn_data;

typedef struct {
  uv_timer_t timer;
  wsev_ctx *ctx;
  uint64_t id;
  int status; /* 0: accept */
  char protocol[32];
} decision;

static const char *choose_protocol(const wsev_request *req) {
  for (size_t s = 0; s < sizeof supported / sizeof supported[0]; s++)
    for (size_t i = 0; i < wsev_request_protocol_count(req); i++)
      if (strcmp(wsev_request_protocol(req, i), supported[s]) == 0) return supported[s];
  return NULL;
}

static void on_decision_closed(uv_handle_t *h) { free(h->data); }

static void on_decision(uv_timer_t *t) {
  decision *d = t->data;
  int rc = d->status ? wsev_reject(d->ctx, d->id, d->status)
                     : wsev_accept(d->ctx, d->id, d->protocol[0] ? d->protocol : NULL);
  printf("decided %" PRIu64 " status=%d rc=%d\n", d->id, d->status, rc);
  fflush(stdout);
  uv_close((uv_handle_t *)t, on_decision_closed);
}

static int on_upgrade(wsev_ctx *ctx, wsev_request *req) {
  const char *path = wsev_request_path(req);
  const char *origin = wsev_request_header(req, "Origin");
  const char *protocol = choose_protocol(req);
  uint64_t id = wsev_request_id(req);
  printf("upgrade %" PRIu64 " path=%s origin=%s\n", id, path, origin ? origin : "-");
  fflush(stdout);
  if (strcmp(path, "/reject") == 0) return 403;
  if (strncmp(path, "/defer-", 7) == 0) {
    /* /defer-never is never answered; /defer-message is answered by an "approve:ID"
     * message on another connection, from inside message_received. */
    if (strcmp(path, "/defer-never") == 0 || strcmp(path, "/defer-message") == 0) return WSEV_DEFER;
    decision *d = calloc(1, sizeof *d);
    d->ctx = ctx;
    d->id = id;
    d->status = strcmp(path, "/defer-reject") == 0 ? 401 : 0;
    if (protocol) snprintf(d->protocol, sizeof d->protocol, "%s", protocol);
    uv_timer_init(wsev_ctx_loop(ctx), &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, on_decision, 50, 0);
    return WSEV_DEFER;
  }
  if (protocol) wsev_request_select_protocol(req, protocol);
  return WSEV_ACCEPT;
}

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  conn_data *d = calloc(1, sizeof *d);
  d->id = id;
  snprintf(d->tag, sizeof d->tag, "tag-%" PRIu64, id);
  wsev_set_conn_data(ctx, id, d);
  wsev_conn_info info;
  char peer[64] = "?";
  if (wsev_get_conn_info(ctx, id, &info) == 0) {
    if (info.peer.ss_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)&info.peer, peer, sizeof peer);
    else
      uv_ip6_name((struct sockaddr_in6 *)&info.peer, peer, sizeof peer);
    printf("accepted %" PRIu64 " path=%s protocol=%s peer=%s local_port=%d tls=%d client=%d\n", id,
           info.path, info.protocol ? info.protocol : "-", peer, info.local_port, info.tls,
           info.client);
  }
  fflush(stdout);
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  conn_data *d = wsev_conn_data(ctx, id);
  printf("%s %" PRIu64 "\n", d && d->id == id ? "data-ok" : "data-bad", id);
  fflush(stdout);
  char text[200];
  size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
  memcpy(text, data, n);
  text[n] = 0;
  if (strncmp(text, "close:", 6) == 0) {
    char *reason = strchr(text + 6, ':');
    if (reason) *reason++ = 0;
    int rc = wsev_close_with(ctx, id, (unsigned)atoi(text + 6), reason);
    printf("close_with %" PRIu64 " rc=%d\n", id, rc);
  } else if (strncmp(text, "approve:", 8) == 0) {
    int rc = wsev_accept(ctx, strtoull(text + 8, NULL, 10), NULL);
    printf("decided %s status=0 rc=%d\n", text + 8, rc);
    char reply[32];
    snprintf(reply, sizeof reply, "approved rc=%d", rc);
    wsev_write_text(ctx, id, reply, strlen(reply));
  } else if (strcmp(text, "info") == 0) {
    wsev_conn_info info;
    char reply[300];
    if (wsev_get_conn_info(ctx, id, &info) == 0) {
      snprintf(reply, sizeof reply, "path=%s protocol=%s", info.path,
               info.protocol ? info.protocol : "-");
      wsev_write_text(ctx, id, reply, strlen(reply));
    }
  } else if (type == WSEV_TEXT) {
    wsev_write_text(ctx, id, data, len);
  } else {
    wsev_write(ctx, id, data, len);
  }
  fflush(stdout);
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  wsev_close_info info;
  conn_data *d = wsev_conn_data(ctx, id);
  if (wsev_get_close_info(ctx, id, &info) == 0)
    printf("closed %" PRIu64 " code=%u by_peer=%d data=%s reason=%s\n", id, info.code, info.by_peer,
           d ? d->tag : "-", info.reason);
  else
    printf("closed %" PRIu64 " no-info\n", id);
  fflush(stdout);
  free(d);
}

static void on_http(wsev_ctx *ctx, wsev_request *req) {
  (void)ctx;
  printf("http %s %s\n", wsev_request_method(req), wsev_request_path(req));
  fflush(stdout);
  if (strcmp(wsev_request_path(req), "/health") == 0)
    wsev_respond(req, 200, "Content-Type: text/plain\r\n", "ok", 2);
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  wsev_shutdown(sig->data, 2000);
}

int main(int argc, char **argv) {
  wsev_handler handler = {.upgrade_requested = on_upgrade,
                          .conn_accepted = on_accepted,
                          .message_received = on_message,
                          .conn_closed = on_closed,
                          .http_request = on_http};
  wsev_ctx *ctx;
  if (wsev_ctx_new(&ctx, NULL, &handler, NULL) < 0) return 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--allow-origin") == 0 && i + 1 < argc)
      wsev_allow_origin(ctx, argv[++i]);
    else if (strcmp(argv[i], "--same-host") == 0)
      wsev_allow_same_host_origin(ctx, 1);
    else if (strcmp(argv[i], "--defer-timeout") == 0 && i + 1 < argc)
      wsev_set_defer_timeout(ctx, strtoull(argv[++i], NULL, 10));
    else {
      fprintf(stderr, "usage: control-server [--allow-origin O]... [--same-host] "
                      "[--defer-timeout MS]\n");
      return 2;
    }
  }
  int port = wsev_listen_and_serve_addr(ctx, "127.0.0.1", "0");
  if (port < 0) {
    fprintf(stderr, "control-server: %s\n", wsev_strerror(port));
    return 1;
  }
  printf("control-server listening on port %d\n", port);
  fflush(stdout);
  uv_signal_t sigterm;
  uv_signal_init(wsev_ctx_loop(ctx), &sigterm);
  sigterm.data = ctx;
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&sigterm);
  wsev_event_loop(ctx);
  uv_close((uv_handle_t *)&sigterm, NULL);
  wsev_ctx_free(ctx);
  return 0;
}
