/* churn: many short WebSocket connections against a server, as fast as it takes
 * them, `parallel` at a time: connect, upgrade, one message, close handshake, EOF.
 * Every 7th connection instead resets (RST) in the middle of the upgrade request,
 * every 7th+1 in the middle of a frame, every 7th+2 right after connecting.
 *
 *   churn PORT CYCLES [PARALLEL]
 * Prints "churn: N cycles, N ok, N reset, N failed, S s" and exits 1 if any
 * normal cycle did not see the 101, its echo and the server's close. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char request[] =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";
/* A masked text frame "hi" (mask 01 02 03 04) and a masked close 1000. */
static const unsigned char frames[] = {0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1,  'i' ^ 2,
                                       0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2};
/* What a correct server sends back after the 101 response: the echo, then its close. */
static const unsigned char reply_frames[] = {0x81, 0x02, 'h', 'i', 0x88, 0x02, 0x03, 0xE8};

enum kind { NORMAL, RESET_IN_REQUEST, RESET_IN_FRAME, RESET_AT_ONCE };

typedef struct {
  int fd;
  enum kind kind;
  char in[512];
  size_t in_len;
} conn;

static struct sockaddr_in addr;
static long started, ok, resets, failed;

static void reset_close(int fd) {
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

static int open_one(int ep, conn *c, long n) {
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) return -1;
  c->kind = (enum kind)(n % 7 < 3 ? n % 7 + 1 : NORMAL);
  c->in_len = 0;
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  /* Blocking connect and send on loopback are immediate; replies are read with
   * epoll. */
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    close(c->fd);
    return -1;
  }
  started++;
  switch (c->kind) {
  case RESET_AT_ONCE:
    reset_close(c->fd);
    resets++;
    return 0;
  case RESET_IN_REQUEST:
    send(c->fd, request, sizeof request / 2, MSG_NOSIGNAL);
    reset_close(c->fd);
    resets++;
    return 0;
  case RESET_IN_FRAME: {
    char buf[sizeof request + 4];
    memcpy(buf, request, sizeof request - 1);
    memcpy(buf + sizeof request - 1, frames, 4); /* header and part of the mask */
    send(c->fd, buf, sizeof request - 1 + 4, MSG_NOSIGNAL);
    reset_close(c->fd);
    resets++;
    return 0;
  }
  case NORMAL: {
    char buf[sizeof request + sizeof frames];
    memcpy(buf, request, sizeof request - 1);
    memcpy(buf + sizeof request - 1, frames, sizeof frames);
    if (send(c->fd, buf, sizeof request - 1 + sizeof frames, MSG_NOSIGNAL) < 0) {
      close(c->fd);
      failed++;
      return 0;
    }
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    return 1; /* in flight */
  }
  }
  return 0;
}

/* 1 when the connection is finished (EOF or error). */
static int on_readable(conn *c) {
  for (;;) {
    ssize_t r = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
    if (r > 0) {
      c->in_len += (size_t)r;
      if (c->in_len == sizeof c->in) break; /* more than a correct server sends */
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    break; /* EOF, or an error */
  }
  char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
  int good = c->in_len > 12 && memcmp(c->in, "HTTP/1.1 101", 12) == 0 && end &&
             (size_t)(c->in + c->in_len - (end + 4)) == sizeof reply_frames &&
             memcmp(end + 4, reply_frames, sizeof reply_frames) == 0;
  if (good)
    ok++;
  else if (failed++ < 5)
    fprintf(stderr, "churn: bad exchange (%zu bytes)\n", c->in_len);
  close(c->fd);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: churn PORT CYCLES [PARALLEL]\n");
    return 2;
  }
  long cycles = atol(argv[2]);
  int parallel = argc > 3 ? atoi(argv[3]) : 32;
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)atoi(argv[1]));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  int ep = epoll_create1(0);
  conn *pool = calloc((size_t)parallel, sizeof *pool);
  conn **free_list = calloc((size_t)parallel, sizeof *free_list);
  int n_free = parallel, in_flight = 0;
  for (int i = 0; i < parallel; i++)
    free_list[i] = &pool[i];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long n = 0;
  int connect_errors = 0;
  while (n < cycles || in_flight) {
    while (n < cycles && n_free) {
      conn *c = free_list[--n_free];
      int r = open_one(ep, c, n);
      if (r < 0) {
        free_list[n_free++] = c;
        if (++connect_errors > 1000) {
          fprintf(stderr, "churn: cannot connect: %s\n", strerror(errno));
          return 1;
        }
        break;
      }
      n++;
      if (r == 1)
        in_flight++;
      else
        free_list[n_free++] = c;
    }
    struct epoll_event evs[64];
    int k = epoll_wait(ep, evs, 64, 5000);
    if (k == 0 && in_flight) {
      fprintf(stderr, "churn: %d connections got no answer for 5 s\n", in_flight);
      failed += in_flight;
      break;
    }
    for (int i = 0; i < k; i++) {
      conn *c = evs[i].data.ptr;
      if (on_readable(c)) {
        in_flight--;
        free_list[n_free++] = c;
      }
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("churn: %ld cycles, %ld ok, %ld reset, %ld failed, %.2f s\n", started, ok, resets, failed,
         s);
  free(pool);
  free(free_list);
  close(ep);
  return failed || started != cycles ? 1 : 0;
}
