/* wsev-echo: echoes every message back with its type. Kept minimal: conformance
 * tests and benchmarks run against it.
 *
 *   wsev-echo PORT [--max-message-size BYTES]     (PORT 0 picks a free port) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wsev.h>

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  if (type == WSEV_TEXT)
    wsev_write_text(ctx, id, data, len);
  else
    wsev_write(ctx, id, data, len);
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  wsev_stop(sig->data);
}

int main(int argc, char **argv) {
  const char *port = NULL;
  size_t max_message = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--max-message-size") == 0 && i + 1 < argc)
      max_message = strtoull(argv[++i], NULL, 10);
    else if (!port && argv[i][0] != '-')
      port = argv[i];
    else {
      port = NULL;
      break;
    }
  }
  if (!port) {
    fprintf(stderr, "usage: %s PORT [--max-message-size BYTES]\n", argv[0]);
    return 2;
  }

  wsev_handler handler = {.message_received = on_message};
  wsev_ctx *ctx;
  int rc = wsev_ctx_new(&ctx, NULL, &handler, NULL);
  if (rc < 0) {
    fprintf(stderr, "wsev-echo: %s\n", wsev_strerror(rc));
    return 1;
  }
  if (max_message) wsev_set_max_message_size(ctx, max_message);
  int bound = wsev_listen_and_serve(ctx, port);
  if (bound < 0) {
    fprintf(stderr, "wsev-echo: cannot listen on port %s: %s\n", port, wsev_strerror(bound));
    wsev_ctx_free(ctx);
    return 1;
  }
  printf("wsev-echo listening on port %d\n", bound);
  fflush(stdout);

  uv_signal_t sigint, sigterm;
  uv_signal_init(wsev_ctx_loop(ctx), &sigint);
  uv_signal_init(wsev_ctx_loop(ctx), &sigterm);
  sigint.data = sigterm.data = ctx;
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);

  wsev_event_loop(ctx);

  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  wsev_ctx_free(ctx);
  return 0;
}
