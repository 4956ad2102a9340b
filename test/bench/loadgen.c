/*
 * wsev-loadgen: a WebSocket load generator for the wsev benchmark (test/bench).
 *
 * One thread, one epoll set, many non-blocking connections. Everything it sends is
 * built once: every in-flight slot of a connection holds a complete masked frame, and
 * sending a message only patches the 8 timestamp bytes (XOR the mask) and queues a
 * pointer to the slot; all messages queued for a connection during one epoll batch
 * leave in one writev. Replies are parsed incrementally from one shared read buffer:
 * only the frame header and the first bytes of the payload (the timestamp) are
 * looked at, the rest is skipped without a copy.
 *
 * Modes (all traffic to HOST, 127.0.0.1 by default; every run stops by itself):
 *   echo        N connections x K messages in flight x S bytes (binary frames); each
 *               echoed message is answered with a new one. Reports messages/s and the
 *               round-trip latency (p50/p99) from the timestamp in each payload.
 *   raw         the same bytes over plain TCP (no upgrade) to a raw echo server: the
 *               machine's ceiling for the pattern.
 *   pubsub      the wsev-pubsub text protocol. M subscribers spread over C channels
 *               ("subscribe:chI" -> "OK"), P publishers; publisher p publishes
 *               "publish:chI:BODY" round-robin on channels p, p+P, p+2P, ...; BODY
 *               carries a timestamp and the publisher's index. A publisher keeps at
 *               most K publishes in flight, a publish counting until every subscriber
 *               of its channel received it. Reports deliveries/s and publish->delivery
 *               latency.
 *   idle        open N connections, complete their upgrades, print "READY" and hold
 *               them for D seconds (the runner reads the server's RSS meanwhile).
 *   handshakes  C concurrent clients, each repeatedly: connect, upgrade, send a close
 *               frame, wait for the server's close (or EOF), close. Handshakes/s.
 *
 * Every run ends with one line "RESULT key=value ..." including cpu_pct, the
 * generator's own CPU use (getrusage) over the measured interval: near 100 means
 * the generator, not the server, may be the bottleneck.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum mode { M_ECHO, M_RAW, M_PUBSUB, M_IDLE, M_HANDSHAKES };
enum state { S_CONNECTING, S_UPGRADING, S_OPEN, S_CLOSING, S_DEAD };
enum role { R_ECHO, R_SUB, R_PUB, R_IDLE, R_HS };

#define MASK_KEY 0x5a3c96e1u
#define PREFIX_MAX 24
#define RBUF_SIZE (1 << 20)
#define IOV_BATCH 256

/* ------------------------------------------------------------------------------ */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "loadgen: out of memory\n");
    exit(1);
  }
  return p;
}

/* --- latency histogram: 32 linear sub-buckets per power of two (~3 % precision) --- */

#define HIST_N (32 + 45 * 32)
static uint64_t hist[HIST_N];
static uint64_t hist_count;

static void hist_add(uint64_t v) {
  unsigned idx;
  if (v < 32)
    idx = (unsigned)v;
  else {
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 5 */
    unsigned sub = (unsigned)(v >> (e - 5)) - 32u;
    idx = 32u + (e - 5u) * 32u + sub;
    if (idx >= HIST_N) idx = HIST_N - 1;
  }
  hist[idx]++;
  hist_count++;
}

static uint64_t hist_value(unsigned idx) {
  if (idx < 32) return idx;
  unsigned e = (idx - 32) / 32 + 5, sub = (idx - 32) % 32;
  /* middle of the bucket */
  return ((uint64_t)(32 + sub) << (e - 5)) + (((uint64_t)1 << (e - 5)) >> 1);
}

static double hist_pct(double p) {
  if (!hist_count) return 0;
  uint64_t want = (uint64_t)(p / 100.0 * (double)hist_count);
  if (want >= hist_count) want = hist_count - 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HIST_N; i++) {
    seen += hist[i];
    if (seen > want) return (double)hist_value(i) / 1000.0; /* microseconds */
  }
  return 0;
}

/* --- options --------------------------------------------------------------------- */

