/* fuzz-server: the whole server stack in one process. A wsev context on its private
 * loop listens on 127.0.0.1 (a free port) and echoes every message, like
 * sample/echo.c. Each input is sent by a loopback TCP client (a plain non-blocking
 * socket, driven from the same thread between loop iterations), in pieces, then the
 * client half-closes and reads until the server has closed its side.
 *
 * Input: byte 0 flags, byte 1 split seed, then the bytes to send.
 *   flags bit 0: send a valid upgrade request first, so the bytes reach the frame
 *                parser (else they are the request);
 *   flags bit 1: the server calls wsev_close after the first message;
 *   flags bit 2: the server greets each new connection with a text message;
 *   flags bit 3: the server also sends an empty binary message for each message;
 *   flags bit 4: http_request answers 200 with a body (else it leaves the request
 *                unanswered: 404);
 *   flags bit 5: upgrade_requested refuses with 403 (else it accepts, selecting the
 *                first subprotocol offered, if any).
 *
 * Invariants (abort() when broken):
 * - callbacks never nest; ids are new and increasing; per id: accepted, then
 *   messages, then closed exactly once; write/close after closed give WSEV_ENOCONN;
 * - a text message is valid UTF-8; no message exceeds the maximum size;
 * - after the client's FIN, the server closes within a bounded time (no hang), every
 *   accepted id has been closed, and the context holds no connection, no dirty
 *   connection, no deadline and no queued event (no leak across inputs);
 * - what the client receives is an HTTP response, and after a 101 a sequence of
 *   complete, unmasked, unfragmented frames with valid opcodes, nothing after a
 *   close frame, and the data frames are exactly the messages the handler wrote
 *   with success, in order, byte for byte.
 * The context is freed at exit, so LeakSanitizer sees everything released. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "context.h" /* only to check that the context is empty between inputs */
#include "frame.h"
#include "fuzz-common.h"
#include "wsev.h"

enum {
  F_UPGRADE = 1,
  F_CLOSE_AFTER_FIRST = 2,
  F_GREET = 4,
  F_EMPTY_TOO = 8,
  F_HTTP_ANSWER = 16,
  F_REFUSE_UPGRADE = 32,
};

#define MAX_MESSAGE (1 << 16)
#define RECV_CAP (4 << 20) /* client-side record of the server's bytes */
#define MAX_WRITES 4096    /* messages the handler wrote, checked on the client side */
#define HANG_LIMIT_MS 5000 /* no input may keep a connection this long after our FIN */

static const char upgrade[] = "GET /chat?x=1 HTTP/1.1\r\n"
                              "Host: 127.0.0.1\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n"
                              "\r\n";

static wsev_ctx *ctx;
static uv_loop_t *loop;
static int port;

/* What the application saw during the current input. */
static struct {
  uint8_t flags;
  int in_callback;
  uint64_t id; /* the accepted id, 0 if none */
  int accepted, closed, messages;
  int closing; /* wsev_close succeeded, or a write met backpressure */
  int http_requests;
  size_t n_writes;
  int writes_overflow;
  struct {
    uint8_t opcode;
    size_t len;
    uint64_t hash;
  } writes[MAX_WRITES];
} app;
static uint64_t last_id;

static void record_write(int opcode, const void *data, size_t len) {
  if (app.n_writes == MAX_WRITES) {
    app.writes_overflow = 1;
    return;
  }
  app.writes[app.n_writes].opcode = (uint8_t)opcode;
  app.writes[app.n_writes].len = len;
  app.writes[app.n_writes].hash = fuzz_hash(data, len);
  app.n_writes++;
}

