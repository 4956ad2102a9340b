/* wsev_adopt_socket, both sides in one context: a TCP pair made with plain sockets,
 * the accepted end adopted as a server-side connection and the connecting end as a
 * client-side one (ws://localhost/adopted). Checks the events of both, conn_info,
 * writes before open, messages both ways, closes from either side, subprotocols and
 * extra headers, a client whose peer never answers, adopting invalid sockets or
 * URLs (an error, the socket stays the caller's, nothing leaks), and freeing a
 * context with adopted connections still open. Prints "N checks, N failed". */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
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

/* ---- what the application saw -------------------------------------------------- */

enum { MAX_EVENTS = 256 };
typedef struct {
  char kind; /* 'A' accepted, 'M' message, 'C' closed, 'D' drained */
  uint64_t id;
  wsev_msg_type type;
  char text[128];
  size_t len;
  wsev_close_info close; /* 'C' */
  int close_rc;
  wsev_conn_info info; /* 'A' (strings copied below) */
  int info_rc;
  char path[64], protocol[32];
  int has_protocol;
} event;

static event events[MAX_EVENTS];
static int n_events;
static int in_callback, reentered;
static char last_x_adopt[64];
static int upgrade_requests;

static event *add_event(char kind, uint64_t id) {
  if (n_events >= MAX_EVENTS) return NULL;
  event *e = &events[n_events++];
  memset(e, 0, sizeof *e);
  e->kind = kind;
  e->id = id;
  return e;
}

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  if (in_callback++) reentered++;
  event *e = add_event('A', id);
  if (e) {
    e->info_rc = wsev_get_conn_info(ctx, id, &e->info);
    if (e->info_rc == 0 && e->info.path) snprintf(e->path, sizeof e->path, "%s", e->info.path);
    if (e->info_rc == 0 && e->info.protocol) {
      e->has_protocol = 1;
      snprintf(e->protocol, sizeof e->protocol, "%s", e->info.protocol);
    }
  }
  in_callback--;
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  (void)ctx;
  if (in_callback++) reentered++;
  event *e = add_event('M', id);
  if (e) {
    e->type = type;
    e->len = len;
    memcpy(e->text, data, len < sizeof e->text - 1 ? len : sizeof e->text - 1);
  }
  in_callback--;
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  if (in_callback++) reentered++;
  event *e = add_event('C', id);
  if (e) e->close_rc = wsev_get_close_info(ctx, id, &e->close);
  in_callback--;
}

static void on_drained(wsev_ctx *ctx, uint64_t id) {
  (void)ctx;
  if (in_callback++) reentered++;
  add_event('D', id);
  in_callback--;
}

/* Select the first offered subprotocol; remember the X-Adopt header. */
static int on_upgrade(wsev_ctx *ctx, wsev_request *req) {
  (void)ctx;
  upgrade_requests++;
  const char *x = wsev_request_header(req, "X-Adopt");
  snprintf(last_x_adopt, sizeof last_x_adopt, "%s", x ? x : "");
  if (wsev_request_protocol_count(req) > 0)
    wsev_request_select_protocol(req, wsev_request_protocol(req, 0));
  return WSEV_ACCEPT;
}

static const wsev_handler handler = {.conn_accepted = on_accepted,
                                     .conn_closed = on_closed,
                                     .message_received = on_message,
                                     .upgrade_requested = on_upgrade,
                                     .conn_drained = on_drained};

static int count(char kind, uint64_t id) {
  int n = 0;
  for (int i = 0; i < n_events; i++)
    if (events[i].kind == kind && (id == 0 || events[i].id == id)) n++;
  return n;
}

static event *find(char kind, uint64_t id, int nth) {
  for (int i = 0; i < n_events; i++)
    if (events[i].kind == kind && (id == 0 || events[i].id == id) && nth-- == 0) return &events[i];
  return NULL;
}

/* ---- running the loop with a deadline ------------------------------------------- */

static void on_tick(uv_timer_t *t) { (void)t; }

static uv_timer_t tick;

/* Run the loop until cond() holds or `ms` pass; returns cond(). */
static int run_until(wsev_ctx *ctx, int (*cond)(void *), void *arg, uint64_t ms) {
  uv_loop_t *loop = wsev_get_loop(ctx);
  uint64_t deadline = uv_now(loop) + ms;
  while (!cond(arg)) {
    if (uv_now(loop) >= deadline) return 0;
    wsev_event_loop_iteration(ctx);
    uv_update_time(loop);
  }
  return 1;
}

