/* Connections we open through the public API: HTTP CONNECT proxies (a fake proxy on
 * the context's own loop, whose accepted socket, once it answered 200, is adopted as
 * the server side of the same context), Happy Eyeballs races over a name with two
 * addresses, and Unix sockets. Every case checks how the connection ended (the close
 * info's error and reason), how long it took where time is the point, and that the
 * process has as many descriptors after wsev_ctx_free as before the context: no
 * attempt's socket leaks, whether a race is won, lost, cancelled by wsev_close or
 * wsev_shutdown, or cut by wsev_ctx_free; and the same for a CONNECT in progress.
 *
 * The races need a name with two addresses of which the first never answers: run as
 * root (or where unprivileged namespaces are allowed), the test enters network and
 * mount namespaces of its own, brings lo up, and bind-mounts an /etc/hosts of its
 * own (he-test: ::1 then 127.0.0.1), which vanish with the process. A SYN to a
 * listener whose accept queue is full is dropped, so "::1 never answers" is a
 * listener with backlog 0 and one connection queued. Without namespaces the race
 * cases are skipped (said on stdout) and the rest runs. WSEV_IO_THREADS=N runs every
 * case with the connections on N I/O threads. Prints "N passed, N failed". */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <wsev.h>

#include "../common/test-ctx.h"

static int passed, failed, case_failed;
static const char *case_name = "";
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      case_failed = 1;                                                                             \
      fprintf(stderr, "%s:%d: [%s] check failed: %s\n", __FILE__, __LINE__, case_name, #cond);     \
    }                                                                                              \
  } while (0)

static void begin(const char *name) {
  case_name = name;
  case_failed = 0;
}
static void end_case(void) {
  if (case_failed) {
    failed++;
    printf("FAIL %s\n", case_name);
  } else {
    passed++;
    printf("PASS %s\n", case_name);
  }
  fflush(stdout);
}

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own */
}

/* How much longer time limits are (valgrind). */
static double slow = 1.0;

/* ---- the application ------------------------------------------------------------- */

typedef struct {
  wsev_ctx *ctx;
  uint64_t id;
  int accepted, closed;
  wsev_close_info info;
  char echo[64];
  uint64_t t0, t_accepted, t_closed;
  int server_accepted;
} app;

static app A;

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  wsev_conn_info info;
  if (id != A.id) { /* the adopted server side */
    A.server_accepted++;
    return;
  }
  A.accepted = 1;
  A.t_accepted = uv_now(wsev_get_loop(ctx)) - A.t0;
  CHECK(wsev_get_conn_info(ctx, id, &info) == 0 && info.client == 1);
  CHECK(wsev_write_text(ctx, id, "hello", 5) == 0);
}

static void on_message(wsev_ctx *ctx, uint64_t id, const void *data, size_t len,
                       wsev_msg_type type) {
  if (id != A.id) { /* server side: echo */
    wsev_send(ctx, id, data, len, type, 0);
    return;
  }
  snprintf(A.echo, sizeof A.echo, "%.*s", (int)len, (const char *)data);
  wsev_close(ctx, id);
}

static void on_closed(wsev_ctx *ctx, uint64_t id) {
  if (id != A.id) return;
  A.closed = 1;
  A.t_closed = uv_now(wsev_get_loop(ctx)) - A.t0;
  CHECK(wsev_get_close_info(ctx, id, &A.info) == 0);
  wsev_stop(ctx);
}

/* ---- a fake HTTP proxy on the context's loop ------------------------------------------ */

enum { P_TUNNEL, P_ANSWER, P_CLOSE, P_SILENT };

typedef struct {
  uv_tcp_t listener;
  int port;
  int mode;
  const char *answer; /* P_ANSWER: sent whole when the request is in; P_TUNNEL: the 200 */
  const char *expect; /* the request expected byte for byte (NULL: any) */
  uv_tcp_t conn;
  int has_conn;
  char buf[2048];
  size_t len;
  int requests, request_ok;
} fake_proxy;

static fake_proxy P;

static void proxy_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(P.buf + P.len, (unsigned)(sizeof P.buf - P.len - 1));
}