/* wsev_write/wsev_write_text, remembering what must reach the client. */
static void server_write(uint64_t id, int opcode, const void *data, size_t len) {
  int rc =
      opcode == WSEV_OP_TEXT ? wsev_write_text(ctx, id, data, len) : wsev_write(ctx, id, data, len);
  if (rc == 0) {
    record_write(opcode, data, len);
  } else if (rc == WSEV_EBACKPRESSURE) {
    app.closing = 1; /* the library closes with 1008 */
  } else {
    FUZZ_CHECK(rc == WSEV_ECLOSING && app.closing);
  }
}

#define ENTER()                                                                                    \
  do {                                                                                             \
    FUZZ_CHECK(!app.in_callback);                                                                  \
    app.in_callback = 1;                                                                           \
  } while (0)
#define LEAVE() app.in_callback = 0

static void on_accepted(wsev_ctx *c, uint64_t id) {
  ENTER();
  FUZZ_CHECK(c == ctx);
  FUZZ_CHECK(id > last_id);
  FUZZ_CHECK(!app.accepted); /* one connection per input */
  last_id = id;
  app.id = id;
  app.accepted = 1;
  if (app.flags & F_GREET) server_write(id, WSEV_OP_TEXT, "hello", 5);
  LEAVE();
}

static void on_message(wsev_ctx *c, uint64_t id, const void *data, size_t len, wsev_msg_type type) {
  ENTER();
  FUZZ_CHECK(c == ctx);
  FUZZ_CHECK(app.accepted && !app.closed && id == app.id);
  FUZZ_CHECK(!app.closing); /* no messages after our close */
  FUZZ_CHECK(len <= MAX_MESSAGE);
  FUZZ_CHECK(len == 0 || data != NULL);
  FUZZ_CHECK(type == WSEV_TEXT || type == WSEV_BINARY);
  if (type == WSEV_TEXT) FUZZ_CHECK(ref_utf8_valid(data, len));
  app.messages++;
  server_write(id, type == WSEV_TEXT ? WSEV_OP_TEXT : WSEV_OP_BINARY, data, len);
  if (app.flags & F_EMPTY_TOO) server_write(id, WSEV_OP_BINARY, NULL, 0);
  (void)wsev_get_buffered_amount(ctx, id);
  if (app.flags & F_CLOSE_AFTER_FIRST) {
    int rc = wsev_close(ctx, id);
    if (!app.closing) {
      FUZZ_CHECK(rc == 0);
      app.closing = 1;
    } else {
      FUZZ_CHECK(rc == WSEV_ECLOSING);
    }
  }
  LEAVE();
}

static void on_closed(wsev_ctx *c, uint64_t id) {
  ENTER();
  FUZZ_CHECK(c == ctx);
  FUZZ_CHECK(app.accepted && !app.closed && id == app.id);
  app.closed = 1;
  wsev_close_info info;
  FUZZ_CHECK(wsev_get_close_info(ctx, id, &info) == 0);
  FUZZ_CHECK(wsev__close_code_is_valid(info.code) || info.code == 1005 || info.code == 1006);
  FUZZ_CHECK(memchr(info.reason, 0, sizeof info.reason) != NULL);
  FUZZ_CHECK(ref_utf8_valid((const uint8_t *)info.reason, strlen(info.reason)));
  FUZZ_CHECK(wsev_write(ctx, id, "x", 1) == WSEV_ENOCONN);
  FUZZ_CHECK(wsev_write_text(ctx, id, "x", 1) == WSEV_ENOCONN);
  FUZZ_CHECK(wsev_close(ctx, id) == WSEV_ENOCONN);
  FUZZ_CHECK(wsev_get_buffered_amount(ctx, id) == 0);
  LEAVE();
}

