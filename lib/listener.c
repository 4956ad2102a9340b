/* Listening sockets (wsev_listen and wsev_listen_and_serve*): binding a TCP port or a
 * Unix socket path, the certificates of a TLS listener (and replacing them), and
 * handing each pending client to server.c; a listener out of memory sheds clients
 * instead of stalling. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "alloc.h"
#include "context.h"

/* A listening handle, or the one that takes a client we cannot serve: TCP or a Unix
 * socket, as the listener is. */
typedef union {
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} wsev_listen_handle;

struct wsev_listener {
  wsev_listen_handle sock;
  /* Accepts and closes a client when there is no memory for a connection: libuv stops
   * polling a listener whose pending client was not accepted. */
  wsev_listen_handle reject;
  wsev_ctx *ctx;
  wsev_tls_config *tls; /* a wss listener's certificates and settings */
  wsev_tls_config *pending; /* wsev_set_listener_certs: the next ones, loaded on every
                               I/O thread before any thread takes them */
  /* The ticket keys its configurations share, so that tickets issued before
   * wsev_set_listener_certs resume after it (held by `tls`: valid while it is). */
  wsev_tls_tickets *tickets;
  wsev_listener *next;
  /* Out of descriptors, libuv drops pending clients with a reserved descriptor of its
   * loop; when that fails (several loops in one process race for the freed number)
   * it would retry accept without end. Then the listener pauses: its handle closes
   * while `spare` (a duplicate of the socket, kept for the listener's life) holds the
   * port and the queue, and `resume` opens a new duplicate a little later. */
  uv_timer_t resume;
  int spare;  /* -1: none (no pause possible) */
  int id;     /* wsev_listen's id, the same on every I/O thread */
  unsigned trust;     /* WSEV_TRUST_* */
  char *unix_path;    /* a Unix socket's path */
  dev_t unix_dev;     /* the socket file we made, removed at close if still ours */
  ino_t unix_ino;
  uint8_t owns_path;  /* this listener made the file (one per path, not the duplicates) */
  uint8_t unix_socket;
  uint8_t handles;        /* of sock, reject and resume still open; freed at 0 */
  uint8_t reject_busy;    /* reject is closing */
  uint8_t accept_waiting; /* a client is pending while reject was busy */
  uint8_t closing;
  uint8_t paused;     /* sock is closed (or closing): resume reopens it from spare */
  uint8_t sock_closed; /* while paused: its close completed */
};

/* How long a listener out of descriptors waits before it accepts again. */
#define PAUSE_MS 100

static void on_connection(uv_stream_t *server, int status);
static void on_resume(uv_timer_t *timer);

/* Remove the socket file we made, unless another process has put its own there. */
static void remove_unix_file(wsev_listener *l) {
  struct stat st;
  if (l->owns_path && lstat(l->unix_path, &st) == 0 && st.st_dev == l->unix_dev &&
      st.st_ino == l->unix_ino)
    unlink(l->unix_path);
}

static void release_handle(wsev_listener *l) {
  wsev_ctx *ctx = l->ctx;
  if (--l->handles == 0) {
    if (l->spare >= 0) close(l->spare);
    wsev__tls_config_unref(l->tls); /* connections hold their own references */
    wsev__tls_config_unref(l->pending);
    wsev__free(l->unix_path);
    wsev__free(l);
  }
  wsev__handle_closed(ctx);
}

static void on_paused_closed(uv_handle_t *h) {
  wsev_listener *l = h->data;
  l->sock_closed = 1;
  if (l->closing) release_handle(l); /* closed for good meanwhile */
}

static void pause_accepting(wsev_listener *l) {
  if (l->spare < 0 || l->paused || l->closing) return;
  l->paused = 1;
  uv_close((uv_handle_t *)&l->sock, on_paused_closed);
  uv_timer_start(&l->resume, on_resume, PAUSE_MS, 0);
}

/* A handle of the listener's kind on its loop. */
static int handle_init(wsev_listener *l, wsev_listen_handle *h) {
  int rc = l->unix_socket ? uv_pipe_init(l->ctx->loop, &h->pipe, 0)
                          : uv_tcp_init(l->ctx->loop, &h->tcp);
  h->stream.data = l;
  return rc;
}

