/* Topics (wsev_subscribe, wsev_publish ...) in one process: a context listens and
 * dials clients to itself, so every accepted (server-side) id has a client-side peer
 * in the same context that records what it receives.
 *
 *   test-topic [IO_THREADS]   semantics, order, sharing, auto-leave on close,
 *                             threads; with 0 and 2 I/O threads
 *   test-topic --alloc        allocation failure at every allocation of subscribe
 *                             and publish (inline and with 2 I/O threads): the call
 *                             fails with UV_ENOMEM and nothing changed, or succeeds
 *   test-topic --memory       bytes per subscription, measured through the allocator
 *   test-topic --federation   wsev_federate without a Redis: bad URLs, a refused
 *                             connection (down, with its reason, retried), local
 *                             delivery meanwhile, freeing while a retry is pending
 */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <wsev.h>

#include "../unit/test.h"

#define MAX_CONNS 512
#define MAX_GOT 4096

/* ---- a counting allocator that can fail ------------------------------------------ */

/* Counted and failed on the application's thread only: topics live there, and an I/O
 * thread's allocations run concurrently, so a count across threads would move with the
 * scheduling (what a thread does without memory is test-alloc's -io2 cases' matter). */
static _Atomic long allocations, fail_at; /* fail the fail_at-th allocation (0: none) */
static _Atomic long long live_bytes;
static pthread_t app_thread;

static int should_fail(void) {
  return pthread_equal(pthread_self(), app_thread) && ++allocations == fail_at;
}
static void *t_malloc(size_t n) {
  if (should_fail()) return NULL;
  void *p = malloc(n);
  if (p) live_bytes += (long long)malloc_usable_size(p);
  return p;
}
static void *t_calloc(size_t c, size_t n) {
  if (should_fail()) return NULL;
  void *p = calloc(c, n);
  if (p) live_bytes += (long long)malloc_usable_size(p);
  return p;
}
static void *t_realloc(void *old, size_t n) {
  if (should_fail()) return NULL;
  long long before = old ? (long long)malloc_usable_size(old) : 0;
  void *p = realloc(old, n);
  if (p) live_bytes += (long long)malloc_usable_size(p) - before;
  return p;
}
static void t_free(void *p) {
  if (p) live_bytes -= (long long)malloc_usable_size(p);
  free(p);
}

/* ---- the harness --------------------------------------------------------------- */

typedef struct {
  uint64_t server_id; /* the accepted side, learned from its first message */
  uint64_t client_id;
  int open;
} pair;

typedef struct {
  uint64_t client_id;
  char data[64];
  size_t len;
  int type;
} received;

static struct {
  wsev_ctx *ctx;
  int port;
  pair pairs[MAX_CONNS];
  int n_pairs, n_known, n_closed_server;
  received got[MAX_GOT];
  int n_got;
  size_t big_len[MAX_CONNS]; /* per pair: the last large message's length, 0 if none */
  int big_ok[MAX_CONNS];
  uint64_t closed_check_id; /* conn_closed of this server id checks its topics */
  int closed_checked;
} h;

