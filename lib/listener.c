/* Listening sockets (wsev_listen_and_serve*): binding, and handing each pending
 * client to server.c; a listener out of memory sheds clients instead of stalling. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "context.h"

struct wsev_listener {
  uv_tcp_t tcp;
  /* Accepts and closes a client when there is no memory for a connection: libuv stops
   * polling a listener whose pending client was not accepted. */
  uv_tcp_t reject;
  wsev_ctx *ctx;
  wsev_tls_config *tls; /* a wss listener's certificate and settings */
  wsev_listener *next;
  /* Out of descriptors, libuv drops pending clients with a reserved descriptor of its
   * loop; when that fails (several loops in one process race for the freed number)
   * it would retry accept without end. Then the listener pauses: its handle closes
   * while `spare` (a duplicate of the socket, kept for the listener's life) holds the
   * port and the queue, and `resume` opens a new duplicate a little later. */
  uv_timer_t resume;
  int spare;              /* -1: none (no pause possible) */
  uint8_t handles;        /* of tcp, reject and resume still open; freed at 0 */
  uint8_t reject_busy;    /* reject is closing */
  uint8_t accept_waiting; /* a client is pending while reject was busy */
  uint8_t closing;
  uint8_t paused;     /* tcp is closed (or closing): resume reopens it from spare */
  uint8_t tcp_closed; /* while paused: its close completed */
};

/* How long a listener out of descriptors waits before it accepts again. */
#define PAUSE_MS 100

static void on_connection(uv_stream_t *server, int status);
static void on_resume(uv_timer_t *timer);

static void release_handle(wsev_listener *l) {
  wsev_ctx *ctx = l->ctx;
  if (--l->handles == 0) {
    if (l->spare >= 0) close(l->spare);
    wsev__tls_config_unref(l->tls); /* connections hold their own references */
    wsev__free(l);
  }
  wsev__handle_closed(ctx);
}

static void on_paused_closed(uv_handle_t *h) {
  wsev_listener *l = h->data;
  l->tcp_closed = 1;
  if (l->closing) release_handle(l); /* closed for good meanwhile */
}

static void pause_accepting(wsev_listener *l) {
  if (l->spare < 0 || l->paused || l->closing) return;
  l->paused = 1;
  uv_close((uv_handle_t *)&l->tcp, on_paused_closed);
  uv_timer_start(&l->resume, on_resume, PAUSE_MS, 0);
}

static void on_resume(uv_timer_t *timer) {
  wsev_listener *l = timer->data;
  if (l->closing || !l->paused) return;
  int fd = l->tcp_closed ? dup(l->spare) : -1;
  if (fd < 0 || uv_tcp_init(l->ctx->loop, &l->tcp) != 0) {
    if (fd >= 0) close(fd);
    uv_timer_start(&l->resume, on_resume, PAUSE_MS, 0); /* still out of descriptors */
    return;
  }
  l->tcp.data = l;
  l->tcp_closed = 0;
  if (uv_tcp_open(&l->tcp, fd) != 0) {
    close(fd);
    uv_close((uv_handle_t *)&l->tcp, on_paused_closed);
    uv_timer_start(&l->resume, on_resume, PAUSE_MS, 0);
    return;
  }
  l->paused = 0;
  if (uv_listen((uv_stream_t *)&l->tcp, SOMAXCONN, on_connection) != 0) pause_accepting(l);
}

static void on_listener_closed(uv_handle_t *h) { release_handle(h->data); }

static void on_reject_closed(uv_handle_t *h) {
  wsev_listener *l = h->data;
  l->reject_busy = 0;
  if (l->accept_waiting && !l->closing && !l->paused) {
    l->accept_waiting = 0;
    on_connection((uv_stream_t *)&l->tcp, 0);
  }
  release_handle(l);
}

/* Out of memory for a connection: take the client off the listen queue and close
 * it, so the listener goes on (and stays responsive once memory is back). */
