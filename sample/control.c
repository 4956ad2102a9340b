/*
 * wsev-control: the application-control API of wsev in one small server.
 *
 * echo.c and pubsub.c need only the four basic callbacks. This sample also decides
 * who gets in and when, answers plain HTTP, keeps data per connection, reports how
 * each connection ended, and runs wsev on a libuv loop of its own:
 *
 *   upgrade_requested   see the path, Origin and offered subprotocols; pick a
 *                       subprotocol; accept, refuse, or defer the answer
 *   wsev_accept/reject  answer a deferred upgrade later: from a timer, or from
 *                       another connection's message
 *   http_request        GET /health -> 200 "ok"; GET /stats -> counters as JSON
 *   conn data           a record per connection: made in conn_accepted, read in
 *                       message_received, freed in conn_closed
 *   close info          code, reason and who closed first, in conn_closed
 *   embedding           our uv_loop_t and uv_run; SIGINT/SIGTERM -> wsev_shutdown
 *
 * Upgrades by path: /reject -> 403; /defer-accept -> accepted 50 ms later;
 * /defer-reject -> 401 50 ms later; /defer-never -> never answered (503 after
 * --defer-timeout); /defer-message -> accepted when another connection sends
 * "approve:ID"; anything else -> accepted. Subprotocols: the first of chat.v2,
 * chat.v1 that the client offers (the server's preference, not the client's).
 *
 * Messages: "close:CODE:REASON" closes with that code and reason; "approve:ID"
 * accepts the deferred upgrade ID; "info" answers "path=P protocol=S"; anything
 * else is echoed.
 *
 * Prints one line per event on stdout (test/control/test_control.py reads them).
 *
 * Usage: wsev-control [--port N] [--host ADDR] [--allow-origin ORIGIN]...
 *                     [--same-host] [--defer-timeout MS]
 * Listens on 127.0.0.1 port 9000 by default; --port 0 picks a free port.
 */
#include <wsev.h>

#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* The subprotocols we speak, best first, and the /stats slot of each (+1: none). */
static const char *const supported[] = {"chat.v2", "chat.v1"};
#define NPROTOCOLS (sizeof supported / sizeof supported[0])

typedef struct {
  wsev_ctx *ctx;
  uv_signal_t sigint, sigterm;
  uint64_t accepted, closed, messages;
  uint64_t open_by_protocol[NPROTOCOLS + 1]; /* the last slot: no subprotocol */
} app;

/* What we keep per connection (wsev_set_conn_data). */
typedef struct {
  uint64_t id;
  size_t protocol; /* index into supported[], NPROTOCOLS for none */
  char tag[32];    /* printed by conn_closed: the data lives until then */
} conn;

/* A deferred upgrade, answered when its timer fires. */
typedef struct {
  uv_timer_t timer;
  wsev_ctx *ctx;
  uint64_t id;
  int status; /* 0: accept, else refuse with this status */
  const char *protocol;
} decision;

/* ---------------------------------------------------------------------------------
 * Upgrades
 */

/* Our preference decides among what the client offered. */
static size_t choose_protocol(const wsev_request *req) {
  for (size_t s = 0; s < NPROTOCOLS; s++)
    for (size_t i = 0; i < wsev_request_protocol_count(req); i++)
      if (strcmp(wsev_request_protocol(req, i), supported[s]) == 0) return s;
  return NPROTOCOLS;
}

static void free_decision(uv_handle_t *h) { free(h->data); }

static void on_decision(uv_timer_t *t) {
  decision *d = t->data;
  /* WSEV_ENOCONN here means the client left, or the deadline or a shutdown
   * answered it first: nothing to undo. */
  int rc =
      d->status ? wsev_reject(d->ctx, d->id, d->status) : wsev_accept(d->ctx, d->id, d->protocol);
  printf("decided %" PRIu64 " status=%d rc=%d\n", d->id, d->status, rc);
  uv_close((uv_handle_t *)t, free_decision);
}