static struct {
  enum mode mode;
  const char *host;
  int port;
  int conns;    /* echo/raw/idle connections; handshakes: concurrency */
  int inflight; /* messages in flight per connection (echo) / publishes per publisher */
  size_t size;  /* payload bytes (echo) / publish body bytes (pubsub) */
  double duration, warmup;
  int publishers, subscribers, channels;
  int max_pending; /* connections connecting/upgrading at once */
  double setup_timeout;
  int sockbuf;     /* SO_RCVBUF/SO_SNDBUF of the generator's sockets (0: kernel autotuning) */
  long long count; /* >= 0: a fixed workload of this many messages / publishes, no warm-up */
} opt = {
    .count = -1,
    .mode = M_ECHO,
    .host = "127.0.0.1",
    .port = 9000,
    .conns = 100,
    .inflight = 10,
    .size = 32,
    .duration = 5,
    .warmup = 1,
    .publishers = 1,
    .subscribers = 1000,
    .channels = 1,
    .max_pending = 256,
    .setup_timeout = 30,
};

/* --- connections ----------------------------------------------------------------- */

typedef struct conn {
  int fd;
  int idx;
  enum state state;
  enum role role;
  bool dirty, want_out;
  struct conn *next_dirty;
  /* output: a queue of iovecs pointing into slots or static buffers */
  struct iovec *iov;
  int iov_n, iov_cap;
  /* slots: K pre-built frames (echo/raw) or publish buffers */
  unsigned char *slots;
  size_t slot_size; /* bytes of one slot */
  size_t frame_len; /* echo: length of each pre-built frame */
  size_t ts_off;    /* echo: offset of the timestamp inside a frame */
  uint64_t seq;     /* messages sent */
  /* handshake */
  char hs[512];
  int hs_len;
  /* incremental frame parser */
  unsigned char hb[14];
  int hb_have, hb_need;
  uint8_t opcode;
  bool masked;
  uint32_t mkey;
  uint64_t plen;
  unsigned char pref[PREFIX_MAX];
  int pref_have, pref_need;
  uint64_t skip;
  /* pubsub */
  int channel; /* subscriber: its channel; publisher: next channel index */
  uint64_t pub_sent, pub_delivered;
  uint64_t t_start; /* handshakes: start of the cycle */
} conn;

static int epfd;
static conn *conns;
static int nconns;
static conn *dirty_head;
static unsigned char *rbuf;
static uint64_t t_now;

/* global counters */
static bool measuring;
static uint64_t cnt_msgs;   /* echo replies, pubsub deliveries, handshakes */
static uint64_t cnt_bytes;  /* echoed payload bytes */
static uint64_t cnt_oks;    /* pubsub: OK replies to publishes */
static uint64_t cnt_errors; /* unexpected closes, failed upgrades, ... */
static uint64_t cnt_published;
static int n_open; /* connections with a completed upgrade */
static int n_subscribed;
static int n_pending;    /* connecting or upgrading */
static int next_to_open; /* index of the next connection to open */
static bool started;     /* pubsub: publishers started */
static struct sockaddr_in srv_addr;
static int fanout; /* pubsub: subscribers per channel */

static const char upgrade_fmt[] = "GET / HTTP/1.1\r\n"
                                  "Host: %s:%d\r\n"
                                  "Upgrade: websocket\r\n"
                                  "Connection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n\r\n";
static char upgrade_req[256];
static size_t upgrade_len;
static unsigned char close_frame[8]; /* masked close, code 1000 */

static void mask_bytes(unsigned char *p, size_t n, size_t off) {
  unsigned char k[4];
  uint32_t m = MASK_KEY;
  memcpy(k, &m, 4);
  for (size_t i = 0; i < n; i++)
    p[i] ^= k[(off + i) & 3];
}

/* Write a masked frame header for `len` payload bytes; returns its length. */
static size_t frame_header(unsigned char *h, uint8_t opcode, uint64_t len) {
  size_t n;
  h[0] = 0x80 | opcode;
  if (len < 126) {
    h[1] = 0x80 | (unsigned char)len;
    n = 2;
  } else if (len <= 0xffff) {
    h[1] = 0x80 | 126;
    h[2] = (unsigned char)(len >> 8);
    h[3] = (unsigned char)len;
    n = 4;
  } else {
    h[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++)
      h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    n = 10;
  }
  uint32_t m = MASK_KEY;
  memcpy(h + n, &m, 4);
  return n + 4;
}

