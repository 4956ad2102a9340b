/* relay: one context, one handler, both kinds of connection. It listens for
 * WebSocket clients and dials one upstream server with wsev_add_conn: every message
 * from an accepted client is forwarded to the upstream connection, and every
 * message from upstream is sent to all accepted clients.
 *
 *   relay PORT UPSTREAM_URL [--ca FILE] [--insecure]
 *
 * stdout (one line per event, flushed):
 *   relay listening on port N
 *   upstream open client=C path=P tls=T
 *   accepted ID client=C path=P
 *   closed ID code=C by_peer=B
 *   upstream closed error=NAME|0 code=C by_peer=B reason=R
 *   forward failed: ERRNAME
 * When the upstream connection ends (or fails to open) the relay shuts down (1001
 * to its clients) and exits 0; SIGTERM/SIGINT do the same. */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wsev.h>

#include "../common/test-ctx.h"

typedef struct {
  uint64_t upstream;
  uint64_t *clients;
  size_t n_clients, cap;
} relay;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fflush(stdout);
}

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  relay *r = wsev_get_ctx_data(ctx);
  wsev_conn_info info;
  int rc = wsev_get_conn_info(ctx, id, &info);
  if (rc < 0) {
    say("conn_info failed: %s\n", wsev_err_name(rc));
    return;
  }
  if (id == r->upstream) {
    say("upstream open client=%d path=%s tls=%d\n", info.client, info.path ? info.path : "(null)",
        info.tls);
    return;
  }
  if (r->n_clients == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    uint64_t *p = realloc(r->clients, cap * sizeof *p);
    if (!p) {
      wsev_close(ctx, id);
      return;
    }
    r->clients = p;
    r->cap = cap;
  }
  r->clients[r->n_clients++] = id;
  say("accepted %" PRIu64 " client=%d path=%s\n", id, info.client,
      info.path ? info.path : "(null)");
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  relay *r = wsev_get_ctx_data(ctx);
  if (id == r->upstream) {
    if (r->n_clients) wsev_broadcast(ctx, r->clients, r->n_clients, data, len, type);
    return;
  }
  int rc = type == WSEV_TEXT ? wsev_write_text(ctx, r->upstream, data, len)
                             : wsev_write(ctx, r->upstream, data, len);
  if (rc < 0) say("forward failed: %s\n", wsev_err_name(rc));
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  relay *r = wsev_get_ctx_data(ctx);
  wsev_close_info ci;
  int rc = wsev_get_close_info(ctx, id, &ci);
  if (rc < 0) {
    say("close_info failed: %s\n", wsev_err_name(rc));
    memset(&ci, 0, sizeof ci);
  }
  if (id == r->upstream) {
    say("upstream closed error=%s code=%u by_peer=%d reason=%s\n",
        ci.error ? wsev_err_name(ci.error) : "0", ci.code, ci.by_peer, ci.reason);
    wsev_shutdown(ctx, 2000);
    return;
  }
  for (size_t i = 0; i < r->n_clients; i++) {
    if (r->clients[i] == id) {
      r->clients[i] = r->clients[--r->n_clients];
      break;
    }
  }
  say("closed %" PRIu64 " code=%u by_peer=%d\n", id, ci.code, ci.by_peer);
}

static void on_signal(uv_signal_t *sig, int signum) {
  static int signals;
  (void)signum;
  if (signals++ == 0)
    wsev_shutdown(sig->data, 2000);
  else
    wsev_stop(sig->data);
}

int main(int argc, char **argv) {
  wsev_client_options opts = {0};
  const char *port = NULL, *url = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc)
      opts.ca_file = argv[++i];
    else if (strcmp(argv[i], "--insecure") == 0)
      opts.insecure = 1;
    else if (!port)
      port = argv[i];
    else if (!url)
      url = argv[i];
    else
      port = NULL, i = argc;
  }
  if (!port || !url) {
    fprintf(stderr, "usage: %s PORT UPSTREAM_URL [--ca FILE] [--insecure]\n", argv[0]);
    return 2;
  }

  static relay r;
  wsev_handler handler = {
      .conn_accepted = on_accepted, .conn_closed = on_closed, .message_received = on_message};
  wsev_ctx *ctx;
  int rc = test_ctx_new(&ctx, NULL, &handler, &r);
  if (rc < 0) {
    fprintf(stderr, "relay: %s\n", wsev_strerror(rc));
    return 1;
  }
  int bound = wsev_listen_and_serve_addr(ctx, "127.0.0.1", port);
  if (bound < 0) {
    fprintf(stderr, "relay: cannot listen: %s\n", wsev_strerror(bound));
    wsev_ctx_free(ctx);
    return 1;
  }
  rc = wsev_add_conn(ctx, url, &opts, &r.upstream);
  if (rc < 0) {
    fprintf(stderr, "relay: %s: %s\n", url, wsev_strerror(rc));
    wsev_ctx_free(ctx);
    return 2;
  }
  say("relay listening on port %d\n", bound);

  uv_signal_t sigint, sigterm;
  uv_signal_init(wsev_get_loop(ctx), &sigint);
  uv_signal_init(wsev_get_loop(ctx), &sigterm);
  sigint.data = sigterm.data = ctx;
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&sigint);
  uv_unref((uv_handle_t *)&sigterm);

  wsev_event_loop(ctx);

  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  wsev_ctx_free(ctx);
  free(r.clients);
  return 0;
}