static int never(void *arg) {
  (void)arg;
  return 0;
}
static int events_at_least(void *arg) { return n_events >= *(int *)arg; }
typedef struct {
  char kind;
  uint64_t id;
  int n;
} want;
static int have(void *arg) {
  want *w = arg;
  return count(w->kind, w->id) >= w->n;
}
static int wait_for(wsev_ctx *ctx, char kind, uint64_t id, int n) {
  want w = {kind, id, n};
  return run_until(ctx, have, &w, 10000);
}

/* ---- sockets -------------------------------------------------------------------- */

/* A connected TCP pair over loopback: *server is the accepted end. */
static int tcp_pair(int *server, int *client) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
      getsockname(l, (struct sockaddr *)&a, &alen) < 0) {
    perror("listener");
    return -1;
  }
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) < 0) {
    perror("connect");
    return -1;
  }
  int s = accept(l, NULL, NULL);
  close(l);
  if (s < 0) {
    perror("accept");
    return -1;
  }
  *server = s;
  *client = c;
  return 0;
}

static int fd_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

/* ---- the cases ------------------------------------------------------------------- */

/* Adopt both ends of a pair; returns the client id and sets *sid once both are open. */
static uint64_t adopt_pair(wsev_ctx *ctx, const char *url, const wsev_client_options *opts,
                           const char *early, uint64_t *sid) {
  int s, c;
  *sid = 0;
  if (tcp_pair(&s, &c) < 0) {
    CHECK(!"tcp pair");
    return 0;
  }
  uint64_t id = 12345, cid = 0;
  int base = n_events;
  CHECK(wsev_adopt_socket(ctx, s, NULL, NULL, &id) == 0);
  CHECK(id == 0); /* server side: the id comes with conn_accepted */
  CHECK(wsev_adopt_socket(ctx, c, url, opts, &cid) == 0);
  CHECK(cid != 0);
  if (early) CHECK(wsev_write_text(ctx, cid, early, strlen(early)) == 0);
  CHECK(n_events == base); /* nothing dispatched from inside the calls */
  CHECK(wait_for(ctx, 'A', cid, 1));
  int want_events = base + 2;
  CHECK(run_until(ctx, events_at_least, &want_events, 10000));
  for (int i = base; i < n_events; i++)
    if (events[i].kind == 'A' && events[i].id != cid) *sid = events[i].id;
  CHECK(*sid != 0 && *sid != cid);
  return cid;
}