static void mark_dirty(conn *c) {
  if (!c->dirty) {
    c->dirty = true;
    c->next_dirty = dirty_head;
    dirty_head = c;
  }
}

static void queue(conn *c, const void *p, size_t n) {
  if (c->iov_n > 0) {
    struct iovec *last = &c->iov[c->iov_n - 1];
    if ((const char *)last->iov_base + last->iov_len == (const char *)p) {
      last->iov_len += n;
      mark_dirty(c);
      return;
    }
  }
  if (c->iov_n == c->iov_cap) {
    c->iov_cap = c->iov_cap ? c->iov_cap * 2 : 8;
    c->iov = realloc(c->iov, sizeof *c->iov * (size_t)c->iov_cap);
    if (!c->iov) die("realloc");
  }
  c->iov[c->iov_n].iov_base = (void *)p;
  c->iov[c->iov_n].iov_len = n;
  c->iov_n++;
  mark_dirty(c);
}

static void set_out_interest(conn *c, bool want) {
  if (c->want_out == want || c->state == S_DEAD) return;
  c->want_out = want;
  struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_kill(conn *c, bool error);

static void flush(conn *c) {
  while (c->iov_n > 0) {
    int n = c->iov_n > IOV_BATCH ? IOV_BATCH : c->iov_n;
    ssize_t w = writev(c->fd, c->iov, n);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      conn_kill(c, true);
      return;
    }
    int i = 0;
    size_t left = (size_t)w;
    while (i < c->iov_n && left >= c->iov[i].iov_len) {
      left -= c->iov[i].iov_len;
      i++;
    }
    if (i < c->iov_n && left) {
      c->iov[i].iov_base = (char *)c->iov[i].iov_base + left;
      c->iov[i].iov_len -= left;
    }
    if (i) {
      memmove(c->iov, c->iov + i, sizeof *c->iov * (size_t)(c->iov_n - i));
      c->iov_n -= i;
    }
    if (c->iov_n && i < n) break; /* the kernel took less than offered */
  }
  set_out_interest(c, c->iov_n > 0);
}

static void flush_dirty(void) {
  while (dirty_head) {
    conn *c = dirty_head;
    dirty_head = c->next_dirty;
    c->dirty = false;
    if (c->state != S_DEAD) flush(c);
  }
}

/* --- messages -------------------------------------------------------------------- */

/* echo/raw: send the next message from slot seq % K with the current timestamp. */
static uint64_t total_sent; /* messages / publishes sent, for --count */

static bool count_left(void) { return opt.count < 0 || total_sent < (uint64_t)opt.count; }

static void echo_send(conn *c) {
  if (!count_left()) return;
  total_sent++;
  unsigned char *f = c->slots + (c->seq % (uint64_t)opt.inflight) * c->slot_size;
  c->seq++;
  uint64_t ts = t_now;
  memcpy(f + c->ts_off, &ts, 8);
  mask_bytes(f + c->ts_off, 8, 0);
  queue(c, f, c->frame_len);
}

static const char hexd[] = "0123456789abcdef";

static void put_hex(char *p, uint64_t v, int digits) {
  for (int i = digits - 1; i >= 0; i--) {
    p[i] = hexd[v & 15];
    v >>= 4;
  }
}

static bool get_hex(const unsigned char *p, int digits, uint64_t *out) {
  uint64_t v = 0;
  for (int i = 0; i < digits; i++) {
    unsigned char ch = p[i];
    unsigned d;
    if (ch >= '0' && ch <= '9')
      d = ch - '0';
    else if (ch >= 'a' && ch <= 'f')
      d = ch - 'a' + 10;
    else
      return false;
    v = v << 4 | d;
  }
  *out = v;
  return true;
}

/* pubsub: body = 16 hex digits of timestamp, 4 hex digits of publisher index, then
 * filler up to opt.size bytes (at least 20). */