static void reject_pending(wsev_listener *l) {
  if (l->reject_busy) {
    l->accept_waiting = 1;
    return;
  }
  if (uv_tcp_init(l->ctx->loop, &l->reject) != 0) return;
  l->reject.data = l;
  l->reject_busy = 1;
  l->handles++;
  wsev__handle_opened(l->ctx);
  uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&l->reject);
  uv_close((uv_handle_t *)&l->reject, on_reject_closed);
}

static void on_connection(uv_stream_t *server, int status) {
  wsev_listener *l = server->data;
  if (status == UV_EMFILE || status == UV_ENFILE) {
    pause_accepting(l); /* libuv could not drop the client: see `spare` */
    return;
  }
  if (status < 0) return; /* others: libuv has dropped that client and goes on */
  if (wsev__server_accept(l->ctx, server, l->tls) == UV_ENOMEM) reject_pending(l);
}

/* A decimal port 0..65535, digits only. */
static int parse_port(const char *s, int *port) {
  long v = 0;
  size_t n = 0;
  if (!s) return UV_EINVAL;
  for (; s[n]; n++) {
    if (s[n] < '0' || s[n] > '9' || n >= 5) return WSEV_EBADPORT;
    v = v * 10 + (s[n] - '0');
  }
  if (n == 0 || v > 65535) return WSEV_EBADPORT;
  *port = (int)v;
  return 0;
}

/* Listen at addr; the listener takes over the reference to `tls` (may be NULL),
 * also when it fails. With reuseport, other sockets may bind the same address (one per
 * I/O thread). */
static int listen_on(wsev_ctx *ctx, const struct sockaddr *addr, wsev_tls_config *tls,
                     int reuseport) {
  wsev_listener *l = wsev__calloc(1, sizeof *l);
  int rc = l ? uv_tcp_init_ex(ctx->loop, &l->tcp, addr->sa_family) : UV_ENOMEM;
  if (!rc && reuseport) {
    uv_os_fd_t fd;
    int on = 1;
    if (uv_fileno((uv_handle_t *)&l->tcp, &fd) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
      rc = UV_ENOTSUP;
    if (rc) {
      l->ctx = ctx;
      l->tcp.data = l;
      l->handles = 1;
      wsev__handle_opened(ctx);
      wsev__tls_config_unref(tls);
      l->tls = NULL;
      uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
      return rc;
    }
  }
  if (rc) {
    wsev__tls_config_unref(tls);
    wsev__free(l);
    return rc;
  }
  l->ctx = ctx;
  l->tls = tls;
  l->tcp.data = l;
  l->handles = 1;
  l->spare = -1;
  wsev__handle_opened(ctx);
  rc = uv_tcp_bind(&l->tcp, addr, 0);
  if (!rc) rc = uv_listen((uv_stream_t *)&l->tcp, SOMAXCONN, on_connection);
  uv_os_fd_t fd;
  if (!rc && uv_fileno((uv_handle_t *)&l->tcp, &fd) == 0 &&
      uv_timer_init(ctx->loop, &l->resume) == 0) {
    l->resume.data = l;
    l->handles++;
    wsev__handle_opened(ctx);
    l->spare = dup(fd);
  }
  struct sockaddr_storage bound;
  int len = sizeof bound;
  if (!rc) rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &len);
  if (rc) {
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
    return rc;
  }
  l->next = ctx->listeners;
  ctx->listeners = l;
  return bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

/* An IPv4 or IPv6 literal and a port string into addr. */
static int parse_address(const char *host, const char *port, struct sockaddr_storage *addr) {
  int port_num, rc = parse_port(port, &port_num);
  if (rc) return rc;
  if (strchr(host, ':'))
    rc = uv_ip6_addr(host, port_num, (struct sockaddr_in6 *)addr);
  else
    rc = uv_ip4_addr(host, port_num, (struct sockaddr_in *)addr);
  return rc ? UV_EINVAL : 0;
}

/* Bind to host (NULL: every interface), taking over the reference to tls. */
static int serve(wsev_ctx *ctx, const char *host, const char *port, wsev_tls_config *tls,
                 int reuseport) {
  struct sockaddr_storage addr;
  int rc = parse_address(host ? host : "::", port, &addr);
  if (rc) {
    wsev__tls_config_unref(tls);
    return rc;
  }
  if (tls) wsev__tls_config_ref(tls); /* kept for the IPv4 fallback below */
  rc = listen_on(ctx, (const struct sockaddr *)&addr, tls, reuseport);
  if (!host && (rc == UV_EAFNOSUPPORT || rc == UV_EADDRNOTAVAIL)) {
    /* "::" accepts IPv4 too (dual stack); fall back where IPv6 is missing. */
    parse_address("0.0.0.0", port, &addr);
    return listen_on(ctx, (const struct sockaddr *)&addr, tls, reuseport);
  }
  wsev__tls_config_unref(tls);
  return rc;
}

int wsev__listen(wsev_ctx *ctx, const char *host, const char *port, const char *cert_file,
                 const char *key_file, wsev_tls_tickets *tickets, int reuseport) {
  wsev_tls_config *tls = NULL;
  int port_num, rc;
  if ((rc = parse_port(port, &port_num)) != 0) return rc;
  if (cert_file) {
    wsev_rng *rng = wsev__ctx_rng(ctx);
    if (!rng || !wsev__ctx_tls_plain(ctx)) return UV_ENOMEM;
    if ((rc = wsev__tls_server_config(rng, cert_file, key_file, tickets, &tls)) != 0) return rc;
  }
  return serve(ctx, host, port, tls, reuseport);
}

int wsev__listen_probe(const char *host, const char *port) {
  struct sockaddr_storage addr;
  int rc = parse_address(host ? host : "::", port, &addr);
  if (rc) return rc;
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
    if (fd < 0) {
      rc = -errno;
    } else {
      socklen_t len =
          addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on); /* as libuv does */
      rc = bind(fd, (struct sockaddr *)&addr, len) == 0 &&
                   getsockname(fd, (struct sockaddr *)&addr, &len) == 0
               ? 0
               : -errno;
      close(fd);
    }
    if (!rc)
      return ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                              : ((struct sockaddr_in *)&addr)->sin_port);
    if (host || (rc != UV_EAFNOSUPPORT && rc != UV_EADDRNOTAVAIL)) return rc;
    parse_address("0.0.0.0", port, &addr); /* no IPv6 here */
  }
  return rc;
}