static pair *pair_of_client(uint64_t id) {
  for (int i = 0; i < h.n_pairs; i++)
    if (h.pairs[i].client_id == id) return &h.pairs[i];
  return NULL;
}

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  wsev_conn_info info;
  if (wsev_get_conn_info(ctx, id, &info) != 0 || info.client) return;
  /* The server side tells its peer its id. */
  char msg[32];
  int n = snprintf(msg, sizeof msg, "id:%llu", (unsigned long long)id);
  wsev_write_text(ctx, id, msg, (size_t)n);
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  if (id == h.closed_check_id) {
    /* Still subscribed while conn_closed runs; subscribing it again is refused. */
    CHECK_EQ_INT((int)wsev_get_subscription_count(ctx, id), 2);
    CHECK_EQ_INT(wsev_subscribe(ctx, id, "x", 1), WSEV_ENOCONN);
    h.closed_checked = 1;
  }
  pair *p = pair_of_client(id);
  if (p) p->open = 0;
  else h.n_closed_server++;
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  (void)ctx;
  pair *p = pair_of_client(id);
  if (!p) return;
  if (!p->server_id && len > 3 && len < 32 && memcmp(data, "id:", 3) == 0) {
    char num[32]; /* data is not NUL-terminated */
    memcpy(num, (const char *)data + 3, len - 3);
    num[len - 3] = 0;
    p->server_id = strtoull(num, NULL, 10);
    h.n_known++;
    return;
  }
  if (len > 64) { /* a large one: all bytes 'A' + (len % 26) */
    int k = (int)(p - h.pairs), ok = 1;
    for (size_t i = 0; i < len; i++)
      if (((const char *)data)[i] != (char)('A' + len % 26)) ok = 0;
    h.big_len[k] = len;
    h.big_ok[k] = ok;
    return;
  }
  if (h.n_got < MAX_GOT) {
    received *r = &h.got[h.n_got++];
    r->client_id = id;
    memcpy(r->data, data, len);
    r->len = len;
    r->type = type;
  }
}

static int timer_fired;
static void on_timer(uv_timer_t *t) { (void)t, timer_fired = 1; }

/* Run the loop until done() (or never, when done is NULL) or `ms` have passed. */
static void run_for(uint64_t ms, int (*done)(void)) {
  uv_timer_t timer;
  uv_loop_t *loop = wsev_get_loop(h.ctx);
  uv_timer_init(loop, &timer);
  timer_fired = 0;
  uv_timer_start(&timer, on_timer, ms, 0);
  while (!timer_fired && !(done && done()))
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}
static void run_until(int (*done)(void)) { run_for(10000, done); }

static int all_known(void) { return h.n_known == h.n_pairs; }

static void setup(unsigned io_threads, int n) {
  memset(&h, 0, sizeof h);
  wsev_handler handler = {.conn_accepted = on_accepted,
                          .conn_closed = on_closed,
                          .message_received = on_message};
  CHECK_EQ_INT(wsev_ctx_new(&h.ctx, NULL, &handler, NULL), 0);
  CHECK_EQ_INT(wsev_set_io_threads(h.ctx, io_threads), 0);
  h.port = wsev_listen_and_serve_addr(h.ctx, "127.0.0.1", "0");
  CHECK(h.port > 0);
  char url[64];
  snprintf(url, sizeof url, "ws://127.0.0.1:%d/", h.port);
  for (int i = 0; i < n; i++) {
    CHECK_EQ_INT(wsev_add_conn(h.ctx, url, NULL, &h.pairs[i].client_id), 0);
    h.pairs[i].open = 1;
  }
  h.n_pairs = n;
  run_until(all_known);
  CHECK_EQ_INT(h.n_known, n);
}

static void teardown(void) {
  wsev_ctx_free(h.ctx);
  h.ctx = NULL;
}

static uint64_t S(int i) { return h.pairs[i].server_id; }

/* How many messages with this text pair i's client got since `from`. */
static int count_got(int i, const char *text, int from) {
  int n = 0;
  for (int k = from; k < h.n_got; k++)
    if (h.got[k].client_id == h.pairs[i].client_id && h.got[k].len == strlen(text) &&
        memcmp(h.got[k].data, text, h.got[k].len) == 0)
      n++;
  return n;
}

static int want_got;
static int got_enough(void) { return h.n_got >= want_got; }
/* Run until `n` more messages arrived, then a little more (to catch extra ones). */
static void expect_more(int n) {
  want_got = h.n_got + n;
  run_until(got_enough);
  run_for(20, NULL);
}
static void settle(void) { run_for(30, NULL); }

#define T(s) (s), strlen(s)

static int bigs_arrived(void) { return h.big_len[1] && h.big_len[2]; }
/* Both sides of pair 1 closed. (Freeing the context while a close handshake is
 * still going on an I/O thread is a separate matter, not a topic's.) */
