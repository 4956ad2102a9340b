/* The public API, end to end in one process: the application's loop runs in the
 * main thread (embedding), and scripted clients with blocking sockets run in a
 * second thread. Checks callbacks, ordering, ids, errors, timeouts, multi-port
 * listening, writes and closes from callbacks, and that freeing leaves the
 * caller's loop with no handle of ours. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <wsev.h>

#include "../common/test-ctx.h"

static int failures, checks;
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    checks++;                                                                                      \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                     \
    }                                                                                              \
  } while (0)

/* ---- events seen by the application (loop thread only) ------------------------- */

enum { MAX_EVENTS = 4096 };
typedef struct {
  char kind; /* 'A' accepted, 'M' message, 'C' closed, 'T' timeout */
  uint64_t id;
  wsev_msg_type type;
  size_t len;
  char text[64];
} event;

static event events[MAX_EVENTS];
static int n_events;
static int in_callback; /* to catch re-entrance */
static int reentered;
static uint64_t last_closed_id;
static int write_after_close_rc = 1;

static void record(char kind, uint64_t id, wsev_msg_type type, const void *data, size_t len) {
  if (n_events >= MAX_EVENTS) return;
  event *e = &events[n_events++];
  e->kind = kind;
  e->id = id;
  e->type = type;
  e->len = len;
  size_t n = len < sizeof e->text - 1 ? len : sizeof e->text - 1;
  if (data) memcpy(e->text, data, n);
  e->text[n] = 0;
}

#define ENTER()                                                                                    \
  do {                                                                                             \
    if (in_callback) reentered++;                                                                  \
    in_callback = 1;                                                                               \
  } while (0)
#define LEAVE() in_callback = 0

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  ENTER();
  record('A', id, 0, NULL, 0);
  /* A write from inside conn_accepted goes out after the 101. */
  CHECK(wsev_write_text(ctx, id, "welcome", 7) == 0);
  LEAVE();
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  ENTER();
  record('C', id, 0, NULL, 0);
  last_closed_id = id;
  write_after_close_rc = wsev_write(ctx, id, "x", 1);
  LEAVE();
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  ENTER();
  record('M', id, type, data, len);
  if (len == 5 && memcmp(data, "close", 5) == 0) {
    CHECK(wsev_close(ctx, id) == 0);
    CHECK(wsev_close(ctx, id) == WSEV_ECLOSING);
    CHECK(wsev_write(ctx, id, "late", 4) == WSEV_ECLOSING);
  } else if (len > 4 && memcmp(data, "all:", 4) == 0) {
    /* Write to every connection seen so far, from one callback. */
    for (int i = 0; i < n_events; i++)
      if (events[i].kind == 'A') wsev_write_text(ctx, events[i].id, data, len);
  } else if (type == WSEV_TEXT) {
    CHECK(wsev_write_text(ctx, id, data, len) == 0);
  } else {
    CHECK(wsev_write(ctx, id, data, len) == 0);
  }
  LEAVE();
}

static int timeouts;
static void on_timeout(wsev_ctx *ctx) {
  ENTER();
  (void)ctx;
  timeouts++;
  LEAVE();
}

/* ---- a blocking client with our own framing ------------------------------------- */

typedef struct {
  int fd;
} client;

static int client_connect(int port, client *cl) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  struct timeval tv = {.tv_sec = 5};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("connect");
    close(fd);
    return -1;
  }
  cl->fd = fd;
  const char *req = "GET /chat?x=1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n";
  if (write(fd, req, strlen(req)) < 0) return -1;
  /* Read the response up to the blank line, one byte at a time so no frame byte is
   * consumed. */
  char resp[1024];
  size_t n = 0;
  while (n < sizeof resp - 1) {
    if (read(fd, resp + n, 1) != 1) {
      perror("read response");
      return -1;
    }
    n++;
    if (n >= 4 && memcmp(resp + n - 4, "\r\n\r\n", 4) == 0) break;
  }
  resp[n] = 0;
  if (strncmp(resp, "HTTP/1.1 101", 12) != 0) {
    fprintf(stderr, "unexpected response: %s\n", resp);
    return -1;
  }
  if (!strstr(resp, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")) {
    fprintf(stderr, "bad accept: %s\n", resp);
    return -1;
  }
  return 0;
}

