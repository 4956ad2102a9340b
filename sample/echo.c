/* wsev-echo: echoes every message back with its type. Kept minimal: conformance
 * tests and benchmarks run against it.
 *
 *   wsev-echo PORT [options]        (PORT 0 picks a free port; the first line
 *                                    printed names the port)
 *   wsev-echo PORT --tls-port N --cert FILE --key FILE
 *                                   also serves wss on N (a second line names it;
 *                                   SIGHUP reloads the certificate files)
 *   --unix PATH, --proxy-protocol, --trust-forwarded, --sni-cert/--sni-key: see
 *   sample/deploy_options.h (a --unix listener prints "listening on unix PATH")
 *   --log-connections            print "open ID client ADDR peer ADDR" when a
 *                                connection opens and "closed ID" when it ends
 * Options (each sets the wsev limit of the same name, 0 turning it off; see
 * include/wsev.h):
 *   --max-message-size BYTES   --max-buffered BYTES     --max-connections N
 *   --ping-interval MS         --ping-timeout MS
 *   --handshake-timeout MS     --close-timeout MS       --shutdown-timeout MS
 *   --io-threads N (default: $WSEV_IO_THREADS, else 0: all on the main loop)
 *   --deflate[=shared|dedicated] and its tuning (sample/deflate_options.h; default:
 *   $WSEV_DEFLATE, else off): accept permessage-deflate offers
 * SIGINT/SIGTERM shut down gracefully (1001 to every client, bounded by
 * --shutdown-timeout, default 2000 ms); a second signal stops at once. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wsev.h>

#include "deflate_options.h"
#include "deploy_options.h"

static uint64_t shutdown_timeout_ms = 2000;

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  if (type == WSEV_TEXT)
    wsev_write_text(ctx, id, data, len);
  else
    wsev_write(ctx, id, data, len);
}

static void on_open(wsev_ctx *ctx, uint64_t id) {
  wsev_conn_info info;
  char client[128], peer[128];
  if (wsev_get_conn_info(ctx, id, &info) != 0) return;
  printf("open %llu client %s peer %s\n", (unsigned long long)id,
         deploy_address(&info.client_addr, client, sizeof client),
         deploy_address(&info.peer, peer, sizeof peer));
  fflush(stdout);
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  (void)ctx;
  printf("closed %llu\n", (unsigned long long)id);
  fflush(stdout);
}

static void on_signal(uv_signal_t *sig, int signum) {
  static int signals;
  (void)signum;
  if (signals++ == 0)
    wsev_shutdown(sig->data, shutdown_timeout_ms);
  else
    wsev_stop(sig->data);
}

static const char *const option_names[] = {
    "--max-message-size", "--max-buffered",     "--max-connections",
    "--ping-interval",    "--ping-timeout",     "--handshake-timeout",
    "--close-timeout",    "--shutdown-timeout", "--io-threads"};
enum { N_OPTIONS = sizeof option_names / sizeof option_names[0] };

int main(int argc, char **argv) {
  const char *port = NULL, *tls_port = NULL, *cert = NULL, *key = NULL;
  unsigned long long value[N_OPTIONS] = {0};
  int given[N_OPTIONS] = {0}, ok = 1, deflate_given = 0, used, log_connections = 0;
  wsev_deflate_options deflate = {0};
  deploy_options deploy;
  deploy_init(&deploy);
  for (int i = 1; i < argc && ok; i++) {
    int k = 0;
    if ((used = deflate_option(argc, argv, &i, &deflate, &deflate_given)) != 0 ||
        (used = deploy_option(argc, argv, &i, &deploy)) != 0) {
      ok = used > 0;
      continue;
    }
    if (!strcmp(argv[i], "--log-connections")) {
      log_connections = 1;
      continue;
    }
    while (k < N_OPTIONS && strcmp(argv[i], option_names[k]) != 0)
      k++;
    if (k < N_OPTIONS && i + 1 < argc) {
      value[k] = strtoull(argv[++i], NULL, 10);
      given[k] = 1;
    } else if (strcmp(argv[i], "--tls-port") == 0 && i + 1 < argc)
      tls_port = argv[++i];
    else if (strcmp(argv[i], "--cert") == 0 && i + 1 < argc)
      cert = argv[++i];
    else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
      key = argv[++i];
    else if (!port && argv[i][0] != '-')
      port = argv[i];
    else
      ok = 0;
  }
  if (deflate_from_env(&deflate, deflate_given) != 0) ok = 0;
  if (!ok || !port || (tls_port && (!cert || !key)) || deploy.sni_key_missing) {
    fprintf(stderr,
            "usage: %s PORT [--max-message-size BYTES] [--max-buffered BYTES]\n"
            "  [--max-connections N] [--ping-interval MS] [--ping-timeout MS]\n"
            "  [--handshake-timeout MS] [--close-timeout MS] [--shutdown-timeout MS]\n"
            "  [--tls-port N --cert FILE --key FILE] [--log-connections]\n" DEFLATE_USAGE
                DEPLOY_USAGE,
            argv[0]);
    return 2;
  }
  deploy.certs[0] = (wsev_tls_cert){cert, key};

  wsev_handler handler = {.message_received = on_message};
  if (log_connections) {
    handler.conn_accepted = on_open;
    handler.conn_closed = on_closed;
  }
  wsev_ctx *ctx;
  int rc = wsev_ctx_new(&ctx, NULL, &handler, NULL);
  if (rc < 0) {
    fprintf(stderr, "wsev-echo: %s\n", wsev_strerror(rc));
    return 1;
  }
  /* Only what was given changes; 0 turns a limit or timer off, as in wsev.h. */
  size_t max_buffered, low_water;
  uint64_t ping_interval, ping_timeout;
  wsev_get_send_limits(ctx, &max_buffered, &low_water);
  wsev_get_keepalive(ctx, &ping_interval, &ping_timeout);
  if (given[0]) wsev_set_max_message_size(ctx, value[0]);
  if (given[1]) wsev_set_send_limits(ctx, value[1], low_water);
  if (given[2]) wsev_set_max_connections(ctx, value[2]);
  if (given[3] || given[4])
    wsev_set_keepalive(ctx, given[3] ? value[3] : ping_interval,
                       given[4] ? value[4] : ping_timeout);
  if (given[5]) wsev_set_handshake_timeout(ctx, value[5]);
  if (given[6]) wsev_set_close_timeout(ctx, value[6]);
  if (given[7]) shutdown_timeout_ms = value[7];
  if ((rc = wsev_set_deflate(ctx, &deflate)) != 0) {
    fprintf(stderr, "wsev-echo: deflate options: %s\n", wsev_strerror(rc));
    wsev_ctx_free(ctx);
    return 2;
  }
  /* The tests run every suite with WSEV_IO_THREADS=2 as well; --io-threads wins. */
  const char *env_threads = getenv("WSEV_IO_THREADS");
  unsigned long long io_threads = given[8]      ? value[8]
                                  : env_threads ? strtoull(env_threads, NULL, 10)
                                                : 0;
  if ((rc = wsev_set_io_threads(ctx, (unsigned)io_threads)) != 0) {
    fprintf(stderr, "wsev-echo: cannot start %llu I/O threads: %s\n", io_threads,
            wsev_strerror(rc));
    wsev_ctx_free(ctx);
    return 1;
  }

  int bound = 0, bound_tls = 0;
  wsev_listen_options plain = {.port = port, .trust = deploy.trust};
  if ((rc = wsev_listen(ctx, &plain, &bound)) < 0) {
    fprintf(stderr, "wsev-echo: cannot listen on port %s: %s\n", port, wsev_strerror(rc));
    wsev_ctx_free(ctx);
    return 1;
  }
  deploy_reload reload = {ctx, 0, &deploy, "wsev-echo"};
  if (tls_port) {
    wsev_listen_options tls = {.port = tls_port, .trust = deploy.trust, .certs = deploy.certs,
                               .cert_count = deploy.cert_count};
    if ((reload.listener = wsev_listen(ctx, &tls, &bound_tls)) < 0) {
      fprintf(stderr, "wsev-echo: cannot listen for TLS on port %s: %s\n", tls_port,
              wsev_strerror(reload.listener));
      wsev_ctx_free(ctx);
      return 1;
    }
  }
  if (deploy_listen_unix(ctx, &deploy, "wsev-echo")) {
    wsev_ctx_free(ctx);
    return 1;
  }

  /* The signal handles do not keep the loop alive: after a graceful shutdown the
   * loop ends by itself once the last connection is gone. They are in place before we
   * say that we listen: a SIGTERM right after that must shut down gracefully. */
  uv_signal_t sigint, sigterm, sighup;
  deploy_watch_sighup(&sighup, &reload);
  uv_signal_init(wsev_get_loop(ctx), &sigint);
  uv_signal_init(wsev_get_loop(ctx), &sigterm);
  sigint.data = sigterm.data = ctx;
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&sigint);
  uv_unref((uv_handle_t *)&sigterm);
  printf("wsev-echo listening on port %d\n", bound);
  if (bound_tls) printf("wsev-echo listening for TLS on port %d\n", bound_tls);
  if (deploy.unix_path) printf("wsev-echo listening on unix %s\n", deploy.unix_path);
  fflush(stdout);

  wsev_event_loop(ctx);

  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_close((uv_handle_t *)&sighup, NULL);
  wsev_ctx_free(ctx);
  return 0;
}