static int closed_checked(void) { return h.closed_checked && !h.pairs[1].open; }

/* ---- cases -------------------------------------------------------------------- */

typedef struct {
  wsev_ctx *ctx;
  int sub_rc, unsub_rc, pub_rc;
  size_t count;
} foreign_result;

static void *foreign_thread(void *arg) {
  foreign_result *r = arg;
  r->sub_rc = wsev_subscribe(r->ctx, 1, "a", 1);
  r->unsub_rc = wsev_unsubscribe(r->ctx, 1, "a", 1);
  r->pub_rc = wsev_publish(r->ctx, "a", 1, "x", 1, WSEV_TEXT, 0);
  r->count = wsev_get_topic_subscriber_count(r->ctx, "a", 1);
  return NULL;
}

static void test_semantics(unsigned io_threads) {
  static char name[64];
  snprintf(name, sizeof name, "semantics, %u I/O threads", io_threads);
  TEST_CASE(name);
  setup(io_threads, 6);
  wsev_ctx *ctx = h.ctx;

  /* Bad arguments and unknown ids. */
  CHECK_EQ_INT(wsev_subscribe(NULL, S(0), "a", 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_subscribe(ctx, S(0), NULL, 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_subscribe(ctx, S(0), "a", 0), UV_EINVAL);
  static char too_long[WSEV_TOPIC_MAX_LEN + 1];
  memset(too_long, 'x', sizeof too_long);
  CHECK_EQ_INT(wsev_subscribe(ctx, S(0), too_long, sizeof too_long), UV_EINVAL);
  CHECK_EQ_INT(wsev_subscribe(ctx, S(0), too_long, WSEV_TOPIC_MAX_LEN), 0);
  CHECK_EQ_INT(wsev_unsubscribe(ctx, S(0), too_long, WSEV_TOPIC_MAX_LEN), 1);
  CHECK_EQ_INT(wsev_subscribe(ctx, 999999, "a", 1), WSEV_ENOCONN);
  CHECK_EQ_INT(wsev_subscribe(ctx, 0, "a", 1), WSEV_ENOCONN);
  CHECK_EQ_INT(wsev_publish(ctx, "a", 1, NULL, 3, WSEV_TEXT, 0), UV_EINVAL);
  CHECK_EQ_INT(wsev_publish(ctx, "a", 1, "x", 1, (wsev_msg_type)7, 0), UV_EINVAL);
  CHECK_EQ_INT(wsev_publish(ctx, "nobody", 6, "x", 1, WSEV_TEXT, 0), 0);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(NULL, "a", 1), 0);
  CHECK_EQ_INT(wsev_unsubscribe(NULL, 1, "a", 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_unsubscribe_all(NULL, 1), UV_EINVAL);
  CHECK_EQ_INT(wsev_publish(NULL, "a", 1, "x", 1, WSEV_TEXT, 0), UV_EINVAL);
  CHECK_EQ_UINT(wsev_get_topic_subscribers(NULL, "a", 1, NULL, 0), 0);
  CHECK_EQ_UINT(wsev_get_subscription_count(NULL, 1), 0);
  CHECK_EQ_INT(wsev_federate(NULL, "redis://127.0.0.1", NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_get_fed_state(NULL), WSEV_FED_OFF);
  CHECK(wsev_get_fed_error(NULL) == NULL);
  wsev_fed_stats fst;
  CHECK_EQ_INT(wsev_get_fed_stats(NULL, &fst), UV_EINVAL);
  CHECK_EQ_INT(wsev_unsubscribe(ctx, S(0), NULL, 1), UV_EINVAL);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, NULL, 1), 0);

  /* a: 0 1 2; b: 2 3; names are bytes ("a\0" is another topic). */
  for (int i = 0; i < 3; i++)
    CHECK_EQ_INT(wsev_subscribe(ctx, S(i), "a", 1), 0);
  CHECK_EQ_INT(wsev_subscribe(ctx, S(1), "a", 1), 1);
  CHECK_EQ_INT(wsev_subscribe(ctx, S(2), T("b")), 0);
  CHECK_EQ_INT(wsev_subscribe(ctx, S(3), T("b")), 0);
  CHECK_EQ_INT(wsev_subscribe(ctx, S(4), "a\0", 2), 0);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, "a", 1), 3);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, "a\0", 2), 1);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, T("b")), 2);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, T("c")), 0);
  CHECK_EQ_UINT(wsev_get_subscription_count(ctx, S(2)), 2);
  CHECK_EQ_UINT(wsev_get_subscription_count(ctx, S(5)), 0);
  uint64_t ids[8] = {0};
  CHECK_EQ_UINT(wsev_get_topic_subscribers(ctx, "a", 1, NULL, 0), 3);
  CHECK_EQ_UINT(wsev_get_topic_subscribers(ctx, "a", 1, ids, 2), 3);
  CHECK(ids[2] == 0); /* cap respected */
  CHECK_EQ_UINT(wsev_get_topic_subscribers(ctx, "a", 1, ids, 8), 3);
  int seen[3] = {0};
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < 3; i++)
      if (ids[k] == S(i)) seen[i]++;
  CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);

  /* Publish: each subscriber once, the type kept; except leaves one out. */
  int from = h.n_got;
  CHECK_EQ_INT(wsev_publish(ctx, "a", 1, T("hello"), WSEV_TEXT, 0), 3);
  expect_more(3);
  for (int i = 0; i < 6; i++)
    CHECK_EQ_INT(count_got(i, "hello", from), i < 3 ? 1 : 0);
  from = h.n_got;
  CHECK_EQ_INT(wsev_publish(ctx, "a", 1, T("bin"), WSEV_BINARY, S(1)), 2);
  CHECK_EQ_INT(wsev_publish(ctx, "a", 1, T("all"), WSEV_TEXT, 999999), 3);
  expect_more(5);
  for (int i = 0; i < 6; i++) {
    CHECK_EQ_INT(count_got(i, "bin", from), i == 0 || i == 2 ? 1 : 0);
    CHECK_EQ_INT(count_got(i, "all", from), i < 3 ? 1 : 0);
  }
  for (int k = from; k < h.n_got; k++)
    if (h.got[k].len == 3 && memcmp(h.got[k].data, "bin", 3) == 0)
      CHECK_EQ_INT(h.got[k].type, WSEV_BINARY);
  /* The sender left out is still subscribed. */
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, "a", 1), 3);

  /* Order per publisher: 200 messages to b arrive in order. */
  from = h.n_got;
  for (int m = 0; m < 200; m++) {
    char msg[16];
    int n = snprintf(msg, sizeof msg, "m%d", m);
    CHECK_EQ_INT(wsev_publish(ctx, T("b"), msg, (size_t)n, WSEV_TEXT, 0), 2);
  }
  expect_more(400);
  int next[6] = {0}, bad = 0;
  for (int k = from; k < h.n_got; k++) {
    pair *p = pair_of_client(h.got[k].client_id);
    int i = (int)(p - h.pairs);
    char want[16];
    int n = snprintf(want, sizeof want, "m%d", next[i]++);
    if (h.got[k].len != (size_t)n || memcmp(h.got[k].data, want, (size_t)n) != 0) bad++;
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(next[2] == 200 && next[3] == 200 && next[0] == 0);

  /* Large messages take the shared path: each subscriber gets the exact bytes. */
  static char big[70000];
  memset(big, 'A' + sizeof big % 26, sizeof big);
  CHECK_EQ_INT(wsev_publish(ctx, "a", 1, big, sizeof big, WSEV_BINARY, S(0)), 2);
  run_until(bigs_arrived);
  CHECK(h.big_len[1] == sizeof big && h.big_ok[1]);
  CHECK(h.big_len[2] == sizeof big && h.big_ok[2]);
  CHECK(h.big_len[0] == 0);

  /* Unsubscribe. */
  CHECK_EQ_INT(wsev_unsubscribe(ctx, S(0), "a", 1), 1);
  CHECK_EQ_INT(wsev_unsubscribe(ctx, S(0), "a", 1), 0);
  CHECK_EQ_INT(wsev_unsubscribe(ctx, S(0), T("zzz")), 0);
  CHECK_EQ_INT(wsev_unsubscribe(ctx, S(5), "a", 1), 0);
  CHECK_EQ_INT(wsev_unsubscribe_all(ctx, S(2)), 2);
  CHECK_EQ_INT(wsev_unsubscribe_all(ctx, S(2)), 0);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, "a", 1), 1);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, T("b")), 1);
  from = h.n_got;
  CHECK_EQ_INT(wsev_publish(ctx, "a", 1, T("after"), WSEV_TEXT, 0), 1);
  expect_more(1);
  for (int i = 0; i < 6; i++)
    CHECK_EQ_INT(count_got(i, "after", from), i == 1 ? 1 : 0);

  /* Other threads are refused. */
  foreign_result fr = {.ctx = ctx};
  pthread_t th;
  pthread_create(&th, NULL, foreign_thread, &fr);
  pthread_join(th, NULL);
  CHECK_EQ_INT(fr.sub_rc, WSEV_EWRONGTHREAD);
  CHECK_EQ_INT(fr.unsub_rc, WSEV_EWRONGTHREAD);
  CHECK_EQ_INT(fr.pub_rc, WSEV_EWRONGTHREAD);
  CHECK_EQ_UINT(fr.count, 0);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, "a", 1), 1);

  /* A closed connection leaves all its topics by itself: S(1) is in a and b. */
  CHECK_EQ_INT(wsev_subscribe(ctx, S(1), T("b")), 0);
  h.closed_check_id = S(1);
  CHECK_EQ_INT(wsev_close(ctx, h.pairs[1].client_id), 0);
  run_until(closed_checked);
  CHECK(h.closed_checked);
  CHECK_EQ_UINT(wsev_get_subscription_count(ctx, S(1)), 0);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, "a", 1), 0);
  CHECK_EQ_UINT(wsev_get_topic_subscriber_count(ctx, T("b")), 1);
  CHECK_EQ_INT(wsev_subscribe(ctx, S(1), "a", 1), WSEV_ENOCONN);
  CHECK_EQ_INT(wsev_publish(ctx, "a", 1, T("gone"), WSEV_TEXT, 0), 0);

  /* Subscriptions left at wsev_ctx_free are freed with it (valgrind/ASan check). */
  CHECK_EQ_INT(wsev_subscribe(ctx, S(5), T("left-over")), 0);
  teardown();
}

