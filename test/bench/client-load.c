/* wsev-client-load: an echo load generator built on wsev's own client connections,
 * so it speaks wss as well as ws (the epoll generator, loadgen.c, speaks plain TCP
 * only). Used by scripts/bench.sh for the ws-versus-wss rows.
 *
 *   wsev-client-load URL CONNECTIONS IN_FLIGHT SIZE SECONDS [WARMUP_SECONDS]
 *                    [--ca FILE | --insecure] [--server-pid PID]
 *
 * Every connection keeps IN_FLIGHT binary messages of SIZE bytes outstanding and
 * sends the next one when an echo arrives. Prints one line:
 *   msgs=N seconds=S rate=R open=C failed=F [server_cpu=SECONDS]
 * counting echoes received between the warmup and the end; with --server-pid, the
 * server process's CPU time over that same window (from /proc), so the benchmark
 * can report the server's cost per message without the handshakes of the warmup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wsev.h>

static struct {
  unsigned long long received, measured;
  int in_flight, open, failed, measuring;
  size_t size;
  uint8_t *payload;
  uint64_t start_ms;
  int server_pid;
  double server_cpu_at_warm, server_cpu_at_end;
} load;

/* User plus system CPU seconds of process `pid`, or -1 if it cannot be read. */
static double process_cpu_seconds(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  /* Fields after the parenthesised command name (which may hold spaces); utime and
   * stime are fields 14 and 15, the 12th and 13th after the name. */
  char *p = strrchr(buf, ')');
  unsigned long long utime, stime;
  if (!p ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
    return -1;
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

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
    if (load.failed++ == 0)
      fprintf(stderr, "client-load: %s: %s\n", wsev_err_name(info.error), info.reason);
  }
}

static void on_warm(uv_timer_t *t) {
  (void)t;
  load.measuring = 1;
  load.measured = 0;
  load.start_ms = uv_now(t->loop);
  if (load.server_pid) load.server_cpu_at_warm = process_cpu_seconds(load.server_pid);
}

static void on_end(uv_timer_t *t) {
  if (load.server_pid) load.server_cpu_at_end = process_cpu_seconds(load.server_pid);
  wsev_stop(t->data);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr,
            "usage: %s URL CONNECTIONS IN_FLIGHT SIZE SECONDS [WARMUP] [--ca F | --insecure] "
            "[--server-pid PID]\n",
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
    else if (strcmp(argv[i], "--server-pid") == 0 && i + 1 < argc)
      load.server_pid = atoi(argv[++i]);
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
  uv_timer_init(wsev_get_loop(ctx), &warm);
  uv_timer_init(wsev_get_loop(ctx), &end);
  end.data = ctx;
  uv_timer_start(&warm, on_warm, (uint64_t)(warmup * 1000), 0);
  uv_timer_start(&end, on_end, (uint64_t)((warmup + seconds) * 1000), 0);
  wsev_event_loop(ctx);
  double elapsed = (double)(uv_now(wsev_get_loop(ctx)) - load.start_ms) / 1000.0;
  printf("msgs=%llu seconds=%.2f rate=%.0f open=%d failed=%d", load.measured, elapsed,
         elapsed > 0 ? (double)load.measured / elapsed : 0.0, load.open, load.failed);
  if (load.server_pid && load.server_cpu_at_warm >= 0 && load.server_cpu_at_end >= 0)
    printf(" server_cpu=%.3f", load.server_cpu_at_end - load.server_cpu_at_warm);
  printf("\n");
  uv_close((uv_handle_t *)&warm, NULL);
  uv_close((uv_handle_t *)&end, NULL);
  wsev_ctx_free(ctx);
  free(load.payload);
  return load.open == connections ? 0 : 1;
}