static void client_send(client *cl, int opcode, const void *data, size_t len) {
  uint8_t frame[256];
  const uint8_t mask[4] = {1, 2, 3, 4};
  size_t h = 0;
  frame[h++] = (uint8_t)(0x80 | opcode);
  frame[h++] = (uint8_t)(0x80 | len); /* short payloads only */
  memcpy(frame + h, mask, 4);
  h += 4;
  for (size_t i = 0; i < len; i++)
    frame[h + i] = ((const uint8_t *)data)[i] ^ mask[i % 4];
  if (write(cl->fd, frame, h + len) < 0) perror("write");
}

static int read_full(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

/* Reads one (short, unmasked) frame; returns its opcode, or -1. */
static int client_recv(client *cl, char *payload, size_t *len) {
  uint8_t h[2];
  if (read_full(cl->fd, h, 2)) return -1;
  if (h[1] & 0x80 || (h[1] & 0x7f) > 125) return -1;
  *len = h[1] & 0x7f;
  if (read_full(cl->fd, payload, *len)) return -1;
  payload[*len] = 0;
  return h[0] & 0x0f;
}

static int expect_text(client *cl, const char *want) {
  char buf[128];
  size_t len;
  int op = client_recv(cl, buf, &len);
  return op == 1 && len == strlen(want) && memcmp(buf, want, len) == 0;
}

/* ---- the scripted clients --------------------------------------------------------- */

static int port_a, port_b;
static uv_async_t done_async;
static _Atomic int client_ok;

static void *client_script(void *arg) {
  (void)arg;
  client c1 = {-1}, c2 = {-1};
  int ok = 1;
  char buf[128];
  size_t len;
#define STEP(cond)                                                                                 \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "client step failed at line %d: %s\n", __LINE__, #cond);                     \
      ok = 0;                                                                                      \
      goto out;                                                                                    \
    }                                                                                              \
  } while (0)
  STEP(client_connect(port_a, &c1) == 0);
  STEP(expect_text(&c1, "welcome"));
  STEP(client_connect(port_b, &c2) == 0); /* the second listener */
  STEP(expect_text(&c2, "welcome"));
  client_send(&c1, 1, "hello", 5);
  STEP(expect_text(&c1, "hello"));
  client_send(&c2, 2, "\x01\x02", 2);
  STEP(client_recv(&c2, buf, &len) == 2 && len == 2);
  client_send(&c1, 1, "all:fanout", 10);
  STEP(expect_text(&c1, "all:fanout"));
  STEP(expect_text(&c2, "all:fanout"));
  /* The server closes c1 on request: close 1000, we answer, then EOF. */
  client_send(&c1, 1, "close", 5);
  STEP(client_recv(&c1, buf, &len) == 8 && len == 2 && (uint8_t)buf[0] == 0x03 &&
       (uint8_t)buf[1] == 0xE8);
  client_send(&c1, 8, "\x03\xe8", 2);
  STEP(read(c1.fd, buf, 1) == 0);
  /* c2 closes from its side with 4000 "bye": the code is echoed. */
  client_send(&c2, 8,
              "\x0f\xa0"
              "bye",
              5);
  STEP(client_recv(&c2, buf, &len) == 8 && len == 2 && (uint8_t)buf[0] == 0x0f &&
       (uint8_t)buf[1] == 0xa0);
  STEP(read(c2.fd, buf, 1) == 0);
out:
  close(c1.fd);
  close(c2.fd);
  client_ok = ok;
  uv_async_send(&done_async);
  return NULL;
}