static int on_upgrade(wsev_ctx *c, wsev_request *req) {
  ENTER();
  FUZZ_CHECK(c == ctx);
  FUZZ_CHECK(!app.accepted);
  const char *path = wsev_request_path(req);
  FUZZ_CHECK(path != NULL && path[0] != 0);
  FUZZ_CHECK(wsev_request_method(req) != NULL);
  (void)wsev_request_header(req, "host");
  FUZZ_CHECK(wsev_request_id(req) > last_id);
  int verdict = WSEV_ACCEPT;
  if (app.flags & F_REFUSE_UPGRADE) {
    verdict = 403;
  } else if (wsev_request_protocol_count(req) > 0) {
    const char *proto = wsev_request_protocol(req, 0);
    FUZZ_CHECK(proto != NULL);
    FUZZ_CHECK(wsev_request_select_protocol(req, proto) == 0);
  }
  FUZZ_CHECK(wsev_request_select_protocol(req, "no such protocol, surely") == UV_EINVAL);
  LEAVE();
  return verdict;
}

static void on_http(wsev_ctx *c, wsev_request *req) {
  ENTER();
  FUZZ_CHECK(c == ctx);
  FUZZ_CHECK(wsev_request_path(req) != NULL && wsev_request_method(req) != NULL);
  app.http_requests++;
  if (app.flags & F_HTTP_ANSWER) {
    FUZZ_CHECK(wsev_respond(req, 200, "Content-Type: text/plain\r\n", "ok\n", 3) == 0);
    FUZZ_CHECK(wsev_respond(req, 200, NULL, NULL, 0) == UV_EINVAL); /* answered already */
  }
  LEAVE();
}

static void on_timeout(wsev_ctx *c) {
  (void)c;
  FUZZ_CHECK(0); /* disabled with wsev_set_timeout(ctx, 0) */
}

static uint8_t *rx; /* what the server sent, as the client received it */

static void cleanup(void) {
  wsev_ctx_free(ctx);
  ctx = NULL;
  free(rx);
  rx = NULL;
}

static void setup(void) {
  static const wsev_handler handler = {
      .conn_accepted = on_accepted,
      .conn_closed = on_closed,
      .event_loop_timeout = on_timeout,
      .message_received = on_message,
      .upgrade_requested = on_upgrade,
      .http_request = on_http,
  };
  if (wsev_ctx_new(&ctx, NULL, &handler, NULL) != 0) abort();
  loop = wsev_get_loop(ctx);
  wsev_set_timeout(ctx, 0);
  wsev_set_max_message_size(ctx, MAX_MESSAGE);
  wsev_set_max_header_size(ctx, 2048);
  wsev_set_handshake_timeout(ctx, 200);
  wsev_set_close_timeout(ctx, 200);
  wsev_set_keepalive(ctx, 0, 0); /* no pings of the server's own */
  port = wsev_listen_and_serve_addr(ctx, "127.0.0.1", "0");
  if (port <= 0) {
    fprintf(stderr, "fuzz-server: cannot listen: %s\n", wsev_strerror(port));
    abort();
  }
  atexit(cleanup);
}

/* ---- the client ------------------------------------------------------------------ */

static size_t rx_len; /* bytes recorded (at most RECV_CAP) */
static int rx_overflow, rx_eof, rx_reset;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read what is there. Returns 1 if anything happened. */
static int client_read(int fd) {
  int progress = 0;
  while (!rx_eof) {
    uint8_t buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      size_t keep = (size_t)n;
      if (keep > RECV_CAP - rx_len) {
        keep = RECV_CAP - rx_len;
        rx_overflow = 1;
      }
      memcpy(rx + rx_len, buf, keep);
      rx_len += keep;
      progress = 1;
    } else if (n == 0) {
      rx_eof = 1;
      progress = 1;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else {
      rx_eof = rx_reset = 1; /* ECONNRESET */
      progress = 1;
    }
  }
  return progress;
}

/* One step: run the server's loop without blocking, and read. */
static void pump(int fd) {
  uv_run(loop, UV_RUN_NOWAIT);
  client_read(fd);
}

/* Wait (bounded) for either side to have something to do. */
static void wait_a_little(int fd) {
  struct pollfd fds[2] = {{.fd = fd, .events = POLLIN},
                          {.fd = uv_backend_fd(loop), .events = POLLIN}};
  int timeout = uv_backend_timeout(loop);
  if (timeout < 0 || timeout > 10) timeout = 10;
  poll(fds, 2, timeout);
}