static void conn_closed_cb(uv_handle_t *h) {
  (void)h;
  P.has_conn = 0;
}

static void proxy_drop(void) {
  if (P.has_conn && !uv_is_closing((uv_handle_t *)&P.conn))
    uv_close((uv_handle_t *)&P.conn, conn_closed_cb);
}

static void proxy_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  if (n < 0) {
    proxy_drop();
    return;
  }
  P.len += (size_t)n;
  P.buf[P.len] = 0;
  char *end = strstr(P.buf, "\r\n\r\n");
  if (!end || P.requests) return;
  P.requests++;
  P.request_ok = !P.expect || strcmp(P.buf, P.expect) == 0;
  if (!P.request_ok) fprintf(stderr, "[%s] proxy got: %s\n", case_name, P.buf);
  if (P.mode == P_CLOSE) {
    proxy_drop();
  } else if (P.mode == P_ANSWER) {
    uv_buf_t b = uv_buf_init((char *)P.answer, (unsigned)strlen(P.answer));
    CHECK(uv_try_write(s, &b, 1) == (int)b.len);
  } else if (P.mode == P_TUNNEL) {
    /* The 200, then the socket is the server's: wsev adopts it (a duplicate; ours
     * closes). */
    uv_buf_t b = uv_buf_init((char *)P.answer, (unsigned)strlen(P.answer));
    CHECK(uv_try_write(s, &b, 1) == (int)b.len);
    uv_os_fd_t fd;
    CHECK(uv_fileno((uv_handle_t *)s, &fd) == 0);
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    CHECK(dup >= 0);
    uv_read_stop(s);
    proxy_drop();
    CHECK(wsev_adopt_socket(A.ctx, dup, NULL, NULL, NULL) == 0);
  }
}

static void proxy_accept(uv_stream_t *server, int status) {
  if (status < 0 || P.has_conn) return;
  uv_tcp_init(wsev_get_loop(A.ctx), &P.conn);
  P.has_conn = 1;
  P.len = 0;
  if (uv_accept(server, (uv_stream_t *)&P.conn) == 0)
    uv_read_start((uv_stream_t *)&P.conn, proxy_alloc, proxy_read);
  else
    proxy_drop();
}

static void proxy_start(int mode, const char *answer, const char *expect) {
  memset(&P, 0, sizeof P);
  P.mode = mode;
  P.answer = answer;
  P.expect = expect;
  uv_tcp_init(wsev_get_loop(A.ctx), &P.listener);
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  CHECK(uv_tcp_bind(&P.listener, (struct sockaddr *)&sa, 0) == 0);
  CHECK(uv_listen((uv_stream_t *)&P.listener, 8, proxy_accept) == 0);
  int len = sizeof sa;
  uv_tcp_getsockname(&P.listener, (struct sockaddr *)&sa, &len);
  P.port = ntohs(sa.sin_port);
}

static void proxy_stop(void) {
  proxy_drop();
  if (P.port) uv_close((uv_handle_t *)&P.listener, NULL);
  P.port = 0;
}

/* ---- running a case ------------------------------------------------------------------ */

static uv_timer_t guard, action;
static int action_kind; /* 1 close, 2 shutdown, 3 free the context */
static int fds_before;
static int echo_port; /* the context's own echo listener on 127.0.0.1 */

static void on_guard(uv_timer_t *t) { wsev_stop(wsev_get_ctx_data((wsev_ctx *)t->data)); }

static void on_action(uv_timer_t *t) {
  wsev_ctx *ctx = t->data;
  if (action_kind == 1)
    CHECK(wsev_close(ctx, A.id) == 0);
  else if (action_kind == 2)
    CHECK(wsev_shutdown(ctx, 1000) == 0);
  else
    wsev_stop(ctx); /* 3: wsev_ctx_free right away, mid-dial */
}

