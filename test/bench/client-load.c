/* wsev-client-load: an echo load generator built on wsev's own client connections,
 * so it speaks wss as well as ws (the epoll generator, loadgen.c, speaks plain TCP
 * only). Used by scripts/bench.sh for the ws-versus-wss rows.
 *
 *   wsev-client-load URL CONNECTIONS IN_FLIGHT SIZE SECONDS [WARMUP_SECONDS]
 *                    [--ca FILE | --insecure] [--server-pid PID]
 *                    [--text] [--deflate shared|dedicated] [--stats]
 *
 * Every connection keeps IN_FLIGHT binary messages of SIZE bytes outstanding and
 * sends the next one when an echo arrives. Prints one line:
 *   msgs=N seconds=S rate=R open=C failed=F [server_cpu=SECONDS]
 * counting echoes received between the warmup and the end; with --server-pid, the
 * server process's CPU time over that same window (from /proc), so the benchmark
 * can report the server's cost per message without the handshakes of the warmup.
 *
 * For scripts/bench-deflate.sh:
 * --text     text messages of exactly SIZE bytes of JSON (an array of objects with the
 *            same keys and varying values, from a fixed seed): 1024 different ones, sent
 *            in turn by each connection from its own starting point, so no message
 *            repeats within a 32 KiB window; every echo is compared with what was sent.
 * --deflate  offer permessage-deflate (threshold 1: every message compressed), shared
 *            (no context takeover either way) or dedicated (takeover both ways, window
 *            15, level 6: what a browser offers and does, so a server that keeps its
 *            context benefits).
 * --stats    appends client_cpu=S (this process's CPU over the window), bad=N (echoes
 *            that differed from what was sent), to_server=B and from_server=B: the
 *            bytes all connections' sockets sent and received over the window (the
 *            kernel's TCP counters: WebSocket frames, compressed or not, with their
 *            headers; whatever system calls the server uses). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <wsev.h>

#define POOL 1024 /* different text messages */

/* A connection's place in the pool (--text): it sends pool[(start + sent) % POOL],
 * and echoes come back in order, so the next echo must equal pool[(start + echoed)]. */
typedef struct {
  unsigned start, sent, echoed;
} conn_seq;

static struct {
  unsigned long long received, measured, bad;
  int in_flight, open, failed, measuring, text, stats;
  size_t size;
  uint8_t *payload;
  char *pool; /* --text: POOL messages of `size` bytes, one after the other */
  uint64_t start_ms;
  int server_pid;
  double server_cpu_at_warm, server_cpu_at_end, cpu_at_warm, cpu_at_end;
  unsigned long long wire_at_warm[2], wire_at_end[2]; /* sent, received */
  int wire_ok;
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

/* The kernel's TCP_INFO goes on after the fields glibc's struct tcp_info has (uv.h
 * brings glibc's <netinet/tcp.h>, which cannot be mixed with <linux/tcp.h>); Linux
 * only ever appends to it. */
struct tcp_info_bytes {
  struct tcp_info base; /* up to tcpi_total_retrans */
  uint64_t pacing_rate, max_pacing_rate;
  uint64_t bytes_acked, bytes_received; /* Linux 4.1+ */
};

/* Add a TCP handle's sent (acknowledged: loopback loses nothing) and received byte
 * counts to wire[0] and wire[1]. */
static void add_tcp_bytes(uv_handle_t *h, void *arg) {
  unsigned long long *wire = arg;
  struct tcp_info_bytes info;
  socklen_t len = sizeof info;
  uv_os_fd_t fd;
  if (h->type != UV_TCP || uv_fileno(h, &fd) != 0) return;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 || len < sizeof info) {
    load.wire_ok = 0;
    return;
  }
  wire[0] += info.bytes_acked;
  wire[1] += info.bytes_received;
}

static double own_cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* Small xorshift generator: the same pool on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (unsigned)(rng_state % n);
}

static const char *const words[] = {
    "order", "filled", "pending", "market", "limit", "cancel", "client", "session",
    "update", "price", "quote", "volume", "stream", "account", "balance", "retry",
    "the", "a", "of", "for", "with", "from", "new", "last", "next", "user", "ok"};
#define NWORDS (sizeof words / sizeof words[0])

/* One message of exactly `size` bytes: a JSON array of objects sharing their keys
 * (as an application's feed would), with ids, prices, times, names and tags that
 * vary; the last object's "note" (words) fills it to the byte. */
static void make_message(char *out, size_t size) {
  static const char *const users[] = {"alice", "bob", "carol", "dave", "erin", "frank",
                                      "grace", "heidi", "ivan", "judy", "mallory", "niaj",
                                      "olivia", "peggy", "rupert", "sybil", "trent", "victor",
                                      "walter", "yolanda"};
  static const char *const actions[] = {"buy", "sell", "cancel", "modify", "fill", "reject"};
  static const char *const tags[] = {"eu", "us", "apac", "mobile", "web", "api",
                                     "vip", "new", "retail", "pro"};
  static unsigned long long ts = 1764480000000ull;
  char obj[512];
  size_t n = 0;
  out[n++] = '[';
  for (;;) {
    ts += 1 + rnd(250);
    int k = snprintf(obj, sizeof obj,
                     "%s{\"id\":%u,\"user\":\"%s_%u\",\"action\":\"%s\",\"price\":%u.%02u,"
                     "\"qty\":%u,\"ts\":%llu,\"tags\":[\"%s\",\"%s\"],\"ok\":%s}",
                     n > 1 ? "," : "", 100000 + rnd(900000), users[rnd(20)], rnd(1000),
                     actions[rnd(6)], 10 + rnd(990), rnd(100), 1 + rnd(500), ts, tags[rnd(10)],
                     tags[rnd(10)], rnd(4) ? "true" : "false");
    /* Room left for this object, a closing note object (at least 16 bytes) and ']'. */
    if (n + (size_t)k + 16 + 1 > size) break;
    memcpy(out + n, obj, (size_t)k);
    n += (size_t)k;
  }
  const char *open = n > 1 ? ",{\"note\":\"" : "{\"note\":\"";
  size_t end = size - 3; /* before the closing "}] */
  if (size >= strlen(open) + 4) {
    memcpy(out + n, open, strlen(open));
    n += strlen(open);
  }
  while (n < end) {
    const char *w = words[rnd(NWORDS)];
    size_t wl = strlen(w);
    if (wl > end - n) wl = end - n;
    memcpy(out + n, w, wl);
    n += wl;
    if (n < end) out[n++] = ' ';
  }
  if (size >= 3) memcpy(out + size - 3, "\"}]", 3);
  if (size < 16) memset(out, ' ', size); /* too small for JSON: spaces */
}