static void case_basic(wsev_ctx *ctx) {
  uint64_t sid;
  int base = n_events;
  uint64_t cid = adopt_pair(ctx, "ws://localhost/adopted", NULL, "early bird", &sid);
  if (!sid) return;
  event *ca = find('A', cid, 0), *sa = find('A', sid, 0);
  CHECK(ca && ca->info_rc == 0 && ca->info.client == 1);
  if (ca && (ca->info_rc != 0 || ca->info.client != 1))
    fprintf(stderr, "  client side: conn_info rc %d, client=%d\n", ca->info_rc, ca->info.client);
  CHECK(ca && strcmp(ca->path, "/adopted") == 0);
  CHECK(ca && !ca->has_protocol);
  CHECK(ca && ca->info.tls == 0);
  CHECK(sa && sa->info_rc == 0 && sa->info.client == 0);
  CHECK(sa && strcmp(sa->path, "/adopted") == 0);
  CHECK(sa && !sa->has_protocol);

  /* The write before open arrives first. */
  CHECK(wait_for(ctx, 'M', sid, 1));
  event *m = find('M', sid, 0);
  CHECK(m && m->type == WSEV_TEXT && m->len == 10 && memcmp(m->text, "early bird", 10) == 0);

  /* Both ways. */
  CHECK(wsev_write_text(ctx, sid, "to the client", 13) == 0);
  CHECK(wsev_write(ctx, cid, "\x00\x01\x02", 3) == 0);
  CHECK(wsev_write_text(ctx, cid, "second", 6) == 0);
  CHECK(wait_for(ctx, 'M', cid, 1));
  CHECK(wait_for(ctx, 'M', sid, 3));
  m = find('M', cid, 0);
  CHECK(m && m->type == WSEV_TEXT && m->len == 13 && memcmp(m->text, "to the client", 13) == 0);
  m = find('M', sid, 1);
  CHECK(m && m->type == WSEV_BINARY && m->len == 3 && memcmp(m->text, "\x00\x01\x02", 3) == 0);
  m = find('M', sid, 2);
  CHECK(m && m->type == WSEV_TEXT && m->len == 6 && memcmp(m->text, "second", 6) == 0);

  /* The client side closes: both get conn_closed with 1000. */
  CHECK(wsev_close(ctx, cid) == 0);
  CHECK(wsev_close(ctx, cid) == WSEV_ECLOSING);
  CHECK(wait_for(ctx, 'C', cid, 1));
  CHECK(wait_for(ctx, 'C', sid, 1));
  event *cc = find('C', cid, 0), *sc = find('C', sid, 0);
  CHECK(cc && cc->close_rc == 0 && cc->close.error == 0 && cc->close.code == 1000 &&
        cc->close.by_peer == 0);
  CHECK(sc && sc->close_rc == 0 && sc->close.error == 0 && sc->close.code == 1000 &&
        sc->close.by_peer == 1);
  CHECK(wsev_write(ctx, cid, "x", 1) == WSEV_ENOCONN);
  CHECK(wsev_write(ctx, sid, "x", 1) == WSEV_ENOCONN);
  wsev_close_info outside;
  CHECK(wsev_get_close_info(ctx, cid, &outside) == WSEV_ENOCONN); /* outside conn_closed */

  /* Per id: accepted, messages, closed, once each. */
  run_until(ctx, never, NULL, 100);
  CHECK(count('A', cid) == 1 && count('C', cid) == 1);
  CHECK(count('A', sid) == 1 && count('C', sid) == 1);
  int last_msg = -1, closed_at = -1;
  for (int i = base; i < n_events; i++) {
    if (events[i].id != sid) continue;
    if (events[i].kind == 'M') last_msg = i;
    if (events[i].kind == 'C') closed_at = i;
  }
  CHECK(last_msg >= 0 && closed_at > last_msg);
}

static void case_server_closes(wsev_ctx *ctx) {
  uint64_t sid;
  uint64_t cid = adopt_pair(ctx, "ws://127.0.0.1:9/other?x=1", NULL, NULL, &sid);
  if (!sid) return;
  event *sa = find('A', sid, 0);
  CHECK(sa && strcmp(sa->path, "/other?x=1") == 0);
  CHECK(wsev_close_with(ctx, sid, 4000, "server says bye") == 0);
  CHECK(wait_for(ctx, 'C', cid, 1));
  CHECK(wait_for(ctx, 'C', sid, 1));
  event *cc = find('C', cid, 0), *sc = find('C', sid, 0);
  CHECK(cc && cc->close.error == 0 && cc->close.code == 4000 && cc->close.by_peer == 1 &&
        strcmp(cc->close.reason, "server says bye") == 0);
  CHECK(sc && sc->close.error == 0 && sc->close.code == 4000 && sc->close.by_peer == 0);
}

static void case_protocol_and_headers(wsev_ctx *ctx) {
  static const char *const protocols[] = {"chat", "other", NULL};
  wsev_client_options opts = {
      .protocols = protocols, .headers = "X-Adopt: yes please\r\n", .origin = "http://origin.test"};
  uint64_t sid;
  int before = upgrade_requests;
  uint64_t cid = adopt_pair(ctx, "ws://localhost:8080/p", &opts, NULL, &sid);
  if (!sid) return;
  CHECK(upgrade_requests == before + 1);
  CHECK(strcmp(last_x_adopt, "yes please") == 0);
  event *ca = find('A', cid, 0), *sa = find('A', sid, 0);
  CHECK(ca && ca->has_protocol && strcmp(ca->protocol, "chat") == 0);
  CHECK(sa && sa->has_protocol && strcmp(sa->protocol, "chat") == 0);
  CHECK(wsev_close(ctx, sid) == 0);
  CHECK(wait_for(ctx, 'C', cid, 1));
  CHECK(wait_for(ctx, 'C', sid, 1));
}

typedef struct {
  int fd;
  char buf[4096];
  size_t len;
} raw_reader;
static int got_request(void *arg) {
  raw_reader *r = arg;
  ssize_t n = recv(r->fd, r->buf + r->len, sizeof r->buf - 1 - r->len, MSG_DONTWAIT);
  if (n > 0) r->len += (size_t)n;
  r->buf[r->len] = 0;
  return strstr(r->buf, "\r\n\r\n") != NULL;
}

