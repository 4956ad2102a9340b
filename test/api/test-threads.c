/* The way in from other threads. Eight foreign threads post calls and sends, a million
 * between them by default (argv[1] sets the number per thread), while connections
 * open and close: every call runs exactly once, in each thread's order, inside the
 * serialized stream; every send to the two readers arrives exactly once, in each
 * thread's order; sends to closed ids are dropped without harm. Any other function
 * called from a foreign thread is refused without effect. Runs under ASan, TSan and
 * valgrind (with fewer calls). */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <wsev.h>

#include "../unit/test.h"
#include "raw-client.h"

enum { POSTERS = 8, READERS = 2, CHURN = 200 };

static long per_thread = 125000; /* calls per poster: half posts, half sends */
static int port;
static wsev_ctx *ctx;
static pthread_t app_thread;

/* Written on the context's thread only (the posted calls run there). */
static long calls_run, calls_out_of_order, calls_off_thread;
static long last_call[POSTERS];
static uint64_t reader_ids[READERS];
static int accepted_readers;
static long closed_events, churn_accepted;

static atomic_int readers_ready;
static atomic_ullong latest_churn_id;
static atomic_int posters_done;

/* ---- a raw client ---------------------------------------------------------------- */

static int connect_upgraded(const char *path) { return raw_connect_upgraded(port, path); }

typedef struct {
  int fd;
  long expected, received, out_of_order;
  long last[POSTERS];
  uint8_t buf[65536];
  size_t len, off;
} reader;

static int read_byte(reader *r, uint8_t *b) {
  if (r->off == r->len) {
    ssize_t n = read(r->fd, r->buf, sizeof r->buf);
    if (n <= 0) return -1;
    r->len = (size_t)n;
    r->off = 0;
  }
  *b = r->buf[r->off++];
  return 0;
}

/* Reads "T<thread> <seq>" text frames until it has `expected`. */
static void *reader_main(void *arg) {
  reader *r = arg;
  for (int t = 0; t < POSTERS; t++)
    r->last[t] = -1;
  if ((r->fd = connect_upgraded("/reader")) < 0) return NULL;
  while (r->received < r->expected) {
    uint8_t h[2], payload[64];
    if (read_byte(r, &h[0]) || read_byte(r, &h[1])) break;
    size_t n = h[1] & 0x7f;
    if ((h[0] & 0x0f) != 1 || n >= sizeof payload) break;
    for (size_t i = 0; i < n; i++)
      if (read_byte(r, &payload[i])) return NULL;
    payload[n] = 0;
    int t;
    long seq;
    if (sscanf((char *)payload, "T%d %ld", &t, &seq) != 2 || t < 0 || t >= POSTERS) break;
    if (seq <= r->last[t]) r->out_of_order++;
    r->last[t] = seq;
    r->received++;
  }
  close(r->fd);
  return NULL;
}

static void *churn_main(void *arg) {
  (void)arg;
  for (int i = 0; i < CHURN && !atomic_load(&posters_done); i++) {
    int fd = connect_upgraded("/churn");
    if (fd >= 0) close(fd);
  }
  return NULL;
}

/* ---- the foreign threads ---------------------------------------------------------- */

static void on_posted(wsev_ctx *c, void *arg) {
  uintptr_t v = (uintptr_t)arg;
  int t = (int)(v >> 32);
  long seq = (long)(v & 0xffffffff);
  if (c != ctx || !pthread_equal(pthread_self(), app_thread)) calls_off_thread++;
  if (seq <= last_call[t]) calls_out_of_order++;
  last_call[t] = seq;
  calls_run++;
}

static atomic_int refusals_ok;