/* Many connections, many topics, random operations against a model. */
static void test_model(unsigned io_threads) {
  static char name[64];
  snprintf(name, sizeof name, "against a model, %u I/O threads", io_threads);
  TEST_CASE(name);
  enum { N = 40, TOPICS = 12 };
  setup(io_threads, N);
  static int model[N][TOPICS];
  memset(model, 0, sizeof model);
  unsigned seed = 12345;
  for (int step = 0; step < 20000; step++) {
    seed = seed * 1103515245 + 12345;
    int i = (int)((seed >> 8) % N), t = (int)((seed >> 16) % TOPICS), op = (int)((seed >> 24) % 8);
    char tn[8];
    int tl = snprintf(tn, sizeof tn, "t%d", t);
    if (op < 4) {
      CHECK_EQ_INT(wsev_subscribe(h.ctx, S(i), tn, (size_t)tl), model[i][t] ? 1 : 0);
      model[i][t] = 1;
    } else if (op < 7) {
      CHECK_EQ_INT(wsev_unsubscribe(h.ctx, S(i), tn, (size_t)tl), model[i][t] ? 1 : 0);
      model[i][t] = 0;
    } else if (step % 16 == 7) {
      int n = 0;
      for (int k = 0; k < TOPICS; k++)
        n += model[i][k], model[i][k] = 0;
      CHECK_EQ_INT(wsev_unsubscribe_all(h.ctx, S(i)), n);
    }
  }
  for (int t = 0; t < TOPICS; t++) {
    char tn[8];
    int tl = snprintf(tn, sizeof tn, "t%d", t), n = 0;
    for (int i = 0; i < N; i++)
      n += model[i][t];
    CHECK_EQ_UINT(wsev_get_topic_subscriber_count(h.ctx, tn, (size_t)tl), (size_t)n);
    uint64_t ids[N];
    CHECK_EQ_UINT(wsev_get_topic_subscribers(h.ctx, tn, (size_t)tl, ids, N), (size_t)n);
    for (int k = 0; k < n && k < N; k++) {
      int found = 0;
      for (int i = 0; i < N; i++)
        if (S(i) == ids[k] && model[i][t]) found = 1;
      CHECK(found);
    }
    /* Publish with every subscriber excluded in turn reaches n-1 of them. */
    int rc = wsev_publish(h.ctx, tn, (size_t)tl, "p", 1, WSEV_TEXT, n ? ids[0] : 0);
    CHECK_EQ_INT(rc, n ? n - 1 : 0);
  }
  for (int i = 0; i < N; i++) {
    int n = 0;
    for (int t = 0; t < TOPICS; t++)
      n += model[i][t];
    CHECK_EQ_UINT(wsev_get_subscription_count(h.ctx, S(i)), (size_t)n);
  }
  settle();
  teardown();
}