/* Answer the upgrade `id` in 50 ms, as if asking a slow authorization service. */
static int defer_with_timer(wsev_ctx *ctx, uint64_t id, int status, const char *protocol) {
  decision *d = calloc(1, sizeof *d);
  if (!d) return 503;
  *d = (decision){.ctx = ctx, .id = id, .status = status, .protocol = protocol};
  uv_timer_init(wsev_get_loop(ctx), &d->timer);
  d->timer.data = d;
  uv_timer_start(&d->timer, on_decision, 50, 0);
  return WSEV_DEFER;
}

/* The Origin policy (--allow-origin, --same-host) has already run: a browser from
 * another origin got 403 without reaching this callback. Here the application
 * decides by anything else in the request. */
static int on_upgrade(wsev_ctx *ctx, wsev_request *req) {
  const char *path = wsev_request_path(req);
  const char *origin = wsev_request_header(req, "Origin");
  size_t p = choose_protocol(req);
  const char *protocol = p < NPROTOCOLS ? supported[p] : NULL;
  uint64_t id = wsev_request_id(req); /* the id it will have, to answer a deferral */
  printf("upgrade %" PRIu64 " path=%s origin=%s\n", id, path, origin ? origin : "-");

  if (strcmp(path, "/reject") == 0) return 403;
  if (strcmp(path, "/defer-accept") == 0) return defer_with_timer(ctx, id, 0, protocol);
  if (strcmp(path, "/defer-reject") == 0) return defer_with_timer(ctx, id, 401, NULL);
  /* Never answered: wsev answers 503 at the deadline (wsev_set_defer_timeout). Bytes
   * the client sends meanwhile wait, and nothing of this id reaches us. */
  if (strcmp(path, "/defer-never") == 0) return WSEV_DEFER;
  /* Answered by an "approve:ID" message on another connection. */
  if (strcmp(path, "/defer-message") == 0) return WSEV_DEFER;
  if (protocol) wsev_request_select_protocol(req, protocol);
  return WSEV_ACCEPT;
}

/* ---------------------------------------------------------------------------------
 * Connections
 */

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  app *a = wsev_get_ctx_data(ctx);
  a->accepted++;
  conn *c = calloc(1, sizeof *c);
  wsev_conn_info info;
  int rc = wsev_get_conn_info(ctx, id, &info);
  if (!c || rc < 0) {
    free(c);
    wsev_close_with(ctx, id, 1011, rc < 0 ? wsev_err_name(rc) : "out of memory");
    return;
  }
  c->id = id;
  c->protocol = NPROTOCOLS;
  for (size_t s = 0; s < NPROTOCOLS; s++)
    if (info.protocol && strcmp(info.protocol, supported[s]) == 0) c->protocol = s;
  snprintf(c->tag, sizeof c->tag, "tag-%" PRIu64, id);
  wsev_set_conn_data(ctx, id, c); /* cannot fail: the connection is open */
  a->open_by_protocol[c->protocol]++;

  char peer[INET6_ADDRSTRLEN] = "?";
  if (info.peer.ss_family == AF_INET)
    uv_ip4_name((const struct sockaddr_in *)&info.peer, peer, sizeof peer);
  else if (info.peer.ss_family == AF_INET6)
    uv_ip6_name((const struct sockaddr_in6 *)&info.peer, peer, sizeof peer);
  printf("accepted %" PRIu64 " path=%s protocol=%s peer=%s local_port=%d tls=%d client=%d\n", id,
         info.path, info.protocol ? info.protocol : "-", peer, info.local_port, info.tls,
         info.client);
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  app *a = wsev_get_ctx_data(ctx);
  a->messages++;
  conn *c = wsev_get_conn_data(ctx, id);
  printf("%s %" PRIu64 "\n", c && c->id == id ? "data-ok" : "data-bad", id);

  /* Commands are short: a NUL-terminated copy of the start is enough to parse them. */
  char text[200];
  size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
  if (n) memcpy(text, data, n);
  text[n] = 0;

  if (strncmp(text, "close:", 6) == 0) {
    char *reason = strchr(text + 6, ':');
    if (reason) *reason++ = 0;
    /* A bad code (1005, 1006, ...) or a reason over 123 bytes is refused with
     * UV_EINVAL, and the connection stays open. */
    int rc = wsev_close_with(ctx, id, (unsigned)atoi(text + 6), reason);
    printf("close_with %" PRIu64 " rc=%d\n", id, rc);
  } else if (strncmp(text, "approve:", 8) == 0) {
    /* Any callback may answer a deferred upgrade. (A real server would first check
     * that this connection may approve others.) */
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
}

