/* wsev-cross-load: cross-instance delivery through Redis, measured with a C client
 * (wsev's own client side), so that the servers rather than a Node client are
 * measured. S subscribers on instance B subscribe to ch0; P publishers on instance A
 * keep K publishes in flight each (a publish is done when all S deliveries arrived);
 * after a warm-up of W seconds it counts for D seconds and prints one line:
 *
 *   RESULT rate=DELIVERIES_PER_S p50_us=.. p99_us=.. deliveries=N
 *
 * usage: wsev-cross-load PORT_A PORT_B [S P K D W]   (defaults 100 1 10 3 1) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wsev.h>

#define RING 65536 /* publishes in flight, by sequence number */
#define MAX_SAMPLES (8u * 1024 * 1024)

static int n_subs, n_pubs, window, secs, warm;
static uint64_t *pub_ids;
static int subscribed, pubs_open, started, measuring, stopping;
static uint32_t pending[RING];
static uint64_t seq, delivered;
static uint32_t *lat;
static size_t n_lat;
static uint64_t t_start;
static uv_timer_t timer;

static uint64_t now_us(void) { return uv_hrtime() / 1000; }

static int is_pub(uint64_t id, int *index) {
  for (int i = 0; i < n_pubs; i++)
    if (pub_ids[i] == id) {
      *index = i;
      return 1;
    }
  return 0;
}

static void publish(wsev_ctx *ctx, int p) {
  uint64_t s = seq++;
  if (pending[s % RING]) {
    fprintf(stderr, "more than %d publishes in flight\n", RING);
    exit(1);
  }
  pending[s % RING] = (uint32_t)n_subs;
  char msg[96];
  int n = snprintf(msg, sizeof msg, "publish:ch0:%d.%" PRIu64 ":%" PRIu64, p, s, now_us());
  wsev_write_text(ctx, pub_ids[p], msg, (size_t)n);
}

static int cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void on_timer(uv_timer_t *t) {
  wsev_ctx *ctx = t->data;
  if (!started) { /* Redis has confirmed the subscriptions by now */
    started = 1;
    for (int p = 0; p < n_pubs; p++)
      for (int k = 0; k < window; k++)
        publish(ctx, p);
    uv_timer_start(t, on_timer, (uint64_t)warm * 1000, 0);
  } else if (!measuring) {
    measuring = 1;
    t_start = now_us();
    uv_timer_start(t, on_timer, (uint64_t)secs * 1000, 0);
  } else {
    double elapsed = (double)(now_us() - t_start) / 1e6;
    measuring = 0;
    stopping = 1;
    size_t n = n_lat;
    qsort(lat, n, sizeof *lat, cmp);
    printf("RESULT rate=%.1f p50_us=%u p99_us=%u deliveries=%" PRIu64 "\n",
           (double)delivered / elapsed, n ? lat[n / 2] : 0, n ? lat[(size_t)(n * 0.99)] : 0,
           delivered);
    fflush(stdout);
    wsev_stop(ctx);
  }
}

static void maybe_start(wsev_ctx *ctx) {
  if (subscribed == n_subs && pubs_open == n_pubs && !uv_is_active((uv_handle_t *)&timer) &&
      !started) {
    timer.data = ctx;
    uv_timer_start(&timer, on_timer, 500, 0);
  }
}

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  int p;
  if (is_pub(id, &p)) {
    pubs_open++;
    maybe_start(ctx);
  } else {
    wsev_write_text(ctx, id, "subscribe:ch0", 13);
  }
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  (void)type;
  int p;
  if (is_pub(id, &p)) return; /* the OKs */
  if (len == 2 && memcmp(data, "OK", 2) == 0) {
    subscribed++;
    maybe_start(ctx);
    return;
  }
  char buf[96];
  if (len >= sizeof buf) return;
  memcpy(buf, data, len);
  buf[len] = 0;
  int pub;
  uint64_t s, t;
  if (sscanf(buf, "%d.%" SCNu64 ":%" SCNu64, &pub, &s, &t) != 3 || pub < 0 || pub >= n_pubs)
    return;
  if (measuring) {
    delivered++;
    if (n_lat < MAX_SAMPLES) lat[n_lat++] = (uint32_t)(now_us() - t);
  }
  if (--pending[s % RING] == 0 && !stopping) publish(ctx, pub);
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  (void)id;
  if (!stopping) {
    fprintf(stderr, "a connection closed during the run\n");
    wsev_stop(ctx);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: wsev-cross-load PORT_A PORT_B [S P K D W]\n");
    return 2;
  }
  n_subs = argc > 3 ? atoi(argv[3]) : 100;
  n_pubs = argc > 4 ? atoi(argv[4]) : 1;
  window = argc > 5 ? atoi(argv[5]) : 10;
  secs = argc > 6 ? atoi(argv[6]) : 3;
  warm = argc > 7 ? atoi(argv[7]) : 1;
  lat = malloc(MAX_SAMPLES * sizeof *lat);
  pub_ids = calloc((size_t)n_pubs, sizeof *pub_ids);
  wsev_handler h = {.conn_accepted = on_accepted,
                    .message_received = on_message,
                    .conn_closed = on_closed};
  wsev_ctx *ctx;
  if (!lat || !pub_ids || wsev_ctx_new(&ctx, NULL, &h, NULL) != 0) return 1;
  uv_timer_init(wsev_get_loop(ctx), &timer);
  char a[64], b[64];
  snprintf(a, sizeof a, "ws://127.0.0.1:%s/", argv[1]);
  snprintf(b, sizeof b, "ws://127.0.0.1:%s/", argv[2]);
  uint64_t id;
  for (int i = 0; i < n_subs; i++)
    if (wsev_add_conn(ctx, b, NULL, &id) != 0) return 1;
  for (int p = 0; p < n_pubs; p++)
    if (wsev_add_conn(ctx, a, NULL, &pub_ids[p]) != 0) return 1;
  wsev_event_loop(ctx);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(wsev_get_loop(ctx), UV_RUN_NOWAIT);
  wsev_ctx_free(ctx);
  free(lat);
  free(pub_ids);
  return started ? 0 : 1;
}