/* ---- allocation failure ----------------------------------------------------------- */

static size_t snapshot(char *out, size_t cap) {
  /* Every topic's count and every connection's count, as one string. */
  size_t o = 0;
  for (int t = 0; t < 30; t++) {
    char tn[8];
    int tl = snprintf(tn, sizeof tn, "t%d", t);
    o += (size_t)snprintf(out + o, cap - o, "%zu,", wsev_get_topic_subscriber_count(h.ctx, tn, (size_t)tl));
  }
  for (int i = 0; i < h.n_pairs; i++)
    o += (size_t)snprintf(out + o, cap - o, "%zu;", wsev_get_subscription_count(h.ctx, S(i)));
  return o;
}

static void test_alloc(unsigned io_threads) {
  static char name[64];
  snprintf(name, sizeof name, "allocation failure, %u I/O threads", io_threads);
  TEST_CASE(name);
  setup(io_threads, 24);
  static char before[4096], after[4096];
  long failures = 0, calls = 0;
  /* 24 connections x 30 topics: grows the tables (16, 32 ... entries), the topics'
   * arrays (4, 8, 16) and the connection map, each at some point of the sweep. */
  for (int t = 0; t < 30; t++) {
    for (int i = 0; i < h.n_pairs; i++) {
      if ((i + t) % 3 == 0) continue;
      char tn[8];
      int tl = snprintf(tn, sizeof tn, "t%d", t);
      for (long n = 1;; n++) {
        snapshot(before, sizeof before);
        allocations = 0;
        fail_at = n;
        int rc = wsev_subscribe(h.ctx, S(i), tn, (size_t)tl);
        fail_at = 0;
        calls++;
        if (rc == UV_ENOMEM) {
          failures++;
          snapshot(after, sizeof after);
          CHECK(strcmp(before, after) == 0);
          continue;
        }
        CHECK_EQ_INT(rc, 0);
        CHECK(allocations < n); /* it succeeded only once no allocation failed */
        break;
      }
    }
  }
  CHECK(failures > 0);
  /* Unsubscribing never allocates. */
  allocations = 0;
  CHECK_EQ_INT(wsev_unsubscribe(h.ctx, S(1), "t0", 2), 1);
  CHECK_EQ_INT(wsev_unsubscribe_all(h.ctx, S(2)) > 0, 1);
  CHECK_EQ_INT((int)allocations, 0);

  /* Publish: small (copied per queue) and large (a shared frame; with threads, one
   * batch per thread): a failed publish reaches nobody. */
  size_t sizes[2] = {16, 5000};
  for (int s = 0; s < 2; s++) {
    static char msg[5000];
    int delivered_before = 0;
    for (int k = 0; k < h.n_pairs; k++)
      delivered_before += h.big_len[k] ? 1 : 0;
    for (long n = 1;; n++) {
      memset(msg, 'A' + sizes[s] % 26, sizeof msg);
      int got_before = h.n_got;
      memset(h.big_len, 0, sizeof h.big_len);
      allocations = 0;
      fail_at = n;
      int rc = wsev_publish(h.ctx, "t1", 2, msg, sizes[s], WSEV_BINARY, 0);
      fail_at = 0;
      settle();
      int got = h.n_got - got_before;
      for (int k = 0; k < h.n_pairs; k++)
        got += h.big_len[k] ? 1 : 0;
      if (rc == UV_ENOMEM) {
        failures++;
        if (io_threads == 0) CHECK_EQ_INT(got, 0);
        continue;
      }
      CHECK(rc > 0);
      CHECK_EQ_INT(got, rc);
      break;
    }
    (void)delivered_before;
  }
  printf("%s: %ld calls, %ld failed with UV_ENOMEM\n", name, calls, failures);
  teardown();
}

