/* TLS session resumption, both roles in one context: two wss listeners (each with
 * its own ticket keys) and connections of ours to them (wsev_add_conn). Checks
 * wsev_conn_info.tls_resumed on both ends of every connection:
 * - the first connection to a listener is a full handshake;
 * - the next ones resume (the context offers the ticket it was given);
 * - the other listener cannot open that ticket: a full handshake, then its own;
 * - an insecure client configuration keeps its own sessions;
 * and that messages flow on resumed connections. Certificates are made at run time
 * by scripts/make-cert.sh (argv[1]). Ends with test.h's summary of checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wsev.h>

#include "../common/test-ctx.h"

#include "../unit/test.h"

/* What one round (a connection of ours and the server's end of it) saw. */
static struct {
  uint64_t client_id;
  int client_open, server_open, closed, echoed;
  int client_resumed, server_resumed, client_tls, server_tls;
  int error;
} round_;

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  wsev_conn_info info;
  if (wsev_get_conn_info(ctx, id, &info) != 0) return;
  if (info.client) {
    round_.client_open = 1;
    round_.client_resumed = info.tls_resumed;
    round_.client_tls = info.tls;
    wsev_write_text(ctx, id, "ping", 4);
  } else {
    round_.server_open = 1;
    round_.server_resumed = info.tls_resumed;
    round_.server_tls = info.tls;
  }
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  if (id != round_.client_id) {
    wsev_write_text(ctx, id, data, len); /* the server's end echoes */
    return;
  }
  round_.echoed = type == WSEV_TEXT && len == 4 && memcmp(data, "ping", 4) == 0;
  wsev_close(ctx, id);
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  wsev_close_info info;
  if (id != round_.client_id) return;
  if (wsev_get_close_info(ctx, id, &info) == 0 && info.error) {
    round_.error = info.error;
    fprintf(stderr, "connection failed: %s: %s\n", wsev_err_name(info.error), info.reason);
  }
  round_.closed = 1;
}

/* One connection to `port`, echo a message, close; returns 0 if it all happened. */
static int connect_once(wsev_ctx *ctx, int port, const char *ca_file, int insecure) {
  char url[64];
  snprintf(url, sizeof url, "wss://localhost:%d/", port);
  memset(&round_, 0, sizeof round_);
  wsev_client_options options = {.ca_file = ca_file, .insecure = insecure};
  if (wsev_add_conn(ctx, url, &options, &round_.client_id) != 0) return -1;
  for (int i = 0; i < 100000 && !round_.closed; i++)
    wsev_event_loop_iteration(ctx);
  return round_.closed && !round_.error && round_.echoed && round_.client_open &&
                 round_.server_open && round_.client_tls && round_.server_tls
             ? 0
             : -1;
}

/* Connect and check who says the session was resumed. */
static void expect(wsev_ctx *ctx, int port, const char *ca, int insecure, int resumed,
                   const char *what) {
  TEST_CASE(what);
  int ok = connect_once(ctx, port, ca, insecure) == 0;
  CHECK(ok);
  CHECK(round_.client_resumed == resumed);
  CHECK(round_.server_resumed == resumed);
  if (!ok || round_.client_resumed != resumed || round_.server_resumed != resumed)
    fprintf(stderr, "  %s: open %d/%d echoed %d resumed client %d server %d, expected %d\n", what,
            round_.client_open, round_.server_open, round_.echoed, round_.client_resumed,
            round_.server_resumed, resumed);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PATH/TO/make-cert.sh\n", argv[0]);
    return 2;
  }
  char dir[] = "/tmp/wsev-resume-XXXXXX";
  if (!mkdtemp(dir)) return 2;
  char cmd[512], crt[128], key[128], ca[128];
  snprintf(cmd, sizeof cmd, "'%s' '%s' >/dev/null", argv[1], dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "%s failed\n", cmd);
    return 2;
  }
  snprintf(crt, sizeof crt, "%s/localhost.crt", dir);
  snprintf(key, sizeof key, "%s/localhost.key", dir);
  snprintf(ca, sizeof ca, "%s/ca.crt", dir);

  wsev_handler handler = {
      .conn_accepted = on_accepted, .message_received = on_message, .conn_closed = on_closed};
  wsev_ctx *ctx;
  if (test_ctx_new(&ctx, NULL, &handler, NULL) != 0) return 2;
  int a = wsev_listen_and_serve_tls_addr(ctx, "127.0.0.1", "0", crt, key);
  int b = wsev_listen_and_serve_tls_addr(ctx, "127.0.0.1", "0", crt, key);
  CHECK(a > 0 && b > 0);
  if (a > 0 && b > 0) {
    expect(ctx, a, ca, 0, 0, "first connection to A");
    expect(ctx, a, ca, 0, 1, "second connection to A");
    expect(ctx, a, ca, 0, 1, "third connection to A (the renewed ticket)");
    expect(ctx, b, ca, 0, 0, "first connection to B (A's ticket is not B's)");
    expect(ctx, b, ca, 0, 1, "second connection to B");
    expect(ctx, a, ca, 0, 1, "A again: its session was kept beside B's");
    expect(ctx, a, NULL, 1, 0, "A, insecure: another configuration, no session yet");
    expect(ctx, a, NULL, 1, 1, "A, insecure, again");
  }
  wsev_ctx_free(ctx);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return TEST_REPORT();
}