static void hang(const char *what) {
  fprintf(stderr, "fuzz-server: %s after %d ms (accepted %d, closed %d, messages %d)\n", what,
          HANG_LIMIT_MS, app.accepted, app.closed, app.messages);
  abort();
}

static void send_all(int fd, const uint8_t *p, size_t n, int *broken) {
  uint64_t start = now_ms();
  while (n && !*broken) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k > 0) {
      p += k;
      n -= (size_t)k;
    } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      pump(fd);
      wait_a_little(fd);
      if (now_ms() - start > HANG_LIMIT_MS) hang("server stopped reading");
    } else {
      *broken = 1; /* the server closed: EPIPE or ECONNRESET */
    }
  }
}

/* ---- checking what the client received --------------------------------------------- */

static void check_received(void) {
  if (rx_overflow || app.writes_overflow) return;
  const uint8_t *p = rx, *end = rx + rx_len;
  if (rx_len == 0) {
    FUZZ_CHECK(!app.accepted || rx_reset);
    return;
  }
  static const char http[] = "HTTP/1.1 ";
  FUZZ_CHECK(rx_len >= sizeof http - 1 && memcmp(rx, http, sizeof http - 1) == 0);
  const uint8_t *hdr_end = memmem(rx, rx_len, "\r\n\r\n", 4);
  if (!hdr_end) {
    FUZZ_CHECK(rx_reset);
    return;
  }
  if (!app.accepted) {
    /* HTTP responses only (plain requests may be kept alive: several). */
    FUZZ_CHECK(memmem(rx, rx_len, "HTTP/1.1 101 ", 13) == NULL);
    if (!app.http_requests) FUZZ_CHECK(rx[9] == '4' || rx[9] == '5');
    return;
  }
  /* Plain HTTP exchanges may come before the upgrade on a kept-alive connection. */
  const uint8_t *sw = memmem(rx, rx_len, "HTTP/1.1 101 ", 13);
  FUZZ_CHECK(sw != NULL);
  hdr_end = memmem(sw, (size_t)(end - sw), "\r\n\r\n", 4);
  FUZZ_CHECK(hdr_end != NULL);
  p = hdr_end + 4;
  size_t next_write = 0;
  int got_close = 0;
  while (p < end) {
    FUZZ_CHECK(!got_close); /* nothing after a close frame */
    size_t left = (size_t)(end - p);
    if (left < 2) break;
    uint8_t b0 = p[0], b1 = p[1];
    size_t hl = 2;
    uint64_t len = b1 & 0x7F;
    FUZZ_CHECK(!(b1 & 0x80));     /* a server never masks */
    FUZZ_CHECK((b0 & 0x70) == 0); /* no RSV bits */
    FUZZ_CHECK(b0 & 0x80);        /* the server does not fragment */
    if (len == 126) {
      if (left < 4) break;
      len = (uint64_t)p[2] << 8 | p[3];
      FUZZ_CHECK(len >= 126); /* shortest encoding */
      hl = 4;
    } else if (len == 127) {
      if (left < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++)
        len = len << 8 | p[2 + i];
      FUZZ_CHECK(len > 0xFFFF);
      hl = 10;
    }
    if (left - hl < len) break;
    int op = b0 & 0x0F;
    const uint8_t *payload = p + hl;
    switch (op) {
    case WSEV_OP_TEXT:
    case WSEV_OP_BINARY:
      FUZZ_CHECK(next_write < app.n_writes);
      FUZZ_CHECK(app.writes[next_write].opcode == op);
      FUZZ_CHECK(app.writes[next_write].len == len);
      FUZZ_CHECK(app.writes[next_write].hash == fuzz_hash(payload, (size_t)len));
      next_write++;
      break;
    case WSEV_OP_CLOSE: {
      unsigned code;
      FUZZ_CHECK(len <= WSEV_FRAME_MAX_CONTROL);
      FUZZ_CHECK(len == 0 || len >= 2);
      if (len >= 2) {
        code = (unsigned)payload[0] << 8 | payload[1];
        FUZZ_CHECK(wsev__close_code_is_valid(code));
      }
      got_close = 1;
      break;
    }
    case WSEV_OP_PONG: FUZZ_CHECK(len <= WSEV_FRAME_MAX_CONTROL); break;
    default: FUZZ_CHECK(0 && "unexpected opcode from the server");
    }
    p += hl + len;
  }
  if (!rx_reset) {
    FUZZ_CHECK(p == end);                   /* the stream ends on a frame boundary */
    FUZZ_CHECK(next_write == app.n_writes); /* every successful write arrived */
  }
}