static int handle_open(wsev_listen_handle *h, int unix_socket, int fd) {
  return unix_socket ? uv_pipe_open(&h->pipe, fd) : uv_tcp_open(&h->tcp, fd);
}

static void on_resume(uv_timer_t *timer) {
  wsev_listener *l = timer->data;
  if (l->closing || !l->paused) return;
  int fd = l->sock_closed ? dup(l->spare) : -1;
  if (fd < 0 || handle_init(l, &l->sock) != 0) {
    if (fd >= 0) close(fd);
    uv_timer_start(&l->resume, on_resume, PAUSE_MS, 0); /* still out of descriptors */
    return;
  }
  l->sock_closed = 0;
  if (handle_open(&l->sock, l->unix_socket, fd) != 0) {
    close(fd);
    uv_close((uv_handle_t *)&l->sock, on_paused_closed);
    uv_timer_start(&l->resume, on_resume, PAUSE_MS, 0);
    return;
  }
  l->paused = 0;
  if (uv_listen(&l->sock.stream, SOMAXCONN, on_connection) != 0) pause_accepting(l);
}

static void on_listener_closed(uv_handle_t *h) { release_handle(h->data); }

static void on_reject_closed(uv_handle_t *h) {
  wsev_listener *l = h->data;
  l->reject_busy = 0;
  if (l->accept_waiting && !l->closing && !l->paused) {
    l->accept_waiting = 0;
    on_connection(&l->sock.stream, 0);
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
  if (handle_init(l, &l->reject) != 0) return;
  l->reject_busy = 1;
  l->handles++;
  wsev__handle_opened(l->ctx);
  uv_accept(&l->sock.stream, &l->reject.stream);
  uv_close((uv_handle_t *)&l->reject, on_reject_closed);
}

static void on_connection(uv_stream_t *server, int status) {
  wsev_listener *l = server->data;
  if (status == UV_EMFILE || status == UV_ENFILE) {
    pause_accepting(l); /* libuv could not drop the client: see `spare` */
    return;
  }
  if (status < 0) return; /* others: libuv has dropped that client and goes on */
  wsev_accept_from from = {l->tls, l->trust, l->unix_socket};
  if (wsev__server_accept(l->ctx, server, &from) == UV_ENOMEM) reject_pending(l);
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


/* A listener on ctx's loop with its handle initialized (its socket not open yet), or
 * NULL without memory. It takes over the reference to `tls` (may be NULL), also when
 * it fails. */
static wsev_listener *listener_new(wsev_ctx *ctx, const wsev_listen_how *how, int unix_socket,
                                   wsev_tls_config *tls) {
  wsev_listener *l = wsev__calloc(1, sizeof *l);
  if (!l) {
    wsev__tls_config_unref(tls);
    return NULL;
  }
  l->ctx = ctx;
  l->tls = tls;
  l->tickets = how->tickets;
  l->id = how->id;
  l->trust = how->options->trust;
  l->unix_socket = (uint8_t)unix_socket;
  l->spare = -1;
  l->handles = 1;
  wsev__handle_opened(ctx);
  return l;
}

/* Give up on a listener that never listened: its handle closes, then it is freed. */
static int listener_fail(wsev_listener *l, int rc) {
  uv_close((uv_handle_t *)&l->sock, on_listener_closed);
  return rc;
}

/* Listening: keep a duplicate for pauses, and join the context's listeners. */
static int listener_start(wsev_listener *l) {
  wsev_ctx *ctx = l->ctx;
  int rc = uv_listen(&l->sock.stream, SOMAXCONN, on_connection);
  if (rc) return rc;
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&l->sock, &fd) == 0 && uv_timer_init(ctx->loop, &l->resume) == 0) {
    l->resume.data = l;
    l->handles++;
    wsev__handle_opened(ctx);
    l->spare = dup(fd);
  }
  l->next = ctx->listeners;
  ctx->listeners = l;
  return 0;
}

/* Listen at addr. With reuseport, other sockets may bind the same address (one per I/O
 * thread). */