static void pub_send(conn *c) {
  int pidx = c->idx - opt.subscribers;
  int ch = pidx + c->channel * opt.publishers;
  c->channel++;
  if (pidx + c->channel * opt.publishers >= opt.channels) c->channel = 0;
  unsigned char *f = c->slots + (c->seq % (uint64_t)opt.inflight) * c->slot_size;
  c->seq++;
  char payload[256 + 64];
  int n = snprintf(payload, 64, "publish:ch%d:", ch);
  put_hex(payload + n, t_now, 16);
  put_hex(payload + n + 16, (uint64_t)pidx, 4);
  size_t body = opt.size < 20 ? 20 : opt.size;
  memset(payload + n + 20, 'x', body - 20);
  size_t plen = (size_t)n + body;
  size_t h = frame_header(f, 0x1, plen);
  memcpy(f + h, payload, plen);
  mask_bytes(f + h, plen, 0);
  queue(c, f, h + plen);
  c->pub_sent++;
  total_sent++;
  if (measuring) cnt_published++;
}

static bool pub_can_send(conn *c) {
  if (!count_left()) return false;
  return c->pub_sent * (uint64_t)fanout <
         c->pub_delivered + (uint64_t)opt.inflight * (uint64_t)fanout;
}

static void start_publishers(void) {
  started = true;
  for (int i = opt.subscribers; i < nconns; i++) {
    conn *c = &conns[i];
    if (c->state != S_OPEN) continue;
    while (pub_can_send(c))
      pub_send(c);
  }
}

static void on_message(conn *c) {
  const unsigned char *p = c->pref;
  if (c->opcode == 0x8) { /* close from the server */
    if (c->role == R_HS) {
      if (measuring) {
        cnt_msgs++;
        hist_add(t_now - c->t_start);
      }
      conn_kill(c, false);
    } else {
      static int warned;
      if (!warned++)
        fprintf(stderr, "loadgen: server sent close, code %d%s%.*s\n",
                c->pref_have >= 2 ? c->pref[0] << 8 | c->pref[1] : 0, c->pref_have > 2 ? ": " : "",
                c->pref_have > 2 ? c->pref_have - 2 : 0, (const char *)c->pref + 2);
      conn_kill(c, true);
    }
    return;
  }
  if (c->opcode == 0x9 || c->opcode == 0xA) return; /* ignore pings/pongs */
  switch (c->role) {
  case R_ECHO: {
    uint64_t ts;
    if (c->pref_have < 8) {
      cnt_errors++;
      return;
    }
    memcpy(&ts, p, 8);
    if (measuring) {
      cnt_msgs++;
      cnt_bytes += c->plen;
      hist_add(t_now - ts);
    }
    echo_send(c);
    break;
  }
  case R_SUB:
    if (c->plen == 2 && p[0] == 'O' && p[1] == 'K') {
      n_subscribed++;
      if (n_subscribed == opt.subscribers && n_open == nconns && !started) start_publishers();
    } else {
      uint64_t ts, pidx;
      if (c->pref_have < 20 || !get_hex(p, 16, &ts) || !get_hex(p + 16, 4, &pidx) ||
          pidx >= (uint64_t)opt.publishers) {
        cnt_errors++;
        return;
      }
      if (measuring) {
        cnt_msgs++;
        hist_add(t_now - ts);
      }
      conn *pub = &conns[opt.subscribers + (int)pidx];
      pub->pub_delivered++;
      if (pub->state == S_OPEN)
        while (pub_can_send(pub))
          pub_send(pub);
    }
    break;
  case R_PUB:
    if (c->plen == 2 && p[0] == 'O' && p[1] == 'K') {
      if (measuring) cnt_oks++;
    } else {
      cnt_errors++;
    }
    break;
  default: break;
  }
}