static void send_next(wsev_ctx *ctx, uint64_t id, conn_seq *c) {
  if (!load.text) {
    wsev_write(ctx, id, load.payload, load.size);
    return;
  }
  unsigned k = (c->start + c->sent++) % POOL;
  wsev_write_text(ctx, id, load.pool + (size_t)k * load.size, load.size);
}

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  load.open++;
  conn_seq *c = wsev_get_conn_data(ctx, id);
  for (int i = 0; i < load.in_flight; i++) send_next(ctx, id, c);
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  conn_seq *c = wsev_get_conn_data(ctx, id);
  if (load.text) {
    unsigned k = (c->start + c->echoed++) % POOL;
    if (type != WSEV_TEXT || len != load.size ||
        memcmp(data, load.pool + (size_t)k * load.size, len) != 0)
      load.bad++;
  }
  load.received++;
  if (load.measuring) load.measured++;
  send_next(ctx, id, c);
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
  if (load.stats) uv_walk(t->loop, add_tcp_bytes, load.wire_at_warm);
  load.cpu_at_warm = own_cpu_seconds();
}

static void on_end(uv_timer_t *t) {
  if (load.server_pid) load.server_cpu_at_end = process_cpu_seconds(load.server_pid);
  if (load.stats) uv_walk(t->loop, add_tcp_bytes, load.wire_at_end);
  load.cpu_at_end = own_cpu_seconds();
  wsev_stop(t->data);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr,
            "usage: %s URL CONNECTIONS IN_FLIGHT SIZE SECONDS [WARMUP] [--ca F | --insecure] "
            "[--server-pid PID] [--text] [--deflate shared|dedicated] [--stats]\n",
            argv[0]);
    return 2;
  }
  int connections = atoi(argv[2]);
  load.in_flight = atoi(argv[3]);
  load.size = (size_t)atol(argv[4]);
  double seconds = atof(argv[5]), warmup = 1.0;
  wsev_client_options options = {0};
  wsev_deflate_options deflate = {.threshold = 1};
  for (int i = 6; i < argc; i++) {
    if (strcmp(argv[i], "--insecure") == 0)
      options.insecure = 1;
    else if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc)
      options.ca_file = argv[++i];
    else if (strcmp(argv[i], "--server-pid") == 0 && i + 1 < argc)
      load.server_pid = atoi(argv[++i]);
    else if (strcmp(argv[i], "--text") == 0)
      load.text = 1;
    else if (strcmp(argv[i], "--stats") == 0)
      load.stats = 1;
    else if (strcmp(argv[i], "--deflate") == 0 && i + 1 < argc) {
      i++;
      if (strcmp(argv[i], "shared") == 0)
        deflate.mode = WSEV_DEFLATE_SHARED;
      else if (strcmp(argv[i], "dedicated") == 0)
        deflate.mode = WSEV_DEFLATE_DEDICATED;
      else {
        fprintf(stderr, "client-load: --deflate shared|dedicated\n");
        return 2;
      }
      options.deflate = &deflate;
    } else
      warmup = atof(argv[i]);
  }
  load.payload = calloc(1, load.size ? load.size : 1);
  load.wire_ok = 1;
  if (load.text) {
    load.pool = malloc(POOL * (load.size ? load.size : 1));
    for (int k = 0; k < POOL; k++) make_message(load.pool + (size_t)k * load.size, load.size);
  }
  conn_seq *seqs = calloc((size_t)(connections > 0 ? connections : 1), sizeof *seqs);

  wsev_handler handler = {
      .conn_accepted = on_accepted, .message_received = on_message, .conn_closed = on_closed};
  wsev_ctx *ctx;
  if (wsev_ctx_new(&ctx, NULL, &handler, NULL) != 0) return 1;
  for (int i = 0; i < connections; i++) {
    uint64_t id;
    seqs[i].start = (unsigned)i * 389u % POOL; /* spread the connections over the pool */
    options.data = &seqs[i];
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
  if (load.stats) {
    printf(" client_cpu=%.3f bad=%llu", load.cpu_at_end - load.cpu_at_warm, load.bad);
    if (load.wire_ok)
      printf(" to_server=%llu from_server=%llu", load.wire_at_end[0] - load.wire_at_warm[0],
             load.wire_at_end[1] - load.wire_at_warm[1]);
  }
  printf("\n");
  uv_close((uv_handle_t *)&warm, NULL);
  uv_close((uv_handle_t *)&end, NULL);
  wsev_ctx_free(ctx);
  free(load.payload);
  free(load.pool);
  free(seqs);
  return load.open == connections && load.bad == 0 ? 0 : 1;
}