/* ---- memory per subscription ------------------------------------------------------- */

static void measure(int conns, int topics, int per_conn) {
  setup(0, conns);
  long long base = live_bytes;
  int subs = 0;
  for (int i = 0; i < conns; i++)
    for (int k = 0; k < per_conn; k++) {
      char tn[16];
      int t = (i * per_conn + k) % topics;
      int tl = snprintf(tn, sizeof tn, "topic-%d", t);
      if (wsev_subscribe(h.ctx, S(i), tn, (size_t)tl) == 0) subs++;
    }
  long long used = live_bytes - base;
  double per = (double)used / subs;
  printf("%d connections, %d topics, %d subscriptions: %lld bytes, %.1f bytes per subscription\n",
         conns, topics, subs, used, per);
  /* What wsev.h states: under 100 bytes with many subscribers per topic; a topic
   * with a single subscriber carries the topic's own cost (name, arrays, entry). */
  CHECK(per < (topics >= subs ? 320.0 : 100.0));
  for (int i = 0; i < conns; i++)
    wsev_unsubscribe_all(h.ctx, S(i));
  /* Everything came back but the registry entry (the tables go with the last
   * subscription). */
  long long kept = live_bytes - base;
  printf("after every unsubscribe: %lld bytes kept\n", kept);
  CHECK(kept < 128);
  teardown();
}