/* The client side's peer is ours: read the request it sends, then hang up. */
static void case_client_request_then_hangup(wsev_ctx *ctx) {
  int s, c;
  if (tcp_pair(&s, &c) < 0) {
    CHECK(!"tcp pair");
    return;
  }
  uint64_t cid = 0;
  CHECK(wsev_adopt_socket(ctx, c, "ws://example.org:8080/raw?q", NULL, &cid) == 0);
  CHECK(wsev_write_text(ctx, cid, "queued", 6) == 0);
  raw_reader r = {.fd = s};
  CHECK(run_until(ctx, got_request, &r, 10000));
  CHECK(strncmp(r.buf, "GET /raw?q HTTP/1.1\r\n", 21) == 0);
  CHECK(strstr(r.buf, "\r\nHost: example.org:8080\r\n") != NULL);
  CHECK(strstr(r.buf, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
  /* Nothing but the request (the queued message waits for a 101). */
  CHECK(strlen(r.buf) == r.len && strstr(r.buf, "\r\n\r\n")[4] == 0);
  close(s);
  CHECK(wait_for(ctx, 'C', cid, 1));
  event *cc = find('C', cid, 0);
  CHECK(cc && cc->close_rc == 0 && cc->close.error != 0 && cc->close.code == 1006);
  if (cc && (cc->close.error == 0 || cc->close.code != 1006))
    fprintf(stderr, "  hang-up before the 101: error %s, code %u, reason \"%s\"\n",
            cc->close.error ? wsev_err_name(cc->close.error) : "0", cc->close.code,
            cc->close.reason);
  CHECK(count('A', cid) == 0);
  CHECK(wsev_write(ctx, cid, "x", 1) == WSEV_ENOCONN);
}

/* The client side's peer answers 404: WSEV_EHANDSHAKE with the status in reason. */
static void case_client_refused(wsev_ctx *ctx) {
  int s, c;
  if (tcp_pair(&s, &c) < 0) {
    CHECK(!"tcp pair");
    return;
  }
  uint64_t cid = 0;
  CHECK(wsev_adopt_socket(ctx, c, "ws://localhost/nope", NULL, &cid) == 0);
  raw_reader r = {.fd = s};
  CHECK(run_until(ctx, got_request, &r, 10000));
  const char *resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  CHECK(send(s, resp, strlen(resp), MSG_NOSIGNAL) == (ssize_t)strlen(resp));
  CHECK(wait_for(ctx, 'C', cid, 1));
  event *cc = find('C', cid, 0);
  CHECK(cc && cc->close.error == WSEV_EHANDSHAKE && cc->close.code == 1006);
  CHECK(cc && strstr(cc->close.reason, "404") != NULL);
  close(s);
}

/* Closing a client-side connection before it opened: UV_ECANCELED. */
static void case_cancel_before_open(wsev_ctx *ctx) {
  int s, c;
  if (tcp_pair(&s, &c) < 0) {
    CHECK(!"tcp pair");
    return;
  }
  uint64_t cid = 0;
  CHECK(wsev_adopt_socket(ctx, c, "ws://localhost/", NULL, &cid) == 0);
  CHECK(wsev_close(ctx, cid) == 0);
  CHECK(wait_for(ctx, 'C', cid, 1));
  event *cc = find('C', cid, 0);
  CHECK(cc && cc->close.error == UV_ECANCELED);
  CHECK(count('A', cid) == 0);
  close(s);
}

/* Messages written before open count in wsev_buffered_amount, and a backlog built
 * before open that drains afterwards gives conn_drained like any other. */
static void case_preopen_backlog(wsev_ctx *ctx) {
  int s, c;
  if (tcp_pair(&s, &c) < 0) {
    CHECK(!"tcp pair");
    return;
  }
  static char chunk[64 * 1024];
  memset(chunk, 'q', sizeof chunk);
  uint64_t cid = 0, id;
  CHECK(wsev_adopt_socket(ctx, s, NULL, NULL, &id) == 0);
  CHECK(wsev_adopt_socket(ctx, c, "ws://localhost/backlog", NULL, &cid) == 0);
  for (int i = 0; i < 16; i++)
    CHECK(wsev_write(ctx, cid, chunk, sizeof chunk) == 0);
  size_t before_open = wsev_get_buffered_amount(ctx, cid);
  CHECK(before_open >= 16 * sizeof chunk);
  if (before_open < 16 * sizeof chunk)
    fprintf(stderr, "  wsev_buffered_amount before open: %zu, expected >= %zu\n", before_open,
            16 * sizeof chunk);
  CHECK(wait_for(ctx, 'A', cid, 1));
  uint64_t sid = 0;
  for (int i = 0; i < n_events; i++)
    if (events[i].kind == 'A' && events[i].id != cid && strcmp(events[i].path, "/backlog") == 0)
      sid = events[i].id;
  CHECK(sid != 0);
  CHECK(wait_for(ctx, 'M', sid, 16));
  CHECK(wait_for(ctx, 'D', cid, 1));
  CHECK(wsev_get_buffered_amount(ctx, cid) <= 64 * 1024);
  CHECK(wsev_close(ctx, cid) == 0);
  CHECK(wait_for(ctx, 'C', cid, 1));
  CHECK(wait_for(ctx, 'C', sid, 1));
}

/* Over the send limit before open: the write fails with WSEV_EBACKPRESSURE, which
 * (wsev_write's contract) means the connection is abandoned: later writes get
 * WSEV_ENOCONN (as after a 1008 on an open one), and conn_closed follows once, with
 * that error and without conn_accepted. */
static void case_preopen_over_limit(void) {
  wsev_ctx *ctx;
  uv_timer_t tick2;
  CHECK(test_ctx_new(&ctx, NULL, &handler, NULL) == 0);
  uv_timer_init(wsev_get_loop(ctx), &tick2);
  uv_timer_start(&tick2, on_tick, 10, 10);
  wsev_set_send_limits(ctx, 256 * 1024, 16 * 1024);
  int s, c;
  if (tcp_pair(&s, &c) == 0) {
    static char chunk[60 * 1024]; /* 4 frames fit in 256 KiB, 5 do not */
    memset(chunk, 'o', sizeof chunk);
    uint64_t cid = 0;
    n_events = 0; /* ids restart with a new context */
    int base = n_events;
    wsev_client_options opts = {.connect_timeout_ms = 1000};
    CHECK(wsev_adopt_socket(ctx, c, "ws://localhost/over", &opts, &cid) == 0);
    int rc = 0, i;
    for (i = 0; i < 16 && rc == 0; i++)
      rc = wsev_write(ctx, cid, chunk, sizeof chunk);
    CHECK(rc == WSEV_EBACKPRESSURE);
    CHECK(i == 5);
    rc = wsev_write(ctx, cid, "x", 1);
    CHECK(rc == WSEV_ENOCONN);
    if (rc != WSEV_ENOCONN)
      fprintf(stderr, "  write after a pre-open WSEV_EBACKPRESSURE returned %d\n", rc);
    CHECK(wait_for(ctx, 'C', cid, 1));
    run_until(ctx, never, NULL, 100);
    int accepted = 0, closed = 0, error = 0;
    for (int k = base; k < n_events; k++) {
      if (events[k].id != cid) continue;
      accepted += events[k].kind == 'A';
      closed += events[k].kind == 'C';
      if (events[k].kind == 'C' && events[k].close_rc == 0) error = events[k].close.error;
    }
    CHECK(accepted == 0 && closed == 1);
    CHECK(error == WSEV_EBACKPRESSURE);
    if (accepted != 0 || closed != 1)
      fprintf(stderr, "  pre-open over the limit: %d conn_accepted, %d conn_closed\n", accepted,
              closed);
    close(s);
  }
  uv_close((uv_handle_t *)&tick2, NULL);
  wsev_ctx_free(ctx);
}

static size_t in_kernel(int sender, int receiver) {
  int out = 0, in = 0;
  if (ioctl(sender, SIOCOUTQ, &out) < 0 || ioctl(receiver, FIONREAD, &in) < 0) return 0;
  return (size_t)out + (size_t)in;
}

static int got_101(void *arg) {
  raw_reader *r = arg;
  return got_request(arg) && strncmp(r->buf, "HTTP/1.1 101", 12) == 0;
}

/* wsev_buffered_amount counts what waits for a peer that does not read, also when
 * it was queued by wsev_broadcast (shared segments), and a peer that reads again
 * gets conn_drained. The peer here is a raw socket of ours. */
static void case_buffered_amount(wsev_ctx *ctx) {
  int s, c;
  if (tcp_pair(&s, &c) < 0) {
    CHECK(!"tcp pair");
    return;
  }
  int base = n_events;
  uint64_t id;
  CHECK(wsev_adopt_socket(ctx, s, NULL, NULL, &id) == 0);
  const char *req = "GET /slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n";
  CHECK(send(c, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req));
  raw_reader r = {.fd = c};
  CHECK(run_until(ctx, got_101, &r, 10000));
  int want_events = base + 1;
  CHECK(run_until(ctx, events_at_least, &want_events, 10000));
  uint64_t sid = 0;
  for (int i = base; i < n_events; i++)
    if (events[i].kind == 'A') sid = events[i].id;
  CHECK(sid != 0);
  if (!sid) return;
  static char big[256 * 1024];
  memset(big, 'b', sizeof big);
  /* 40 x 256 KiB = 10 MiB, more than the kernel takes, less than the 16 MiB limit;
   * half written one by one, half broadcast. */
  const size_t frame = sizeof big + 10; /* 2 + 8 bytes of header, unmasked */
  for (int i = 0; i < 20; i++)
    CHECK(wsev_write(ctx, sid, big, sizeof big) == 0);
  run_until(ctx, never, NULL, 50);
  /* Every byte is either still ours (buffered), in s's send queue, or in c's
   * receive queue. (Not an equality: a uv_write in flight counts whole in
   * wsev_buffered_amount although the kernel may have taken part of it.) */
  size_t lib = wsev_get_buffered_amount(ctx, sid), kernel = in_kernel(s, c);
  CHECK(lib + kernel >= 20 * frame);
  if (lib + kernel < 20 * frame)
    fprintf(stderr,
            "  after 20 writes of %zu-byte frames: wsev_buffered_amount %zu + %zu in"
            " the kernel < %zu\n",
            frame, lib, kernel, 20 * frame);
  CHECK(lib > 0);
  for (int i = 0; i < 20; i++)
    CHECK(wsev_broadcast(ctx, &sid, 1, big, sizeof big, WSEV_BINARY) == 1);
  run_until(ctx, never, NULL, 50);
  lib = wsev_get_buffered_amount(ctx, sid);
  kernel = in_kernel(s, c);
  CHECK(lib + kernel >= 40 * frame);
  if (lib + kernel < 40 * frame)
    fprintf(stderr,
            "  after 20 more by wsev_broadcast: wsev_buffered_amount %zu + %zu in the"
            " kernel < %zu\n",
            lib, kernel, 40 * frame);
  /* Read everything: conn_drained, and nothing waits any more. */
  static char sink[1 << 20];
  size_t total = 0, want_total = 40 * frame;
  uv_loop_t *loop = wsev_get_loop(ctx);
  uint64_t deadline = uv_now(loop) + 20000;
  while (total < want_total && uv_now(loop) < deadline) {
    ssize_t n = recv(c, sink, sizeof sink, MSG_DONTWAIT);
    if (n > 0) total += (size_t)n;
    wsev_event_loop_iteration(ctx);
    uv_update_time(loop);
  }
  CHECK(total == want_total);
  CHECK(wait_for(ctx, 'D', sid, 1));
  CHECK(wsev_get_buffered_amount(ctx, sid) == 0);
  close(c);
  CHECK(wait_for(ctx, 'C', sid, 1));
}

static void case_invalid(wsev_ctx *ctx) {
  uint64_t id = 777;
  int base = n_events;
  CHECK(wsev_adopt_socket(ctx, -1, NULL, NULL, &id) < 0);
  CHECK(wsev_adopt_socket(ctx, -1, "ws://localhost/", NULL, &id) < 0);
  /* An fd number that is not open. */
  int fd = dup(1);
  close(fd);
  CHECK(wsev_adopt_socket(ctx, fd, NULL, NULL, &id) < 0);
  CHECK(wsev_adopt_socket(ctx, fd, "ws://localhost/", NULL, &id) < 0);

  /* A bad URL or bad options: an error, and the socket is still the caller's. */
  int s, c;
  if (tcp_pair(&s, &c) == 0) {
    static const char *const bad_protocols[] = {"not a token", NULL};
    wsev_client_options bad_proto = {.protocols = bad_protocols};
    wsev_client_options bad_headers = {.headers = "no colon\r\n"};
    wsev_client_options bad_ca = {.ca_file = "/nonexistent/ca.pem"};
    CHECK(wsev_adopt_socket(ctx, c, "http://localhost/", NULL, &id) == WSEV_EBADURL);
    CHECK(wsev_adopt_socket(ctx, c, "ws://", NULL, &id) == WSEV_EBADURL);
    CHECK(wsev_adopt_socket(ctx, c, "ws://h/#frag", NULL, &id) == WSEV_EBADURL);
    CHECK(wsev_adopt_socket(ctx, c, "ws://localhost/", &bad_proto, &id) == UV_EINVAL);
    CHECK(wsev_adopt_socket(ctx, c, "ws://localhost/", &bad_headers, &id) == UV_EINVAL);
    CHECK(wsev_adopt_socket(ctx, c, "wss://localhost/", &bad_ca, &id) == WSEV_ETLSCA);
    CHECK(fd_open(c));
    /* ... and still usable: adopt it properly now. */
    uint64_t cid = 0, sid_placeholder = 0;
    CHECK(wsev_adopt_socket(ctx, s, NULL, NULL, &sid_placeholder) == 0);
    CHECK(wsev_adopt_socket(ctx, c, "ws://localhost/after-errors", NULL, &cid) == 0);
    CHECK(wait_for(ctx, 'A', cid, 1));
    CHECK(wsev_close(ctx, cid) == 0);
    CHECK(wait_for(ctx, 'C', cid, 1));
    int want_events = base + 4; /* A and C for both sides */
    CHECK(run_until(ctx, events_at_least, &want_events, 10000));
  }
  run_until(ctx, never, NULL, 100);
  /* Only the last pair produced events. */
  for (int i = base; i < n_events; i++)
    CHECK(events[i].id != 0);
  CHECK(n_events == base + 4);
}

/* A context freed with adopted connections still open: no callbacks, no leaks. */
static void case_free_while_open(void) {
  wsev_ctx *ctx;
  uv_timer_t tick2;
  CHECK(test_ctx_new(&ctx, NULL, &handler, NULL) == 0);
  uv_timer_init(wsev_get_loop(ctx), &tick2);
  uv_timer_start(&tick2, on_tick, 10, 10);
  uint64_t sid;
  n_events = 0; /* ids restart with a new context */
  int base = n_events;
  uint64_t cid = adopt_pair(ctx, "ws://localhost/", NULL, "pending", &sid);
  CHECK(cid != 0);
  /* A second pair that is not open yet. */
  int s, c;
  if (tcp_pair(&s, &c) == 0) {
    uint64_t id;
    CHECK(wsev_adopt_socket(ctx, s, NULL, NULL, &id) == 0);
    CHECK(wsev_adopt_socket(ctx, c, "ws://localhost/", NULL, &id) == 0);
    CHECK(wsev_write(ctx, id, "queued", 6) == 0);
  }
  int n = n_events;
  uv_close((uv_handle_t *)&tick2, NULL);
  wsev_ctx_free(ctx);
  CHECK(n_events == n); /* no callbacks from wsev_ctx_free */
  CHECK(n_events >= base + 2);
  for (int i = base; i < n_events; i++)
    CHECK(events[i].kind != 'C');
}

int main(void) {
  wsev_ctx *ctx;
  CHECK(test_ctx_new(&ctx, NULL, &handler, NULL) == 0);
  uv_timer_init(wsev_get_loop(ctx), &tick);
  uv_timer_start(&tick, on_tick, 10, 10);

  case_basic(ctx);
  case_server_closes(ctx);
  case_protocol_and_headers(ctx);
  case_client_request_then_hangup(ctx);
  case_client_refused(ctx);
  case_cancel_before_open(ctx);
  case_preopen_backlog(ctx);
  case_buffered_amount(ctx);
  case_invalid(ctx);

  /* Ids are unique and never 0. */
  for (int i = 0; i < n_events; i++) {
    CHECK(events[i].id != 0);
    if (events[i].kind != 'A') continue;
    for (int j = i + 1; j < n_events; j++)
      if (events[j].kind == 'A') CHECK(events[j].id != events[i].id);
  }
  CHECK(reentered == 0);

  uv_close((uv_handle_t *)&tick, NULL);
  wsev_ctx_free(ctx);
  case_free_while_open();
  case_preopen_over_limit();

  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
