/* Allocation failure along a connection's whole life: for every n, the n-th
 * allocation of the library fails (once, and then: every allocation from the n-th
 * on), while a client goes through upgrade, echo, a fragmented message, a ping, a
 * 100 KB message and the closing handshake. Whatever fails must cost only that
 * connection or call: no crash, conn_closed exactly once per conn_accepted, the
 * loop still ends, and no allocation outlives wsev_ctx_free.
 *
 *   test-alloc                      a raw client thread against a ws listener
 *   test-alloc --proxied            the same through a listener that trusts a PROXY
 *                                   header and the forwarded headers, which the
 *                                   client sends: the accepted connection must
 *                                   report the client they name
 *   test-alloc --client MAKE_CERT   a connection of ours (wsev_add_conn) to a wss
 *                                   listener in the same context: name lookup,
 *                                   dial, TLS both ways, the 101, an echo, a close
 *                                   (also conn_closed exactly once for its id);
 *                                   certificates from scripts/make-cert.sh.
 *                                   With WSEV_DEFLATE=shared|dedicated both ends
 *                                   agree on permessage-deflate and the echo is
 *                                   compressed both ways (zlib's allocations fail
 *                                   too), and the run without failures must have
 *                                   agreed on it.
 * (mbedTLS allocates its own buffers with calloc, out of our allocator's reach.) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <wsev.h>

#include "../common/test-ctx.h"

/* ---- a counting allocator that can fail -------------------------------------------- */

/* Atomic: with WSEV_IO_THREADS the library allocates on several threads. */
static _Atomic long allocations; /* calls that may fail, counted from the start of a run */
static long fail_at;             /* the first one to fail (0: none) */
static int fail_all_after;       /* and every one after it too */
static _Atomic long live;        /* blocks allocated and not freed */

static int should_fail(void) {
  long n = ++allocations;
  if (!fail_at) return 0;
  return fail_all_after ? n >= fail_at : n == fail_at;
}
static void *t_malloc(size_t n) {
  if (should_fail()) return NULL;
  void *p = malloc(n);
  if (p) live++;
  return p;
}
static void *t_calloc(size_t c, size_t n) {
  if (should_fail()) return NULL;
  void *p = calloc(c, n);
  if (p) live++;
  return p;
}
static void *t_realloc(void *old, size_t n) {
  if (should_fail()) return NULL;
  void *p = realloc(old, n);
  if (p && !old) live++;
  return p;
}
static void t_free(void *p) {
  if (p) live--;
  free(p);
}

/* ---- the server side -------------------------------------------------------------- */

static int accepted, closed;
static int proxied;       /* --proxied */
static int wrong_client;  /* accepted, but not reporting the forwarded client */
static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  accepted++;
  wsev_conn_info info;
  /* Forwarded wins over X-Forwarded-For and the PROXY header. */
  struct sockaddr_in *in = (struct sockaddr_in *)&info.client_addr;
  if (proxied && (wsev_get_conn_info(ctx, id, &info) != 0 || !info.forwarded ||
                  in->sin_family != AF_INET || in->sin_addr.s_addr != htonl(0xc6336408)))
    wrong_client++; /* 198.51.100.8 */
}
static void on_closed(wsev_ctx *ctx, uint64_t id) {
  (void)ctx, (void)id;
  closed++;
}
static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  if (type == WSEV_TEXT)
    wsev_write_text(ctx, id, data, len);
  else
    wsev_write(ctx, id, data, len);
}

/* ---- the client ------------------------------------------------------------------- */

static int port;
static int steps_done;
static uv_async_t client_done;