static void on_done(uv_async_t *a) { uv_close((uv_handle_t *)a, NULL); }

static void test_embedded(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  wsev_handler h = {.conn_accepted = on_accepted,
                    .conn_closed = on_closed,
                    .message_received = on_message,
                    .event_loop_timeout = on_timeout};
  wsev_ctx *ctx = NULL;
  int app_data = 42;
  CHECK(test_ctx_new(&ctx, &loop, &h, &app_data) == 0);
  CHECK(wsev_get_ctx_data(ctx) == &app_data);
  CHECK(wsev_get_loop(ctx) == &loop);
  CHECK(wsev_get_timeout(ctx) == 60000);

  /* Bad ports are refused at once. */
  const char *bad[] = {"", "abc", "70000", "-1", "123456", "80a", " 80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK(wsev_listen_and_serve_addr(ctx, "127.0.0.1", bad[i]) == WSEV_EBADPORT);
  CHECK(wsev_listen_and_serve_addr(ctx, "not-an-ip", "0") == UV_EINVAL);

  port_a = wsev_listen_and_serve_addr(ctx, "127.0.0.1", "0");
  port_b = wsev_listen_and_serve(ctx, "0");
  CHECK(port_a > 0 && port_b > 0 && port_a != port_b);
  char in_use[16];
  snprintf(in_use, sizeof in_use, "%d", port_a);
  CHECK(wsev_listen_and_serve_addr(ctx, "127.0.0.1", in_use) == UV_EADDRINUSE);

  uv_async_init(&loop, &done_async, on_done);
  pthread_t t;
  pthread_create(&t, NULL, client_script, NULL);
  /* The caller runs its own loop; wsev's callbacks fire from it. The async
   * handle closes when the client is done; wsev's handles keep the loop alive,
   * so run until the client finished and the events settled. */
  while (uv_is_active((uv_handle_t *)&done_async) || !uv_is_closing((uv_handle_t *)&done_async))
    uv_run(&loop, UV_RUN_ONCE);
  pthread_join(t, NULL);
  for (int i = 0; i < 20 && n_events < 7; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(client_ok);
  CHECK(!reentered);

  /* Ordering per id: A, then its messages, then exactly one C. */
  uint64_t ids[2] = {0, 0};
  int n_ids = 0;
  for (int i = 0; i < n_events; i++)
    if (events[i].kind == 'A' && n_ids < 2) ids[n_ids++] = events[i].id;
  CHECK(n_ids == 2);
  CHECK(ids[0] != 0 && ids[1] != 0 && ids[1] != ids[0]); /* not in order: threads stripe them */
  for (int k = 0; k < n_ids; k++) {
    int phase = 0, closes = 0;
    for (int i = 0; i < n_events; i++) {
      if (events[i].id != ids[k]) continue;
      if (events[i].kind == 'A') {
        CHECK(phase == 0);
        phase = 1;
      }
      if (events[i].kind == 'M') CHECK(phase == 1);
      if (events[i].kind == 'C') {
        CHECK(phase == 1);
        phase = 2;
        closes++;
      }
    }
    CHECK(closes == 1);
  }
  /* Message types reached the application. */
  int saw_text = 0, saw_binary = 0;
  for (int i = 0; i < n_events; i++) {
    if (events[i].kind != 'M') continue;
    if (events[i].type == WSEV_TEXT && strcmp(events[i].text, "hello") == 0) saw_text = 1;
    if (events[i].type == WSEV_BINARY && events[i].len == 2) saw_binary = 1;
  }
  CHECK(saw_text && saw_binary);
  CHECK(last_closed_id != 0);
  CHECK(write_after_close_rc == WSEV_ENOCONN);
  CHECK(wsev_write(ctx, ids[0], "x", 1) == WSEV_ENOCONN);
  CHECK(wsev_close(ctx, ids[1]) == WSEV_ENOCONN);
  CHECK(wsev_write(ctx, 0, "x", 1) == WSEV_ENOCONN);
  CHECK(wsev_get_buffered_amount(ctx, ids[0]) == 0);

  /* Freeing on the caller's loop: after one more run nothing of ours is left, so
   * the loop ends and closes cleanly. */
  wsev_ctx_free(ctx);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

/* ---- the loop timeout on a private loop ------------------------------------------ */

static int private_timeouts;
static void on_private_timeout(wsev_ctx *ctx) {
  if (++private_timeouts == 3) wsev_stop(ctx);
}

static void test_timeout_private_loop(void) {
  wsev_handler h = {.event_loop_timeout = on_private_timeout};
  wsev_ctx *ctx;
  CHECK(test_ctx_new(&ctx, NULL, &h, NULL) == 0);
  wsev_set_timeout(ctx, 30);
  CHECK(wsev_get_timeout(ctx) == 30);
  uint64_t start = uv_hrtime();
  CHECK(wsev_event_loop(ctx) == 0);
  uint64_t ms = (uv_hrtime() - start) / 1000000;
  CHECK(private_timeouts == 3);
  CHECK(ms >= 85); /* three timeouts of 30 ms, each re-armed (with 1 ms timer slack) */
  wsev_ctx_free(ctx);
  wsev_ctx_free(NULL);
}

/* ---- graceful shutdown on a caller's loop ---------------------------------------- */

static int sd_port;
static _Atomic int sd_client_ok;

static void *shutdown_client(void *arg) {
  (void)arg;
  client c = {-1};
  char buf[128];
  size_t len;
  int ok = client_connect(sd_port, &c) == 0 && expect_text(&c, "welcome") &&
           /* the server's 1001, our answer, then EOF */
           client_recv(&c, buf, &len) == 8 && len == 2 && (uint8_t)buf[0] == 0x03 &&
           (uint8_t)buf[1] == 0xE9;
  if (ok) client_send(&c, 8, "\x03\xe9", 2);
  ok = ok && read(c.fd, buf, 1) == 0;
  close(c.fd);
  sd_client_ok = ok;
  uv_async_send(&done_async);
  return NULL;
}

static void test_shutdown_embedded(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  wsev_handler h = {.conn_accepted = on_accepted, .conn_closed = on_closed};
  wsev_ctx *ctx = NULL;
  CHECK(test_ctx_new(&ctx, &loop, &h, NULL) == 0);
  sd_port = wsev_listen_and_serve_addr(ctx, "127.0.0.1", "0");
  CHECK(sd_port > 0);
  n_events = 0;
  uv_async_init(&loop, &done_async, on_done);
  pthread_t t;
  pthread_create(&t, NULL, shutdown_client, NULL);
  while (n_events < 1)
    uv_run(&loop, UV_RUN_ONCE); /* accepted */
  uint64_t start = uv_hrtime();
  CHECK(wsev_shutdown(ctx, 5000) == 0);
  CHECK(wsev_listen_and_serve(ctx, "0") == UV_EINVAL);
  /* Nothing but the connection (and the client's async handle) keeps the loop
   * alive: it ends by itself once the closing handshake is done. */
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  uint64_t ms = (uv_hrtime() - start) / 1000000;
  pthread_join(t, NULL);
  CHECK(sd_client_ok);
  CHECK(n_events == 2 && events[0].kind == 'A' && events[1].kind == 'C');
  CHECK(ms < 2500); /* the peer answered at once: no waiting for the 5 s bound */
  wsev_ctx_free(ctx);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

/* ---- backpressure: conn_drained ---------------------------------------------------- */

enum { BIG_CHUNK = 60000, BIG_CHUNKS = 64 }; /* 16-bit lengths: 4-byte headers */
static int drained, drained_closed_after;
static size_t buffered_after_writes;
static int dr_port;
static _Atomic int dr_client_ok;

static void dr_accepted(wsev_ctx *ctx, uint64_t id) {
  static uint8_t chunk[BIG_CHUNK];
  for (int i = 0; i < BIG_CHUNKS; i++)
    CHECK(wsev_write(ctx, id, chunk, sizeof chunk) == 0);
  buffered_after_writes = wsev_get_buffered_amount(ctx, id);
}
static void dr_drained(wsev_ctx *ctx, uint64_t id) {
  drained++;
  CHECK(wsev_get_buffered_amount(ctx, id) <= 64 * 1024); /* the default low-water mark */
}
static void dr_closed(wsev_ctx *ctx, uint64_t id) {
  (void)ctx, (void)id;
  drained_closed_after = drained;
}

static void *drain_client(void *arg) {
  (void)arg;
  client c = {-1};
  int ok = client_connect(dr_port, &c) == 0;
  usleep(200 * 1000); /* not reading: the server's buffer fills */
  /* Then read all the binary frames (4-byte headers + payload). */
  static char buf[BIG_CHUNK + 16];
  for (int i = 0; ok && i < BIG_CHUNKS; i++)
    ok = read_full(c.fd, buf, 4 + BIG_CHUNK) == 0 && (uint8_t)buf[0] == 0x82;
  if (ok) client_send(&c, 8, "\x03\xe8", 2);
  ok = ok && read_full(c.fd, buf, 4) == 0 && (uint8_t)buf[0] == 0x88 && read(c.fd, buf, 1) == 0;
  close(c.fd);
  dr_client_ok = ok;
  uv_async_send(&done_async);
  return NULL;
}

static void test_drained(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  wsev_handler h = {
      .conn_accepted = dr_accepted, .conn_drained = dr_drained, .conn_closed = dr_closed};
  wsev_ctx *ctx = NULL;
  CHECK(test_ctx_new(&ctx, &loop, &h, NULL) == 0);
  dr_port = wsev_listen_and_serve_addr(ctx, "127.0.0.1", "0");
  uv_async_init(&loop, &done_async, on_done);
  pthread_t t;
  pthread_create(&t, NULL, drain_client, NULL);
  while (!uv_is_closing((uv_handle_t *)&done_async))
    uv_run(&loop, UV_RUN_ONCE);
  pthread_join(t, NULL);
  for (int i = 0; i < 100 && !drained_closed_after; i++)
    uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
  CHECK(dr_client_ok);
  /* Inline nothing is sent before the callback returns; an I/O thread sends while the
   * application still writes, so part may be in the kernel already (test-adopt counts
   * the kernel's share too). */
  CHECK(getenv("WSEV_IO_THREADS") || buffered_after_writes >= (size_t)BIG_CHUNK * BIG_CHUNKS);
  CHECK(drained == 1);              /* once, when the backlog was gone */
  CHECK(drained_closed_after == 1); /* and before conn_closed */
  wsev_ctx_free(ctx);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

/* ---- broadcast ------------------------------------------------------------------- */

enum { BC_CLIENTS = 3, BC_LARGE = 5000 };
static uint64_t bc_ids[BC_CLIENTS + 1];
static int bc_accepted, bc_port, bc_queued_small, bc_queued_large;
static _Atomic int bc_ok[BC_CLIENTS];
static uint8_t bc_large[BC_LARGE];

/* Once every client is accepted (not earlier: a loaded machine may connect them
 * slowly), send each: A (write), B (small broadcast), L (large, shared), C (write). */
static void bc_on_accepted(wsev_ctx *ctx, uint64_t id) {
  bc_ids[bc_accepted++] = id;
  if (bc_accepted < BC_CLIENTS) return;
  bc_ids[BC_CLIENTS] = 999999; /* an unknown id is skipped */
  for (int i = 0; i < BC_CLIENTS; i++)
    wsev_write_text(ctx, bc_ids[i], "A", 1);
  bc_queued_small = wsev_broadcast(ctx, bc_ids, BC_CLIENTS + 1, "B", 1, WSEV_TEXT);
  bc_queued_large = wsev_broadcast(ctx, bc_ids, BC_CLIENTS + 1, bc_large, BC_LARGE, WSEV_BINARY);
  for (int i = 0; i < BC_CLIENTS; i++)
    wsev_write_text(ctx, bc_ids[i], "C", 1);
}

/* Reads one unmasked frame of up to 65535 bytes: 0 if it has this opcode and payload. */
static int expect_frame(int fd, int opcode, const void *payload, size_t len) {
  uint8_t h[4];
  static _Thread_local uint8_t got[65536]; /* one per client thread */
  if (read_full(fd, h, 2) || (h[0] & 0x0f) != opcode) return -1;
  size_t n = h[1] & 0x7f;
  if (n == 126) {
    if (read_full(fd, h + 2, 2)) return -1;
    n = (size_t)h[2] << 8 | h[3];
  }
  return n == len && read_full(fd, got, n) == 0 && memcmp(got, payload, n) == 0 ? 0 : -1;
}

static void *bc_client(void *arg) {
  int k = (int)(intptr_t)arg;
  client c = {-1};
  int ok = client_connect(bc_port, &c) == 0;
  ok = ok && expect_frame(c.fd, 1, "A", 1) == 0 && expect_frame(c.fd, 1, "B", 1) == 0 &&
       expect_frame(c.fd, 2, bc_large, BC_LARGE) == 0 && expect_frame(c.fd, 1, "C", 1) == 0;
  close(c.fd);
  bc_ok[k] = ok;
  return NULL;
}

static void test_broadcast(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  for (int i = 0; i < BC_LARGE; i++)
    bc_large[i] = (uint8_t)(i * 31);
  wsev_handler h = {.conn_accepted = bc_on_accepted};
  wsev_ctx *ctx = NULL;
  CHECK(test_ctx_new(&ctx, &loop, &h, NULL) == 0);
  bc_port = wsev_listen_and_serve_addr(ctx, "127.0.0.1", "0");
  pthread_t t[BC_CLIENTS];
  for (int i = 0; i < BC_CLIENTS; i++)
    pthread_create(&t[i], NULL, bc_client, (void *)(intptr_t)i);
  uint64_t start = uv_hrtime();
  while (!(bc_ok[0] && bc_ok[1] && bc_ok[2]) && uv_hrtime() - start < 5000000000u)
    uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
  for (int i = 0; i < BC_CLIENTS; i++)
    pthread_join(t[i], NULL);
  CHECK(bc_ok[0] && bc_ok[1] && bc_ok[2]); /* everyone got A, B, L, C in order */
  CHECK(bc_queued_small == BC_CLIENTS && bc_queued_large == BC_CLIENTS);
  CHECK(wsev_broadcast(ctx, NULL, 1, "x", 1, WSEV_TEXT) == UV_EINVAL);
  wsev_ctx_free(ctx);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

static void test_errors(void) {
  wsev_handler h = {0};
  wsev_ctx *ctx = (wsev_ctx *)1;
  CHECK(wsev_ctx_new(NULL, NULL, &h, NULL) == UV_EINVAL);
  CHECK(test_ctx_new(&ctx, NULL, NULL, NULL) == UV_EINVAL);
  CHECK(ctx == NULL);
  CHECK(strcmp(wsev_err_name(WSEV_ENOCONN), "WSEV_ENOCONN") == 0);
  CHECK(strstr(wsev_strerror(WSEV_EBADPORT), "port") != NULL);
  CHECK(strcmp(wsev_err_name(UV_EADDRINUSE), "EADDRINUSE") == 0);
  CHECK(strcmp(wsev_strerror(UV_EADDRINUSE), uv_strerror(UV_EADDRINUSE)) == 0);
}

int main(void) {
  test_errors();
  test_timeout_private_loop();
  test_embedded();
  test_shutdown_embedded();
  test_drained();
  test_broadcast();
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
