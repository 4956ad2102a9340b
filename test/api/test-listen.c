/* wsev_listen's options in one process: what it refuses, Unix sockets (a stale file
 * replaced, a live one or another kind of file refused, the mode, the file removed at
 * the end unless it is no longer ours), what wsev_get_conn_info says of a Unix client
 * (accepted and adopted), and wsev_set_listener_certs' refusals. Clients are blocking
 * sockets in a second thread; the context's loop runs here. */
#define _GNU_SOURCE /* struct ucred */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <wsev.h>

#include "../common/test-ctx.h"
#include "raw-client.h"

static int failures, checks;
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    checks++;                                                                                      \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                     \
    }                                                                                              \
  } while (0)

static char dir[64], sock_path[100]; /* within sun_path */

/* A socket bound at path (listening if `listening`), or -1. */
static int bound_socket(const char *path, int listening) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      (listening && listen(fd, 4) != 0)) {
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

static int unix_connect(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* ---- refusals ------------------------------------------------------------------------ */

static void test_refusals(void) {
  wsev_ctx *ctx;
  wsev_handler h = {0};
  CHECK(test_ctx_new(&ctx, NULL, &h, NULL) == 0);
  wsev_tls_cert no_key = {"x.crt", NULL};
  char long_path[200];
  memset(long_path, 'a', sizeof long_path - 1);
  long_path[sizeof long_path - 1] = 0;
  long_path[0] = '/';
  const wsev_listen_options bad[] = {
      {.port = NULL},                         /* neither a port nor a path */
      {.port = "0", .trust = 8},              /* unknown trust bit */
      {.port = "0", .cert_count = 1},         /* certificates missing */
      {.port = "0", .certs = &no_key, .cert_count = 1},
      {.unix_path = long_path},               /* longer than sun_path */
      {.unix_path = ""},
      {.unix_path = sock_path, .unix_mode = 010000},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(wsev_listen(ctx, &bad[i], NULL) == UV_EINVAL);
  CHECK(wsev_listen(NULL, &bad[0], NULL) == UV_EINVAL);
  CHECK(wsev_listen(ctx, NULL, NULL) == UV_EINVAL);
  wsev_listen_options bad_port = {.port = "70000"};
  CHECK(wsev_listen(ctx, &bad_port, NULL) == WSEV_EBADPORT);
  wsev_listen_options missing = {.port = "0", .certs = &(wsev_tls_cert){"/nonexistent.crt", "/nonexistent.key"}, .cert_count = 1};
  CHECK(wsev_listen(ctx, &missing, NULL) == WSEV_ETLSCERT);

  /* A TCP listener: an id, and its port. */
  int port = -1;
  wsev_listen_options plain = {.host = "127.0.0.1", .port = "0"};
  int id = wsev_listen(ctx, &plain, &port);
  CHECK(id > 0);
  CHECK(port > 0);
  int id2 = wsev_listen(ctx, &plain, NULL);
  CHECK(id2 > id);
  /* Certificates only for a TLS listener that exists. */
  wsev_tls_cert pair = {"a.crt", "a.key"};
  CHECK(wsev_set_listener_certs(ctx, id, &pair, 1) == UV_ENOENT); /* not TLS */
  CHECK(wsev_set_listener_certs(ctx, 999, &pair, 1) == UV_ENOENT);
  CHECK(wsev_set_listener_certs(ctx, 0, &pair, 1) == UV_EINVAL);
  CHECK(wsev_set_listener_certs(ctx, id, NULL, 1) == UV_EINVAL);
  CHECK(wsev_set_listener_certs(ctx, id, &pair, 0) == UV_EINVAL);
  CHECK(wsev_set_listener_certs(ctx, id, &no_key, 1) == UV_EINVAL);
  wsev_ctx_free(ctx);
}

/* ---- the socket file ------------------------------------------------------------------- */

static void test_socket_file(void) {
  wsev_ctx *ctx;
  wsev_handler h = {0};
  CHECK(test_ctx_new(&ctx, NULL, &h, NULL) == 0);
  wsev_listen_options o = {.unix_path = sock_path};
  struct stat st;

  /* Another kind of file: refused and left alone. */
  FILE *f = fopen(sock_path, "w");
  CHECK(f != NULL);
  if (f) fclose(f);
  CHECK(wsev_listen(ctx, &o, NULL) == UV_EEXIST);
  CHECK(stat(sock_path, &st) == 0 && S_ISREG(st.st_mode));
  unlink(sock_path);

  /* A live server there: refused, its file untouched. */
  int live = bound_socket(sock_path, 1);
  CHECK(live >= 0);
  CHECK(wsev_listen(ctx, &o, NULL) == UV_EADDRINUSE);
  CHECK(unix_connect(sock_path) >= 0); /* still the other server's (the fd leaks till exit) */
  close(live);

  /* A stale one (its server is gone, the file is still there): replaced. */
  CHECK(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode));
  o.unix_mode = 0640;
  int port = -1;
  int id = wsev_listen(ctx, &o, &port);
  CHECK(id > 0);
  CHECK(port == 0);
  CHECK(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0640);
  int fd = unix_connect(sock_path);
  CHECK(fd >= 0);
  if (fd >= 0) close(fd);
  /* The same path twice: the first listener has it. */
  CHECK(wsev_listen(ctx, &o, NULL) == UV_EADDRINUSE);

  /* The file goes with the context. */
  wsev_ctx_free(ctx);
  CHECK(stat(sock_path, &st) != 0 && errno == ENOENT);

  /* Unless another has taken the path meanwhile: then it stays. */
  CHECK(test_ctx_new(&ctx, NULL, &h, NULL) == 0);
  CHECK(wsev_listen(ctx, &o, NULL) > 0);
  unlink(sock_path);
  f = fopen(sock_path, "w");
  if (f) fclose(f);
  wsev_ctx_free(ctx);
  CHECK(stat(sock_path, &st) == 0 && S_ISREG(st.st_mode));
  unlink(sock_path);
}

/* ---- a Unix client, as the application sees it ------------------------------------------- */

static int n_accepted, n_checked;
static _Atomic int client_done;
static uv_async_t wake; /* the loop waits for events: the client's end is one */

static void on_accepted(wsev_ctx *ctx, uint64_t id) {
  wsev_conn_info info;
  n_accepted++;
  CHECK(wsev_get_conn_info(ctx, id, &info) == 0);
  const struct sockaddr_un *un = (const struct sockaddr_un *)&info.peer;
  CHECK(info.peer.ss_family == AF_UNIX);
  /* The listener's path for an accepted client; an adopted socketpair has none. */
  if (un->sun_path[0]) CHECK(strcmp(un->sun_path, sock_path) == 0);
  CHECK(info.peer_pid == (int)getpid());
  CHECK(info.peer_uid == (int)getuid());
  CHECK(info.peer_gid == (int)getgid());
  CHECK(info.local_port == 0);
  CHECK(info.forwarded == 0);
  CHECK(memcmp(&info.client_addr, &info.peer, sizeof info.peer) == 0);
  CHECK(strcmp(info.path, "/unix") == 0);
  n_checked++;
  CHECK(wsev_write_text(ctx, id, "hello", 5) == 0);
}

/* Upgrade over fd and read the greeting: 0 when it came. */
static int greeted(int fd) {
  uint8_t frame[7];
  if (raw_upgrade(fd, "/unix") < 0) return -1;
  int ok = read(fd, frame, 2) == 2 && frame[0] == 0x81 && frame[1] == 5 &&
           read(fd, frame + 2, 5) == 5 && memcmp(frame + 2, "hello", 5) == 0;
  close(fd);
  return ok ? 0 : -1;
}

static void *unix_client(void *arg) {
  int ok = 1;
  for (int i = 0; i < 10; i++) ok &= greeted(unix_connect(sock_path)) == 0;
  ok &= greeted(*(int *)arg) == 0; /* the adopted socketpair's other end */
  client_done = ok ? 1 : -1;
  uv_async_send(&wake);
  return NULL;
}

static void test_unix_clients(void) {
  wsev_ctx *ctx;
  wsev_handler h = {.conn_accepted = on_accepted};
  CHECK(test_ctx_new(&ctx, NULL, &h, NULL) == 0);
  wsev_listen_options o = {.unix_path = sock_path};
  CHECK(wsev_listen(ctx, &o, NULL) > 0);
  int pair[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
  uint64_t adopted = 1;
  CHECK(wsev_adopt_socket(ctx, pair[0], NULL, NULL, &adopted) == 0);
  CHECK(adopted == 0);
  uv_async_init(wsev_get_loop(ctx), &wake, NULL);
  pthread_t t;
  pthread_create(&t, NULL, unix_client, &pair[1]);
  while (!client_done || n_checked < 11) {
    if (client_done < 0) break;
    wsev_event_loop_iteration(ctx);
  }
  pthread_join(t, NULL);
  CHECK(client_done == 1);
  CHECK(n_accepted == 11);
  uv_close((uv_handle_t *)&wake, NULL);
  wsev_ctx_free(ctx);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/wsev-listen-XXXXXX");
  if (!mkdtemp(dir)) return 1;
  snprintf(sock_path, sizeof sock_path, "%s/s.sock", dir);
  test_refusals();
  test_socket_file();
  test_unix_clients();
  unlink(sock_path);
  rmdir(dir);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