static int send_frame(int fd, int fin, int opcode, const unsigned char *p, size_t n) {
  unsigned char *f = malloc(n + 14);
  size_t h = 0;
  f[h++] = (unsigned char)((fin ? 0x80 : 0) | opcode);
  if (n < 126) {
    f[h++] = (unsigned char)(0x80 | n);
  } else {
    f[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      f[h++] = (unsigned char)((uint64_t)n >> (8 * i));
  }
  const unsigned char mask[4] = {9, 8, 7, 6};
  memcpy(f + h, mask, 4);
  h += 4;
  for (size_t i = 0; i < n; i++)
    f[h + i] = p[i] ^ mask[i % 4];
  ssize_t w = send(fd, f, h + n, MSG_NOSIGNAL);
  free(f);
  return w == (ssize_t)(h + n) ? 0 : -1;
}

static int recv_full(int fd, unsigned char *p, size_t n) {
  while (n) {
    ssize_t r = recv(fd, p, n, 0);
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Reads one server frame: 0 if it has this opcode and payload, else -1. */
static int expect(int fd, int opcode, const unsigned char *p, size_t n) {
  unsigned char h[8];
  if (recv_full(fd, h, 2)) return -1;
  int got_opcode = h[0] & 0x0f;
  uint64_t len = h[1] & 0x7f;
  if (len == 126) {
    if (recv_full(fd, h, 2)) return -1;
    len = (uint64_t)h[0] << 8 | h[1];
  } else if (len == 127) {
    if (recv_full(fd, h, 8)) return -1;
    len = 0;
    for (int i = 0; i < 8; i++)
      len = len << 8 | h[i];
  }
  if (got_opcode != opcode || len != n) return -1;
  unsigned char *payload = malloc(n + 1);
  int ok = recv_full(fd, payload, n) == 0 && memcmp(payload, p, n) == 0;
  free(payload);
  return ok ? 0 : -1;
}

static void *client(void *arg) {
  (void)arg;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval tv = {.tv_sec = 3};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  static unsigned char big[100000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (unsigned char)(i * 7);
  const char *req =
      proxied ? "PROXY TCP4 192.0.2.1 127.0.0.1 1234 80\r\n"
                "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "X-Forwarded-For: 198.51.100.7\r\nForwarded: for=198.51.100.8\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
              : "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  char resp[256];
  size_t got = 0;
  steps_done = 0;
  if (port <= 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) goto out;
  if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) goto out;
  if (send_frame(fd, 1, 1, (const unsigned char *)"hello", 5)) goto out;
  while (got < sizeof resp - 1) { /* the response head, byte by byte */
    if (recv(fd, resp + got, 1, 0) != 1) goto out;
    got++;
    if (got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0) break;
  }
  if (strncmp(resp, "HTTP/1.1 101", 12) != 0) goto out;
  steps_done++;
  if (expect(fd, 1, (const unsigned char *)"hello", 5)) goto out;
  steps_done++;
  if (send_frame(fd, 0, 1, (const unsigned char *)"frag", 4)) goto out;
  usleep(2000); /* a separate read: the message must be reassembled */
  if (send_frame(fd, 1, 0, (const unsigned char *)"ment", 4)) goto out;
  if (expect(fd, 1, (const unsigned char *)"fragment", 8)) goto out;
  steps_done++;
  if (send_frame(fd, 1, 9, (const unsigned char *)"p", 1) ||
      expect(fd, 10, (const unsigned char *)"p", 1))
    goto out;
  steps_done++;
  if (send_frame(fd, 1, 2, big, sizeof big) || expect(fd, 2, big, sizeof big)) goto out;
  steps_done++;
  if (send_frame(fd, 1, 8, (const unsigned char *)"\x03\xe8", 2) ||
      expect(fd, 8, (const unsigned char *)"\x03\xe8", 2))
    goto out;
  steps_done++;
  char c;
  if (recv(fd, &c, 1, 0) == 0) steps_done++; /* EOF */
out:
  close(fd);
  uv_async_send(&client_done);
  return NULL;
}

static void on_client_done(uv_async_t *a) { uv_close((uv_handle_t *)a, NULL); }

/* One full run; returns the number of client steps that succeeded (7 = all). */
static int run(long fail_n, int all_after, int *problems) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  allocations = 0;
  fail_at = fail_n;
  fail_all_after = all_after;
  accepted = closed = 0;
  wsev_handler h = {
      .conn_accepted = on_accepted, .conn_closed = on_closed, .message_received = on_message};
  wsev_ctx *ctx = NULL;
  port = -1;
  wsev_listen_options o = {.host = "127.0.0.1", .port = "0"};
  if (proxied)
    o.trust = WSEV_TRUST_PROXY_PROTOCOL | WSEV_TRUST_FORWARDED | WSEV_TRUST_X_FORWARDED_FOR;
  if (test_ctx_new(&ctx, &loop, &h, NULL) == 0 && wsev_listen(ctx, &o, &port) < 0) port = -1;
  uv_async_init(&loop, &client_done, on_client_done);
  pthread_t t;
  pthread_create(&t, NULL, client, NULL);
  while (!uv_is_closing((uv_handle_t *)&client_done))
    uv_run(&loop, UV_RUN_ONCE);
  pthread_join(t, NULL);
  /* Let the server see the client's EOF and finish with the connection. */
  for (int i = 0; i < 50 && accepted != closed; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  if (accepted != closed) {
    fprintf(stderr, "n=%ld%s: %d accepted but %d closed\n", fail_n, all_after ? "+" : "", accepted,
            closed);
    (*problems)++;
  }
  wsev_ctx_free(ctx);
  if (uv_run(&loop, UV_RUN_DEFAULT) != 0 || uv_loop_close(&loop) != 0) {
    fprintf(stderr, "n=%ld%s: the loop did not end cleanly\n", fail_n, all_after ? "+" : "");
    (*problems)++;
  }
  if (live != 0) {
    fprintf(stderr, "n=%ld%s: %ld allocations leaked\n", fail_n, all_after ? "+" : "", live);
    (*problems)++;
    live = 0;
  }
  return steps_done;
}

/* ---- a connection of ours over TLS ---------------------------------------------- */

static char cert_dir[] = "/tmp/wsev-alloc-XXXXXX";
static uint64_t our_id;
static int our_closed, our_opened, our_echoed, our_clean, our_deflated;
static wsev_deflate_options deflate; /* from WSEV_DEFLATE; mode off without it */
/* The message of ours: long and repetitive, so that it is compressed either way. */
static char hello[600];

static void c_on_accepted(wsev_ctx *ctx, uint64_t id) {
  if (id == our_id) {
    wsev_conn_info info;
    our_opened = 1;
    our_deflated = wsev_get_conn_info(ctx, id, &info) == 0 && info.deflate.on;
    /* A write that fails costs that message only: the application closes. */
    if (wsev_write_text(ctx, id, hello, strlen(hello)) != 0) wsev_close(ctx, id);
  } else {
    accepted++;
  }
}
static void c_on_closed(wsev_ctx *ctx, uint64_t id) {
  wsev_close_info info;
  if (id != our_id) {
    closed++;
    return;
  }
  our_closed++;
  our_clean = wsev_get_close_info(ctx, id, &info) == 0 && info.code == 1000 && !info.error;
}
static void c_on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                         wsev_msg_type type) {
  if (id != our_id) {
    if (wsev_write_text(ctx, id, data, len) != 0) wsev_close(ctx, id); /* the server's end echoes */
    return;
  }
  our_echoed = type == WSEV_TEXT && len == strlen(hello) && memcmp(data, hello, len) == 0;
  wsev_close(ctx, id);
}

/* One run; returns how far the connection got (4 = opened, echoed, closed cleanly). */
static int run_client(long fail_n, int all_after, int *problems) {
  char crt[64], key[64], ca[64], url[64];
  snprintf(crt, sizeof crt, "%s/localhost.crt", cert_dir);
  snprintf(key, sizeof key, "%s/localhost.key", cert_dir);
  snprintf(ca, sizeof ca, "%s/ca.crt", cert_dir);
  uv_loop_t loop;
  uv_loop_init(&loop);
  allocations = 0;
  fail_at = fail_n;
  fail_all_after = all_after;
  accepted = closed = our_closed = our_opened = our_echoed = our_clean = our_deflated = 0;
  our_id = 0;
  wsev_handler h = {
      .conn_accepted = c_on_accepted, .conn_closed = c_on_closed, .message_received = c_on_message};
  wsev_ctx *ctx = NULL;
  int added = 0;
  if (test_ctx_new(&ctx, &loop, &h, NULL) == 0) {
    int tls_port = wsev_listen_and_serve_tls_addr(ctx, "127.0.0.1", "0", crt, key);
    snprintf(url, sizeof url, "wss://localhost:%d/", tls_port > 0 ? tls_port : 1);
    wsev_client_options options = {.ca_file = ca, .connect_timeout_ms = 3000, .deflate = &deflate};
    wsev_set_deflate(ctx, &deflate); /* the listener's end; fails only without memory */
    /* A close whose frame could not be queued (every allocation failing) ends at the
     * close timeout: within the 4 s this run waits. */
    wsev_set_close_timeout(ctx, 1000);
    added = wsev_add_conn(ctx, url, &options, &our_id) == 0;
    /* Until our connection is over, or 4 s (its timeout is 3 s). */
    uint64_t deadline = uv_now(&loop) + 4000;
    while (added && !our_closed && uv_now(&loop) < deadline) {
      uv_run(&loop, UV_RUN_NOWAIT);
      usleep(200);
      uv_update_time(&loop);
    }
    for (int i = 0; i < 50 && accepted != closed; i++) { /* the server's end finishing */
      uv_run(&loop, UV_RUN_NOWAIT);
      usleep(1000);
    }
  }
  const char *how = all_after ? "+" : "";
  if (!fail_n && deflate.mode && !our_deflated) {
    fprintf(stderr, "permessage-deflate was not agreed\n");
    (*problems)++;
  }
  if (added && our_closed != 1) {
    fprintf(stderr, "n=%ld%s: conn_closed %d times for our connection\n", fail_n, how, our_closed);
    (*problems)++;
  }
  if (!added && (our_opened || our_closed)) {
    fprintf(stderr, "n=%ld%s: events for a connection wsev_add_conn refused\n", fail_n, how);
    (*problems)++;
  }
  if (accepted != closed) {
    fprintf(stderr, "n=%ld%s: %d accepted but %d closed\n", fail_n, how, accepted, closed);
    (*problems)++;
  }
  wsev_ctx_free(ctx);
  if (uv_run(&loop, UV_RUN_DEFAULT) != 0 || uv_loop_close(&loop) != 0) {
    fprintf(stderr, "n=%ld%s: the loop did not end cleanly\n", fail_n, how);
    (*problems)++;
  }
  if (live != 0) {
    fprintf(stderr, "n=%ld%s: %ld allocations leaked\n", fail_n, how, live);
    (*problems)++;
    live = 0;
  }
  return added + our_opened + our_echoed + our_clean;
}

int main(int argc, char **argv) {
  int problems = 0;
  int (*one_run)(long, int, int *) = run;
  int all_steps = 7;
  char cmd[512];
  if (argc == 3 && strcmp(argv[1], "--client") == 0) {
    snprintf(cmd, sizeof cmd, "'%s' '%s' >/dev/null", argv[2], mkdtemp(cert_dir));
    if (system(cmd) != 0) {
      fprintf(stderr, "%s failed\n", cmd);
      return 2;
    }
    one_run = run_client;
    all_steps = 4;
  } else if (argc == 2 && strcmp(argv[1], "--proxied") == 0) {
    proxied = 1;
  } else if (argc != 1) {
    fprintf(stderr, "usage: %s [--client PATH/TO/make-cert.sh | --proxied]\n", argv[0]);
    return 2;
  }
  const char *mode = getenv("WSEV_DEFLATE");
  if (mode && *mode) {
    deflate.mode = strcmp(mode, "dedicated") == 0 ? WSEV_DEFLATE_DEDICATED : WSEV_DEFLATE_SHARED;
    deflate.threshold = 1;
  }
  for (size_t i = 0; i + 1 < sizeof hello; i++)
    hello[i] = "hello, "[i % 7];
  wsev_replace_allocator(t_malloc, t_realloc, t_calloc, t_free);
  int steps = one_run(0, 0, &problems);
  long total = allocations;
  if (steps != all_steps) {
    fprintf(stderr, "without failures the client got through %d of %d steps\n", steps, all_steps);
    problems++;
  }
  int degraded = 0;
  for (int all_after = 0; all_after <= 1; all_after++)
    for (long n = 1; n <= total + 1; n++)
      if (one_run(n, all_after, &problems) != all_steps) degraded++;
  if (wrong_client) {
    fprintf(stderr, "%d accepted connections did not report the forwarded client\n", wrong_client);
    problems++;
  }
  if (one_run == run_client) {
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cert_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", cert_dir);
  }
  printf("%ld allocations in a full run; %ld runs with one failing allocation and %ld with all "
         "failing from the n-th; %d of them cost the connection or the context; %d problems\n",
         total, total + 1, total + 1, degraded, problems);
  return problems ? 1 : 0;
}