static void setup(int listen_echo) {
  static const wsev_handler h = {
      .conn_accepted = on_accepted, .conn_closed = on_closed, .message_received = on_message};
  memset(&A, 0, sizeof A);
  fds_before = count_fds();
  CHECK(test_ctx_new(&A.ctx, NULL, &h, NULL) == 0);
  wsev_set_ctx_data(A.ctx, A.ctx);
  echo_port = 0;
  if (listen_echo) {
    wsev_listen_options lo = {.host = "127.0.0.1", .port = listen_echo > 1 ? NULL : "0"};
    char port[16];
    if (listen_echo > 1) {
      snprintf(port, sizeof port, "%d", listen_echo);
      lo.port = port;
    }
    int bound = 0;
    CHECK(wsev_listen(A.ctx, &lo, &bound) > 0);
    echo_port = bound;
  }
  A.t0 = uv_now(wsev_get_loop(A.ctx));
}

/* Dial and run until conn_closed (or the guard); an action after action_ms. */
static int dial(const char *url, const wsev_client_options *o, int kind, uint64_t action_ms,
                uint64_t guard_ms) {
  uv_loop_t *loop = wsev_get_loop(A.ctx);
  uv_update_time(loop);
  A.t0 = uv_now(loop);
  int rc = wsev_add_conn(A.ctx, url, o, &A.id);
  if (rc) return rc;
  uv_timer_init(loop, &guard);
  guard.data = A.ctx;
  uv_timer_start(&guard, on_guard, (uint64_t)(guard_ms * slow), 0);
  uv_timer_init(loop, &action);
  action.data = A.ctx;
  action_kind = kind;
  if (kind) uv_timer_start(&action, on_action, action_ms, 0);
  wsev_event_loop(A.ctx);
  return 0;
}

static void teardown(void) {
  uv_close((uv_handle_t *)&guard, NULL);
  uv_close((uv_handle_t *)&action, NULL);
  proxy_stop();
  wsev_ctx_free(A.ctx);
  int after = count_fds();
  if (after != fds_before) {
    fprintf(stderr, "[%s] fds %d -> %d\n", case_name, fds_before, after);
    if (getenv("WSEV_DEBUG_FDS")) {
      char cmd[64];
      snprintf(cmd, sizeof cmd, "ls -l /proc/%d/fd >&2", (int)getpid());
      if (system(cmd) != 0) fprintf(stderr, "ls failed\n");
    }
  }
  CHECK(after == fds_before);
}

/* ---- proxies ------------------------------------------------------------------------ */

static void expect_echo(void) {
  CHECK(A.accepted && A.closed && A.info.error == 0 && A.info.code == 1000);
  CHECK(strcmp(A.echo, "hello") == 0);
}

static void expect_failure(int error, const char *reason_part) {
  CHECK(A.closed && !A.accepted);
  CHECK(A.info.error == error);
  if (A.info.error != error || !strstr(A.info.reason, reason_part))
    fprintf(stderr, "[%s] closed with %s: %s\n", case_name, wsev_err_name(A.info.error),
            A.info.reason);
  CHECK(strstr(A.info.reason, reason_part) != NULL);
}