static int listen_on(wsev_ctx *ctx, const struct sockaddr *addr, const wsev_listen_how *how,
                     wsev_tls_config *tls) {
  wsev_listener *l = listener_new(ctx, how, 0, tls);
  if (!l) return UV_ENOMEM;
  int rc = uv_tcp_init_ex(ctx->loop, &l->sock.tcp, addr->sa_family);
  l->sock.stream.data = l;
  if (rc) {
    wsev__tls_config_unref(l->tls);
    l->handles = 0; /* never opened: freed here */
    wsev__handle_closed(ctx);
    wsev__free(l);
    return rc;
  }
  if (how->reuseport) {
    uv_os_fd_t fd;
    int on = 1;
    if (uv_fileno((uv_handle_t *)&l->sock, &fd) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
      return listener_fail(l, UV_ENOTSUP);
  }
  struct sockaddr_storage bound;
  int len = sizeof bound;
  if ((rc = uv_tcp_bind(&l->sock.tcp, addr, 0)) != 0 ||
      (rc = uv_tcp_getsockname(&l->sock.tcp, (struct sockaddr *)&bound, &len)) != 0 ||
      (rc = listener_start(l)) != 0)
    return listener_fail(l, rc);
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
static int serve_tcp(wsev_ctx *ctx, const wsev_listen_how *how, wsev_tls_config *tls) {
  const char *host = how->options->host, *port = how->options->port;
  struct sockaddr_storage addr;
  int rc = parse_address(host ? host : "::", port, &addr);
  if (rc) {
    wsev__tls_config_unref(tls);
    return rc;
  }
  if (tls) wsev__tls_config_ref(tls); /* kept for the IPv4 fallback below */
  rc = listen_on(ctx, (const struct sockaddr *)&addr, how, tls);
  if (!host && (rc == UV_EAFNOSUPPORT || rc == UV_EADDRNOTAVAIL)) {
    /* "::" accepts IPv4 too (dual stack); fall back where IPv6 is missing. */
    parse_address("0.0.0.0", port, &addr);
    return listen_on(ctx, (const struct sockaddr *)&addr, how, tls);
  }
  wsev__tls_config_unref(tls);
  return rc;
}

/* ---- Unix sockets ------------------------------------------------------------------- */

/* Make way for a Unix socket at path: a socket file nobody listens on any more (its
 * server died without removing it) goes; a live one is UV_EADDRINUSE, any other kind
 * of file UV_EEXIST. */
static int unix_clear_stale(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -errno;
  if (!S_ISSOCK(st.st_mode)) return UV_EEXIST;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  memcpy(addr.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 ? UV_EADDRINUSE : -errno;
  close(fd);
  if (rc == UV_ECONNREFUSED) return unlink(path) == 0 || errno == ENOENT ? 0 : -errno;
  return rc == UV_EAGAIN ? UV_EADDRINUSE : rc; /* EAGAIN: alive, its queue full */
}

/* A listening Unix socket at path with its mode set before anyone can connect: its
 * descriptor, or an error. */
static int unix_bind(const char *path, unsigned mode, struct stat *made) {
  int rc = unix_clear_stale(path);
  if (rc) return rc;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  memcpy(addr.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    rc = errno == EADDRINUSE ? UV_EADDRINUSE : -errno; /* another server came first */
    close(fd);
    return rc;
  }
  if ((mode && chmod(path, mode) != 0) || lstat(path, made) != 0 ||
      listen(fd, SOMAXCONN) != 0) {
    rc = -errno;
    unlink(path);
    close(fd);
    return rc;
  }
  return fd;
}

/* Listen on how->options->unix_path, or (I/O threads after the first) on a duplicate
 * of the first thread's socket how->unix_fd; taking over the reference to tls. The
 * socket's descriptor goes to how->unix_fd for the next thread. */
static int serve_unix(wsev_ctx *ctx, wsev_listen_how *how, wsev_tls_config *tls) {
  const char *path = how->options->unix_path;
  size_t len = strlen(path);
  wsev_listener *l = listener_new(ctx, how, 1, tls);
  if (!l) return UV_ENOMEM;
  int rc = handle_init(l, &l->sock);
  if (rc || !(l->unix_path = wsev__malloc(len + 1))) {
    if (!rc) uv_close((uv_handle_t *)&l->sock, on_listener_closed);
    else {
      wsev__tls_config_unref(l->tls);
      wsev__handle_closed(ctx);
      wsev__free(l);
    }
    return rc ? rc : UV_ENOMEM;
  }
  memcpy(l->unix_path, path, len + 1);
  struct stat made;
  int fd = how->unix_fd >= 0 ? dup(how->unix_fd) : unix_bind(path, how->options->unix_mode, &made);
  if (fd < 0) return listener_fail(l, how->unix_fd >= 0 ? -errno : fd);
  if (how->unix_fd < 0) {
    l->owns_path = 1;
    l->unix_dev = made.st_dev;
    l->unix_ino = made.st_ino;
  }
  if ((rc = uv_pipe_open(&l->sock.pipe, fd)) != 0) {
    close(fd);
    remove_unix_file(l);
    return listener_fail(l, rc);
  }
  if ((rc = listener_start(l)) != 0) {
    remove_unix_file(l);
    return listener_fail(l, rc);
  }
  if (how->unix_fd < 0) how->unix_fd = fd;
  return 0;
}

/* ---- listening ------------------------------------------------------------------------ */

int wsev__listen(wsev_ctx *ctx, wsev_listen_how *how) {
  const wsev_listen_options *o = how->options;
  wsev_tls_config *tls = NULL;
  int port_num, rc;
  if (!o->unix_path && (rc = parse_port(o->port, &port_num)) != 0) return rc;
  if (o->cert_count) {
    /* Ticket keys of the listener's own unless the I/O threads share theirs: kept
     * through its configurations (wsev_set_listener_certs passes them on). */
    wsev_tls_tickets *own = how->tickets ? NULL : wsev__tls_tickets_new();
    wsev_rng *rng = wsev__ctx_rng(ctx);
    if ((!how->tickets && !own) || !rng || !wsev__ctx_tls_plain(ctx)) {
      wsev__tls_tickets_unref(own);
      return UV_ENOMEM;
    }
    if (own) how->tickets = own;
    rc = wsev__tls_server_config_certs(rng, o->certs, o->cert_count, how->tickets, &tls);
    if (!rc) rc = o->unix_path ? serve_unix(ctx, how, tls) : serve_tcp(ctx, how, tls);
    if (own) how->tickets = NULL;
    wsev__tls_tickets_unref(own); /* the configuration holds its own reference */
    return rc;
  }
  return o->unix_path ? serve_unix(ctx, how, tls) : serve_tcp(ctx, how, tls);
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

/* The options make sense (what the operating system would refuse is left to it). */
static int check_options(const wsev_listen_options *o) {
  if (o->trust & ~(WSEV_TRUST_PROXY_PROTOCOL | WSEV_TRUST_FORWARDED | WSEV_TRUST_X_FORWARDED_FOR))
    return UV_EINVAL;
  if (o->cert_count && !o->certs) return UV_EINVAL;
  for (size_t i = 0; i < o->cert_count; i++)
    if (!o->certs[i].cert_file || !o->certs[i].key_file) return UV_EINVAL;
  if (o->unix_path) {
    struct sockaddr_un addr;
    size_t len = strlen(o->unix_path);
    if (len == 0 || len >= sizeof addr.sun_path || o->unix_mode > 07777) return UV_EINVAL;
  } else if (!o->port) {
    return UV_EINVAL;
  }
  return 0;
}

int wsev_listen(wsev_ctx *ctx, const wsev_listen_options *options, int *bound_port) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!wsev__ctx_usable(ctx) || !options) return UV_EINVAL;
  int rc = check_options(options);
  if (rc) return rc;
  wsev_listen_how how = {.options = options, .id = ctx->listener_ids + 1, .unix_fd = -1};
  rc = ctx->io ? wsev__io_listen(ctx, &how) : wsev__listen(ctx, &how);
  if (rc < 0) return rc;
  if (bound_port) *bound_port = rc;
  return ++ctx->listener_ids;
}

/* The old calls: a port (and an address, a certificate) is all they say. */
static int listen_simple(wsev_ctx *ctx, const char *host, const char *port, const char *cert_file,
                         const char *key_file) {
  wsev_tls_cert cert = {cert_file, key_file};
  wsev_listen_options o = {.host = host, .port = port, .certs = &cert, .cert_count = !!cert_file};
  int bound = 0, rc = wsev_listen(ctx, &o, &bound);
  return rc < 0 ? rc : bound;
}

int wsev_listen_and_serve_addr(wsev_ctx *ctx, const char *host, const char *port) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!host) return UV_EINVAL;
  return listen_simple(ctx, host, port, NULL, NULL);
}

