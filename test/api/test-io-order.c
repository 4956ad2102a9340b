/* Ordering under load with I/O threads: 1,000 clients on 2 I/O threads each send
 * numbered messages and close; the application must see each id's messages in order,
 * then conn_closed last and exactly once, and both threads must have served clients.
 * Then a connection of ours (wsev_add_conn, placed on a thread) to our own listener
 * sends a message, gets it echoed, and closes. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>
#include <wsev.h>

#include "../unit/test.h"
#include "raw-client.h"

enum { CLIENTS = 1000, CLIENT_THREADS = 4, MESSAGES = 20, MAX_ID = 1 << 14 };

static int port;
static struct { int accepted, next, closed; } seen[MAX_ID];
static long accepted, closed, messages, out_of_order, early_close, double_close, bad_id;
static long on_thread[2];
/* After the clients: a connection of ours to our own listener, on a thread too. */
static uint64_t dialed_id;
static int dial_accepts, dial_echoes, dial_closes;

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  wsev_conn_info info;
  if (dialed_id && wsev_get_conn_info(ctx, id, &info) == 0 && strcmp(info.path, "/dial") == 0) {
    dial_accepts++; /* both ends: ours (client 1) and the accepted one (client 0) */
    if (info.client) wsev_write_text(ctx, id, "echo me", 7);
    return;
  }
  if (id >= MAX_ID) {
    bad_id++;
    return;
  }
  seen[id].accepted++;
  on_thread[(id - 1) % 2]++; /* ids are striped: thread k hands out k+1, k+3, ... */
  accepted++;
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  (void)type;
  if (dialed_id) {
    if (id == dialed_id) { /* the echo came back to our end */
      dial_echoes += len == 7 && memcmp(data, "echo me", 7) == 0;
      wsev_close(ctx, id);
    } else {
      wsev_write_text(ctx, id, data, len); /* the accepted end echoes */
    }
    return;
  }
  if (id >= MAX_ID || !seen[id].accepted || seen[id].closed) {
    bad_id++;
    return;
  }
  char text[16];
  snprintf(text, sizeof text, "%.*s", (int)(len < 15 ? len : 15), (const char *)data);
  if (atoi(text) != seen[id].next) out_of_order++;
  seen[id].next++;
  messages++;
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  if (dialed_id) {
    if (++dial_closes == 2) wsev_shutdown(ctx, 1000);
    return;
  }
  if (id >= MAX_ID) {
    bad_id++;
    return;
  }
  if (seen[id].closed++) double_close++;
  if (seen[id].next != MESSAGES) early_close++;
  if (++closed == CLIENTS) {
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/dial", port);
    if (wsev_add_conn(ctx, url, NULL, &dialed_id) != 0) wsev_shutdown(ctx, 1000);
  }
}

/* ---- the clients --------------------------------------------------------------------- */

static int connect_upgraded(void) { return raw_connect_upgraded(port, "/"); }

/* A masked frame (key 0: the payload is sent as it is). */
static int send_frame(int fd, int opcode, const void *payload, size_t len) {
  uint8_t f[64] = {(uint8_t)(0x80 | opcode), (uint8_t)(0x80 | len), 0, 0, 0, 0};
  memcpy(f + 6, payload, len);
  return write(fd, f, 6 + len) == (ssize_t)(6 + len) ? 0 : -1;
}

static long client_failures;
static pthread_mutex_t failures_lock = PTHREAD_MUTEX_INITIALIZER;

static void *clients_main(void *arg) {
  (void)arg;
  int fds[CLIENTS / CLIENT_THREADS], failed = 0;
  for (int i = 0; i < CLIENTS / CLIENT_THREADS; i++)
    if ((fds[i] = connect_upgraded()) < 0) failed++;
  char text[16];
  for (int m = 0; m < MESSAGES; m++)
    for (int i = 0; i < CLIENTS / CLIENT_THREADS; i++) {
      int n = snprintf(text, sizeof text, "%d", m);
      if (fds[i] >= 0 && send_frame(fds[i], 1, text, (size_t)n) != 0) failed++;
    }
  for (int i = 0; i < CLIENTS / CLIENT_THREADS; i++)
    if (fds[i] >= 0 && send_frame(fds[i], 8, "\x03\xe8", 2) != 0) failed++;
  for (int i = 0; i < CLIENTS / CLIENT_THREADS; i++) {
    if (fds[i] < 0) continue;
    char buf[256];
    while (read(fds[i], buf, sizeof buf) > 0) /* the server's close, then its FIN */
      ;
    close(fds[i]);
  }
  pthread_mutex_lock(&failures_lock);
  client_failures += failed;
  pthread_mutex_unlock(&failures_lock);
  return NULL;
}

int main(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl); /* 1,000 sockets on each side */
  wsev_handler h = {
      .conn_accepted = on_accepted, .message_received = on_message, .conn_closed = on_closed};
  wsev_ctx *ctx;
  CHECK_EQ_INT(wsev_ctx_new(&ctx, NULL, &h, NULL), 0);
  CHECK_EQ_INT(wsev_set_io_threads(ctx, 2), 0);
  CHECK_EQ_INT(wsev_get_io_threads(ctx), 2);
  port = wsev_listen_and_serve_addr(ctx, "127.0.0.1", "0");
  CHECK(port > 0);
  CHECK_EQ_INT(wsev_set_io_threads(ctx, 3), UV_EINVAL); /* only before the first listen */
  pthread_t t[CLIENT_THREADS];
  for (int i = 0; i < CLIENT_THREADS; i++)
    pthread_create(&t[i], NULL, clients_main, NULL);
  CHECK_EQ_INT(wsev_event_loop(ctx), 0); /* until the shutdown after the last close */
  for (int i = 0; i < CLIENT_THREADS; i++)
    pthread_join(t[i], NULL);
  wsev_ctx_free(ctx);

  printf("%ld accepted (%ld on thread 0, %ld on thread 1), %ld messages, %ld closed\n", accepted,
         on_thread[0], on_thread[1], messages, closed);
  CHECK_EQ_INT(client_failures, 0);
  CHECK_EQ_INT(accepted, CLIENTS);
  CHECK_EQ_INT(messages, CLIENTS * MESSAGES);
  CHECK_EQ_INT(closed, CLIENTS);
  CHECK_EQ_INT(out_of_order, 0);
  CHECK_EQ_INT(early_close, 0);
  CHECK_EQ_INT(double_close, 0);
  CHECK_EQ_INT(bad_id, 0);
  CHECK(on_thread[0] > 0 && on_thread[1] > 0);
  CHECK(dialed_id != 0);
  CHECK_EQ_INT(dial_accepts, 2);
  CHECK_EQ_INT(dial_echoes, 1);
  CHECK_EQ_INT(dial_closes, 2);
  return TEST_REPORT();
}