static void *poster_main(void *arg) {
  int t = (int)(intptr_t)arg;
  while (!atomic_load(&readers_ready))
    usleep(1000);
  /* Anything but the post functions is refused from here, without effect. */
  if (wsev_write(ctx, reader_ids[0], "x", 1) == WSEV_EWRONGTHREAD &&
      wsev_set_timeout(ctx, 1) == WSEV_EWRONGTHREAD && wsev_get_timeout(ctx) == 0 &&
      wsev_get_ctx_data(ctx) == NULL && wsev_close(ctx, reader_ids[0]) == WSEV_EWRONGTHREAD &&
      wsev_listen_and_serve(ctx, "0") == WSEV_EWRONGTHREAD)
    atomic_fetch_add(&refusals_ok, 1);
  wsev_stop(ctx);     /* nothing */
  wsev_ctx_free(ctx); /* nothing */
  char msg[32];
  for (long i = 0; i < per_thread; i++) {
    if (i % 2 == 0) {
      while (wsev_post(ctx, on_posted, (void *)((uintptr_t)t << 32 | (uintptr_t)i)) != 0)
        usleep(100);
    } else {
      int n = snprintf(msg, sizeof msg, "T%d %ld", t, i);
      uint64_t id = reader_ids[(i / 2) % READERS];
      while (wsev_post_write(ctx, id, msg, (size_t)n, WSEV_TEXT) != 0)
        usleep(100);
      if (i % 64 == 1) /* a connection that closes, or closed already */
        wsev_post_write(ctx, atomic_load(&latest_churn_id), msg, (size_t)n, WSEV_BINARY);
      if (i % 1024 == 3) {
        uint64_t ids[3] = {atomic_load(&latest_churn_id), 999999999, 0};
        wsev_post_broadcast(ctx, ids, 3, "b", 1, WSEV_BINARY);
      }
    }
  }
  atomic_fetch_add(&posters_done, 1);
  return NULL;
}

/* ---- the context's side ------------------------------------------------------------ */

static void on_accepted(wsev_ctx *c, uint64_t id) {
  wsev_conn_info info;
  if (wsev_get_conn_info(c, id, &info) != 0) return;
  if (strcmp(info.path, "/churn") == 0) {
    churn_accepted++;
    atomic_store(&latest_churn_id, id);
    return;
  }
  reader_ids[accepted_readers++] = id;
  if (accepted_readers == READERS) atomic_store(&readers_ready, 1);
}

static void on_closed(wsev_ctx *c, uint64_t id) {
  (void)c;
  (void)id;
  closed_events++;
}

static void on_check(uv_timer_t *t) {
  if (atomic_load(&posters_done) == POSTERS && calls_run == POSTERS * (per_thread / 2))
    wsev_shutdown(t->data, 2000);
}

int main(int argc, char **argv) {
  if (argc > 1) per_thread = atol(argv[1]) & ~1L;
  app_thread = pthread_self();
  for (int t = 0; t < POSTERS; t++)
    last_call[t] = -1;
  wsev_handler h = {.conn_accepted = on_accepted, .conn_closed = on_closed};
  CHECK_EQ_INT(wsev_ctx_new(&ctx, NULL, &h, NULL), 0);
  wsev_set_timeout(ctx, 0);
  port = wsev_listen_and_serve_addr(ctx, "127.0.0.1", "0");
  CHECK(port > 0);

  static reader readers[READERS];
  pthread_t reader_threads[READERS], posters[POSTERS], churn;
  for (int r = 0; r < READERS; r++) {
    readers[r].expected = POSTERS * (per_thread / 2) / READERS;
    pthread_create(&reader_threads[r], NULL, reader_main, &readers[r]);
  }
  pthread_create(&churn, NULL, churn_main, NULL);
  for (int t = 0; t < POSTERS; t++)
    pthread_create(&posters[t], NULL, poster_main, (void *)(intptr_t)t);

  uv_timer_t check;
  uv_timer_init(wsev_get_loop(ctx), &check);
  check.data = ctx;
  uv_timer_start(&check, on_check, 10, 10);
  uv_unref((uv_handle_t *)&check);
  CHECK_EQ_INT(wsev_event_loop(ctx), 0); /* until the shutdown has closed everything */
  uv_close((uv_handle_t *)&check, NULL);

  for (int t = 0; t < POSTERS; t++)
    pthread_join(posters[t], NULL);
  pthread_join(churn, NULL);
  for (int r = 0; r < READERS; r++)
    pthread_join(reader_threads[r], NULL);
  wsev_ctx_free(ctx);

  long sent = POSTERS * (per_thread / 2);
  printf("%ld calls run, %ld messages read, %ld churn connections, %ld conn_closed\n", calls_run,
         readers[0].received + readers[1].received, churn_accepted, closed_events);
  CHECK_EQ_INT(calls_run, sent);
  CHECK_EQ_INT(calls_out_of_order, 0);
  CHECK_EQ_INT(calls_off_thread, 0);
  for (int r = 0; r < READERS; r++) {
    CHECK_EQ_INT(readers[r].received, readers[r].expected);
    CHECK_EQ_INT(readers[r].out_of_order, 0);
  }
  CHECK_EQ_INT(atomic_load(&refusals_ok), POSTERS);
  CHECK_EQ_INT(closed_events, churn_accepted + READERS); /* exactly one each */
  return TEST_REPORT();
}