int wsev_listen_and_serve(wsev_ctx *ctx, const char *port) {
  return listen_simple(ctx, NULL, port, NULL, NULL);
}

int wsev_listen_and_serve_tls_addr(wsev_ctx *ctx, const char *host, const char *port,
                                   const char *cert_file, const char *key_file) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!cert_file || !key_file) return UV_EINVAL;
  return listen_simple(ctx, host, port, cert_file, key_file);
}

int wsev_listen_and_serve_tls(wsev_ctx *ctx, const char *port, const char *cert_file,
                              const char *key_file) {
  return wsev_listen_and_serve_tls_addr(ctx, NULL, port, cert_file, key_file);
}

/* ---- replacing certificates ------------------------------------------------------------ */

int wsev__listeners_prepare_certs(wsev_ctx *ctx, int id, const wsev_tls_cert *certs,
                                  size_t count) {
  wsev_tls_config *tls = NULL;
  int rc = UV_ENOENT;
  for (wsev_listener *l = ctx->listeners; l; l = l->next) {
    if (l->id != id || !l->tls) continue;
    if (!tls) { /* made once for the listener's sockets (IPv6 and its IPv4 fallback) */
      wsev_rng *rng = wsev__ctx_rng(ctx);
      if (!rng) return UV_ENOMEM;
      if ((rc = wsev__tls_server_config_certs(rng, certs, count, l->tickets, &tls)) != 0) return rc;
    }
    wsev__tls_config_ref(tls);
    wsev__tls_config_unref(l->pending); /* an earlier one never committed */
    l->pending = tls;
  }
  wsev__tls_config_unref(tls);
  return tls ? 0 : rc;
}