/* ---- the target ------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ctx) setup();
  if (!rx) {
    rx = malloc(RECV_CAP);
    if (!rx) abort();
  }
  memset(&app, 0, sizeof app);
  rx_len = 0;
  rx_overflow = rx_eof = rx_reset = 0;
  uint8_t seed = 0;
  if (size >= 1) app.flags = data[0], data++, size--;
  if (size >= 1) seed = data[0], data++, size--;

  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) abort();
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* A blocking connect on loopback completes in the kernel's backlog. libFuzzer's
   * timers may interrupt it (EINTR): the connection then completes on its own, so
   * wait until the socket is writable and ask how it went. */
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    int err = errno;
    if (err == EINTR) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      socklen_t len = sizeof err;
      while (poll(&pfd, 1, -1) < 0 && errno == EINTR) {
      }
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
    if (err) {
      fprintf(stderr, "fuzz-server: connect: %s\n", strerror(err));
      abort();
    }
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  pump(fd); /* the server accepts */

  int broken = 0;
  if (app.flags & F_UPGRADE) {
    send_all(fd, (const uint8_t *)upgrade, sizeof upgrade - 1, &broken);
    pump(fd);
  }
  fuzz_rng rng = {seed};
  size_t off = 0;
  while (off < size && !broken) {
    size_t k = fuzz_chunk(&rng, size - off);
    send_all(fd, data + off, k, &broken);
    off += k;
    pump(fd);
    pump(fd);
  }
  shutdown(fd, SHUT_WR);

  /* Until the server has closed its side. */
  uint64_t start = now_ms();
  while (!rx_eof) {
    pump(fd);
    if (rx_eof) break;
    if (now_ms() - start > HANG_LIMIT_MS) hang("the server did not close the connection");
    wait_a_little(fd);
  }
  struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* no TIME_WAIT: inputs are many */
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);

  /* Until the server has released the connection. */
  start = now_ms();
  while (ctx->all_head) {
    uv_run(loop, UV_RUN_NOWAIT);
    if (!ctx->all_head) break;
    if (now_ms() - start > HANG_LIMIT_MS) hang("the server kept the connection");
    struct pollfd pfd = {.fd = uv_backend_fd(loop), .events = POLLIN};
    int timeout = uv_backend_timeout(loop);
    poll(&pfd, 1, timeout < 0 || timeout > 10 ? 10 : timeout);
  }
  uv_run(loop, UV_RUN_NOWAIT);

  FUZZ_CHECK(!app.in_callback);
  FUZZ_CHECK(app.accepted == app.closed); /* closed exactly once for every accepted id */
  FUZZ_CHECK(ctx->all_head == NULL && ctx->dirty_head == NULL);
  FUZZ_CHECK(ctx->queue_len == 0 && ctx->ids.count == 0);
  for (int k = 0; k < WSEV_DEADLINE_KINDS; k++)
    FUZZ_CHECK(ctx->dl_head[k] == NULL && ctx->dl_tail[k] == NULL);
  check_received();
  return 0;
}