/* The last moment the connection's data and close info can be read. */
static void on_closed(wsev_ctx *ctx, uint64_t id) {
  app *a = wsev_get_ctx_data(ctx);
  a->closed++;
  conn *c = wsev_get_conn_data(ctx, id);
  wsev_close_info info;
  if (wsev_get_close_info(ctx, id, &info) == 0)
    printf("closed %" PRIu64 " code=%u by_peer=%d data=%s reason=%s\n", id, info.code, info.by_peer,
           c ? c->tag : "-", info.reason);
  else
    printf("closed %" PRIu64 " no-info\n", id);
  if (c) a->open_by_protocol[c->protocol]--;
  free(c);
}

/* ---------------------------------------------------------------------------------
 * Plain HTTP on the same port: requests without an Upgrade header
 */

static void on_http(wsev_ctx *ctx, wsev_request *req) {
  app *a = wsev_get_ctx_data(ctx);
  const char *method = wsev_request_method(req), *path = wsev_request_path(req);
  printf("http %s %s\n", method, path);
  if (strcmp(method, "GET") != 0) return; /* unanswered: wsev sends 404 */

  if (strcmp(path, "/health") == 0) {
    wsev_respond(req, 200, "Content-Type: text/plain\r\n", "ok", 2);
  } else if (strcmp(path, "/stats") == 0) {
    char body[512];
    int n = snprintf(body, sizeof body,
                     "{\"open\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"closed\":%" PRIu64
                     ",\"messages\":%" PRIu64 ",\"protocols\":{\"%s\":%" PRIu64 ",\"%s\":%" PRIu64
                     ",\"none\":%" PRIu64 "}}",
                     a->accepted - a->closed, a->accepted, a->closed, a->messages, supported[0],
                     a->open_by_protocol[0], supported[1], a->open_by_protocol[1],
                     a->open_by_protocol[NPROTOCOLS]);
    wsev_respond(req, 200, "Content-Type: application/json\r\nCache-Control: no-store\r\n", body,
                 (size_t)n);
  }
}

/* ---------------------------------------------------------------------------------
 * Embedding: our loop, our signals
 */

/* Graceful shutdown: stop listening, 503 to upgrades still waiting, a 1001 close to
 * every connection; conn_closed runs for each (bounded: what is still open after
 * 2 s is dropped, and its conn_closed runs then). Closing the signal handles lets
 * uv_run return once wsev is done, and gives the signals back their default action,
 * so a second Ctrl-C ends the process at once. */
static void on_signal(uv_signal_t *sig, int signum) {
  app *a = sig->data;
  if (uv_is_closing((uv_handle_t *)sig)) return; /* both signals came at once */
  printf("shutdown on signal %d\n", signum);
  wsev_shutdown(a->ctx, 2000);
  uv_close((uv_handle_t *)&a->sigint, NULL);
  uv_close((uv_handle_t *)&a->sigterm, NULL);
}