static void proxy_cases(void) {
  char proxy[128], url[128], expect[256];
  wsev_client_options o = {0};
  o.proxy = proxy;

  begin("proxy: tunnel with credentials (percent-decoded, Basic)");
  setup(1);
  /* "u@x" and "p:ss": base64("u@x:p:ss") */
  snprintf(expect, sizeof expect,
           "CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n"
           "Proxy-Authorization: Basic dUB4OnA6c3M=\r\n\r\n",
           echo_port, echo_port);
  proxy_start(P_TUNNEL, "HTTP/1.1 200 Connection established\r\nProxy-agent: fake\r\n\r\n", expect);
  snprintf(proxy, sizeof proxy, "http://u%%40x:p%%3Ass@127.0.0.1:%d", P.port);
  snprintf(url, sizeof url, "ws://localhost:%d/via-proxy", echo_port);
  CHECK(dial(url, &o, 0, 0, 5000) == 0);
  CHECK(P.requests == 1 && P.request_ok);
  CHECK(A.server_accepted == 1);
  expect_echo();
  teardown();
  end_case();

  struct {
    const char *name, *answer;
    int mode, error;
    const char *reason;
  } fails[] = {
      {"proxy: 407", "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", P_ANSWER,
       WSEV_EPROXYAUTH, "proxy authentication required"},
      {"proxy: 403", "HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n", P_ANSWER, WSEV_EPROXY,
       "proxy refused the tunnel: 403 Forbidden"},
      {"proxy: closes", NULL, P_CLOSE, WSEV_EPROXY, "closed the connection before answering"},
      {"proxy: not HTTP", "SSH-2.0-OpenSSH\r\n", P_ANSWER, WSEV_EPROXY, "malformed answer"},
      /* The server's first bytes in the proxy's packet reach the upgrade: its 403 is
       * read at once (no timeout). */
      {"proxy: 200 and the server's bytes in one packet",
       "HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", P_ANSWER,
       WSEV_EHANDSHAKE, "403"},
      {"proxy: silent (connect timeout covers the tunnel)", NULL, P_SILENT, UV_ETIMEDOUT,
       "timed out waiting for the proxy's answer"},
  };
  for (size_t i = 0; i < sizeof fails / sizeof *fails; i++) {
    begin(fails[i].name);
    setup(0);
    proxy_start(fails[i].mode, fails[i].answer,
                "CONNECT example.com:80 HTTP/1.1\r\n"
                "Host: example.com:80\r\n\r\n");
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d/", P.port);
    o.connect_timeout_ms = 400;
    CHECK(dial("ws://example.com/", &o, 0, 0, 5000) == 0);
    o.connect_timeout_ms = 0;
    CHECK(P.requests == 1 && P.request_ok);
    expect_failure(fails[i].error, fails[i].reason);
    if (fails[i].mode != P_SILENT) CHECK(A.t_closed < 300 * slow);
    teardown();
    end_case();
  }

  begin("proxy: wsev_close during the CONNECT");
  setup(0);
  proxy_start(P_SILENT, NULL, NULL);
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", P.port);
  CHECK(dial("ws://[2001:db8::1]:9/", &o, 1, 100, 5000) == 0);
  CHECK(P.requests == 1);
  CHECK(strstr(P.buf, "CONNECT [2001:db8::1]:9 HTTP/1.1\r\nHost: [2001:db8::1]:9\r\n") == P.buf);
  expect_failure(UV_ECANCELED, "closed by the application");
  teardown();
  end_case();

  begin("proxy: wsev_shutdown during the CONNECT");
  setup(0);
  proxy_start(P_SILENT, NULL, NULL);
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", P.port);
  CHECK(dial("wss://example.com/", &o, 2, 100, 5000) == 0);
  expect_failure(UV_ECANCELED, "shutting down");
  teardown();
  end_case();

  begin("proxy: wsev_ctx_free during the CONNECT");
  setup(0);
  proxy_start(P_SILENT, NULL, NULL);
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", P.port);
  CHECK(dial("wss://example.com/", &o, 3, 150, 5000) == 0);
  CHECK(P.requests == 1 && !A.closed);
  teardown(); /* frees the context with the tunnel half open */
  end_case();

  begin("proxy: unreachable");
  setup(0);
  proxy_start(P_SILENT, NULL, NULL);
  int dead = P.port;
  proxy_stop();
  snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", dead);
  CHECK(dial("ws://example.com/", &o, 0, 0, 5000) == 0);
  char reason[64];
  snprintf(reason, sizeof reason, "cannot connect to proxy 127.0.0.1 port %d", dead);
  expect_failure(UV_ECONNREFUSED, reason);
  teardown();
  end_case();

  begin("proxy: URLs that do not parse are refused at once");
  setup(0);
  const char *bad[] = {"https://127.0.0.1:1", "127.0.0.1:3128", "http://a@b@c",
                       "http://h:0",          "http://h/x",     "http://u%3A:p@h"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    wsev_client_options b = {.proxy = bad[i]};
    uint64_t id = 7;
    CHECK(wsev_add_conn(A.ctx, "ws://example.com/", &b, &id) == WSEV_EBADURL);
  }
  uv_timer_init(wsev_get_loop(A.ctx), &guard);
  uv_timer_init(wsev_get_loop(A.ctx), &action);
  teardown();
  end_case();
}