/* Feed bytes of the server's frame stream to the connection's parser. */
static void parse(conn *c, const unsigned char *p, size_t n) {
  const unsigned char *end = p + n;
  while (p < end && c->state != S_DEAD) {
    if (c->skip) {
      size_t k = (size_t)(end - p) < c->skip ? (size_t)(end - p) : c->skip;
      p += k;
      c->skip -= k;
      if (!c->skip) on_message(c);
      continue;
    }
    if (c->hb_need == 0 || c->hb_have < c->hb_need) {
      /* header */
      if (c->hb_need == 0) c->hb_need = 2;
      while (p < end && c->hb_have < c->hb_need) {
        c->hb[c->hb_have++] = *p++;
        if (c->hb_have == 2) {
          unsigned l = c->hb[1] & 0x7f;
          c->hb_need = 2 + (l == 126 ? 2 : l == 127 ? 8 : 0) + ((c->hb[1] & 0x80) ? 4 : 0);
        }
      }
      if (c->hb_have < c->hb_need) return;
      c->opcode = c->hb[0] & 0x0f;
      c->masked = (c->hb[1] & 0x80) != 0;
      unsigned l = c->hb[1] & 0x7f;
      int o = 2;
      if (l == 126) {
        c->plen = (uint64_t)c->hb[2] << 8 | c->hb[3];
        o = 4;
      } else if (l == 127) {
        c->plen = 0;
        for (int i = 0; i < 8; i++)
          c->plen = c->plen << 8 | c->hb[2 + i];
        o = 10;
      } else {
        c->plen = l;
      }
      if (c->masked) memcpy(&c->mkey, c->hb + o, 4);
      c->pref_have = 0;
      c->pref_need = c->plen < PREFIX_MAX ? (int)c->plen : PREFIX_MAX;
      if (c->pref_need == 0) {
        c->hb_need = c->hb_have = 0;
        on_message(c);
        continue;
      }
    }
    /* payload prefix */
    while (p < end && c->pref_have < c->pref_need)
      c->pref[c->pref_have++] = *p++;
    if (c->pref_have < c->pref_need) return;
    if (c->masked) {
      unsigned char k[4];
      memcpy(k, &c->mkey, 4);
      for (int i = 0; i < c->pref_have; i++)
        c->pref[i] ^= k[i & 3];
    }
    c->hb_need = c->hb_have = 0;
    c->skip = c->plen - (uint64_t)c->pref_have;
    if (!c->skip) on_message(c);
  }
}

/* --- connection life ------------------------------------------------------------- */

static void open_more(void);

static void conn_start(conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) die("socket");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (opt.sockbuf > 0) {
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &opt.sockbuf, sizeof opt.sockbuf);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &opt.sockbuf, sizeof opt.sockbuf);
  }
  c->state = S_CONNECTING;
  c->hs_len = 0;
  c->hb_have = c->hb_need = 0;
  c->skip = 0;
  c->iov_n = 0;
  c->want_out = true;
  c->t_start = now_ns();
  n_pending++;
  int rc = connect(c->fd, (struct sockaddr *)&srv_addr, sizeof srv_addr);
  if (rc < 0 && errno != EINPROGRESS) die("connect");
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

static void conn_kill(conn *c, bool error) {
  if (c->state == S_DEAD) return;
  if (c->state == S_CONNECTING || c->state == S_UPGRADING) n_pending--;
  if (c->state == S_OPEN || c->state == S_CLOSING) n_open--;
  if (error) cnt_errors++;
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->state = S_DEAD;
  c->iov_n = 0;
  if (c->role == R_HS) {
    conn_start(c); /* next cycle */
  }
}

static void on_open(conn *c) {
  c->state = S_OPEN;
  n_pending--;
  n_open++;
  switch (c->role) {
  case R_ECHO:
    for (int i = 0; i < opt.inflight; i++)
      echo_send(c);
    break;
  case R_SUB: {
    char cmd[64];
    int n = snprintf(cmd, sizeof cmd, "subscribe:ch%d", c->channel);
    size_t h = frame_header(c->slots, 0x1, (uint64_t)n);
    memcpy(c->slots + h, cmd, (size_t)n);
    mask_bytes(c->slots + h, (size_t)n, 0);
    queue(c, c->slots, h + (size_t)n);
    break;
  }
  case R_PUB:
    if (!started && n_subscribed == opt.subscribers && n_open == nconns) start_publishers();
    break;
  case R_HS:
    c->state = S_CLOSING;
    queue(c, close_frame, sizeof close_frame);
    break;
  default: break;
  }
}