void wsev__listeners_commit_certs(wsev_ctx *ctx, int id, int commit) {
  for (wsev_listener *l = ctx->listeners; l; l = l->next) {
    if (l->id != id || !l->pending) continue;
    if (commit) {
      wsev__tls_config_unref(l->tls); /* open connections hold their own references */
      l->tls = l->pending;
    } else {
      wsev__tls_config_unref(l->pending);
    }
    l->pending = NULL;
  }
}

int wsev_set_listener_certs(wsev_ctx *ctx, int listener, const wsev_tls_cert *certs,
                            size_t count) {
  WSEV_CHECK_CTX(ctx, WSEV_EWRONGTHREAD);
  if (!certs || !count || listener <= 0) return UV_EINVAL;
  for (size_t i = 0; i < count; i++)
    if (!certs[i].cert_file || !certs[i].key_file) return UV_EINVAL;
  if (ctx->io) return wsev__io_set_certs(ctx, listener, certs, count);
  int rc = wsev__listeners_prepare_certs(ctx, listener, certs, count);
  wsev__listeners_commit_certs(ctx, listener, rc == 0);
  return rc;
}

void wsev__listeners_close(wsev_ctx *ctx) {
  wsev_listener *l = ctx->listeners;
  ctx->listeners = NULL;
  while (l) {
    wsev_listener *next = l->next;
    l->closing = 1;
    remove_unix_file(l); /* new clients get ENOENT, not a queue nobody reads */
    if (!l->paused)
      uv_close((uv_handle_t *)&l->sock, on_listener_closed);
    else if (l->sock_closed)
      release_handle(l); /* else on_paused_closed does */
    uv_close((uv_handle_t *)&l->resume, on_listener_closed);
    l = next;
  }
}