static void usage(FILE *out) {
  fprintf(out, "usage: wsev-control [--port N] [--host ADDR] [--allow-origin ORIGIN]...\n"
               "                    [--same-host] [--defer-timeout MS]\n"
               "  --port N             port to listen on (default 9000; 0 picks a free one)\n"
               "  --host ADDR          address to listen on (default 127.0.0.1)\n"
               "  --allow-origin O     allow browsers from origin O (repeatable); others 403\n"
               "  --same-host          allow browsers whose Origin is the Host they ask for\n"
               "  --defer-timeout MS   how long a deferred upgrade may wait (default 10000)\n");
}

/* After uv_run: free the context, let the loop finish closing its handles (on a
 * caller's loop that happens the next time the loop runs), and close the loop. */
static int finish(uv_loop_t *loop, wsev_ctx *ctx) {
  wsev_ctx_free(ctx);
  uv_run(loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(loop); /* UV_EBUSY: a handle was left open */
  if (rc < 0) fprintf(stderr, "wsev-control: uv_loop_close: %s\n", uv_strerror(rc));
  return rc;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* one event per line, visible at once in a pipe */

  uv_loop_t loop;
  int err = uv_loop_init(&loop);
  if (err < 0) {
    fprintf(stderr, "wsev-control: %s\n", uv_strerror(err));
    return 1;
  }
  app a = {0};
  wsev_handler handler = {.upgrade_requested = on_upgrade,
                          .conn_accepted = on_accepted,
                          .message_received = on_message,
                          .conn_closed = on_closed,
                          .http_request = on_http};
  err = wsev_ctx_new(&a.ctx, &loop, &handler, &a); /* on our loop, not a private one */
  if (err < 0) {
    fprintf(stderr, "wsev-control: %s\n", wsev_strerror(err));
    uv_loop_close(&loop);
    return 1;
  }

  const char *host = "127.0.0.1", *port = "9000";
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(arg, "--port") == 0 && val) {
      port = argv[++i];
    } else if (strcmp(arg, "--host") == 0 && val) {
      host = argv[++i];
    } else if (strcmp(arg, "--allow-origin") == 0 && val) {
      if ((err = wsev_allow_origin(a.ctx, argv[++i])) < 0) break;
    } else if (strcmp(arg, "--same-host") == 0) {
      wsev_allow_same_host_origin(a.ctx, 1);
    } else if (strcmp(arg, "--defer-timeout") == 0 && val) {
      wsev_set_defer_timeout(a.ctx, strtoull(argv[++i], NULL, 10));
    } else {
      int help = strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
      usage(help ? stdout : stderr);
      finish(&loop, a.ctx);
      return help ? 0 : 2;
    }
  }
  if (err < 0) {
    fprintf(stderr, "wsev-control: %s\n", wsev_strerror(err));
    finish(&loop, a.ctx);
    return 1;
  }

  /* The tests also run this sample with its network work on I/O threads. */
  const char *io_threads = getenv("WSEV_IO_THREADS");
  if (io_threads && (err = wsev_set_io_threads(a.ctx, (unsigned)atoi(io_threads))) != 0) {
    fprintf(stderr, "wsev-control: cannot start I/O threads: %s\n", wsev_strerror(err));
    finish(&loop, a.ctx);
    return 1;
  }

  int bound = wsev_listen_and_serve_addr(a.ctx, host, port);
  if (bound < 0) {
    fprintf(stderr, "wsev-control: cannot listen on %s port %s: %s\n", host, port,
            wsev_strerror(bound));
    finish(&loop, a.ctx);
    return 1;
  }

  uv_signal_init(&loop, &a.sigint);
  uv_signal_init(&loop, &a.sigterm);
  a.sigint.data = a.sigterm.data = &a;
  uv_signal_start(&a.sigint, on_signal, SIGINT);
  uv_signal_start(&a.sigterm, on_signal, SIGTERM);

  printf("wsev-control listening on port %d\n", bound);
  /* Anything else of ours could run on this loop too. It ends when no handle is
   * left: after a signal, once wsev_shutdown has closed every connection. */
  uv_run(&loop, UV_RUN_DEFAULT);
  return finish(&loop, a.ctx) == 0 ? 0 : 1;
}