/* ---- Unix sockets ------------------------------------------------------------------- */

static void unix_cases(void) {
  char dir[] = "/tmp/wsev-dial-XXXXXX", path[128], url[200];
  if (!mkdtemp(dir)) {
    CHECK(!"mkdtemp");
    return;
  }
  snprintf(path, sizeof path, "%s/s.sock", dir);

  begin("ws+unix: dial a Unix socket");
  setup(0);
  wsev_listen_options lo = {.unix_path = path};
  CHECK(wsev_listen(A.ctx, &lo, NULL) > 0);
  snprintf(url, sizeof url, "ws+unix:%s:/over-unix?x=1", path);
  CHECK(dial(url, NULL, 0, 0, 5000) == 0);
  expect_echo();
  teardown();
  end_case();

  begin("ws+unix: nobody there");
  setup(0);
  snprintf(url, sizeof url, "ws+unix:%s", path); /* removed with its listener */
  CHECK(dial(url, NULL, 0, 0, 5000) == 0);
  expect_failure(UV_ENOENT, path);
  teardown();
  end_case();
  rmdir(dir);
}

/* ---- Happy Eyeballs ------------------------------------------------------------------- */

/* A listener on addr:port (port 0: any) whose accept queue is full: SYNs to it are
 * dropped. Returns its port; *fds gets the listener and the queued connection. */
static int stuffed_listener(int family, int port, int fds[2]) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  if (family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    a->sin6_port = htons((uint16_t)port);
    len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->sin_port = htons((uint16_t)port);
    len = sizeof *a;
  }
  int one = 1;
  fds[0] = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (family == AF_INET6) setsockopt(fds[0], IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fds[0], (struct sockaddr *)&ss, len) != 0 || listen(fds[0], 0) != 0) return -1;
  getsockname(fds[0], (struct sockaddr *)&ss, &len);
  fds[1] = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  connect(fds[1], (struct sockaddr *)&ss, len); /* completes into the queue */
  usleep(20000);
  return ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                  : ((struct sockaddr_in *)&ss)->sin_port);
}

static int enter_namespaces(char *why, size_t cap) {
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
    snprintf(why, cap, "unshare(CLONE_NEWNET | CLONE_NEWNS): %s", strerror(errno));
    return -1;
  }
  if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0) {
    snprintf(why, cap, "making / private: %s", strerror(errno));
    return -1;
  }
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
  int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
  ifr.ifr_flags |= IFF_UP;
  if (rc == 0) rc = ioctl(s, SIOCSIFFLAGS, &ifr);
  close(s);
  if (rc != 0) {
    snprintf(why, cap, "bringing lo up: %s", strerror(errno));
    return -1;
  }
  char hosts[] = "/tmp/wsev-hosts-XXXXXX";
  int fd = mkstemp(hosts);
  const char *text = "127.0.0.1 localhost\n::1 he-test he-hang he-refuse\n"
                     "127.0.0.1 he-test he-hang he-refuse\n";
  rc = fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ? -1 : 0;
  if (fd >= 0) close(fd);
  if (rc == 0) rc = mount(hosts, "/etc/hosts", "none", MS_BIND, NULL);
  if (fd >= 0) unlink(hosts);
  if (rc != 0) {
    snprintf(why, cap, "bind-mounting /etc/hosts: %s", strerror(errno));
    return -1;
  }
  return 0;
}

