/* wsev-client-load: an echo load generator built on wsev's own client connections,
 * so it speaks wss as well as ws (the epoll generator, loadgen.c, speaks plain TCP
 * only). Used by scripts/bench.sh for the ws-versus-wss rows.
 *
 *   wsev-client-load URL CONNECTIONS IN_FLIGHT SIZE SECONDS [WARMUP_SECONDS]
 *                    [--ca FILE | --insecure]
 *
 * Every connection keeps IN_FLIGHT binary messages of SIZE bytes outstanding and
 * sends the next one when an echo arrives. Prints one line:
 *   msgs=N seconds=S rate=R open=C failed=F
 * counting echoes received between the warmup and the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wsev.h>

static struct {
  unsigned long long received, measured;
  int in_flight, open, failed, measuring;
  size_t size;
  uint8_t *payload;
  uint64_t start_ms;
} load;

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  load.open++;
  for (int i = 0; i < load.in_flight; i++)
    wsev_write(ctx, id, load.payload, load.size);
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  (void)data;
  (void)len;
  (void)type;
  load.received++;
  if (load.measuring) load.measured++;
  wsev_write(ctx, id, load.payload, load.size);
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  wsev_close_info info;
  if (wsev_get_close_info(ctx, id, &info) == 0 && info.error) {
    if (load.failed++ == 0) fprintf(stderr, "client-load: %s: %s\n", wsev_err_name(info.error), info.reason);
  }
}

static void on_warm(uv_timer_t *t) {
  (void)t;
  load.measuring = 1;
  load.measured = 0;
  load.start_ms = uv_now(t->loop);
}

static void on_end(uv_timer_t *t) { wsev_stop(t->data); }

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s URL CONNECTIONS IN_FLIGHT SIZE SECONDS [WARMUP] [--ca F | --insecure]\n",
            argv[0]);
    return 2;
  }
  int connections = atoi(argv[2]);
  load.in_flight = atoi(argv[3]);
  load.size = (size_t)atol(argv[4]);
  double seconds = atof(argv[5]), warmup = 1.0;
  wsev_client_options options = {0};
  for (int i = 6; i < argc; i++) {
    if (strcmp(argv[i], "--insecure") == 0)
      options.insecure = 1;
    else if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc)
      options.ca_file = argv[++i];
    else
      warmup = atof(argv[i]);
  }
  load.payload = calloc(1, load.size ? load.size : 1);

  wsev_handler handler = {
      .conn_accepted = on_accepted, .message_received = on_message, .conn_closed = on_closed};
  wsev_ctx *ctx;
  if (wsev_ctx_new(&ctx, NULL, &handler, NULL) != 0) return 1;
  for (int i = 0; i < connections; i++) {
    uint64_t id;
    int rc = wsev_add_conn(ctx, argv[1], &options, &id);
    if (rc) {
      fprintf(stderr, "client-load: %s: %s\n", argv[1], wsev_strerror(rc));
      return 2;
    }
  }
  uv_timer_t warm, end;
  uv_timer_init(wsev_ctx_loop(ctx), &warm);
  uv_timer_init(wsev_ctx_loop(ctx), &end);
  end.data = ctx;
  uv_timer_start(&warm, on_warm, (uint64_t)(warmup * 1000), 0);
  uv_timer_start(&end, on_end, (uint64_t)((warmup + seconds) * 1000), 0);
  wsev_event_loop(ctx);
  double elapsed = (double)(uv_now(wsev_ctx_loop(ctx)) - load.start_ms) / 1000.0;
  printf("msgs=%llu seconds=%.2f rate=%.0f open=%d failed=%d\n", load.measured, elapsed,
         elapsed > 0 ? (double)load.measured / elapsed : 0.0, load.open, load.failed);
  uv_close((uv_handle_t *)&warm, NULL);
  uv_close((uv_handle_t *)&end, NULL);
  wsev_ctx_free(ctx);
  free(load.payload);
  return load.open == connections ? 0 : 1;
}
