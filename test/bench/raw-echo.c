/*
 * wsev-raw-echo: a plain TCP echo server on epoll, no WebSocket at all. The
 * benchmark's ceiling: the same byte pattern the load generator sends to WebSocket
 * servers (in its `raw` mode), echoed with the least work a server can do: one read
 * per readable socket into a shared buffer, one write straight back; only bytes the
 * kernel did not take are kept per connection (and reading pauses until they leave).
 *
 *   wsev-raw-echo PORT [--host 127.0.0.1]     runs until SIGINT/SIGTERM
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)

typedef struct {
  int fd;
  char *pend; /* bytes not yet written back */
  size_t pend_len, pend_off;
} conn;

static volatile sig_atomic_t stop;
static void on_sig(int s) {
  (void)s;
  stop = 1;
}

static int epfd;
static char buf[BUF_SIZE];

static void drop(conn *c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->pend);
  free(c);
}

static void set_events(conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write pending bytes; returns -1 if the connection was dropped. */
static int write_pending(conn *c) {
  while (c->pend_off < c->pend_len) {
    ssize_t w = write(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
    if (w < 0) {
      if (errno == EAGAIN) return 0;
      if (errno == EINTR) continue;
      drop(c);
      return -1;
    }
    c->pend_off += (size_t)w;
  }
  free(c->pend);
  c->pend = NULL;
  c->pend_len = c->pend_off = 0;
  set_events(c, EPOLLIN);
  return 0;
}

static void on_readable(conn *c) {
  ssize_t r = read(c->fd, buf, sizeof buf);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
    drop(c);
    return;
  }
  if (r < 0) return;
  size_t off = 0;
  while (off < (size_t)r) {
    ssize_t w = write(c->fd, buf + off, (size_t)r - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        drop(c);
        return;
      }
      break;
    }
    off += (size_t)w;
  }
  if (off < (size_t)r) {
    c->pend_len = (size_t)r - off;
    c->pend = malloc(c->pend_len);
    if (!c->pend) {
      drop(c);
      return;
    }
    memcpy(c->pend, buf + off, c->pend_len);
    c->pend_off = 0;
    set_events(c, EPOLLOUT); /* stop reading until the backlog is gone */
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  if (argc < 2) {
    fprintf(stderr, "usage: %s PORT [--host ADDR]\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]);
  if (argc >= 4 && !strcmp(argv[2], "--host")) host = argv[3];
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_sig);
  signal(SIGTERM, on_sig);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0) {
    perror("raw-echo: bind/listen");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(lfd, (struct sockaddr *)&a, &al);
  printf("raw-echo listening on port %d\n", ntohs(a.sin_port));
  fflush(stdout);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event evs[256];
  while (!stop) {
    int n = epoll_wait(epfd, evs, 256, 500);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (!c) {
        for (;;) {
          int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn *nc = calloc(1, sizeof *nc);
          if (!nc) {
            close(fd);
            continue;
          }
          nc->fd = fd;
          struct epoll_event e = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
        }
        continue;
      }
      if (c->pend) {
        if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) write_pending(c);
      } else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(c);
      }
    }
  }
  close(lfd);
  return 0;
}