static void on_upgrade_bytes(conn *c, const unsigned char *p, size_t n) {
  size_t room = sizeof c->hs - 1 - (size_t)c->hs_len;
  size_t take = n < room ? n : room;
  memcpy(c->hs + c->hs_len, p, take);
  c->hs_len += (int)take;
  c->hs[c->hs_len] = 0;
  char *end = strstr(c->hs, "\r\n\r\n");
  if (!end) {
    if (take < n || c->hs_len == (int)sizeof c->hs - 1) {
      fprintf(stderr, "loadgen: upgrade response too long\n");
      conn_kill(c, true);
    }
    return;
  }
  if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
    static int warned;
    if (!warned++) fprintf(stderr, "loadgen: upgrade refused: %.60s\n", c->hs);
    conn_kill(c, true);
    return;
  }
  size_t used = (size_t)(end + 4 - c->hs) - ((size_t)c->hs_len - take);
  on_open(c);
  if (used < n && c->state != S_DEAD) parse(c, p + used, n - used);
}

static void on_readable(conn *c) {
  for (;;) {
    ssize_t r = read(c->fd, rbuf, RBUF_SIZE);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      if (c->role != R_HS) {
        static int warned;
        if (!warned++) fprintf(stderr, "loadgen: read: %s\n", strerror(errno));
      }
      conn_kill(c, c->role != R_HS || c->state != S_CLOSING);
      return;
    }
    if (r == 0) {
      if (c->role == R_HS && c->state == S_CLOSING) {
        if (measuring) {
          cnt_msgs++;
          hist_add(t_now - c->t_start);
        }
        conn_kill(c, false);
      } else {
        static int warned;
        if (!warned++) fprintf(stderr, "loadgen: connection closed by the server (EOF)\n");
        conn_kill(c, true);
      }
      return;
    }
    if (c->state == S_UPGRADING)
      on_upgrade_bytes(c, rbuf, (size_t)r);
    else
      parse(c, rbuf, (size_t)r);
    if (c->state == S_DEAD || r < RBUF_SIZE) return;
  }
}

static void on_event(conn *c, uint32_t ev) {
  if (c->state == S_CONNECTING) {
    if (ev & (EPOLLERR | EPOLLHUP)) {
      conn_kill(c, true);
      return;
    }
    if (ev & EPOLLOUT) {
      int err = 0;
      socklen_t l = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
      if (err) {
        conn_kill(c, true);
        return;
      }
      if (opt.mode == M_RAW) {
        c->state = S_UPGRADING; /* so that on_open counts it */
        on_open(c);
      } else {
        c->state = S_UPGRADING;
        queue(c, upgrade_req, upgrade_len);
      }
      flush(c);
    }
    return;
  }
  if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
  if (c->state != S_DEAD && (ev & EPOLLOUT)) flush(c);
}

static void open_more(void) {
  while (next_to_open < nconns && n_pending < opt.max_pending)
    conn_start(&conns[next_to_open++]);
}