/* On the context's own loop, or on every I/O thread's. */
static int listen_any(wsev_ctx *ctx, const char *host, const char *port, const char *cert_file,
                      const char *key_file) {
  if (ctx->io) return wsev__io_listen(ctx, host, port, cert_file, key_file);
  return wsev__listen(ctx, host, port, cert_file, key_file, NULL, 0);
}

int wsev_listen_and_serve_addr(wsev_ctx *ctx, const char *host, const char *port) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!wsev__ctx_usable(ctx) || !host) return UV_EINVAL;
  return listen_any(ctx, host, port, NULL, NULL);
}

int wsev_listen_and_serve(wsev_ctx *ctx, const char *port) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!wsev__ctx_usable(ctx)) return UV_EINVAL;
  return listen_any(ctx, NULL, port, NULL, NULL);
}

int wsev_listen_and_serve_tls_addr(wsev_ctx *ctx, const char *host, const char *port,
                                   const char *cert_file, const char *key_file) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!wsev__ctx_usable(ctx) || !cert_file || !key_file) return UV_EINVAL;
  return listen_any(ctx, host, port, cert_file, key_file);
}

int wsev_listen_and_serve_tls(wsev_ctx *ctx, const char *port, const char *cert_file,
                              const char *key_file) {
  return wsev_listen_and_serve_tls_addr(ctx, NULL, port, cert_file, key_file);
}

void wsev__listeners_close(wsev_ctx *ctx) {
  wsev_listener *l = ctx->listeners;
  ctx->listeners = NULL;
  while (l) {
    wsev_listener *next = l->next;
    l->closing = 1;
    if (!l->paused)
      uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
    else if (l->tcp_closed)
      release_handle(l); /* else on_paused_closed does */
    uv_close((uv_handle_t *)&l->resume, on_listener_closed);
    l = next;
  }
}