static void race_cases(void) {
  char url[128];
  int v6[2];
  wsev_client_options o = {0};

  /* he-test: ::1 drops SYNs, 127.0.0.1 is the echo listener on the same port. */
  int port = stuffed_listener(AF_INET6, 0, v6);
  CHECK(port > 0);
  snprintf(url, sizeof url, "ws://he-test:%d/raced", port);

  begin("race: the second address wins after the delay (100 ms)");
  setup(port);
  o.happy_eyeballs_delay_ms = 100;
  CHECK(dial(url, &o, 0, 0, 5000) == 0);
  expect_echo();
  CHECK(A.t_accepted >= 95 && A.t_accepted < 1000 * slow);
  printf("  opened after %llu ms\n", (unsigned long long)A.t_accepted);
  teardown();
  end_case();

  begin("race: the default delay (250 ms)");
  setup(port);
  o.happy_eyeballs_delay_ms = 0;
  CHECK(dial(url, &o, 0, 0, 5000) == 0);
  expect_echo();
  CHECK(A.t_accepted >= 245 && A.t_accepted < 1500 * slow);
  printf("  opened after %llu ms\n", (unsigned long long)A.t_accepted);
  teardown();
  end_case();

  begin("race: off (UINT64_MAX) waits for the first address until the timeout");
  setup(port);
  o.happy_eyeballs_delay_ms = UINT64_MAX;
  o.connect_timeout_ms = 600;
  CHECK(dial(url, &o, 0, 0, 5000) == 0);
  expect_failure(UV_ETIMEDOUT, "timed out connecting");
  CHECK(A.t_closed >= 595);
  o.connect_timeout_ms = 0;
  teardown();
  end_case();

  /* he-hang: both addresses drop SYNs. */
  close(v6[0]);
  close(v6[1]);
  int h6[2], h4[2];
  int hport = stuffed_listener(AF_INET6, 0, h6);
  CHECK(hport > 0 && stuffed_listener(AF_INET, hport, h4) == hport);
  snprintf(url, sizeof url, "ws://he-hang:%d/", hport);
  o.happy_eyeballs_delay_ms = 50;
  static const struct {
    const char *name;
    int kind;
    int error;
    const char *reason;
  } cut[] = {
      {"race: wsev_close with both attempts in flight", 1, UV_ECANCELED, "closed by the app"},
      {"race: wsev_shutdown with both attempts in flight", 2, UV_ECANCELED, "shutting down"},
      {"race: wsev_ctx_free with both attempts in flight", 3, 0, NULL},
  };
  for (size_t i = 0; i < sizeof cut / sizeof *cut; i++) {
    begin(cut[i].name);
    setup(0);
    CHECK(dial(url, &o, cut[i].kind, 200, 5000) == 0);
    if (cut[i].reason)
      expect_failure(cut[i].error, cut[i].reason);
    else
      CHECK(!A.closed);
    teardown();
    end_case();
  }

  begin("race: the connect timeout ends a race that nobody wins");
  setup(0);
  o.connect_timeout_ms = 400;
  CHECK(dial(url, &o, 0, 0, 5000) == 0);
  expect_failure(UV_ETIMEDOUT, "timed out connecting");
  o.connect_timeout_ms = 0;
  teardown();
  end_case();
  close(h6[0]);
  close(h6[1]);
  close(h4[0]);
  close(h4[1]);

  /* he-refuse: nobody listens: each failure starts the next attempt at once. */
  begin("race: every address refused, the next started at once");
  setup(0);
  int rfd[2];
  int rport = stuffed_listener(AF_INET6, 0, rfd);
  close(rfd[0]);
  close(rfd[1]);
  snprintf(url, sizeof url, "ws://he-refuse:%d/", rport);
  o.happy_eyeballs_delay_ms = 5000;
  CHECK(dial(url, &o, 0, 0, 8000) == 0);
  char reason[80];
  snprintf(reason, sizeof reason, "cannot connect to he-refuse port %d: connection refused", rport);
  expect_failure(UV_ECONNREFUSED, reason);
  CHECK(A.t_closed < 1000 * slow);
  teardown();
  end_case();
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  /* Under valgrind (its preload library is in LD_PRELOAD) time limits grow 6x. */
  const char *preload = getenv("LD_PRELOAD");
  if (preload && strstr(preload, "vgpreload")) slow = 6.0;
  if (getenv("WSEV_SLOW")) slow = atof(getenv("WSEV_SLOW"));
  char why[160] = "";
  int ns = enter_namespaces(why, sizeof why) == 0;
  /* libuv opens descriptors of its own once per process (the signal pipe): before
   * the first count. */
  uv_loop_t first;
  uv_loop_init(&first);
  uv_loop_close(&first);
  proxy_cases();
  unix_cases();
  if (ns)
    race_cases();
  else
    printf("SKIP the Happy Eyeballs cases: no namespaces (%s)\n", why);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