/* --- main ------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_flag;
static void on_sig(int s) {
  (void)s;
  stop_flag = 1;
}

static void usage(void) {
  fprintf(
      stderr,
      "usage: wsev-loadgen MODE [options]\n"
      "  MODE: echo | raw | pubsub | idle | handshakes\n"
      "  --host H (127.0.0.1)  --port N (9000)\n"
      "  -c N   connections (echo/raw/idle), concurrent clients (handshakes)\n"
      "  -k N   messages in flight per connection / publishes in flight per publisher\n"
      "  -s N   payload bytes (echo/raw) or publish body bytes (pubsub, >= 20)\n"
      "  -d S   measured seconds   -w S  warm-up seconds (idle: hold time is -d)\n"
      "  --publishers P --subscribers M --channels C (pubsub)\n"
      "  --max-pending N   connections being set up at once (256)\n"
      "  --count N         fixed workload: N messages (echo/raw) or N publishes (pubsub),\n"
      "                    no warm-up, ends when all replies/deliveries arrived (0: just\n"
      "                    connect and upgrade; for instruction counts under callgrind)\n"
      "  --sockbuf BYTES   SO_RCVBUF/SO_SNDBUF of the generator's sockets (default: autotuning)\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  const char *m = argv[1];
  if (!strcmp(m, "echo"))
    opt.mode = M_ECHO;
  else if (!strcmp(m, "raw"))
    opt.mode = M_RAW;
  else if (!strcmp(m, "pubsub"))
    opt.mode = M_PUBSUB;
  else if (!strcmp(m, "idle"))
    opt.mode = M_IDLE;
  else if (!strcmp(m, "handshakes"))
    opt.mode = M_HANDSHAKES;
  else
    usage();
  for (int i = 2; i < argc; i += 2) { /* options come in pairs: name value */
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--host"))
      opt.host = v;
    else if (!strcmp(a, "--port"))
      opt.port = atoi(v);
    else if (!strcmp(a, "-c"))
      opt.conns = atoi(v);
    else if (!strcmp(a, "-k"))
      opt.inflight = atoi(v);
    else if (!strcmp(a, "-s"))
      opt.size = strtoull(v, NULL, 10);
    else if (!strcmp(a, "-d"))
      opt.duration = atof(v);
    else if (!strcmp(a, "-w"))
      opt.warmup = atof(v);
    else if (!strcmp(a, "--publishers"))
      opt.publishers = atoi(v);
    else if (!strcmp(a, "--subscribers"))
      opt.subscribers = atoi(v);
    else if (!strcmp(a, "--channels"))
      opt.channels = atoi(v);
    else if (!strcmp(a, "--count"))
      opt.count = atoll(v);
    else if (!strcmp(a, "--sockbuf"))
      opt.sockbuf = atoi(v);
    else if (!strcmp(a, "--max-pending"))
      opt.max_pending = atoi(v);
    else
      usage();
  }
  if (opt.inflight < 1) opt.inflight = 1;
  if ((opt.mode == M_ECHO || opt.mode == M_RAW) && opt.size < 8) opt.size = 8;
  if (opt.mode == M_PUBSUB) {
    if (opt.size < 20) opt.size = 20;
    if (opt.size > 256) opt.size = 256;
    if (opt.channels < 1) opt.channels = 1;
    if (opt.publishers > opt.channels) opt.publishers = opt.channels;
    if (opt.subscribers % opt.channels) {
      fprintf(stderr, "loadgen: --subscribers must be a multiple of --channels\n");
      return 2;
    }
    fanout = opt.subscribers / opt.channels;
  }

  /* as many descriptors as we may get */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_sig);
  signal(SIGTERM, on_sig);

  memset(&srv_addr, 0, sizeof srv_addr);
  srv_addr.sin_family = AF_INET;
  srv_addr.sin_port = htons((uint16_t)opt.port);
  if (inet_pton(AF_INET, opt.host, &srv_addr.sin_addr) != 1) {
    fprintf(stderr, "loadgen: bad host %s (IPv4 literal)\n", opt.host);
    return 2;
  }
  upgrade_len = (size_t)snprintf(upgrade_req, sizeof upgrade_req, upgrade_fmt, opt.host, opt.port);
  {
    size_t h = frame_header(close_frame, 0x8, 2);
    close_frame[h] = 0x03;
    close_frame[h + 1] = 0xe8;
    mask_bytes(close_frame + h, 2, 0);
  }

  rbuf = xmalloc(RBUF_SIZE);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");

  nconns = opt.mode == M_PUBSUB ? opt.subscribers + opt.publishers : opt.conns;
  conns = calloc((size_t)nconns, sizeof *conns);
  if (!conns) die("calloc");
  for (int i = 0; i < nconns; i++) {
    conn *c = &conns[i];
    c->idx = i;
    c->fd = -1;
    c->state = S_DEAD;
    switch (opt.mode) {
    case M_ECHO:
    case M_RAW: {
      c->role = R_ECHO;
      unsigned char h[14];
      size_t hl = frame_header(h, 0x2, opt.size);
      c->frame_len = hl + opt.size;
      c->ts_off = hl;
      c->slot_size = (c->frame_len + 63) & ~(size_t)63;
      c->slots = xmalloc(c->slot_size * (size_t)opt.inflight);
      for (int k = 0; k < opt.inflight; k++) {
        unsigned char *f = c->slots + (size_t)k * c->slot_size;
        memcpy(f, h, hl);
        for (size_t j = 0; j < opt.size; j++)
          f[hl + j] = (unsigned char)('a' + (j % 26));
        mask_bytes(f + hl, opt.size, 0);
      }
      break;
    }
    case M_PUBSUB:
      if (i < opt.subscribers) {
        c->role = R_SUB;
        c->channel = i % opt.channels;
        c->slot_size = 128;
        c->slots = xmalloc(c->slot_size);
      } else {
        c->role = R_PUB;
        c->channel = 0;
        c->slot_size = 512;
        c->slots = xmalloc(c->slot_size * (size_t)opt.inflight);
      }
      break;
    case M_IDLE: c->role = R_IDLE; break;
    case M_HANDSHAKES: c->role = R_HS; break;
    }
  }

  struct epoll_event evs[512];
  uint64_t t0 = now_ns();
  uint64_t setup_deadline = t0 + (uint64_t)(opt.setup_timeout * 1e9);
  uint64_t t_measure = 0, t_end = 0;
  double cpu0 = 0;
  bool setup_done = false;
  int setup_target = nconns;

  if (opt.mode == M_HANDSHAKES) {
    for (int i = 0; i < nconns; i++)
      conn_start(&conns[i]);
    next_to_open = nconns;
    setup_done = true;
  } else {
    open_more();
  }

  uint64_t t_setup_end = 0;
  if (opt.count >= 0) measuring = true; /* count everything from the first message */
  while (!stop_flag) {
    int timeout = 100;
    int n = epoll_wait(epfd, evs, 512, timeout);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    t_now = now_ns();
    for (int i = 0; i < n; i++)
      on_event(evs[i].data.ptr, evs[i].events);
    if (!setup_done) open_more();
    flush_dirty();

    if (!setup_done) {
      bool ready = n_open == setup_target && (opt.mode != M_PUBSUB || started);
      if (ready) {
        setup_done = true;
        t_setup_end = t_now;
      } else if (t_now > setup_deadline) {
        fprintf(stderr, "loadgen: setup timed out: %d of %d connections open, %d subscribed\n",
                n_open, setup_target, n_subscribed);
        printf("RESULT mode=%s ok=0 open=%d errors=%" PRIu64 "\n", m, n_open, cnt_errors);
        return 1;
      } else {
        continue;
      }
      if (opt.mode == M_IDLE) {
        printf("READY conns=%d setup_s=%.3f\n", n_open, (t_setup_end - t0) / 1e9);
        fflush(stdout);
        t_measure = t_now;
        t_end = t_now + (uint64_t)(opt.duration * 1e9);
        measuring = true;
        cpu0 = cpu_seconds();
        continue;
      }
    }
    if (opt.count >= 0) {
      if (!t_measure) {
        t_measure = t_setup_end;
        measuring = true;
        cpu0 = cpu_seconds();
      }
      uint64_t want = (uint64_t)opt.count * (opt.mode == M_PUBSUB ? (uint64_t)fanout : 1u);
      if (cnt_msgs >= want) break;
      if (t_now > t_setup_end + (uint64_t)(opt.duration * 1e9)) {
        fprintf(stderr,
                "loadgen: --count run did not finish in %.0f s (%" PRIu64 " of %" PRIu64 ")\n",
                opt.duration, cnt_msgs, want);
        break;
      }
      continue;
    }
    if (!t_measure) {
      if (!t_setup_end) t_setup_end = t0;
      if (t_now >= t_setup_end + (uint64_t)(opt.warmup * 1e9)) {
        t_measure = t_now;
        t_end = t_now + (uint64_t)(opt.duration * 1e9);
        measuring = true;
        cpu0 = cpu_seconds();
        cnt_errors = 0;
      }
      continue;
    }
    if (t_now >= t_end) break;
  }
  double wall = (now_ns() - t_measure) / 1e9;
  double cpu = cpu_seconds() - cpu0;
  if (!t_measure) wall = 0;
  double rate = wall > 0 ? (double)cnt_msgs / wall : 0;
  printf("RESULT mode=%s ok=1 conns=%d open=%d rate=%.1f msgs=%" PRIu64 " mb_s=%.1f p50_us=%.1f "
         "p99_us=%.1f published=%" PRIu64 " oks=%" PRIu64 " errors=%" PRIu64
         " cpu_pct=%.1f wall_s=%.3f setup_s=%.3f\n",
         m, nconns, n_open, rate, cnt_msgs, wall > 0 ? cnt_bytes / wall / 1e6 : 0, hist_pct(50),
         hist_pct(99), cnt_published, cnt_oks, cnt_errors, wall > 0 ? 100.0 * cpu / wall : 0, wall,
         (t_setup_end - t0) / 1e9);
  fflush(stdout);
  return 0;
}