/* ---- federation: the API without a Redis (the Redis cases are test/redis) ------------ */

static int fed_changes, fed_last_state;
static char fed_last_reason[512];
static void on_fed(wsev_ctx *ctx, wsev_fed_state state, const char *reason) {
  (void)ctx;
  fed_changes++;
  fed_last_state = state;
  snprintf(fed_last_reason, sizeof fed_last_reason, "%s", reason ? reason : "");
}
static int fed_down(void) { return fed_last_state == WSEV_FED_DOWN && fed_changes >= 3; }

static void test_federation_api(void) {
  TEST_CASE("federation API");
  setup(0, 2);
  wsev_ctx *ctx = h.ctx;
  CHECK_EQ_INT(wsev_get_fed_state(ctx), WSEV_FED_OFF);
  CHECK(wsev_get_fed_error(ctx) == NULL);
  wsev_fed_stats st;
  CHECK_EQ_INT(wsev_get_fed_stats(ctx, NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_get_fed_stats(ctx, &st), 0);
  CHECK(st.published == 0 && st.dropped == 0);
  CHECK_EQ_INT(wsev_federate(NULL, "redis://127.0.0.1", NULL), UV_EINVAL);
  CHECK_EQ_INT(wsev_federate(ctx, NULL, NULL), UV_EINVAL);
  const char *bad[] = {"", "http://x", "redis://", "redis://:pw@", "redis://h:0", "redis://h:70000",
                       "redis://h:12x", "redis://h/abc", "redis://[::1", "redis://h?x",
                       "redis://pw@h"};
#ifdef WSEV_TEST_NO_REDIS
  CHECK_EQ_INT(wsev_federate(ctx, "redis://127.0.0.1", NULL), UV_ENOTSUP);
  CHECK_EQ_INT(wsev_get_fed_state(ctx), WSEV_FED_OFF);
  (void)bad, (void)fed_down, (void)on_fed;
#else
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK_EQ_INT(wsev_federate(ctx, bad[i], NULL), WSEV_EBADURL);
  CHECK_EQ_INT(wsev_get_fed_state(ctx), WSEV_FED_OFF);
  /* A port nobody listens on: refused, then down with the reason, and retried. */
  uv_tcp_t probe;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_init(wsev_get_loop(ctx), &probe);
  uv_tcp_bind(&probe, (const struct sockaddr *)&addr, 0);
  int len = sizeof addr;
  uv_tcp_getsockname(&probe, (struct sockaddr *)&addr, &len);
  uv_close((uv_handle_t *)&probe, NULL); /* closed: connections to it are refused */
  char url[96];
  snprintf(url, sizeof url, "redis://:secret@127.0.0.1:%d/3", ntohs(addr.sin_port));
  CHECK_EQ_INT(wsev_federate(ctx, url, on_fed), 0);
  CHECK_EQ_INT(wsev_federate(ctx, url, on_fed), UV_EALREADY);
  CHECK_EQ_INT(fed_changes, 0); /* never inside the call */
  /* Topics and publishes go on locally meanwhile. */
  CHECK_EQ_INT(wsev_subscribe(ctx, S(0), T("f")), 0);
  run_until(fed_down);
  CHECK_EQ_INT(fed_last_state, WSEV_FED_DOWN);
  if (!strstr(fed_last_reason, "cannot connect")) printf("reason: %s\n", fed_last_reason);
  CHECK(strstr(fed_last_reason, "cannot connect") != NULL);
  CHECK_EQ_INT(wsev_get_fed_state(ctx), WSEV_FED_DOWN);
  CHECK(wsev_get_fed_error(ctx) && strstr(wsev_get_fed_error(ctx), "cannot connect"));
  int from = h.n_got;
  CHECK_EQ_INT(wsev_publish(ctx, T("f"), T("local"), WSEV_TEXT, 0), 1);
  expect_more(1);
  CHECK_EQ_INT(count_got(0, "local", from), 1);
  CHECK_EQ_INT(wsev_get_fed_stats(ctx, &st), 0);
  CHECK(st.dropped >= 1 && st.published == 0 && st.received == 0);
  /* A few retries, then the context goes while one is pending. */
  run_for(300, NULL);
  CHECK(fed_changes >= 5);
#endif
  teardown();
}

int main(int argc, char **argv) {
  app_thread = pthread_self();
  wsev_replace_allocator(t_malloc, t_realloc, t_calloc, t_free);
  if (argc > 1 && strcmp(argv[1], "--alloc") == 0) {
    test_alloc(0);
    test_alloc(2);
  } else if (argc > 1 && strcmp(argv[1], "--federation") == 0) {
    test_federation_api();
  } else if (argc > 1 && strcmp(argv[1], "--memory") == 0) {
    TEST_CASE("memory");
    measure(400, 20, 20);  /* 8,000 subscriptions: 400 subscribers per topic */
    measure(400, 400, 1);  /* one subscriber per topic: a topic's whole cost each */
  } else {
    unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 0;
    const char *only = argc > 2 ? argv[2] : "";
    if (strcmp(only, "model") != 0) test_semantics(threads);
    if (strcmp(only, "semantics") != 0) test_model(threads);
  }
  CHECK_EQ_INT((int)live_bytes, 0);
  return TEST_REPORT();
}
